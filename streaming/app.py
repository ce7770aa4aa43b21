"""The always-on streaming application (``c360 stream``): every query in one Spark app, one checkpoint each."""

from __future__ import annotations

import fcntl
import logging
import math
import signal
import threading
import time
from pathlib import Path

from lakehouse.config import Config
from lakehouse.delta import QueryRun
from lakehouse.engine import stream_writer
from lakehouse.errors import C360Error, error_text, storage_error
from lakehouse.kafka_admin import ensure_topics
from lakehouse.kafka_security import client_security, spark_security
from lakehouse.lake_writes import OpenTables
from lakehouse.quality import RunQuality
from lakehouse.spark import get_spark
from lakehouse.tables import SOURCES, checkpoint_path, table_path
from streaming.anomalies import AnomalyRules, transform_login_anomalies
from streaming.city_hour import transform_city_hour
from streaming.ingest import IngestRun, ensure_tables, ingest_query_name, source_target
from streaming.ops import PROGRESS_EVERY_S, BackgroundCompactor, Maintenance, ProgressLog, stream_table_names
from streaming.outputs import (
    ANOMALY_QUERY,
    CITY_HOUR_QUERY,
    ensure_stream_tables,
    write_anomalies,
    write_city_hour,
)

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


def remove_interrupted_writes(checkpoint: str) -> int:
    """Delete the temp files an interrupted write left in a query's offset and commit logs.

    Spark writes each log entry to a hidden temp file, then renames it. A kill -9 between the two leaves the temp
    file, and Spark then refuses to start a query whose first batch never committed ("checkpoint location ...
    offsets should be empty on batch 0"). A temp file is never a valid entry: removing it loses nothing.
    """
    if "://" in checkpoint:
        return 0
    removed = 0
    for log_dir in ("offsets", "commits"):
        for tmp in Path(checkpoint, log_dir).glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.warning("removed %d temp files of an interrupted write in %s", removed, checkpoint)
    return removed


def broker_wait_options(outage_s: int) -> dict[str, str]:
    """Spark Kafka source options that make the stream wait ``outage_s`` seconds for an unreachable broker, then
    fail (what ``_failure`` turns into one line): the driver asks for the latest offsets ``fetchOffset.numRetries``
    times, each waiting up to the clients' ``default.api.timeout.ms``; executors poll up to ``pollTimeoutMs``."""
    attempts = max(1, math.ceil(outage_s / 60))
    per_attempt_ms = outage_s * 1000 // attempts
    return {"fetchOffset.numRetries": str(attempts), "fetchOffset.retryIntervalMs": "1000",
            "kafka.default.api.timeout.ms": str(per_attempt_ms),
            "kafka.request.timeout.ms": str(min(30_000, per_attempt_ms)),  # the admin client wants it <= the above
            "kafkaConsumer.pollTimeoutMs": str(outage_s * 1000)}


# How long a fetch waits at the end of a partition for more records (Kafka's default is 500 ms). Every micro-batch
# of a live stream reads to the end of each of its topics' partitions, and Spark's consumer paid that wait at the
# end of each partition's range: reading 669k records of 17 topics (51 partitions) to their end took 14.6 s on 2
# cores with the default and 3.1 s with 10 ms. A broker answers a fetch as soon as it has records either way.
FETCH_MAX_WAIT_MS = 10


def kafka_stream(spark, cfg: Config, topics: list[str], *, embedded: bool = False):
    """The Kafka source of the ingest query (also what the benchmark's raw-read peer reads with); ``embedded``: for
    the embedded writer, whose batches are held in the driver (``stream.embedded_max_offsets_per_trigger``)."""
    limit = cfg.stream.max_offsets_per_trigger
    if embedded:
        limit = min(limit, cfg.stream.embedded_max_offsets_per_trigger)
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
            .option("subscribe", ",".join(topics))
            .option("startingOffsets", cfg.stream.starting_offsets)
            .option("failOnDataLoss", str(cfg.stream.fail_on_data_loss).lower())
            .option("includeHeaders", "true")
            .option("maxOffsetsPerTrigger", str(limit))
            .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
            .options(**broker_wait_options(cfg.stream.broker_outage_s))
            .options(**spark_security(cfg.kafka))
            .load())


# the FAIR scheduler pool of every ingest query (jvm/fairscheduler.xml gives it precedence); the derived queries each
# have a pool named after them
INGEST_POOL = "ingest"


