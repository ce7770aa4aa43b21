"""The ingest query: Kafka (every source's topic) -> bronze -> silver (+ quarantine, + ops counters).

Each micro-batch is written by :func:`process_batch`. Every write in it is idempotent (tagged with the query's
app id and the batch id), so a batch that runs again after a crash adds nothing: together with the Kafka
offsets in the checkpoint this makes the query exactly-once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce

from pyspark import inheritable_thread_target
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import schemas
from lakehouse.delta import (
    QueryRun,
    append_idempotent,
    committed_metrics,
    ensure_table,
    idempotent_txn,
    retry,
    txn_tag,
)
from lakehouse.mappings import DEFAULT_PARSE, ParseOptions, mapping_for
from lakehouse.quality import RunQuality
from lakehouse.schemas import SILVER_SPECS, SilverSpec
from lakehouse.spark import in_threads
from lakehouse.tables import BRONZE_RECORDS, OPS_BATCHES, QUARANTINE, SOURCES, Source, table_path
from streaming.bronze import transform_bronze
from streaming.silver import (
    REPLACES,
    RESCUED,
    UNLISTED,
    first_per_key,
    latest_per_key,
    split_valid,
    transform_source,
)

# Small files are compacted as they are written (Delta auto compaction, after a commit leaves enough of them);
# the app's maintenance also OPTIMIZEs and VACUUMs on a schedule.
TS_TEXT = "yyyy-MM-dd HH:mm:ss.SSSSSS"
STREAM_TABLE_PROPERTIES = {"delta.autoOptimize.autoCompact": "true"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestTarget:
    """Where one source's query writes, and how it parses."""

    source: Source
    query: str
    lake_root: str
    timestamp_formats: tuple[str, ...]
    topic: str
    unknown_fields: str = "rescue"
    parse: ParseOptions = DEFAULT_PARSE  # the source mapping's vocabularies, booleans, id clean-up

    def path(self, name: str) -> str:
        return table_path(self.lake_root, name)

    @property
    def spec(self) -> SilverSpec:
        return SILVER_SPECS[self.source.name]

    @property
    def silver(self) -> str:
        return self.path(self.spec.table)


def ensure_tables(spark, lake_root: str, sources: list[str]) -> None:
    """Create every table the streams write (empty), so readers never meet a missing table.

    A few tables at a time (each is a Delta log read, and a commit when new: mostly driver work that overlaps);
    the sources that share a silver table ensure it one after the other."""
    by_path: dict[str, list[tuple]] = {
        table_path(lake_root, QUARANTINE): [(schemas.QUARANTINE, ["_quarantine_date"], None)],
        table_path(lake_root, OPS_BATCHES): [(schemas.OPS_STREAM_BATCHES, None, None)],
        table_path(lake_root, BRONZE_RECORDS): [(schemas.BRONZE_RECORDS, ["source", "_ingestion_date"],
                                                 STREAM_TABLE_PROPERTIES)],
    }
    for name in sources:
        spec = SILVER_SPECS[name]
        by_path.setdefault(table_path(lake_root, spec.table), []).append(
            (schemas.SILVER[name], spec.partitions or None, STREAM_TABLE_PROPERTIES))

    def one(item: tuple[str, list[tuple]]) -> None:
        path, specs = item
        for schema, partition_by, properties in specs:
            ensure_table(spark, path, schema, partition_by, properties)

    in_threads(one, list(by_path.items()))


