"""Replay source files into Kafka (``c360 replay``).

Every row (CSV) or line (JSON lines) becomes one JSON record on its source's topic: key = the customer id (so
one customer's records stay in order on one partition), value = the row's fields as strings plus a stable
``event_id`` (a hash of the source and the row's content: replaying the same file twice is recognisable
downstream), headers naming the source file and line.

Delivery is safe: acks=all with the idempotent producer (librdkafka, through confluent-kafka). Positions are
tracked per file as the last line up to which every record was acknowledged; they are saved as the replay goes
and when it stops, so ``--resume`` continues exactly there. Ctrl-C or SIGTERM flushes what was sent and says
how far it got. Rows that cannot be read are skipped, counted and written to a reject file with the reason.

Modes: as fast as possible (files one after another); ``rate`` events per second; or event-time replay
``speedup`` times faster than real time, interleaving all sources in event-time order (files without an event
time, such as customer records and catalogues, go first). ``interleave`` sends every file at once instead of one
after another, each in proportion to its length (what a production stream of all sources looks like).
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import logging
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import C360Error
from lakehouse.kafka_admin import client_config, ensure_topics, unreachable_hint
from lakehouse.kafka_security import client_security
from lakehouse.mappings import WHITESPACE, SourceMapping, mapping_for
from lakehouse.tables import SOURCES, Source

log = logging.getLogger(__name__)

_TIME_FORMATS = ("%d-%m-%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d-%m-%Y %H:%M")


@dataclass(frozen=True)
class Record:
    """One Kafka record, ready to send, and where it came from."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    file: str = ""
    line: int = 0
    event_time: float | None = None


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str
    raw: str


@dataclass
class ReplaySummary:
    sent: dict[str, int] = field(default_factory=dict)
    resumed_after: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    seconds: float = 0.0
    rejects_file: str | None = None
    interrupted: bool = False
    positions: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, Counter] = field(default_factory=dict)  # file -> why its rows were skipped

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def events_per_s(self) -> float:
        return self.total_sent / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        text = (f"sent {self.total_sent} records in {self.seconds:.1f}s ({self.events_per_s:,.0f} events/s) "
                f"from {len(self.sent)} files; skipped {sum(self.rejected.values())} unreadable rows; "
                f"failed {self.failed}")
        if self.resumed_after:
            text += f"; resumed after the acknowledged lines of {len(self.resumed_after)} files"
        if self.rejects_file:
            text += f"; rejects in {self.rejects_file}"
        if self.interrupted:
            text = "interrupted, everything sent was flushed: " + text + "; continue with --resume"
        return text

    def quality_lines(self) -> list[str]:
        """One line per file with skipped rows: how many of how many, and why."""
        return [f"{name}: {n} of {n + self.sent.get(name, 0)} rows skipped ("
                + ", ".join(f"{r} {c}" for r, c in self.reasons.get(name, Counter()).most_common(3)) + ")"
                for name, n in self.rejected.items() if n]

    @property
    def unusable(self) -> list[str]:
        """The files of which no row could be sent (every row skipped)."""
        return [name for name, n in self.rejected.items() if n and not self.sent.get(name)]


