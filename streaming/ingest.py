"""One streaming query per source: Kafka -> bronze -> silver (+ quarantine, + ops counters).

Each micro-batch is written by :func:`process_batch`. Every write in it is idempotent (tagged with the query's
app id and the batch id), so a batch that runs again after a crash adds nothing: together with the Kafka
offsets in the checkpoint this makes the query exactly-once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import schemas
from lakehouse.delta import append_idempotent, ensure_table, idempotent_txn, last_operation_metrics, retry
from lakehouse.schemas import SILVER_SPECS, SilverSpec
from lakehouse.tables import OPS_BATCHES, QUARANTINE, SOURCES, Source, table_path
from streaming.bronze import transform_bronze
from streaming.silver import first_per_key, latest_per_key, split_valid, transform_source

# Small files are compacted as they are written (Delta auto compaction, after a commit leaves enough of them);
# the app's maintenance also OPTIMIZEs and VACUUMs on a schedule.
STREAM_TABLE_PROPERTIES = {"delta.autoOptimize.autoCompact": "true"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestTarget:
    """Where one source's query writes, and how it parses."""

    source: Source
    query: str
    lake_root: str
    timestamp_formats: tuple[str, ...]

    def path(self, name: str) -> str:
        return table_path(self.lake_root, name)

    @property
    def bronze(self) -> str:
        return self.path(f"bronze_{self.source.name}")

    @property
    def spec(self) -> SilverSpec:
        return SILVER_SPECS[self.source.name]

    @property
    def silver(self) -> str:
        return self.path(self.spec.table)


def ensure_tables(spark, lake_root: str, sources: list[str]) -> None:
    """Create every table the streams write (empty), so readers never meet a missing table."""
    ensure_table(spark, table_path(lake_root, QUARANTINE), schemas.QUARANTINE, ["_quarantine_date"])
    ensure_table(spark, table_path(lake_root, OPS_BATCHES), schemas.OPS_STREAM_BATCHES)
    for name in sources:
        spec = SILVER_SPECS[name]
        ensure_table(spark, table_path(lake_root, f"bronze_{name}"), schemas.BRONZE, ["_ingestion_date"],
                     STREAM_TABLE_PROPERTIES)
        ensure_table(spark, table_path(lake_root, spec.table), schemas.SILVER[name], spec.partitions or None,
                     STREAM_TABLE_PROPERTIES)


def _merge(target: IngestTarget, rows: DataFrame, batch_id: int) -> tuple[int, int]:
    """Upsert (entities) or insert-once (events) into silver; returns (inserted, updated)."""
    from delta.tables import DeltaTable

    spark = rows.sparkSession
    source, spec = target.source, target.spec
    # the key, plus the partition columns (immutable for a record: its channel, the date of its event time),
    # which let Delta prune files and keep the two transaction queries off each other's partitions
    cond = " AND ".join(f"t.{c} = s.{c}" for c in [spec.id, *spec.partitions])
    table = DeltaTable.forPath(spark, target.silver).alias("t")
    if source.kind != "event":
        # Order-safe upsert: only a newer version (by Kafka timestamp, then offset) overwrites, and a re-sent
        # identical record (same event id) is a duplicate, not an update.
        newer = ("(s._kafka_timestamp > t._kafka_timestamp OR (s._kafka_timestamp = t._kafka_timestamp "
                 "AND s._kafka_offset > t._kafka_offset)) AND s.event_id <> t.event_id")
        merge = table.merge(rows.alias("s"), cond).whenMatchedUpdateAll(condition=newer).whenNotMatchedInsertAll()
    else:
        merge = table.merge(rows.alias("s"), cond).whenNotMatchedInsertAll()
    with idempotent_txn(spark, f"{target.query}:silver", batch_id):
        retry(merge.execute, what=target.silver)
    metrics = last_operation_metrics(spark, target.silver)
    return int(metrics.get("numTargetRowsInserted", 0)), int(metrics.get("numTargetRowsUpdated", 0))


def process_batch(target: IngestTarget, kafka_batch: DataFrame, batch_id: int) -> dict[str, int]:
    """Write one micro-batch of Kafka records to bronze, silver and quarantine, and count what happened.

    Every record read ends in silver (inserted or updated), in quarantine with a reason, or counted as a
    duplicate (repeated within the batch, already in silver, or older than the silver version):
    ``read = quarantined + duplicates + inserted + updated``.
    """
    source = target.source
    bronze = transform_bronze(kafka_batch).persist()
    try:
        read = bronze.count()
        if read == 0:
            return {"read_rows": 0}
        append_idempotent(bronze, target.bronze, app_id=f"{target.query}:bronze", version=batch_id,
                          partition_by=["_ingestion_date"])
        # parsed once and kept: the quarantine and the silver rows both come from it
        parsed = transform_source(bronze, source.name, timestamp_formats=target.timestamp_formats).persist()
        try:
            valid, rejected = split_valid(parsed, source.name)
            quarantined = rejected.count()
            if quarantined:
                append_idempotent(rejected, target.path(QUARANTINE), app_id=f"{target.query}:quarantine",
                                  version=batch_id, partition_by=["_quarantine_date"])
            pick = latest_per_key if source.kind == "entity" else first_per_key
            unique = pick(valid, target.spec.id).persist()
            try:
                n_unique = unique.count()
                inserted, updated = _merge(target, unique, batch_id) if n_unique else (0, 0)
            finally:
                unique.unpersist()
        finally:
            parsed.unpersist()
        counts = {
            "read_rows": read,
            "quarantined_rows": quarantined,
            "duplicate_rows": read - quarantined - inserted - updated,
            "inserted_rows": inserted,
            "updated_rows": updated,
        }
        ops = kafka_batch.sparkSession.createDataFrame(
            [(target.query, source.name, batch_id, *counts.values())],
            schemas.OPS_STREAM_BATCHES.fieldNames()[:-1],
        ).withColumn("processed_at", F.current_timestamp())
        append_idempotent(ops.select(*schemas.OPS_STREAM_BATCHES.fieldNames()), target.path(OPS_BATCHES),
                          app_id=f"{target.query}:ops", version=batch_id)
        log.info("%s batch %d: %s", target.query, batch_id, counts)
        return counts
    finally:
        bronze.unpersist()


def source_target(cfg, name: str) -> IngestTarget:
    return IngestTarget(SOURCES[name], f"ingest_{name}", cfg.lake.root, cfg.stream.timestamp_formats)