def _merge(spark, target: IngestTarget, rows: DataFrame, app: str, batch_id: int, time_range: tuple | None
           ) -> tuple[int, int]:
    """Upsert (entities) or insert-once (events) into silver; returns (inserted, updated).

    The merge condition carries literal predicates Delta can prune target files with: the partition (channel)
    and the event-time range of the batch (a record's event time never changes), so a merge reads the few
    files that can hold a match, not the whole table. ``spark`` is the session whose confs carry the commit's
    transaction id and tag: one per thread when sources are written at once (:class:`_Sessions`).
    """
    from delta.tables import DeltaTable

    source, spec = target.source, target.spec
    conds = [f"t.{c} = s.{c}" for c in [spec.id, *spec.partitions]]
    conds += [f"t.{c} = '{v}'" for c, v in spec.constants]
    if time_range is not None:
        lo, hi = time_range
        conds.append(f"t.{spec.event_time} BETWEEN TIMESTAMP'{lo}' AND TIMESTAMP'{hi}'")
    cond = " AND ".join(conds)
    table = DeltaTable.forPath(spark, target.silver).alias("t")
    if source.kind != "event":
        # Order-safe upsert: only a newer version (by Kafka timestamp, then offset) overwrites, and a re-sent
        # identical record (same event id) is a duplicate, not an update, unless another version came in between
        # within this batch (latest_per_key).
        newer = ("(s._kafka_timestamp > t._kafka_timestamp OR (s._kafka_timestamp = t._kafka_timestamp "
                 f"AND s._kafka_offset > t._kafka_offset)) AND (s.event_id <> t.event_id OR s.{REPLACES})")
        values = {c: f"s.`{c}`" for c in table.toDF().columns}  # the table's columns (not the batch's marker)
        merge = (table.merge(rows.alias("s"), cond).whenMatchedUpdate(condition=newer, set=values)
                 .whenNotMatchedInsert(values=values))
    else:
        merge = table.merge(rows.alias("s"), cond).whenNotMatchedInsertAll()
    with idempotent_txn(spark, f"{app}:silver", batch_id):
        result = retry(merge.execute, what=target.silver).first()
    if result is not None:
        metrics = result.asDict()
        return int(metrics.get("num_inserted_rows") or 0), int(metrics.get("num_updated_rows") or 0)
    # A batch run again after a crash: Delta skips the MERGE it already committed and reports nothing. Its counts
    # are in that commit's metrics (else every row would be counted a duplicate when the crash fell between the
    # MERGE and the counters' commit).
    # MERGE's: auto compaction's OPTIMIZE after it ran in the same session and carries the same tag (make chaos)
    metrics = committed_metrics(table, txn_tag(f"{app}:silver", batch_id), operation="MERGE")
    return int(metrics.get("numTargetRowsInserted") or 0), int(metrics.get("numTargetRowsUpdated") or 0)


class _Clock:
    """Seconds spent in each step of a batch (logged with its counters: where the time goes)."""

    def __init__(self):
        self.last = time.perf_counter()
        self.steps: dict[str, float] = {}

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round(now - self.last, 2)
        self.last = now
        log.debug("step %s: %.2fs", step, self.steps[step])

    def __str__(self) -> str:
        return " ".join(f"{k}={v}s" for k, v in self.steps.items())


@dataclass
class _SourceResult:
    """What one source's part of a batch did: its counters, its rejected rows (quarantine schema, persisted: the
    caller writes the quarantine of all sources at once, then unpersists them; or None), the time of its steps,
    its quarantine reasons (reason -> (count, a few raw records)) and its values outside open vocabularies."""

    counts: dict[str, int]
    rejected: DataFrame | None
    clock: _Clock
    reasons: dict[str, tuple[int, list[str]]]
    unlisted: dict[str, dict[str, int]]


# raw records kept per quarantine reason for the run's report (the fix it proposes reads them)
REASON_SAMPLES = 20


def _ingest_source(target: IngestTarget, bronze: DataFrame, batch_id: int, *, spark) -> _SourceResult:
    """Parse and silver merge of one source's records in a batch (in ``spark``, this thread's session)."""
    clock = _Clock()
    source = target.source
    app = f"{target.query}:{source.name}"
    # parsed once and kept: the counts, the quarantine and the silver rows all come from it
    parsed = transform_source(bronze, source.name, timestamp_formats=target.timestamp_formats,
                              unknown_fields_rule=target.unknown_fields, parse=target.parse).localCheckpoint()
    time_col = target.spec.event_time
    is_valid = F.col("_reject_reason").isNull()
    valid_time = F.when(is_valid, F.col(time_col)) if time_col else None
    stats = parsed.agg(  # one pass for the counters and the event-time range (as text in the session zone)
        F.count(F.lit(1)).alias("read"), F.count("_reject_reason").alias("rejected"),
        F.count_if(is_valid & F.col(RESCUED).isNotNull()).alias("rescued"),
        F.count("_unknown_fields").alias("drifted"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_set("_unknown_fields")))).alias("unknown"),
        F.count_if(is_valid & F.col(UNLISTED).isNotNull()).alias("unlisted"),
        *([F.date_format(F.min(valid_time), TS_TEXT).alias("lo"),
           F.date_format(F.max(valid_time), TS_TEXT).alias("hi")] if time_col else [])).first()
    read, quarantined, rescued = int(stats["read"]), int(stats["rejected"]), int(stats["rescued"])
    unlisted_rows = int(stats["unlisted"])
    if stats["unknown"]:
        log.warning("%s batch %d: %d records carry fields the %s contract does not name: %s (%s)", target.query,
                    batch_id, stats["drifted"], source.name,
                    ", ".join(stats["unknown"][:10]),
                    "kept in _rescued_data" if target.unknown_fields == "rescue" else "quarantined")
    clock(f"{source.name}.parse")
    unlisted = _unlisted_values(parsed, target) if unlisted_rows else {}
    valid, rejected = split_valid(parsed, source.name)
    reasons: dict[str, tuple[int, list[str]]] = {}
    try:
        if quarantined:  # few rows: kept apart so that the parsed batch can go now; counted by reason as they are
            rejected = rejected.persist()
            reasons = {r["reason"]: (int(r["n"]), list(r["samples"])) for r in rejected.groupBy("reason").agg(
                F.count(F.lit(1)).alias("n"),
                F.slice(F.collect_list("raw_value"), 1, REASON_SAMPLES).alias("samples")).collect()}
        inserted = updated = 0
        if read > quarantined:
            pick = latest_per_key if source.kind != "event" else first_per_key
            time_range = (stats["lo"], stats["hi"]) if time_col else None
            inserted, updated = _merge(spark, target, pick(valid, target.spec.id), app, batch_id, time_range)
            clock(f"{source.name}.merge")
    finally:
        parsed.unpersist()
    counts = {
        "read_rows": read,
        "quarantined_rows": quarantined,
        "duplicate_rows": read - quarantined - inserted - updated,
        "inserted_rows": inserted,
        "updated_rows": updated,
        "rescued_rows": rescued,
        "unlisted_rows": unlisted_rows,
    }
    return _SourceResult(counts, rejected if quarantined else None, clock, reasons, unlisted)