def _start(writer, spark, cfg: Config, query: str, *, available_now: bool, interval: str | None = None,
           pool: str | None = None):
    """Start a query with its own checkpoint, trigger (``interval``, else stream.trigger_interval) and (FAIR)
    scheduler pool (``pool``, else one named after the query)."""
    checkpoint = checkpoint_path(cfg.lake.checkpoint_root, query)
    remove_interrupted_writes(checkpoint)
    writer = writer.queryName(query).option("checkpointLocation", checkpoint)
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(
        processingTime=interval or cfg.stream.trigger_interval)
    if cfg.stream.scheduler_pools:  # the pool is inherited by the query's thread
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool or query)
    try:
        return writer.start()
    finally:
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)


def start_ingest(spark, cfg: Config, sources: list[str], *, available_now: bool, quality: RunQuality | None = None,
                 compactor: BackgroundCompactor | None = None):
    """The ingest query: every source's topic -> bronze -> silver, one micro-batch for all of them (``compactor``:
    the embedded writer's tables compacted beside the batches rather than in them)."""
    query = ingest_query_name(sources)
    targets = [source_target(cfg, n, query) for n in sources]
    mode = stream_writer(cfg)
    writer = (kafka_stream(spark, cfg, [t.topic for t in targets], embedded=mode == "embedded").writeStream
              .foreachBatch(IngestRun(targets, workers=cfg.stream.parallel_sources, quality=quality, writer=mode,
                                      cfg=cfg, compactor=compactor)))
    return _start(writer, spark, cfg, query, available_now=available_now, pool=INGEST_POOL)


def start_derived_queries(spark, cfg: Config, *, available_now: bool) -> list:
    """The queries over the silver_logins stream: login-gap anomalies in event-time order, and (Spark's writer)
    city x hour counts."""
    # silver_logins only grows (logins are inserted once); the commits that delete rows (`c360 forget`) are skipped,
    # not replayed: without this the queries would stop on the first such commit
    logins = (spark.readStream.format("delta").option("skipChangeCommits", "true")
              .load(table_path(cfg.lake.root, "silver_logins")))
    anomalies = transform_login_anomalies(logins, rules=AnomalyRules.of(cfg.stream),
                                          watermark=cfg.stream.anomaly_watermark)
    tables = OpenTables()
    writer = anomalies.writeStream.outputMode("append").foreachBatch(
        QueryRun(lambda df, batch_id, new: write_anomalies(cfg, df, batch_id, new=new, tables=tables)))
    interval = cfg.stream.derived_trigger_interval
    queries = [_start(writer, spark, cfg, ANOMALY_QUERY, available_now=available_now, interval=interval)]
    if stream_writer(cfg) != "embedded":  # the embedded writer recounts the windows in each batch
        counts = transform_city_hour(logins, watermark=cfg.stream.city_hour_watermark)
        writer = counts.writeStream.outputMode("update").foreachBatch(
            QueryRun(lambda df, batch_id, new: write_city_hour(cfg, df, batch_id, new=new)))
        queries.append(_start(writer, spark, cfg, CITY_HOUR_QUERY, available_now=available_now, interval=interval))
    return queries


DATA_LOSS_MARKERS = ("KAFKA_DATA_LOSS", "Some data may have been lost")
STATE_LAYOUT_MARKERS = ("STATE_STORE_KEY_SCHEMA_NOT_COMPATIBLE", "STATE_STORE_VALUE_SCHEMA_NOT_COMPATIBLE")
# the driver's offset requests or an executor's fetch gave up on an unreachable broker
BROKER_GONE_MARKERS = ("org.apache.kafka.common.errors.TimeoutException", "Failed to get records for",
                       "Timed out waiting for a node assignment")


def _failure(query) -> str | None:
    exc = query.exception()
    if exc is None:
        return None
    text = str(getattr(exc, "desc", None) or exc).strip()
    if any(m in text for m in DATA_LOSS_MARKERS):
        return (f"query {query.name} stopped: Kafka no longer holds records the checkpoint has not processed yet "
                "(deleted by retention or by hand); nothing was skipped. To recover, see docs/operations.md "
                "('Kafka lost records the stream had not read')")
    if any(m in text for m in STATE_LAYOUT_MARKERS):
        return (f"query {query.name} stopped: its checkpoint holds state in a layout this c360 does not read (written "
                f"by an older version; Spark: {text.splitlines()[0]}). Rebuild it from silver: see "
                "docs/operations.md ('Rebuilding the login-anomaly query')")
    full = error_text(exc)  # the JVM's causes included
    if any(m in full for m in BROKER_GONE_MARKERS):
        return (f"query {query.name} stopped: the Kafka broker stayed unreachable for longer than "
                "stream.broker_outage_s; nothing was skipped and the checkpoint is intact. Start `c360 stream` "
                "again once the broker is back (a supervisor that restarts it on a non-zero exit does this; "
                "docs/operations.md, 'The broker went away')")
    storage = storage_error(full, f"query {query.name}'s tables or checkpoint")
    if storage:
        return f"query {query.name} stopped: {storage}"
    lines = text.splitlines()
    return f"query {query.name} failed: {lines[0] if lines else type(exc).__name__}"


