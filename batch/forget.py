"""The right to be forgotten: ``c360 forget CUSTOMER_ID...`` erases customers from every table of the lake.

What it does, in order (docs/operations.md, "Forgetting a customer"):

1. Deletes every row of the customers from every bronze, silver, quarantine, stream and gold table c360 keeps
   (a few tables at once):
   rows whose ``customer_id`` is one of them; bronze and quarantine records by their Kafka key or the customer
   field of their raw JSON. Each delete is one Delta commit, retried on write conflicts, so it is safe while the
   stream and a gold refresh run. Reference tables (products, stores, agents) and aggregates hold no customer.
2. Rewrites the BI exports of every gold table it changed, and the dashboard file if there is one.
3. Records the request in ``ops_forget_requests``: who, when, why, the rows erased per table, and the time after
   which VACUUM has removed the files that still hold the old rows (``physically_gone_by``).
4. Runs VACUUM on the tables it changed with the retention (``stream.vacuum_retention_hours``, 168 by default;
   ``--retention-hours`` overrides it): files unreferenced for longer than that are deleted. The files this
   request made unreferenced go at the first VACUUM after the retention — ``c360 forget --vacuum`` (e.g. daily
   from cron), or the stream's own maintenance for its tables — which also marks the requests done.

Not covered, and said so in the docs: records still in Kafka topics (gone with the topics' retention), the input
files replay reads (yours to delete), the login-anomaly query's per-customer state in its checkpoint (expires
after ``stream.anomaly_state_ttl_days`` without logins), and Delta log entries (kept
``delta.logRetentionDuration``, 30 days by default), whose file statistics may hold an id as a min/max value.
"""

from __future__ import annotations

import getpass
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import Config
from lakehouse.delta import (
    commit_metadata,
    committed_metrics,
    ensure_table,
    is_missing_table,
    retry,
    short_vacuum_retention,
)
from lakehouse.errors import C360Error
from lakehouse.schemas import SILVER_SPECS
from lakehouse.spark import in_threads
from lakehouse.tables import (
    BRONZE_RECORDS,
    OPS_BATCHES,
    OPS_PROGRESS,
    QUARANTINE,
    SOURCES,
    legacy_bronze,
    table_path,
)

log = logging.getLogger(__name__)

