"""What a run did with each source's records, said loudly: per source, what was quarantined or left out, the top
reasons, and the configuration change that would fix each one.

``c360 stream`` collects it batch by batch (:meth:`RunQuality.add`), prints :meth:`RunQuality.lines` at the end and
fails when a source's quarantined share reaches ``stream.quarantine_failure_share`` (default 1.0: every record of
the source quarantined means the run could not use its data, and a run that cannot use a source's data must not exit
0).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from lakehouse.infer import timestamp_patterns

TOP_REASONS = 3
MAX_SAMPLES = 50  # raw records kept per reason: enough to tell day-first from month-first dates


@dataclass
class SourceQuality:
    read: int = 0
    quarantined: int = 0
    duplicates: int = 0
    unlisted: int = 0
    reasons: Counter = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few raw values (JSON records)
    unlisted_values: dict[str, Counter] = field(default_factory=dict)  # field -> values outside its list


@dataclass
class RunQuality:
    """Per source, what one run read, quarantined (by reason, with samples), counted as duplicates, and kept with
    values outside an open vocabulary."""

    sources: dict[str, SourceQuality] = field(default_factory=dict)

    def add(self, source: str, counts: dict[str, int], reasons: dict[str, tuple[int, list[str]]] | None = None,
            unlisted: dict[str, dict[str, int]] | None = None) -> None:
        q = self.sources.setdefault(source, SourceQuality())
        q.read += counts.get("read_rows", 0)
        q.quarantined += counts.get("quarantined_rows", 0)
        q.duplicates += counts.get("duplicate_rows", 0)
        q.unlisted += counts.get("unlisted_rows", 0)
        for reason, (n, samples) in (reasons or {}).items():
            q.reasons[reason] += n
            kept = q.samples.setdefault(reason, [])
            kept += samples[: MAX_SAMPLES - len(kept)]
        for name, values in (unlisted or {}).items():
            q.unlisted_values.setdefault(name, Counter()).update(values)

    def failing(self, share: float) -> list[str]:
        """The sources whose quarantined records reached ``share`` of those they read."""
        return [s for s, q in self.sources.items() if q.read and q.quarantined >= share * q.read]

    def lines(self) -> list[str]:
        """One line per source with anything quarantined or unlisted: counts, top reasons, the fix."""
        out = []
        for source, q in self.sources.items():
            if q.quarantined:
                top = ", ".join(f"{r} {n}" for r, n in q.reasons.most_common(TOP_REASONS))
                fixes = [f for f in (fix_for(source, r, q.samples.get(r, [])) for r, _ in
                                     q.reasons.most_common(TOP_REASONS)) if f]
                out.append(f"{source}: {q.quarantined} of {q.read} records quarantined ({top})"
                           + (f"; fix: {'; '.join(fixes)}" if fixes else "")
                           + "; every record is kept in silver_quarantine with its reason")
            if q.unlisted:
                values = "; ".join(f"{name}: " + ", ".join(repr(v) for v, _ in c.most_common(3))
                                   for name, c in q.unlisted_values.items()) or "unlisted_rows in ops_stream_batches"
                out.append(f"{source}: {q.unlisted} records kept with values outside c360's lists ({values}); "
                           f"map them with sources.{source}.vocabularies.<field>.synonyms, or close a list with "
                           f".closed = true")
        return out


def _raw_values(source: str, field_name: str, samples: list[str]) -> list[str]:
    from lakehouse.schemas import SILVER_SPECS

    raw = next((f.raw for f in SILVER_SPECS[source].fields if f.name == field_name), None)
    values = []
    for text in samples:
        try:
            value = json.loads(text).get(raw)
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.strip():
            values.append(value.strip())
    return values


def fix_for(source: str, reason: str, samples: list[str]) -> str | None:
    """The configuration change that would let ``reason``'s records through, or None when it is the data's fault
    (a negative amount, a record that is not JSON)."""
    from lakehouse.schemas import SILVER_SPECS

    fields = {f.name: f for f in SILVER_SPECS.get(source, ()).fields} if source in SILVER_SPECS else {}
    kind, _, name = reason.partition("_")
    if reason.startswith("unparseable_"):
        name = reason.removeprefix("unparseable_")
        f = fields.get(name)
        values = _raw_values(source, name, samples)
        seen = f" (e.g. {values[0]!r})" if values else ""
        if f is not None and f.type in ("ts", "date"):
            patterns, ambiguous = timestamp_patterns(values)
            if ambiguous:
                return (f"{name}{seen} reads as two different days: say which with "
                        f"sources.{source}.timestamp_formats = [{patterns[0]!r}] (day first) or "
                        f"[{patterns[1]!r}] (month first)")
            if patterns:
                return f"add {patterns[0]!r} to sources.{source}.timestamp_formats{seen}"
            return f"add the pattern of {name}{seen} to sources.{source}.timestamp_formats"
        if f is not None and f.type == "bool":
            return f"add {name}'s spelling{seen} to sources.{source}.true_values or false_values"
        return f"{name} holds values that are not numbers{seen}: map another column with sources.{source}.columns"
    if kind == "invalid" and reason != "invalid_json":
        values = _raw_values(source, name, samples)
        seen = f" {values[0]!r}" if values else ""
        return (f"map{seen} to one of {name}'s values with sources.{source}.vocabularies.{name}.synonyms, or keep "
                f"such values: sources.{source}.vocabularies.{name}.closed = false")
    if kind == "missing":
        return f"if your file has {name} under another name: sources.{source}.columns.{name} = \"<its column>\""
    return None