def event_id(source: str, values: list[str]) -> str:
    """A stable id for a row: the same source and content always give the same id."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source.encode())
    for v in values:
        digest.update(b"\x1f" + v.encode())
    return digest.hexdigest()


def parse_event_time(text: str | None) -> float | None:
    """Epoch seconds of a timestamp in any of the formats the sources use (UTC), or None."""
    if not text:
        return None
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _TIME_FORMATS:
            try:
                dt = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def to_record(source: Source, topic: str, file_name: str, line: int, header: list[str], values: list[str],
              with_time: bool = False, compose: tuple[tuple[str, tuple[int, ...]], ...] = (),
              record_id: str | None = None) -> Record:
    """The Kafka record for one CSV row of a source file (pure). ``header`` holds the contract's field names (the
    source mapping's renames applied); ``compose``: (field, positions of the columns whose values, joined by ``|``,
    are its value), e.g. the id of a file without an id column; ``record_id``: the id itself (a numbered line)."""
    fields = dict(zip(header, values, strict=True))
    for name, positions in compose:
        fields[name] = _joined(values, positions)
    if record_id is not None:
        fields[source.id_column] = record_id
    key = fields.get(source.key_column, "").strip()
    value = {"event_id": event_id(source.name, values), **fields}
    return Record(
        topic=topic,
        key=key.encode() if key else None,
        value=json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        headers=[("source_file", file_name.encode()), ("source_line", str(line).encode())],
        file=file_name, line=line,
        event_time=parse_event_time(fields.get(source.time_column)) if with_time and source.time_column else None,
    )


def json_to_record(source: Source, topic: str, file_name: str, line: int, text: str,
                   with_time: bool = False, layout: Layout | None = None) -> Record | Reject:
    """The Kafka record for one JSON line, or a Reject when the line is not a JSON object."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Reject(file_name, line, f"invalid JSON: {exc.msg} at column {exc.colno}", text[:2000])
    if not isinstance(obj, dict):
        return Reject(file_name, line, "not a JSON object", text[:2000])
    if layout is not None:
        obj = layout.rename_object(obj, source)
    key = str(obj.get(source.key_column) or "").strip()
    value = {"event_id": event_id(source.name, [text]), **obj}
    return Record(
        topic=topic, key=key.encode() if key else None,
        value=json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        headers=[("source_file", file_name.encode()), ("source_line", str(line).encode())],
        file=file_name, line=line,
        event_time=parse_event_time(str(obj.get(source.time_column) or "")) if with_time and source.time_column
        else None,
    )


def _joined(values: list[str], positions: tuple[int, ...]) -> str:
    return "|".join(values[i].strip() for i in positions)


