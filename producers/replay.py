"""Replay source files into Kafka (``c360 replay``).

Every row becomes one JSON record on its source's topic: key = customer id (so one customer's records stay
in order on one partition), value = the row's fields as strings plus a stable ``event_id`` (a hash of the
source and the row's content: replaying the same file twice is recognisable downstream), and headers naming the
source file and line. Rows that cannot be read (wrong number of fields, undecodable bytes) are skipped,
counted and written to a reject file with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import C360Error
from lakehouse.kafka_admin import ensure_topics, unreachable_hint
from lakehouse.tables import SOURCES, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One Kafka record, ready to send."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str
    raw: str


@dataclass
class ReplaySummary:
    sent: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    rejects_file: str | None = None
    interrupted: bool = False

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    def describe(self) -> str:
        parts = ", ".join(f"{f}: {n}" for f, n in self.sent.items())
        text = f"sent {self.total_sent} records ({parts}); rejected {sum(self.rejected.values())}; failed {self.failed}"
        if self.rejects_file:
            text += f"; rejects in {self.rejects_file}"
        if self.interrupted:
            text = "interrupted after flushing: " + text
        return text


def event_id(source: str, values: list[str]) -> str:
    """A stable id for a row: the same source and content always give the same id."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source.encode())
    for v in values:
        digest.update(b"\x1f" + v.encode())
    return digest.hexdigest()


def to_record(source: Source, topic: str, file_name: str, line: int, header: list[str], values: list[str]) -> Record:
    """The Kafka record for one row of a source file (pure)."""
    fields = dict(zip(header, values, strict=True))
    key = fields.get(source.key_column, "").strip()
    value = {"event_id": event_id(source.name, values), **fields}
    return Record(
        topic=topic,
        key=key.encode() if key else None,
        value=json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        headers=[("source_file", file_name.encode()), ("source_line", str(line).encode())],
    )


def read_rows(path: Path, source: Source, topic: str) -> Iterator[Record | Reject]:
    """The records of one file, and a Reject for each row that cannot be read."""
    name = path.name
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        missing = {source.key_column, source.id_column} - set(header)
        if missing:
            raise C360Error(f"{path}: header lacks column(s) {', '.join(sorted(missing))} (see docs/input-contract.md)")
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Reject(name, reader.line_num, f"unreadable CSV: {exc}", "")
                continue
            line = reader.line_num
            raw = ",".join(values)
            if not values:
                continue
            if len(values) != len(header):
                yield Reject(name, line, f"expected {len(header)} fields, found {len(values)}", raw)
                continue
            try:
                yield to_record(source, topic, name, line, header, values)
            except UnicodeEncodeError:
                yield Reject(name, line, "not valid UTF-8", raw.encode("utf-8", "replace").decode())


def _producer(cfg: Config):
    from kafka import KafkaProducer
    from kafka.errors import KafkaConfigurationError, KafkaError

    try:
        return KafkaProducer(
            bootstrap_servers=cfg.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=int(cfg.kafka.connect_timeout_s * 1000),
            bootstrap_timeout_ms=int(cfg.kafka.connect_timeout_s * 1000),
        )
    except KafkaConfigurationError:
        raise
    except (KafkaError, OSError) as exc:
        raise C360Error(unreachable_hint(cfg.kafka.bootstrap_servers, cfg.kafka.embedded)) from exc


class _Stop(Exception):
    pass


def replay(
    cfg: Config,
    input_dir: str | Path,
    *,
    sources: list[str] | None = None,
    rate: float | None = None,
    rejects_file: str | Path | None = None,
    progress: bool = True,
) -> ReplaySummary:
    """Send the source files found in ``input_dir`` to their topics and wait until Kafka acknowledged them.

    Args:
        cfg: the configuration (bootstrap, topic names, partitions).
        input_dir: a directory holding files of the input contract (``customers.csv``, ``logins.csv``...).
        sources: replay only these sources (default: every source whose file is present).
        rate: at most this many records per second (default: as fast as possible).
        rejects_file: where unreadable rows go (default ``<state_dir>/replay/rejects-<time>.jsonl``).
        progress: show a progress bar on a terminal.

    Raises:
        C360Error: missing directory or files, unknown source, unreachable broker.
    """
    from kafka.errors import KafkaError
    from tqdm import tqdm

    root = Path(input_dir)
    if not root.is_dir():
        raise C360Error(f"input directory not found: {root}")
    names = sources or list(SOURCES)
    unknown = [s for s in names if s not in SOURCES]
    if unknown:
        raise C360Error(f"unknown source {unknown[0]!r} (known: {', '.join(SOURCES)})")
    files = [(SOURCES[s], root / SOURCES[s].file) for s in names if (root / SOURCES[s].file).is_file()]
    if sources and len(files) < len(names):
        missing = [SOURCES[s].file for s in names if not (root / SOURCES[s].file).is_file()]
        raise C360Error(f"missing file(s) in {root}: {', '.join(missing)}")
    if not files:
        raise C360Error(f"no source files in {root} (expected any of: {', '.join(s.file for s in SOURCES.values())})")

    topics = {s.name: cfg.kafka.topic(s.name) for s, _ in files}
    ensure_topics(cfg.kafka.bootstrap_servers, topics.values(), partitions=cfg.kafka.partitions,
                  retention_hours=cfg.kafka.retention_hours, timeout_s=cfg.kafka.connect_timeout_s,
                  embedded=cfg.kafka.embedded)
    producer = _producer(cfg)
    summary = ReplaySummary()
    failures: list[BaseException] = []
    reject_path = Path(rejects_file) if rejects_file else (
        Path(cfg.lake.state_dir) / "replay" / f"rejects-{datetime.now():%Y%m%dT%H%M%S}.jsonl")
    reject_fh = None

    def on_error(exc: BaseException) -> None:
        failures.append(exc)

    def on_signal(signum, frame):  # noqa: ARG001
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    sent_total = 0
    try:
        bar = tqdm(unit=" ev", disable=None if progress else True, dynamic_ncols=True, smoothing=0.1)
        for source, path in files:
            sent = rejected = 0
            bar.set_description(path.name)
            for item in read_rows(path, source, topics[source.name]):
                if isinstance(item, Reject):
                    if reject_fh is None:
                        reject_path.parent.mkdir(parents=True, exist_ok=True)
                        reject_fh = reject_path.open("a", encoding="utf-8")
                    reject_fh.write(json.dumps(item.__dict__) + "\n")
                    rejected += 1
                    continue
                producer.send(item.topic, key=item.key, value=item.value,
                              headers=item.headers).add_errback(on_error)
                sent += 1
                sent_total += 1
                bar.update(1)
                if rate:
                    ahead = sent_total / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            summary.sent[path.name] = sent
            summary.rejected[path.name] = rejected
        bar.close()
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            producer.flush(timeout=max(30.0, cfg.kafka.connect_timeout_s))
        except KafkaError as exc:
            failures.append(exc)
        producer.close(timeout=10)
        if reject_fh is not None:
            reject_fh.close()
            summary.rejects_file = str(reject_path)
    summary.failed = len(failures)
    if failures:
        log.error("%d records were not acknowledged by Kafka; first error: %s", len(failures), failures[0])
    return summary
