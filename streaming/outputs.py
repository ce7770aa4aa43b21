"""The stream tables over the logins: ``stream_login_anomalies`` (+ the alerts topic and its log,
:mod:`streaming.alerts`) and ``stream_city_hour_logins``, written by the derived queries or, with the embedded
writer, by the ingest batch itself (:func:`write_login_views`). Every write is idempotent per micro-batch (see
``lakehouse.delta``, ``lakehouse.lake_writes``)."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from lakehouse.config import Config
from lakehouse.delta import append_idempotent, ensure_table, idempotent_txn, is_committed, retry
from lakehouse.lake_writes import OpenTables, merge_once
from lakehouse.schemas import STREAM_ALERTS
from lakehouse.tables import checkpoint_path, table_path
from streaming.alerts import ALERTS_TABLE, publish_at_watermark, publish_on_arrival
from streaming.anomalies import ANOMALY_SCHEMA, AnomalyRules
from streaming.city_hour import CITY_HOUR_SCHEMA

log = logging.getLogger(__name__)

ANOMALY_QUERY = "login_anomalies"
CITY_HOUR_QUERY = "city_hour_logins"
ANOMALIES_TABLE = "stream_login_anomalies"
CITY_HOUR_TABLE = "stream_city_hour_logins"


def ensure_stream_tables(spark, lake_root: str) -> None:
    ensure_table(spark, table_path(lake_root, ANOMALIES_TABLE), ANOMALY_SCHEMA)
    ensure_table(spark, table_path(lake_root, CITY_HOUR_TABLE), CITY_HOUR_SCHEMA)
    ensure_table(spark, table_path(lake_root, ALERTS_TABLE), STREAM_ALERTS)


def write_anomalies(cfg: Config, anomalies: DataFrame, batch_id: int, new: bool = False,
                    tables: OpenTables | None = None) -> None:
    """Append a batch of anomalies (once per batch; ``new``: see :func:`append_idempotent`), then settle them
    with what was sent on arrival (:func:`streaming.alerts.publish_at_watermark`: alerts, updates, retractions).

    The table and the alerts log are exactly-once; the topic is at-least-once (a batch run again after a crash
    sends its records again, with the same ``alert_id``)."""
    rows = anomalies.persist()
    try:
        found = rows.toArrow()
        if found.num_rows:
            append_idempotent(rows, table_path(cfg.lake.root, ANOMALIES_TABLE), app_id=f"{ANOMALY_QUERY}:table",
                              version=batch_id, new=new)
        watermark = batch_watermark_ms(checkpoint_path(cfg.lake.checkpoint_root, ANOMALY_QUERY), batch_id)
        counts = publish_at_watermark(cfg, tables or OpenTables(), found, query=ANOMALY_QUERY, batch_id=batch_id,
                                      watermark_ms=watermark)
        if any(counts.values()):
            log.info("%s batch %d: %d anomalies; alerts: %s", ANOMALY_QUERY, batch_id, found.num_rows, counts)
    finally:
        rows.unpersist()


def batch_watermark_ms(checkpoint: str, batch_id: int) -> int | None:
    """The event-time watermark a micro-batch of a query ran with (its entry in the checkpoint's offset log;
    None when the log cannot be read here, e.g. on an object store)."""
    import json
    from pathlib import Path

    entry = Path(checkpoint, "offsets", str(batch_id))
    if "://" in checkpoint or not entry.exists():
        return None
    lines = entry.read_text().splitlines()
    return int(json.loads(lines[1]).get("batchWatermarkMs", 0)) if len(lines) > 1 else None


def write_login_views(cfg: Config, tables: OpenTables, worker, query: str, batch_id: int, logins) -> None:
    """With the embedded writer, once silver holds an ingest batch: recount the city x hour windows its logins
    (``logins``, Arrow) fall in and upsert them, and send the anomalies they make visible
    (:func:`streaming.alerts.publish_on_arrival`). The counts and anomalies come from silver, so a batch run again
    after a crash finds the same ones; both writes are once per batch."""
    rules = AnomalyRules.of(cfg.stream)
    arrived = logins.select(["customer_id", "login_id", "login_datetime", "city"])
    silver = silver_logins_near(tables, table_path(cfg.lake.root, "silver_logins"), arrived, rules.burst_window_s)
    views = worker.login_views(rules, arrived, silver)
    counts = views["city_hour"]
    if counts.num_rows:
        merge_once(tables, table_path(cfg.lake.root, CITY_HOUR_TABLE), counts,
                   predicate="t.city = s.city AND t.window_start = s.window_start", app_id=f"{query}:city_hour",
                   version=batch_id, update_when="t.login_count <> s.login_count")
    sent = publish_on_arrival(cfg, tables, views["anomalies"], query=query, batch_id=batch_id)
    if sent:
        log.info("%s batch %d: %d alerts sent on arrival", query, batch_id, sent)


def silver_logins_near(tables: OpenTables, path: str, arrived, window_s: int):
    """Silver's logins on the days the logins of ``arrived`` fall on, a day (or more) either side: every login in
    their hour windows and in the burst window around each (the views filter further). Read with delta-rs from the
    table the batch just merged into, its days' partitions only (``login_date``): a batch's logins span a few
    days, silver years."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc

    margin = 1 + window_s // 86400  # days either side: the burst window, and a zone's date against UTC's
    days = {d + dt.timedelta(days=k) for d in pc.unique(pc.cast(arrived["login_datetime"], pa.date32())).to_pylist()
            if d is not None for k in range(-margin, margin + 1)}
    dataset = tables.get(path).to_pyarrow_dataset()
    return dataset.to_table(columns=["customer_id", "login_id", "login_datetime", "city"],
                            filter=pc.field("login_date").isin(pa.array(sorted(days), pa.date32())))


def write_city_hour(cfg: Config, counts: DataFrame, batch_id: int, new: bool = False) -> None:
    """Upsert the new counts of the windows this batch touched (update mode gives each window's full count), once
    per batch (``new``: see :func:`append_idempotent`).

    A batch merged by a run that was killed before its checkpoint recorded it runs again on restart: its plan
    still runs, its rows are dropped (``noop``), so that the aggregation's state stores commit the batch. Spark
    4.1 fails a ``foreachBatch`` that leaves a stateful batch unread (SPARK-52008), and Delta's transaction id
    skips a repeated MERGE without reading its source: found by the kill test once ingest got fast enough for a
    kill to land between the two."""
    from delta.tables import DeltaTable

    spark = counts.sparkSession
    path = table_path(cfg.lake.root, CITY_HOUR_TABLE)
    app_id = f"{CITY_HOUR_QUERY}:table"
    if not new and is_committed(spark, path, app_id, batch_id):
        log.info("%s batch %d is already merged: its state is rebuilt, nothing written", CITY_HOUR_QUERY, batch_id)
        counts.write.format("noop").mode("overwrite").save()
        return
    table = DeltaTable.forPath(spark, path).alias("t")
    merge = (table.merge(counts.alias("s"), "t.city = s.city AND t.window_start = s.window_start")
             .whenMatchedUpdate(condition="t.login_count <> s.login_count", set={"login_count": "s.login_count"})
             .whenNotMatchedInsertAll())
    with idempotent_txn(spark, app_id, batch_id):
        retry(merge.execute, what=CITY_HOUR_TABLE)