@dataclass(frozen=True)
class Layout:
    """How one source's files are read (its source mapping's file side, lakehouse/mappings.py): format, encoding
    (a byte-order mark is always dropped), CSV delimiter and quote, the file's column for each contract field, and
    the columns an id is composed of."""

    format: str = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    rename: tuple[tuple[str, str], ...] = ()  # the file's column -> the contract's field name
    compose: tuple[tuple[str, tuple[str, ...]], ...] = ()  # contract field name -> the columns joined into it
    mapping_key: str = ""  # sources.<name>, for messages
    grain: str = "record"  # lakehouse.mappings.GRAINS
    names: tuple[str, ...] = ()  # the columns of a file without a header row

    @classmethod
    def of(cls, source: Source, mapping: SourceMapping | None) -> Layout:
        from lakehouse.schemas import SILVER_SPECS

        grain = "lines" if source.line_of else "record"
        if mapping is None:
            return cls(source.format, mapping_key=f"sources.{source.name}", grain=grain)
        raw = {f.name: f.raw for f in SILVER_SPECS[source.name].fields}
        compose = tuple((raw[name], cols) for name, cols in mapping.compose)
        if mapping.id_from:
            compose += ((source.id_column, mapping.id_from),)
        return cls(mapping.format or source.format, mapping.encoding or "utf-8", mapping.delimiter or ",",
                   mapping.quote or '"', tuple((col, raw[name]) for name, col in mapping.columns), compose,
                   f"sources.{source.name}", mapping.grain or grain, mapping.header)

    @property
    def text_encoding(self) -> str:
        return "utf-8-sig" if self.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else self.encoding

    def header(self, path: Path, source: Source, columns: list[str]
               ) -> tuple[list[str], tuple[tuple[str, tuple[int, ...]], ...], tuple[int, ...] | None]:
        """The contract's names for a CSV header, the composed fields with their columns' positions, and (a file of
        lines without a line id) the positions of the columns the lines are numbered within; or a one-line error
        naming the mapping key that fixes a missing column."""
        from lakehouse.schemas import SILVER_SPECS

        rename = dict(self.rename)
        named = [rename.get(c, c) for c in columns]
        repeated = sorted({n for n in named if named.count(n) > 1})
        if repeated:
            raise C360Error(f"{path}: two columns give the field {repeated[0]!r} (one mapped with "
                            f"{self.mapping_key}.columns): rename one of them in the mapping")
        # composed from the file's columns, or the contract's names the mapping gives them
        compose = []
        for target, cols in self.compose:
            missing = [c for c in cols if c not in columns and c not in named]
            if missing:
                key = "id_from" if target == source.id_column else "compose"
                raise C360Error(f"{path}: {self.mapping_key}.{key} names {missing[0]!r}, which the header lacks "
                                f"(columns: {', '.join(columns)})")
            compose.append((target, tuple(columns.index(c) if c in columns else named.index(c) for c in cols)))
        composed = dict(compose)
        number_by = None
        if source.line_of and source.id_column not in named and source.id_column not in composed:
            if source.line_of in composed:  # lines numbered within their order: <order>#1, #2...
                number_by = composed[source.line_of]
            elif source.line_of in named:
                number_by = (named.index(source.line_of),)
        have = set(named) | set(composed) | ({source.id_column} if number_by is not None else set())
        for raw in (source.key_column, source.id_column, *([source.line_of] if source.line_of else [])):
            if raw not in have:
                name = next(f.name for f in SILVER_SPECS[source.name].fields if f.raw == raw)
                hint = (f"; or compose an id from columns: {self.mapping_key}.id_from = [...]"
                        if raw == source.id_column and raw != source.key_column else "")
                split = next((d for d in ";\t|" if len(columns) == 1 and d in columns[0]), None)
                if split:
                    hint += f"; the header reads as one column: is the file delimited by {split!r}? set " \
                            f"{self.mapping_key}.delimiter"
                raise C360Error(f"{path}: no column for {name} ({raw}): map the file's column with "
                                f"{self.mapping_key}.columns.{name} = \"<column>\"{hint} (docs/input-contract.md)")
        return named, tuple(compose), number_by

    def rename_object(self, obj: dict, source: Source) -> dict:
        rename = dict(self.rename)
        out = {rename.get(k, k): v for k, v in obj.items()}
        for target, cols in self.compose:
            out[target] = "|".join(str(obj.get(c, out.get(c, ""))).strip() for c in cols)
        return out


class _WhitespaceReader:
    """Rows of a file whose fields are separated by runs of spaces or tabs (``delimiter = "whitespace"``: fixed-width
    and scientific exports such as CDNOW's); ``line_num`` like ``csv.reader``'s."""

    def __init__(self, fh):
        self.fh, self.line_num = fh, 0

    def __iter__(self):
        return self

    def __next__(self) -> list[str]:
        line = next(self.fh)
        self.line_num += 1
        return line.split()


