"""Alerts on arrival, settled at the watermark (streaming/alerts.py), on a real broker and a real Delta log: each
login and rule is alerted once; the in-order evaluation confirms, updates or retracts what went out on arrival,
and alerts what arrival could not see; a batch run again after a crash sends the same records again."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from bench.run import read_topic
from lakehouse.delta import ensure_table
from lakehouse.kafka_admin import ensure_topics
from lakehouse.lake_writes import OpenTables
from lakehouse.schemas import STREAM_ALERTS, STREAM_LOGIN_ANOMALIES
from lakehouse.tables import table_path
from streaming.alerts import ALERTS_TABLE, alert_id, publish_at_watermark, publish_on_arrival

pytestmark = pytest.mark.integration


def _anomalies(*rows) -> pa.Table:
    """(login_id, minute of 2024-05-01 10:mm, rule, severity) -> anomaly rows of customer C1."""
    schema = pa.schema([("customer_id", pa.string()), ("login_id", pa.string()),
                        ("login_datetime", pa.timestamp("us", "UTC")), ("gap_s", pa.float64()),
                        ("rule", pa.string()), ("severity", pa.string()), ("evidence", pa.string())])
    assert [f.name for f in schema] == STREAM_LOGIN_ANOMALIES.fieldNames()
    return pa.Table.from_pylist([
        {"customer_id": "C1", "login_id": lid, "login_datetime": datetime(2024, 5, 1, 10, mm, tzinfo=timezone.utc),
         "gap_s": 1.0, "rule": rule, "severity": sev, "evidence": json.dumps({"gap_s": 1.0})}
        for lid, mm, rule, sev in rows], schema=schema)


def test_arrival_then_watermark_alerts_once_and_settles_every_alert(spark, kafka, kafka_cfg):
    cfg = kafka_cfg
    ensure_table(spark, table_path(cfg.lake.root, ALERTS_TABLE), STREAM_ALERTS)
    ensure_topics(kafka.bootstrap, [cfg.kafka.topic(cfg.stream.alerts_topic)], partitions=2, retention_hours=1,
                  timeout_s=10)
    tables = OpenTables()
    # ingest batch 0: three anomalies visible on arrival
    sent = publish_on_arrival(cfg, tables, _anomalies(("L1", 1, "burst", "high"), ("L2", 2, "short_gap", "medium"),
                                                      ("L3", 3, "short_gap", "medium")), query="ingest", batch_id=0)
    # batch 1 finds L1's burst again (a later login's batch) and L4's; run twice (a crash before its checkpoint)
    again = [publish_on_arrival(cfg, tables, _anomalies(("L1", 1, "burst", "high"), ("L4", 50, "burst", "high")),
                                query="ingest", batch_id=1) for _ in range(2)]
    assert (sent, again) == (3, [1, 1])
    # the in-order evaluation, watermark at 10:30: L1 as sent, L2 high (its gaps' statistics), L3 not found (its
    # login came later than the watermark), L0 a reactivation; L4 (10:50) is not evaluated yet
    watermark_ms = int(datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc).timestamp() * 1000)
    final = _anomalies(("L1", 1, "burst", "high"), ("L2", 2, "short_gap", "high"), ("L0", 0, "reactivation", "medium"))
    counts = publish_at_watermark(cfg, tables, final, query="login_anomalies", batch_id=0, watermark_ms=watermark_ms)
    assert counts == {"alert": 1, "update": 1, "retraction": 1, "confirmation": 1}
    # the next batch of the in-order evaluation finds nothing new: nothing more is sent
    assert publish_at_watermark(cfg, tables, final.slice(0, 0), query="login_anomalies", batch_id=1,
                                watermark_ms=watermark_ms + 60_000) == dict.fromkeys(counts, 0)

    records = [v for v, _ in read_topic(kafka.bootstrap, cfg.kafka.topic(cfg.stream.alerts_topic))]
    got = sorted((r["login_id"], r["rule"], r["kind"], r["stage"], r["severity"]) for r in records)
    assert got == sorted([("L1", "burst", "alert", "arrival", "high"), ("L2", "short_gap", "alert", "arrival", "medium"),
                          ("L3", "short_gap", "alert", "arrival", "medium"), ("L4", "burst", "alert", "arrival", "high"),
                          ("L4", "burst", "alert", "arrival", "high"),  # batch 1 ran twice: at-least-once, same id
                          ("L2", "short_gap", "update", "watermark", "high"),
                          ("L3", "short_gap", "retraction", "watermark", "medium"),
                          ("L0", "reactivation", "alert", "watermark", "medium")])
    assert all(r["alert_id"] == alert_id(r["login_id"], r["rule"]) for r in records)
    log = tables.get(table_path(cfg.lake.root, ALERTS_TABLE)).to_pyarrow_table().to_pylist()
    assert sorted((r["login_id"], r["kind"], r["stage"]) for r in log) == sorted([
        ("L1", "alert", "arrival"), ("L2", "alert", "arrival"), ("L3", "alert", "arrival"), ("L4", "alert", "arrival"),
        ("L1", "confirmation", "watermark"), ("L2", "update", "watermark"), ("L3", "retraction", "watermark"),
        ("L0", "alert", "watermark")])