AUDIT_TABLE = "ops_forget_requests"
AUDIT_SCHEMA = T.StructType([
    T.StructField("request_id", T.StringType()),
    T.StructField("customer_ids", T.ArrayType(T.StringType())),
    T.StructField("requested_at", T.TimestampType()),
    T.StructField("requested_by", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("rows_erased", T.MapType(T.StringType(), T.LongType())),
    T.StructField("exports_rewritten", T.ArrayType(T.StringType())),
    T.StructField("retention_hours", T.IntegerType()),
    T.StructField("physically_gone_by", T.TimestampType()),
    T.StructField("vacuumed_at", T.TimestampType()),
])
PARALLEL_TABLES = 4  # tables erased (and vacuumed) at once
# the customer field of each customer-keyed source's raw JSON (bronze values, quarantined records)
_KEY_FIELDS = sorted({s.key_column for s in SOURCES.values() if s.kind != "reference"})


def lake_tables() -> list[str]:
    """Every table c360 writes, in the order they are erased (gold first: what readers see goes first)."""
    from batch.gold import PRODUCTS
    from streaming.alerts import ALERTS_TABLE
    from streaming.outputs import ANOMALIES_TABLE, CITY_HOUR_TABLE

    silver = list(dict.fromkeys(spec.table for spec in SILVER_SPECS.values()))
    # the per-source bronze tables of a lake written before bronze_records (absent ones are skipped)
    return [*PRODUCTS, ANOMALIES_TABLE, ALERTS_TABLE, CITY_HOUR_TABLE, *silver, QUARANTINE, BRONZE_RECORDS,
            *(legacy_bronze(s) for s in SOURCES), OPS_BATCHES, OPS_PROGRESS]


def customer_rows(name: str, columns: list[str], ids: list[str]) -> Column | None:
    """The rows of table ``name`` (with ``columns``) that belong to one of ``ids``, or None: it holds none."""
    if name.startswith("bronze_") and name != BRONZE_RECORDS:
        source = SOURCES[name.removeprefix("bronze_")]
        if source.kind == "reference":
            return None
        return F.col("key").isin(ids) | F.trim(F.get_json_object("value", f"$.{source.key_column}")).isin(ids)
    if name in (QUARANTINE, BRONZE_RECORDS):
        key_col, value_col = ("raw_key", "raw_value") if name == QUARANTINE else ("key", "value")
        cond = F.col(key_col).isin(ids)
        for key in _KEY_FIELDS:
            cond = cond | F.coalesce(F.trim(F.get_json_object(value_col, f"$.{key}")).isin(ids), F.lit(False))
        return cond
    if "customer_id" in columns:
        return F.col("customer_id").isin(ids)
    return None


@dataclass
class ForgetResult:
    request_id: str
    rows_erased: dict[str, int] = field(default_factory=dict)
    exports: list[str] = field(default_factory=list)
    dashboard: str | None = None
    vacuumed: list[str] = field(default_factory=list)
    physically_gone_by: datetime | None = None
    dry_run: bool = False


def _table(spark: SparkSession, path: str):
    """The Delta table at ``path``, or None when there is none (one read of its log)."""
    from delta.tables import DeltaTable

    try:
        return DeltaTable.forPath(spark, path)
    except Exception as exc:  # noqa: BLE001 - py4j's AnalysisException
        if is_missing_table(exc):
            return None
        raise


def _parallel(fn, items: list) -> list:
    return in_threads(fn, items, PARALLEL_TABLES)


def _vacuum(spark: SparkSession, cfg: Config, names: list[str], retention_hours: int) -> list[str]:
    """VACUUM these tables (the missing ones skipped); returns the ones vacuumed."""
    def one(name: str) -> str | None:
        table = _table(spark, table_path(cfg.lake.root, name))
        if table is None:
            return None
        retry(lambda: table.vacuum(retention_hours), what=f"vacuum {name}")
        return name

    with short_vacuum_retention(spark, retention_hours):
        return [n for n in _parallel(one, names) if n]


def _erase(spark: SparkSession, path: str, table, cond: Column, tag: str) -> int:
    """Delete the rows (a DELETE that matches nothing commits nothing); returns how many went, from the commit's
    metrics (its ``userMetadata`` is ``tag``); purges them from the files too when the DELETE only marked them
    deleted (a table with deletion vectors: the same metrics say so)."""
    retry(lambda: table.delete(cond), what=f"forget in {path}")
    metrics = committed_metrics(table, tag, "DELETE", depth=5)
    n = int(metrics.get("numDeletedRows") or 0)
    if not n:
        return 0
    if any(int(metrics.get(f"numDeletionVectors{k}") or 0) for k in ("Added", "Updated")):
        location = path.replace("`", "``")
        retry(lambda: spark.sql(f"REORG TABLE delta.`{location}` APPLY (PURGE)"), what=f"purge {path}")
    return n


def _rewrite_exports(spark: SparkSession, cfg: Config, tables: list[str]) -> list[str]:
    from batch import export
    from batch.gold import PRODUCTS

    written = []
    for name in tables:
        if name not in PRODUCTS or not export.exported(cfg.gold.export_dir, name):
            continue
        df = spark.read.format("delta").load(table_path(cfg.lake.root, name))
        written += export.export_table(df, name, cfg.gold.export_dir, csv=cfg.gold.export_csv,
                                       parquet=cfg.gold.export_parquet, mask_pii=cfg.gold.mask_pii,
                                       partition_by=list(PRODUCTS[name].partition_by) or None)
    return written


def forget(cfg: Config, ids: list[str], *, reason: str = "", retention_hours: int | None = None,
           dry_run: bool = False, spark: SparkSession | None = None) -> ForgetResult:
    """Erase ``ids`` from the lake, its exports and the dashboard; audit the request; VACUUM (module doc)."""
    from lakehouse.spark import get_spark

    ids = list(dict.fromkeys(i.strip() for i in ids))
    if not ids or any(not i for i in ids):
        raise C360Error("give the id of at least one customer to forget (blank ids are not allowed)")
    retention = cfg.stream.vacuum_retention_hours if retention_hours is None else retention_hours
    if retention < 0:
        raise C360Error("--retention-hours must not be negative")
    spark = spark or get_spark(cfg, "c360-forget")
    result = ForgetResult(uuid.uuid4().hex, dry_run=dry_run)

    def one(name: str) -> tuple[str, int | None]:
        path = table_path(cfg.lake.root, name)
        table = _table(spark, path)
        cond = customer_rows(name, table.toDF().columns, ids) if table is not None else None
        if cond is None:
            return name, None
        n = table.toDF().where(cond).count() if dry_run else _erase(spark, path, table, cond, tag)
        if n:
            log.info("%s %d rows of %s", "would erase" if dry_run else "erased", n, name)
        return name, n

    tag = f"c360 forget {result.request_id}"  # every commit of this request carries it (DESCRIBE HISTORY)
    with commit_metadata(spark, tag):
        result.rows_erased = {name: n for name, n in _parallel(one, lake_tables()) if n is not None}
    touched = [name for name, n in result.rows_erased.items() if n]
    if dry_run:
        return result
    result.exports = _rewrite_exports(spark, cfg, touched)
    if touched and Path(cfg.dashboard.file).is_file():
        from batch import dashboard

        result.dashboard = str(dashboard.write(spark, cfg).resolve())
    now = datetime.now(timezone.utc)
    result.physically_gone_by = now + timedelta(hours=retention)
    audit = table_path(cfg.lake.root, AUDIT_TABLE)
    ensure_table(spark, audit, AUDIT_SCHEMA)
    row = (result.request_id, ids, now, getpass.getuser(), reason, result.rows_erased, result.exports, retention,
           result.physically_gone_by, None)
    retry(lambda: spark.createDataFrame([row], AUDIT_SCHEMA).write.format("delta").mode("append").save(audit),
          what=audit)
    vacuum_started = datetime.now(timezone.utc)
    result.vacuumed = _vacuum(spark, cfg, touched, retention)
    mark_vacuumed(spark, cfg, vacuum_started, request_id=result.request_id)
    return result


def vacuum_due(cfg: Config, spark: SparkSession | None = None) -> tuple[int, list[str]]:
    """``c360 forget --vacuum``: VACUUM every table with the retention, then mark the requests whose files are now
    gone. Returns (requests marked, tables vacuumed)."""
    from lakehouse.spark import get_spark

    spark = spark or get_spark(cfg, "c360-forget")
    started = datetime.now(timezone.utc)
    vacuumed = _vacuum(spark, cfg, lake_tables(), cfg.stream.vacuum_retention_hours)
    return mark_vacuumed(spark, cfg, started), vacuumed


def mark_vacuumed(spark: SparkSession, cfg: Config, vacuumed_at: datetime, request_id: str | None = None) -> int:
    """Mark the requests (all, or one) whose old files a VACUUM started at ``vacuumed_at`` removed: those whose
    ``physically_gone_by`` had passed by then (VACUUM with retention R at time t deletes the files unreferenced
    since before t - R)."""
    audit = _table(spark, table_path(cfg.lake.root, AUDIT_TABLE))
    if audit is None:
        return 0
    due = (F.col("vacuumed_at").isNull()
           & (F.col("physically_gone_by") <= F.lit(vacuumed_at).cast("timestamp")))
    if request_id is not None:
        due = due & (F.col("request_id") == request_id)
    n = audit.toDF().where(due).count()
    if n:
        retry(lambda: audit.update(due, {"vacuumed_at": F.lit(vacuumed_at).cast("timestamp")}), what=AUDIT_TABLE)
    return n