def read_rows(path: Path, source: Source, topic: str, *, skip_to: int = 0,
              with_time: bool = False, layout: Layout | None = None, name: str | None = None
              ) -> Iterator[Record | Reject]:
    """The records of one file (after line ``skip_to``), and a Reject for each row that cannot be read.

    ``layout``: how the file is read (its source mapping); ``name``: the file's name in records, positions and
    rejects (default: the source's built-in file name)."""
    layout = layout or Layout.of(source, None)
    name = name or source.file
    encoding = layout.text_encoding
    errors = "surrogateescape" if encoding == "utf-8-sig" else "strict"
    not_utf8 = f"not valid UTF-8 (if the file is in another encoding, set {layout.mapping_key}.encoding, e.g. cp1252)"
    with path.open("r", encoding=encoding, errors=errors, newline="") as fh:
        if layout.format == "jsonl":
            for line_no, text in enumerate(fh, start=1):
                if line_no <= skip_to or not text.strip():
                    continue
                text = text.rstrip("\r\n")
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    yield Reject(name, line_no, not_utf8, text.encode("utf-8", "replace").decode()[:2000])
                    continue
                yield json_to_record(source, topic, name, line_no, text, with_time, layout)
            return
        reader = _WhitespaceReader(fh) if layout.delimiter == WHITESPACE else csv.reader(
            fh, delimiter=layout.delimiter, quotechar=layout.quote)
        if layout.names:  # a file without a header row: its first row is data
            columns = list(layout.names)
        else:
            try:
                columns = [h.strip() for h in next(reader)]
            except StopIteration:
                return
        header, compose, number_by = layout.header(path, source, columns)
        numbered: dict[str, int] = {}  # lines seen per order (a file of lines without a line id)
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Reject(name, reader.line_num, f"unreadable CSV: {exc}", "")
                continue
            line = reader.line_num
            if not values:
                continue
            record_id = None
            if number_by is not None and len(values) == len(header):  # counted on resume too: the same numbers
                owner = _joined(values, number_by)
                numbered[owner] = numbered.get(owner, 0) + 1
                record_id = f"{owner}#{numbered[owner]}"
            if line <= skip_to:
                continue
            if len(values) != len(header):
                yield Reject(name, line, f"expected {len(header)} fields, found {len(values)}", ",".join(values))
                continue
            try:
                yield to_record(source, topic, name, line, header, values, with_time, compose, record_id)
            except UnicodeEncodeError:
                yield Reject(name, line, not_utf8, ",".join(values).encode("utf-8", "replace").decode())


class Positions:
    """Per file, the last line up to which every record was acknowledged (or rejected): where --resume starts.

    Saved as JSON under ``<state_dir>/replay/``, one file per input directory.
    """

    def __init__(self, path: Path, start: dict[str, int]):
        self.path = path
        self.done = dict(start)
        self._pending: dict[str, deque[int]] = {}
        self._acked: dict[str, set[int]] = {}

    @staticmethod
    def path_for(state_dir: str, input_dir: Path) -> Path:
        digest = hashlib.blake2b(str(input_dir.resolve()).encode(), digest_size=8).hexdigest()
        return Path(state_dir) / "replay" / f"positions-{digest}.json"

    @classmethod
    def load(cls, path: Path, input_dir: Path) -> Positions:
        if not path.exists():
            raise C360Error(f"nothing to resume: no earlier replay of {input_dir} (state {path})")
        state = json.loads(path.read_text())
        return cls(path, {k: int(v) for k, v in state["positions"].items()})

    def sent(self, file: str, line: int) -> None:
        self._pending.setdefault(file, deque()).append(line)

    def finished(self, file: str, line: int) -> None:
        """A line needs no more work: acknowledged, or rejected."""
        self._acked.setdefault(file, set()).add(line)

    def advance(self) -> None:
        for file, pending in self._pending.items():
            acked = self._acked.get(file, set())
            while pending and pending[0] in acked:
                line = pending.popleft()
                acked.discard(line)
                self.done[file] = line

    def save(self, input_dir: Path) -> None:
        self.advance()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"input": str(input_dir.resolve()), "positions": self.done,
                                   "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1))
        tmp.replace(self.path)


# how long the producer keeps trying to deliver a record (a broker restart or a leader election in between)
MESSAGE_TIMEOUT_S = 120


def _producer(cfg: Config, on_error):
    from confluent_kafka import Producer

    return Producer(client_config(
        cfg.kafka.bootstrap_servers, client_security(cfg.kafka),
        **{"acks": "all", "enable.idempotence": True, "linger.ms": 20, "batch.size": 1_000_000,
           "queue.buffering.max.messages": 500_000, "message.timeout.ms": MESSAGE_TIMEOUT_S * 1000,
           "error_cb": on_error}))


