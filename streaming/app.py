"""The always-on streaming application (``c360 stream``): one query per source, one checkpoint each."""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import time
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import C360Error
from lakehouse.kafka_admin import ensure_topics
from lakehouse.spark import get_spark
from lakehouse.tables import checkpoint_path
from streaming.ingest import IngestTarget, ensure_tables, process_batch, source_target
from streaming.silver import TRANSFORMS

log = logging.getLogger(__name__)


class CheckpointLock:
    """An exclusive lock on the checkpoint root: two c360 stream apps never share checkpoints."""

    def __init__(self, checkpoint_root: str):
        self.root = checkpoint_root
        self._fh = None

    def __enter__(self) -> CheckpointLock:
        if "://" in self.root:  # object stores have no file locks; one app per checkpoint root is on you
            return self
        Path(self.root).mkdir(parents=True, exist_ok=True)
        self._fh = (Path(self.root) / ".lock").open("w")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise C360Error(f"another c360 stream is already running on checkpoints {self.root}; "
                            f"stop it first (two queries must never share a checkpoint)") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


def kafka_stream(spark, cfg: Config, topic: str):
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
            .option("subscribe", topic)
            .option("startingOffsets", cfg.stream.starting_offsets)
            .option("failOnDataLoss", "true")
            .option("includeHeaders", "true")
            .option("maxOffsetsPerTrigger", str(cfg.stream.max_offsets_per_trigger))
            .load())


def start_query(spark, cfg: Config, target: IngestTarget, *, available_now: bool):
    writer = (kafka_stream(spark, cfg, cfg.kafka.topic(target.source.name)).writeStream
              .queryName(target.query)
              .option("checkpointLocation", checkpoint_path(cfg.lake.checkpoint_root, target.query))
              .foreachBatch(lambda df, batch_id: process_batch(target, df, batch_id)))
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(
        processingTime=cfg.stream.trigger_interval)
    return writer.start()


def _failure(query) -> str | None:
    exc = query.exception()
    if exc is None:
        return None
    text = str(getattr(exc, "desc", None) or exc).strip().splitlines()
    return f"query {query.name} failed: {text[0] if text else type(exc).__name__}"


def run(cfg: Config, *, available_now: bool = False, sources: list[str] | None = None,
        stop_event: threading.Event | None = None) -> dict[str, dict]:
    """Run the ingest queries until stopped (or, with ``available_now``, until Kafka is drained).

    Stops gracefully on SIGTERM/SIGINT or ``stop_event``: the batch in flight is finished first.
    Returns the last progress of each query.

    Raises:
        C360Error: a query failed, the broker is unreachable, or another app holds the checkpoints.
    """
    names = sources or list(TRANSFORMS)
    unknown = [s for s in names if s not in TRANSFORMS]
    if unknown:
        raise C360Error(f"no streaming query for source {unknown[0]!r} yet (streamed: {', '.join(TRANSFORMS)})")
    ensure_topics(cfg.kafka.bootstrap_servers, [cfg.kafka.topic(s) for s in names],
                  partitions=cfg.kafka.partitions, retention_hours=cfg.kafka.retention_hours,
                  timeout_s=cfg.kafka.connect_timeout_s, embedded=cfg.kafka.embedded)
    stop = stop_event or threading.Event()
    with CheckpointLock(cfg.lake.checkpoint_root):
        spark = get_spark(cfg, "c360-stream")
        ensure_tables(spark, cfg.lake.root, names)
        queries = [start_query(spark, cfg, source_target(cfg, n), available_now=available_now) for n in names]
        handlers = _install_stop_handlers(stop)
        try:
            _supervise(queries, stop, available_now)
        finally:
            _restore(handlers)
            for q in queries:
                if q.isActive:
                    _stop_gracefully(q)
        failures = [f for f in (_failure(q) for q in queries) if f]
        if failures:
            raise C360Error(failures[0])
        return {q.name: q.lastProgress or {} for q in queries}


def _supervise(queries, stop: threading.Event, available_now: bool) -> None:
    last_log = time.monotonic()
    while not stop.is_set():
        if any(_failure(q) for q in queries):
            return
        if not any(q.isActive for q in queries):
            return
        if not available_now and time.monotonic() - last_log > 30:
            for q in queries:
                p = q.lastProgress or {}
                log.info("%s: batch %s, %s rows, %.0f rows/s, %s ms", q.name, p.get("batchId"),
                         p.get("numInputRows"), p.get("processedRowsPerSecond") or 0,
                         (p.get("durationMs") or {}).get("triggerExecution"))
            last_log = time.monotonic()
        stop.wait(0.5)


def _stop_gracefully(query, timeout_s: float = 120) -> None:
    """Let the batch in flight finish, then stop the query."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()


def _install_stop_handlers(stop: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):  # noqa: ARG001
        log.info("signal %s: stopping after the batch in flight", signal.Signals(signum).name)
        stop.set()

    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers) -> None:
    for sig, previous in (handlers or {}).items():
        signal.signal(sig, previous)
