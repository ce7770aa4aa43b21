"""The stream tables the derived queries write: ``stream_login_anomalies`` (+ the alerts topic) and
``stream_city_hour_logins``. Every write is idempotent per micro-batch (see ``lakehouse.delta``)."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from lakehouse.config import Config
from lakehouse.delta import append_idempotent, ensure_table, idempotent_txn, is_committed, retry
from lakehouse.kafka_security import spark_security
from lakehouse.tables import table_path
from streaming.anomalies import ANOMALY_SCHEMA, alert_records
from streaming.city_hour import CITY_HOUR_SCHEMA

log = logging.getLogger(__name__)

ANOMALY_QUERY = "login_anomalies"
CITY_HOUR_QUERY = "city_hour_logins"
ANOMALIES_TABLE = "stream_login_anomalies"
CITY_HOUR_TABLE = "stream_city_hour_logins"


def ensure_stream_tables(spark, lake_root: str) -> None:
    ensure_table(spark, table_path(lake_root, ANOMALIES_TABLE), ANOMALY_SCHEMA)
    ensure_table(spark, table_path(lake_root, CITY_HOUR_TABLE), CITY_HOUR_SCHEMA)


def write_anomalies(cfg: Config, anomalies: DataFrame, batch_id: int, new: bool = False) -> None:
    """Append a batch of anomalies (once per batch; ``new``: see :func:`append_idempotent`), then send them to the
    alerts topic.

    The table is exactly-once; the topic is at-least-once (a batch run again after a crash sends its alerts
    again, with the same ``alert_id``)."""
    rows = anomalies.persist()
    try:
        n = rows.count()
        if not n:
            return
        append_idempotent(rows, table_path(cfg.lake.root, ANOMALIES_TABLE), app_id=f"{ANOMALY_QUERY}:table",
                          version=batch_id, new=new)
        (alert_records(rows).write.format("kafka")
         .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
         .option("topic", cfg.kafka.topic(cfg.stream.alerts_topic))
         .options(**spark_security(cfg.kafka))
         .save())
        log.info("%s batch %d: %d anomalies", ANOMALY_QUERY, batch_id, n)
    finally:
        rows.unpersist()


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