@dataclass(frozen=True)
class InputFile:
    """One file to replay: its source, where it is, its topic, how it is read and its name (relative to the input
    folder: records, positions and rejects name it)."""

    source: Source
    path: Path
    topic: str
    layout: Layout
    name: str

    def rows(self, positions: Positions, with_time: bool) -> Iterator[Record | Reject]:
        return read_rows(self.path, self.source, self.topic, skip_to=positions.done.get(self.name, 0),
                         with_time=with_time, layout=self.layout, name=self.name)


def _records(files: list[InputFile], positions: Positions, with_time: bool) -> Iterator[Record | Reject]:
    for f in files:
        yield from f.rows(positions, with_time)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _interleaved(files: list[InputFile], positions: Positions) -> Iterator[Record | Reject]:
    """Every file at once, each in proportion to its length: a row is sent when its file is as far through (in
    lines) as the others are."""
    def keyed(f: InputFile):
        total = max(1, _count_lines(f.path))
        for item in f.rows(positions, with_time=False):
            yield item.line / total, item

    yield from (item for _, item in heapq.merge(*(keyed(f) for f in files), key=lambda pair: pair[0]))


def _event_time_order(files: list[InputFile], positions: Positions) -> Iterator[Record | Reject]:
    """Files without an event time first, then every timed record of all files merged by event time (a record
    that is late in its file is sent when it is reached: it arrives late, as it would in production)."""
    untimed = [f for f in files if f.source.time_column is None]
    timed = [f for f in files if f.source.time_column is not None]
    yield from _records(untimed, positions, with_time=False)

    def keyed(f: InputFile):
        clock = float("-inf")
        for item in f.rows(positions, with_time=True):
            if isinstance(item, Record) and item.event_time is not None:
                clock = max(clock, item.event_time)
            yield clock, item

    streams = [keyed(f) for f in timed]
    yield from (item for _, item in heapq.merge(*streams, key=lambda pair: pair[0]))


# rows of each file the grain check reads before anything is sent
GRAIN_CHECK_ROWS = 10_000


def check_grain(f: InputFile, rows: int = GRAIN_CHECK_ROWS) -> None:
    """Refuse a file whose id repeats on neighbouring rows with other values, for a source that keeps one row per
    id: those rows are lines of something (an invoice with several products), and an upsert on the id would keep
    one of them and lose the rest without a word. Versions of a record are not neighbours in an export (they come
    from later days), so a file of them passes; a mapping can say grain = "versions" to skip the check."""
    if f.layout.grain != "record":
        return
    previous: tuple[str, bytes, int] | None = None
    for n, item in enumerate(read_rows(f.path, f.source, f.topic, layout=f.layout, name=f.name)):
        if n >= rows:
            return
        if not isinstance(item, Record):
            continue
        value = json.loads(item.value)
        rid = str(value.get(f.source.id_column) or "").strip()
        content = json.dumps({k: v for k, v in value.items() if k != "event_id"}, sort_keys=True).encode()
        if rid and previous and previous[0] == rid and previous[1] != content:
            raise C360Error(
                f"{f.name}: {f.source.id_column} {rid!r} is on lines {previous[2]} and {item.line} with other values: "
                f"the file holds lines of something, and {f.source.name} keeps one row per {f.source.id_column}, so "
                f"all but one would be lost. Map the file to [sources.order_lines] (docs/input-contract.md, 'Order "
                f"lines'); or, if the rows are versions of one record, set {f.layout.mapping_key}.grain = "
                f"\"versions\"")
        previous = (rid, content, item.line)


def source_files(cfg: Config, root: Path, name: str) -> list[InputFile]:
    """The files of source ``name`` under ``root``: its mapping's ``file`` (a path or a glob), else the built-in
    file name."""
    source = SOURCES[name]
    mapping = mapping_for(cfg.sources, name)
    pattern = mapping.file or source.file
    paths = sorted(p for p in root.glob(pattern) if p.is_file()) if any(c in pattern for c in "*?[") else (
        [root / pattern] if (root / pattern).is_file() else [])
    layout = Layout.of(source, mapping if mapping != SourceMapping(name) else None)
    return [InputFile(source, p, cfg.kafka.topic(name), layout, p.relative_to(root).as_posix()) for p in paths]