def _unlisted_values(parsed: DataFrame, target: IngestTarget) -> dict[str, dict[str, int]]:
    """Per open enum, the values outside its list and how often (only run when a batch has any)."""
    fields = [f for f in target.spec.fields if f.type == "enum"]
    rows = (parsed.where(F.col("_reject_reason").isNull() & F.col(UNLISTED).isNotNull())
            .select(F.explode(UNLISTED).alias("field"),
                    *[F.col(f.name).alias(f"v_{f.name}") for f in fields])
            .select("field", F.coalesce(*[F.when(F.col("field") == f.name, F.col(f"v_{f.name}")) for f in fields])
                    .alias("value"))
            .groupBy("field", "value").count().collect())
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["field"], {})[r["value"]] = int(r["count"])
    return out


class _Sessions:
    """Spark sessions for the threads that write sources at once: they share the SparkContext and its cached
    blocks but not their confs (a MERGE's transaction id and commit tag are session confs, so two threads must
    never use one session at the same time). Kept for the whole run of a query."""

    def __init__(self, spark):
        self.spark = spark
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    @contextlib.contextmanager
    def lease(self) -> Iterator:
        try:
            session = self._free.get_nowait()
        except queue.Empty:
            session = self.spark.newSession()
            # the merges' sources are materialized by the batch: MERGE need not materialize them again
            session.conf.set("spark.databricks.delta.merge.materializeSource", "none")
        try:
            yield session
        finally:
            self._free.put(session)


