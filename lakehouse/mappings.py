"""Source mappings: how a user's export of a source is read, and how its columns and values map onto c360's model.

Every source of the input contract (``lakehouse.tables.SOURCES``, ``lakehouse.schemas.SILVER_SPECS``) has a
built-in mapping: the generator's file name, UTF-8 CSV with a header, the contract's column names. A user's
configuration overlays it, key by key, in a ``[sources.<source>]`` table (docs/input-contract.md, "Bring your own
data"), for instance::

    [sources.customer_insights]
    file = "customer360insights_sessions.csv"     # a path or glob under the input folder
    encoding = "cp1252"                            # a byte-order mark is always dropped
    id_from = ["CustomerID", "SessionStart"]       # the file has no id column: compose one
    timestamp_formats = ["M/d/yyyy H:mm"]          # tried before stream.timestamp_formats
    [sources.customer_insights.columns]            # c360 field = the file's column
    campaign = "Campaign Name"
    [sources.customer_insights.vocabularies.payment_method]
    synonyms = { "COD" = "Cash on Delivery" }      # the file's value = c360's value
    closed = false                                 # a value outside the list is kept (and counted), not quarantined

The replay producer follows the file-side keys (where, format, column names, the composed id): the records it
sends carry the contract's field names, so the topic's contract never depends on a user's export. The stream
follows the value-side keys (timestamp formats, booleans, vocabularies, id clean-up) through :class:`ParseOptions`.
Everything is checked when the configuration is loaded: a mistake is one line naming the source and the key.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lakehouse.errors import C360Error

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Vocabulary:
    """One enumerated field's values: ``extra`` values beyond the built-in list, ``synonyms`` (a file's spelling
    -> c360's), and whether the list is ``closed`` (a value outside it quarantines the record) or open (kept as
    written and counted as unlisted). ``closed`` None: the built-in rule of the field."""

    extra: tuple[str, ...] = ()
    synonyms: Pairs = ()
    closed: bool | None = None


@dataclass(frozen=True)
class ParseOptions:
    """What the stream's parse of one source needs from its mapping (hashable: parse expressions are cached per
    options). ``vocabularies``: (field, Vocabulary) pairs; ``true_values``/``false_values``: extra boolean
    spellings; ``integer_ids``: an id written as an integer-valued float (``13085.0``, as spreadsheets and pandas
    export them) is read as the integer (``13085``)."""

    vocabularies: tuple[tuple[str, Vocabulary], ...] = ()
    true_values: tuple[str, ...] = ()
    false_values: tuple[str, ...] = ()
    integer_ids: bool = True

    def vocabulary(self, name: str) -> Vocabulary:
        return dict(self.vocabularies).get(name, Vocabulary())


DEFAULT_PARSE = ParseOptions()


@dataclass(frozen=True)
class SourceMapping:
    """A user's overlay on one built-in source (only the keys the user set are not None or empty)."""

    source: str
    file: str | None = None
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    columns: Pairs = ()
    header: tuple[str, ...] = ()  # the column names of a file without a header row (its first row is data)
    id_from: tuple[str, ...] = ()
    compose: tuple[tuple[str, tuple[str, ...]], ...] = ()  # field -> the columns its value is joined from
    timestamp_formats: tuple[str, ...] = ()
    replace_timestamp_formats: bool = False
    true_values: tuple[str, ...] = ()
    false_values: tuple[str, ...] = ()
    integer_ids: bool = True
    vocabularies: tuple[tuple[str, Vocabulary], ...] = field(default=())
    grain: str | None = None  # one of GRAINS; None: the source's own (lines for order_lines, else one row per id)

    @property
    def parse(self) -> ParseOptions:
        return ParseOptions(self.vocabularies, self.true_values, self.false_values, self.integer_ids)

    def formats(self, defaults: tuple[str, ...]) -> tuple[str, ...]:
        """The timestamp formats this source's values are read with, in order: the mapping's first."""
        if self.replace_timestamp_formats:
            return self.timestamp_formats
        return tuple(dict.fromkeys((*self.timestamp_formats, *defaults)))

    def as_toml(self) -> dict[str, Any]:
        """The mapping as the TOML table it came from (``c360 config`` prints it; config layers merge it)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("file", "format", "encoding", "delimiter", "quote",
                                                             "grain") if getattr(self, k) is not None}
        if self.header:
            out["header"] = list(self.header)
        if self.id_from:
            out["id_from"] = list(self.id_from)
        if self.compose:
            out["compose"] = {name: list(cols) for name, cols in self.compose}
        if self.timestamp_formats or self.replace_timestamp_formats:
            out["timestamp_formats"] = list(self.timestamp_formats)
            out["replace_timestamp_formats"] = self.replace_timestamp_formats
        for key in ("true_values", "false_values"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if not self.integer_ids:
            out["integer_ids"] = False
        if self.columns:
            out["columns"] = dict(self.columns)
        if self.vocabularies:
            vocab = {}
            for name, v in self.vocabularies:
                entry: dict[str, Any] = {}
                if v.extra:
                    entry["values"] = list(v.extra)
                if v.synonyms:
                    entry["synonyms"] = dict(v.synonyms)
                if v.closed is not None:
                    entry["closed"] = v.closed
                vocab[name] = entry
            out["vocabularies"] = vocab
        return out


Mappings = tuple[SourceMapping, ...]
FORMATS = ("csv", "jsonl")
# a file's grain: one row per id (a repeat with other values next to it is refused: lines, not versions), versions
# (an id may repeat: a later row is a newer version), or lines (order_lines: several rows per order)
GRAINS = ("record", "versions", "lines")
WHITESPACE = "whitespace"  # a delimiter: fields separated by runs of spaces or tabs (no quoting)
_KEYS = ("file", "format", "encoding", "delimiter", "quote", "grain", "header", "columns", "id_from", "compose", "timestamp_formats",
         "replace_timestamp_formats", "true_values", "false_values", "integer_ids", "vocabularies")
_VOCAB_KEYS = ("values", "synonyms", "closed")
# letters a Spark datetime pattern may use (quoted text aside); anything else is a typo worth a message
_PATTERN_LETTERS = set("GyYuMLdDQqEeaHhKkmsSnVzOXxZW")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise C360Error(f"bad config value for {where}: expected a non-empty string, got {value!r}")
    return value


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise C360Error(f"bad config value for {where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise C360Error(f"bad config value for {where}: expected a table, got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise C360Error(f"bad config value for {where}: expected true or false, got {value!r}")
    return value


def check_pattern(pattern: str, where: str) -> str:
    """A Spark datetime pattern, or a one-line error (an strftime format such as %d/%m/%Y is the usual slip)."""
    if "%" in pattern:
        raise C360Error(f"bad config value for {where}: {pattern!r} is an strftime format; c360 takes Spark's "
                        "datetime patterns, e.g. 'dd/MM/yyyy HH:mm' (docs/input-contract.md)")
    letters = set(re.sub(r"'[^']*'", "", pattern)) & set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    bad = sorted(letters - _PATTERN_LETTERS)
    if bad:
        raise C360Error(f"bad config value for {where}: {pattern!r} uses {bad[0]!r}, not a Spark datetime pattern "
                        "letter (quote literal text: 'T')")
    return pattern


def parse_mappings(raw: Mapping[str, Any]) -> Mappings:
    """The ``[sources.*]`` tables of the configuration, checked against the source registry and the silver specs.

    Raises:
        C360Error: one line naming the source and key that is wrong, and what would be right.
    """
    from lakehouse.schemas import SILVER_SPECS
    from lakehouse.tables import SOURCES

    out = []
    for name, table in sorted(_table(raw, "sources").items()):
        where = f"sources.{name}"
        if name not in SOURCES:
            raise C360Error(f"unknown source in [{where}] (c360's sources: {', '.join(SOURCES)})")
        table = _table(table, where)
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise C360Error(f"unknown config key {where}.{unknown[0]} (known: {', '.join(_KEYS)})")
        spec = SILVER_SPECS[name]
        fields = {f.name: f for f in spec.fields}
        kw: dict[str, Any] = {}
        for key in ("file", "encoding", "delimiter", "quote", "format", "grain"):
            if key in table:
                kw[key] = _text(table[key], f"{where}.{key}")
        lines = SOURCES[name].line_of is not None
        if kw.get("grain") not in (None, *GRAINS) or (kw.get("grain") == "lines") != lines and "grain" in kw:
            raise C360Error(f"bad config value for {where}.grain: {kw['grain']!r} ("
                            + ("order_lines is always lines" if lines else
                               f"record or versions; a file of order lines maps to [sources.order_lines], not "
                               f"[{where}]") + ")")
        if kw.get("format", "csv") not in FORMATS:
            raise C360Error(f"bad config value for {where}.format: {kw['format']!r} (csv or jsonl)")
        if "encoding" in kw:
            try:
                codecs.lookup(kw["encoding"])
            except LookupError:
                raise C360Error(f"bad config value for {where}.encoding: {kw['encoding']!r} is not an encoding "
                                "Python knows (e.g. utf-8, cp1252, latin-1)") from None
        for key in ("delimiter", "quote"):
            if key in kw and len(kw[key]) != 1 and not (key == "delimiter" and kw[key] == WHITESPACE):
                raise C360Error(f"bad config value for {where}.{key}: one character"
                                + (' (or "whitespace")' if key == "delimiter" else "") + f", got {kw[key]!r}")
        columns = _table(table.get("columns", {}), f"{where}.columns")
        for target, column in columns.items():
            if target not in fields:
                raise C360Error(f"bad config key {where}.columns.{target}: {name} has no field {target} "
                                f"(fields: {', '.join(fields)})")
            _text(column, f"{where}.columns.{target}")
        if len(set(columns.values())) < len(columns):
            raise C360Error(f"bad config value for {where}.columns: one column of the file is mapped twice")
        kw["columns"] = tuple(sorted(columns.items()))
        if "id_from" in table:
            kw["id_from"] = _texts(table["id_from"], f"{where}.id_from")
        if "header" in table:
            kw["header"] = _texts(table["header"], f"{where}.header")
            if len(set(kw["header"])) < len(kw["header"]):
                raise C360Error(f"bad config value for {where}.header: a column name is there twice")
        compose = _table(table.get("compose", {}), f"{where}.compose")
        for target in compose:
            if target not in fields:
                raise C360Error(f"bad config key {where}.compose.{target}: {name} has no field {target} "
                                f"(fields: {', '.join(fields)})")
        kw["compose"] = tuple(sorted((t, _texts(c, f"{where}.compose.{t}")) for t, c in compose.items()))
        if spec.id in dict(kw["compose"]) and kw.get("id_from"):
            raise C360Error(f"bad config: {where}.id_from and {where}.compose.{spec.id} both give the id: keep one")
        if "timestamp_formats" in table:
            kw["timestamp_formats"] = tuple(check_pattern(p, f"{where}.timestamp_formats")
                                            for p in _texts(table["timestamp_formats"], f"{where}.timestamp_formats"))
        if "replace_timestamp_formats" in table:
            kw["replace_timestamp_formats"] = _bool(table["replace_timestamp_formats"],
                                                    f"{where}.replace_timestamp_formats")
            if kw["replace_timestamp_formats"] and not kw.get("timestamp_formats"):
                raise C360Error(f"bad config: {where}.replace_timestamp_formats needs {where}.timestamp_formats")
        for key in ("true_values", "false_values"):
            if key in table:
                kw[key] = tuple(v.strip().lower() for v in _texts(table[key], f"{where}.{key}"))
        if "integer_ids" in table:
            kw["integer_ids"] = _bool(table["integer_ids"], f"{where}.integer_ids")
        vocabularies = []
        for fname, entry in sorted(_table(table.get("vocabularies", {}), f"{where}.vocabularies").items()):
            at = f"{where}.vocabularies.{fname}"
            if fname not in fields or fields[fname].type != "enum":
                enums = [f.name for f in spec.fields if f.type == "enum"]
                raise C360Error(f"bad config key {at}: {name}'s enumerated fields are {', '.join(enums) or 'none'}")
            entry = _table(entry, at)
            bad = sorted(set(entry) - set(_VOCAB_KEYS))
            if bad:
                raise C360Error(f"unknown config key {at}.{bad[0]} (known: {', '.join(_VOCAB_KEYS)})")
            extra = _texts(entry.get("values", []), f"{at}.values")
            synonyms = _table(entry.get("synonyms", {}), f"{at}.synonyms")
            listed = {v.lower() for v in (*fields[fname].values, *extra)}
            for spelling, canonical in synonyms.items():
                _text(canonical, f"{at}.synonyms.{spelling}")
                if canonical.lower() not in listed:
                    raise C360Error(f"bad config value for {at}.synonyms: {spelling!r} maps to {canonical!r}, which "
                                    f"is not one of {fname}'s values (add it to {at}.values)")
            closed = _bool(entry["closed"], f"{at}.closed") if "closed" in entry else None
            vocabularies.append((fname, Vocabulary(extra, tuple(sorted(synonyms.items())), closed)))
        kw["vocabularies"] = tuple(vocabularies)
        out.append(SourceMapping(name, **kw))
    return tuple(out)


def merge_tables(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Two ``[sources]`` layers merged: a later layer's keys replace an earlier one's, source by source and, for
    ``columns`` and ``vocabularies``, entry by entry (changing one column needs only that column)."""
    out = {name: dict(table) for name, table in base.items()}
    for name, table in top.items():
        if not isinstance(table, Mapping) or not isinstance(out.get(name, {}), Mapping):
            out[name] = table
            continue
        merged = dict(out.get(name, {}))
        for key, value in table.items():
            if key in ("columns", "vocabularies") and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                value = {**merged[key], **value}
            merged[key] = value
        out[name] = merged
    return out


def mapping_for(mappings: Mappings, source: str) -> SourceMapping:
    """The user's mapping of ``source``, or an empty overlay (the built-in mapping as it is)."""
    for m in mappings:
        if m.source == source:
            return m
    return SourceMapping(source)
