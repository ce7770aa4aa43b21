"""The stream tables the derived queries write: ``stream_login_anomalies`` (+ the alerts topic) and
``stream_city_hour_logins``. Every write is idempotent per micro-batch (see ``lakehouse.delta``)."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from lakehouse.config import Config
from lakehouse.delta import append_idempotent, ensure_table, idempotent_txn, retry
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


def write_city_hour(cfg: Config, counts: DataFrame, batch_id: int) -> None:
    """Upsert the new counts of the windows this batch touched (update mode gives each window's full count)."""
    from delta.tables import DeltaTable

    spark = counts.sparkSession
    table = DeltaTable.forPath(spark, table_path(cfg.lake.root, CITY_HOUR_TABLE)).alias("t")
    merge = (table.merge(counts.alias("s"), "t.city = s.city AND t.window_start = s.window_start")
             .whenMatchedUpdate(condition="t.login_count <> s.login_count", set={"login_count": "s.login_count"})
             .whenNotMatchedInsertAll())
    with idempotent_txn(spark, f"{CITY_HOUR_QUERY}:table", batch_id):
        retry(merge.execute, what=CITY_HOUR_TABLE)