def process_batch(targets: IngestTarget | list[IngestTarget], kafka_batch: DataFrame, batch_id: int, *,
                  new: bool = False, workers: int = 1, sessions: _Sessions | None = None,
                  quality: RunQuality | None = None) -> dict[str, dict[str, int]]:
    """Write one micro-batch of Kafka records (of one or several topics) to bronze, silver and quarantine, and
    count what happened per source.

    Every record read ends in silver (inserted or updated), in quarantine with a reason, or counted as a
    duplicate (repeated within the batch, already in silver, or older than the silver version):
    ``read = quarantined + duplicates + inserted + updated``. The sources of a batch are written ``workers`` at
    a time (each source's tables are its own, so they never conflict; with 2 cores, two at once overlap one
    source's Delta commit bookkeeping with another's row work); the quarantine and the counters of all of them in
    one commit each. ``new``: the caller knows this batch id was never written (:func:`append_idempotent`).
    ``quality`` collects the run's counters, quarantine reasons and unlisted values per source (the run's report).
    """
    targets = [targets] if isinstance(targets, IngestTarget) else targets
    by_topic = {t.topic: t for t in targets}
    spark = kafka_batch.sparkSession
    sessions = sessions or _Sessions(spark)
    query = targets[0].query
    clock = _Clock()
    batch = read_kafka_batch(kafka_batch)
    kept: list[DataFrame] = []
    try:
        present = {r["topic"]: r["count"] for r in batch.groupBy("topic").count().collect()}
        clock("read")
        unknown = set(present) - set(by_topic)
        if unknown:  # cannot happen with `subscribe`; guards a misconfigured pattern
            raise ValueError(f"records from topics no source reads: {sorted(unknown)}")
        todo = [t for t in targets if present.get(t.topic)]
        if todo:  # every source's records in one append (bronze_records)
            append_idempotent(with_source(batch, targets), targets[0].path(BRONZE_RECORDS), app_id=f"{query}:bronze",
                              version=batch_id, partition_by=["source", "_ingestion_date"], new=new)
            clock("bronze")
        # sources that share a silver table (online and in-store transactions) are written one after the other, by
        # one task: at once, their MERGEs would conflict and one would be retried
        tasks: dict[str, list[IngestTarget]] = {}
        for t in todo:
            tasks.setdefault(t.silver, []).append(t)

        def run(group: list[IngestTarget]) -> list[_SourceResult]:
            with sessions.lease() as session:
                return [_ingest_source(t, batch.where(F.col("topic") == t.topic) if len(present) > 1 else batch,
                                       batch_id, spark=session) for t in group]

        groups = list(tasks.values())
        if workers > 1 and len(groups) > 1:
            # worker threads inherit this thread's Spark job group, scheduler pool and job tags (stopping the query
            # cancels their jobs too); leaving the block waits for every source, also when one failed
            with ThreadPoolExecutor(min(workers, len(groups)), thread_name_prefix=f"c360-{query}") as pool:
                outs = list(pool.map(inheritable_thread_target(spark)(run), groups))
        else:
            outs = [run(g) for g in groups]
        done = {t.source.name: r for g, out in zip(groups, outs, strict=True) for t, r in zip(g, out, strict=True)}
        results: dict[str, dict[str, int]] = {}
        for target in todo:  # in registry order
            out = done[target.source.name]
            results[target.source.name] = out.counts
            clock.steps.update(out.clock.steps)
            if out.rejected is not None:
                kept.append(out.rejected)
        clock("sources")
        if kept:
            append_idempotent(reduce(DataFrame.unionByName, kept), targets[0].path(QUARANTINE),
                              app_id=f"{query}:quarantine", version=batch_id, partition_by=["_quarantine_date"],
                              new=new)
            clock("quarantine")
        if results:
            counters = list(next(iter(results.values())))
            ops = spark.createDataFrame(
                [(query, name, batch_id, *[c[k] for k in counters]) for name, c in results.items()],
                ["query", "source", "batch_id", *counters],
            ).withColumn("processed_at", F.current_timestamp())
            append_idempotent(ops.select(*schemas.OPS_STREAM_BATCHES.fieldNames()), targets[0].path(OPS_BATCHES),
                              app_id=f"{query}:ops", version=batch_id, new=new)
            clock("ops")
        report_batch(query, batch_id, results, {n: r.reasons for n, r in done.items()},
                     {n: r.unlisted for n, r in done.items()}, quality)
        log.info("%s batch %d timings: %s", query, batch_id, clock)
        return results
    finally:
        for df in kept:
            df.unpersist()
        batch.unpersist()


def report_batch(query: str, batch_id: int, results: dict[str, dict[str, int]],
                 reasons: dict[str, dict[str, tuple[int, list[str]]]], unlisted: dict[str, dict[str, dict[str, int]]],
                 quality: RunQuality | None) -> None:
    """Log a batch's counters per source (loudly when all of a source's records were quarantined) and add them to
    the run's report."""
    for name, c in results.items():
        log.info("%s batch %d %s: %s", query, batch_id, name, c)
        if c["read_rows"] and c["quarantined_rows"] == c["read_rows"]:
            log.error("%s batch %d: every one of the %d %s records was quarantined (%s)", query, batch_id,
                      c["read_rows"], name, ", ".join(reasons.get(name, {})))
        if quality is not None:
            quality.add(name, c, reasons.get(name), unlisted.get(name))


def with_source(bronze: DataFrame, targets: list[IngestTarget]) -> DataFrame:
    """Bronze rows with the source whose topic they came from, in ``bronze_records``' columns."""
    by_topic = F.create_map(*[F.lit(x) for t in targets for x in (t.topic, t.source.name)])
    return bronze.withColumn("source", F.try_element_at(by_topic, F.col("topic"))).select(
        *schemas.BRONZE_RECORDS.fieldNames())