def run(cfg: Config, *, available_now: bool = False, sources: list[str] | None = None,
        stop_event: threading.Event | None = None, quality: RunQuality | None = None) -> dict[str, dict]:
    """Run every streaming query until stopped (or, with ``available_now``, until Kafka is drained).

    One Spark application: the ingest query (every source's topic -> bronze -> silver), and, when logins are
    streamed, the login-anomaly and city x hour queries over silver_logins. With ``available_now`` the ingest
    queries drain Kafka first, then the derived queries process what silver holds.
    Stops gracefully on SIGTERM/SIGINT or ``stop_event``: the batch in flight is finished first.
    Returns the last progress of each query; ``quality`` collects what the run did with each source's records.

    Raises:
        C360Error: a query failed, the broker is unreachable, or another app holds the checkpoints.
    """
    unknown = [s for s in sources or [] if s not in SOURCES]
    if unknown:
        raise C360Error(f"unknown source {unknown[0]!r} (sources: {', '.join(SOURCES)})")
    names = [s for s in SOURCES if s in (sources or SOURCES)]  # registry order
    derived = "logins" in names
    topics = [cfg.kafka.topic(s) for s in names] + ([cfg.kafka.topic(cfg.stream.alerts_topic)] if derived else [])
    ensure_topics(cfg.kafka.bootstrap_servers, topics,
                  partitions=cfg.kafka.partitions, retention_hours=cfg.kafka.retention_hours,
                  timeout_s=cfg.kafka.connect_timeout_s, embedded=cfg.kafka.embedded,
                  security=client_security(cfg.kafka))
    stop = stop_event or threading.Event()
    with CheckpointLock(cfg.lake.checkpoint_root):
        spark = get_spark(cfg, "c360-stream")
        ensure_tables(spark, cfg.lake.root, names)
        ensure_stream_tables(spark, cfg.lake.root)
        progress = ProgressLog(spark, cfg.lake.root)
        maintenance = Maintenance(spark, cfg, stream_table_names(names), stop) if not available_now else None
        # a stream that runs on compacts its tables beside its batches; one that drains and stops, in them (its
        # tables are final when it returns)
        compactor = (BackgroundCompactor(cfg.batch.nice)
                     if not available_now and stream_writer(cfg) == "embedded" else None)
        handlers = _install_stop_handlers(stop)
        queries: list = []
        try:
            queries = [start_ingest(spark, cfg, names, available_now=available_now, quality=quality,
                                    compactor=compactor)]
            if derived and not available_now:
                queries += start_derived_queries(spark, cfg, available_now=False)
            if maintenance:
                maintenance.start()
            _supervise(queries, stop, available_now, progress)
            if _kafka_metrics_bug(queries[0]):
                # Spark 4.1.1: the first batch after a crash, re-run from the offset log, fails *after* its commit
                # while reporting the Kafka source's metrics (a null "latest offsets"). Start the ingest once
                # more: it resumes from the committed batch like any restart.
                log.warning("ingest stopped on Spark's Kafka metrics bug after recovering a batch; restarting it")
                progress.flush(queries)
                queries[0] = start_ingest(spark, cfg, names, available_now=available_now, quality=quality,
                                          compactor=compactor)
                _supervise(queries, stop, available_now, progress)
            if derived and available_now and not stop.is_set() and not any(_failure(q) for q in queries):
                phase2 = start_derived_queries(spark, cfg, available_now=True)
                queries += phase2
                _supervise(phase2, stop, available_now, progress)
        finally:
            _restore(handlers)
            for q in queries:
                if q.isActive:
                    _stop_gracefully(q)
            if compactor is not None:
                compactor.close()
            progress.flush(queries)
        failures = [f for f in (_failure(q) for q in queries) if f]
        if failures:
            raise C360Error(failures[0])
        return {q.name: q.lastProgress or {} for q in queries}


def _kafka_metrics_bug(query) -> bool:
    exc = query.exception()
    if exc is None:
        return False
    text = f"{exc} {getattr(exc, '_stackTrace', '')}"
    # KafkaMicroBatchStream.metrics: latestAvailablePartitionOffsets.get is null (no latestOffset call yet)
    return "IterableOps.map" in text and "Option.get()" in text


def _supervise(queries, stop: threading.Event, available_now: bool, progress: ProgressLog) -> None:
    last_log = time.monotonic()
    while not stop.is_set():
        if any(_failure(q) for q in queries):
            return
        if not any(q.isActive for q in queries):
            return
        if time.monotonic() - last_log > PROGRESS_EVERY_S:
            progress.flush(queries, log_it=not available_now)
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