def replay(
    cfg: Config,
    input_dir: str | Path,
    *,
    sources: list[str] | None = None,
    rate: float | None = None,
    speedup: float | None = None,
    interleave: bool = False,
    resume: bool = False,
    rejects_file: str | Path | None = None,
    progress: bool = True,
) -> ReplaySummary:
    """Send the source files found in ``input_dir`` to their topics and wait until Kafka acknowledged them.

    Args:
        cfg: the configuration (bootstrap, topic names, partitions).
        input_dir: a directory holding files of the input contract (docs/input-contract.md).
        sources: replay only these sources (default: every source whose file is present).
        rate: at most this many records per second (default: as fast as possible).
        speedup: event-time replay, this many times faster than real time (3600: an hour a second).
        interleave: send every file at once, each in proportion to its length (default: one after another).
        resume: continue from the positions the last replay of this directory reached.
        rejects_file: where unreadable rows go (default ``<state_dir>/replay/rejects-<time>.jsonl``).
        progress: show a progress bar on a terminal.

    Raises:
        C360Error: missing directory or files, unknown source, unreachable broker, nothing to resume.
    """
    from tqdm import tqdm

    root = Path(input_dir)
    if not root.is_dir():
        raise C360Error(f"input directory not found: {root}")
    if rate and speedup:
        raise C360Error("choose one of --rate and --speedup")
    if interleave and speedup:
        raise C360Error("--speedup already interleaves the sources (in event-time order): drop --interleave")
    names = sources or list(SOURCES)
    unknown = [s for s in names if s not in SOURCES]
    if unknown:
        raise C360Error(f"unknown source {unknown[0]!r} (known: {', '.join(SOURCES)})")
    found = {s: source_files(cfg, root, s) for s in names}
    present = [s for s in names if found[s]]
    if sources and len(present) < len(names):
        missing = [mapping_for(cfg.sources, s).file or SOURCES[s].file for s in names if s not in present]
        raise C360Error(f"missing file(s) in {root}: {', '.join(missing)} (a source's file is set by "
                        "sources.<source>.file in your config)")
    if not present:
        raise C360Error(f"no source files in {root} (expected any of: {', '.join(s.file for s in SOURCES.values())}; "
                        "files of other names are mapped with sources.<source>.file: docs/input-contract.md)")
    files = [f for s in present for f in found[s]]
    for f in files:
        check_grain(f)

    state_path = Positions.path_for(cfg.lake.state_dir, root)
    positions = Positions.load(state_path, root) if resume else Positions(state_path, {})
    ensure_topics(cfg.kafka.bootstrap_servers, sorted({f.topic for f in files}), partitions=cfg.kafka.partitions,
                  retention_hours=cfg.kafka.retention_hours, timeout_s=cfg.kafka.connect_timeout_s,
                  embedded=cfg.kafka.embedded, security=client_security(cfg.kafka))
    fatal: list[str] = []
    producer = _producer(cfg, lambda err: fatal.append(err.str()) if err.fatal() else log.debug("kafka: %s", err))
    summary = ReplaySummary(sent={f.name: 0 for f in files}, rejected={f.name: 0 for f in files},
                            resumed_after={f: n for f, n in positions.done.items() if n})
    failures: list[str] = []

    def on_delivery(file: str, line: int):
        def delivered(err, msg) -> None:  # noqa: ARG001
            if err is None:
                positions.finished(file, line)
            else:
                failures.append(f"{file}:{line}: {err.str()}")
        return delivered

    reject_path = Path(rejects_file) if rejects_file else (
        Path(cfg.lake.state_dir) / "replay" / f"rejects-{datetime.now():%Y%m%dT%H%M%S}.jsonl")
    reject_fh = None
    items = (_event_time_order(files, positions) if speedup else _interleaved(files, positions) if interleave
             else _records(files, positions, with_time=False))

    # Ctrl-C and SIGTERM only raise a flag, checked between records: an exception raised at an arbitrary point
    # could fall between sending a record and noting it, and --resume would then send it again.
    stop = threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    first_event: float | None = None
    last_save = started
    bar = tqdm(unit=" ev", disable=None if progress else True, dynamic_ncols=True, smoothing=0.1, mininterval=0.5)
    count = 0
    try:
        for item in items:
            if stop.is_set():
                summary.interrupted = True
                break
            if isinstance(item, Reject):
                if reject_fh is None:
                    reject_path.parent.mkdir(parents=True, exist_ok=True)
                    reject_fh = reject_path.open("a", encoding="utf-8")
                reject_fh.write(json.dumps(item.__dict__) + "\n")
                summary.rejected[item.file] += 1
                summary.reasons.setdefault(item.file, Counter())[item.reason] += 1
                positions.sent(item.file, item.line)
                positions.finished(item.file, item.line)
                continue
            if speedup and item.event_time is not None:
                first_event = item.event_time if first_event is None else first_event
                ahead = (item.event_time - first_event) / speedup - (time.monotonic() - started)
                if ahead > PACE_S:
                    _sleep_polling(producer, ahead, stop)
            while True:
                try:
                    producer.produce(item.topic, value=item.value, key=item.key, headers=item.headers,
                                     on_delivery=on_delivery(item.file, item.line))
                    break
                except BufferError:  # the local queue is full: let deliveries catch up
                    producer.poll(0.1)
            positions.sent(item.file, item.line)
            producer.poll(0)
            summary.sent[item.file] += 1
            count += 1
            if count % 2048 == 0:
                bar.update(2048)
                if fatal:
                    raise C360Error(f"Kafka producer failed: {fatal[0]}")
                now = time.monotonic()
                if now - last_save > 2.0:
                    positions.save(root)
                    last_save = now
            if rate:
                ahead = count / rate - (time.monotonic() - started)
                if ahead > PACE_S:
                    _sleep_polling(producer, ahead, stop)
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        bar.update(count % 2048)
        bar.close()
        # a finished replay waits as long as its records may take (a broker restarting near the end); one the user
        # stopped waits half a minute at most
        remaining = producer.flush(max(30.0, cfg.kafka.connect_timeout_s) if stop.is_set() else MESSAGE_TIMEOUT_S + 10)
        if remaining:
            failures.append(f"{remaining} records still unacknowledged when the flush timed out")
        positions.save(root)
        if reject_fh is not None:
            reject_fh.close()
            summary.rejects_file = str(reject_path)
    summary.seconds = time.monotonic() - started
    summary.failed = len(failures)
    summary.positions = dict(positions.done)
    if failures:
        log.error("%d records were not acknowledged by Kafka; first: %s", len(failures), failures[0])
        if summary.total_sent and len(failures) >= summary.total_sent:
            raise C360Error(unreachable_hint(cfg.kafka.bootstrap_servers, cfg.kafka.embedded))
    return summary


# --rate sends in steps of this many seconds' worth of records: pausing after every record (0.2 ms apart at 5,000/s)
# made each pause a busy loop (the client's poll rounds its timeout down to whole milliseconds) and the replayer took
# half a core at 5,000 records/s, a tenth with this
PACE_S = 0.01


def _sleep_polling(producer, seconds: float, stop: threading.Event | None = None) -> None:
    """Wait ``seconds`` while serving the producer's delivery callbacks."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not (stop and stop.is_set()):
        producer.poll(min(max(left, 0.001), 0.2))  # never 0: a zero timeout returns at once (a busy loop)