def read_kafka_batch(kafka_batch: DataFrame) -> DataFrame:
    """The micro-batch's Kafka records as bronze rows, read once and kept (lineage cut): a persisted DataFrame was
    not enough, as every later job re-planned its source and read the whole batch from Kafka again. A Kafka batch
    has a partition per topic partition (dozens); a few partitions suit the per-source work."""
    spark = kafka_batch.sparkSession
    return transform_bronze(kafka_batch).coalesce(spark.sparkContext.defaultParallelism).localCheckpoint()


def write_batch(targets: IngestTarget | list[IngestTarget], kafka_batch: DataFrame, batch_id: int, *,
                writer: str = "spark", new: bool = False, workers: int = 1, quality: RunQuality | None = None,
                state: dict | None = None, cfg=None) -> dict[str, dict[str, int]]:
    """Write one micro-batch with ``writer``: ``spark`` (:func:`process_batch`) or ``embedded`` (the parse on the
    embedded engine, delta-rs commits: :mod:`streaming.embedded`); the counters per source. ``state`` keeps what a
    query's batches share (Spark sessions, open delta-rs tables); ``cfg`` sets the embedded engine up (the
    default configuration when None) and, given, has the embedded writer keep the login views (city x hour counts,
    alerts on arrival: :func:`streaming.outputs.write_login_views`)."""
    targets = [targets] if isinstance(targets, IngestTarget) else targets
    state = {} if state is None else state
    if writer != "embedded":
        sessions = state.setdefault("sessions", _Sessions(kafka_batch.sparkSession))
        return process_batch(targets, kafka_batch, batch_id, new=new, workers=workers, sessions=sessions,
                             quality=quality)
    from lakehouse.lake_writes import OpenTables
    from streaming import embedded, parse_worker

    query = targets[0].query
    clock = _Clock()
    batch = transform_bronze(kafka_batch).toArrow()  # the Kafka read: the batch's one Spark job
    clock("read")
    worker = parse_worker.shared(cfg)
    tables = state.setdefault("tables", OpenTables())

    def login_views(rows) -> None:
        from streaming.outputs import write_login_views

        logins = rows.get("logins")
        if logins is not None and logins.num_rows:
            write_login_views(cfg, tables, worker, query, batch_id, logins)

    results = embedded.write_batch(
        targets, batch, batch_id, tables=tables, parse=worker.parse, workers=workers, clock=clock,
        report=lambda results, reasons, unlisted: report_batch(query, batch_id, results, reasons, unlisted, quality),
        after_silver=login_views if cfg is not None else None)
    log.info("%s batch %d timings: %s", query, batch_id, clock)
    return results


class IngestRun(QueryRun):
    """The foreachBatch function of one run of the ingest query (:class:`~lakehouse.delta.QueryRun`): the batches
    after its first append without the check for an earlier commit. ``writer``: who commits the batch's Delta
    writes (:func:`write_batch`)."""

    def __init__(self, targets: list[IngestTarget], workers: int = 1, quality: RunQuality | None = None,
                 writer: str = "spark", cfg=None, compactor=None):
        """``compactor``: who compacts the embedded writer's tables when their turn comes (the batch that made the
        commit when None; :class:`lakehouse.lake_writes.OpenTables`)."""
        super().__init__(self._write)
        self.targets, self.workers, self.quality, self.writer, self.cfg = targets, workers, quality, writer, cfg
        self.state: dict = {}
        if compactor is not None:
            from lakehouse.lake_writes import OpenTables

            self.state["tables"] = OpenTables(compactor=compactor)

    def _write(self, kafka_batch: DataFrame, batch_id: int, new: bool) -> None:
        write_batch(self.targets, kafka_batch, batch_id, writer=self.writer, new=new, workers=self.workers,
                    quality=self.quality, state=self.state, cfg=self.cfg)


def ingest_query_name(sources: list[str]) -> str:
    """The ingest query (and checkpoint) of a set of sources: ``ingest`` for all of them."""
    if set(sources) == set(SOURCES):
        return "ingest"
    return "ingest_" + "_".join(sorted(sources))


def source_target(cfg, name: str, query: str | None = None) -> IngestTarget:
    """How the ingest query writes and parses source ``name``: its source mapping's timestamp formats (before or
    instead of stream.timestamp_formats) and parse options."""
    mapping = mapping_for(cfg.sources, name)
    return IngestTarget(SOURCES[name], query or ingest_query_name([name]), cfg.lake.root,
                        mapping.formats(cfg.stream.timestamp_formats), cfg.kafka.topic(name), cfg.stream.unknown_fields,
                        mapping.parse)
