"""`c360 stream` over every source on real Kafka, Spark and Delta: silver for all, anomalies against the
generator's ground truth, city x hour counts, the alerts topic, and exactly-once under kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.chaos import OPS_TOTALS, comparable
from bench.run import read_topic
from c360 import cli
from lakehouse import scratch
from lakehouse.schemas import SILVER_SPECS
from lakehouse.tables import GENERATED, SOURCES
from streaming.anomalies import RULES
from streaming.ops import stream_table_names
from tests.integration.test_pipeline import _args, _bronze, _env, _table

pytestmark = pytest.mark.integration


def test_every_source_reaches_silver_and_every_record_is_accounted_for(spark, streamed):
    cfg, data = streamed
    truth = json.loads((data / "_labels" / "summary.json").read_text())
    for name in stream_table_names(list(SOURCES)):
        assert (Path(cfg.lake.root) / name / "_delta_log").is_dir(), name
    for name in GENERATED:
        assert _bronze(spark, cfg, name).count() > 0, name
    for table in {SILVER_SPECS[name].table for name in GENERATED}:
        assert _table(spark, cfg, table).count() > 0, table
    channels = {r.channel: r["count"] for r in _table(spark, cfg, "silver_transactions").groupBy("channel")
                .count().collect()}
    assert set(channels) == {"Online", "In-Store"}
    ops = {r.source: r for r in _table(spark, cfg, "ops_stream_batches").groupBy("source").sum().collect()}
    assert set(ops) == set(GENERATED)
    for name, r in ops.items():
        assert r["sum(read_rows)"] == _bronze(spark, cfg, name).count()
        assert r["sum(read_rows)"] == (r["sum(quarantined_rows)"] + r["sum(duplicate_rows)"]
                                       + r["sum(inserted_rows)"] + r["sum(updated_rows)"]), name
    q = _table(spark, cfg, "silver_quarantine")
    assert q.where("source = 'orders' AND reason = 'negative_total_amount'").count() \
        >= truth["truth"]["orders_negative_amount"]
    quarantined = {r.source: r["count"] for r in q.groupBy("source").count().collect()}
    for name, r in ops.items():
        assert r["sum(quarantined_rows)"] == quarantined.get(name, 0)
    # silver holds each record once
    silver_orders = _table(spark, cfg, "silver_orders")
    assert silver_orders.count() == silver_orders.select("order_id").distinct().count()


def test_login_anomalies_match_the_ground_truth(spark, streamed):
    cfg, data = streamed
    labels = pd.read_csv(data / "_labels" / "login_anomalies.csv")
    found = _table(spark, cfg, "stream_login_anomalies")
    # the watermark holds back the last minutes of logins; everything up to it is evaluated
    horizon = _table(spark, cfg, "silver_logins").agg({"login_datetime": "max"}).first()[0] - pd.Timedelta(hours=1)
    labels = labels[pd.to_datetime(labels.login_datetime) <= horizon]
    got = found.where(found.login_datetime <= horizon).select("login_id", "rule").toPandas()
    for rule in RULES:
        truth, hits = set(labels[labels.rule == rule].login_id), set(got[got.rule == rule].login_id)
        assert truth, rule
        precision, recall = len(truth & hits) / max(len(hits), 1), len(truth & hits) / len(truth)
        assert precision >= 0.95 and recall >= 0.95, (rule, precision, recall, len(truth), len(hits))
    sample = found.where("rule = 'reactivation'").first()
    assert sample.gap_s >= 90 * 86400 and json.loads(sample.evidence)["gap_s"] == sample.gap_s


def test_alerts_topic_carries_every_anomaly_once_most_of_them_on_arrival(spark, streamed, kafka):
    cfg, _ = streamed
    records = [v for v, _ in read_topic(kafka.bootstrap, cfg.kafka.topic(cfg.stream.alerts_topic))]
    table = {(r.login_id, r.rule): r for r in _table(spark, cfg, "stream_login_anomalies").collect()}
    alerts = [a for a in records if a["kind"] == "alert"]
    assert len({a["alert_id"] for a in alerts}) == len(alerts)  # one alert per login and rule
    by_key = {(a["login_id"], a["rule"]): a for a in alerts}
    assert set(table) <= set(by_key)  # every anomaly the in-order evaluation found was alerted
    retracted = {a["alert_id"] for a in records if a["kind"] == "retraction"}
    # an alert the in-order evaluation has not confirmed is retracted, or its login is past the watermark yet
    horizon = max(r.login_datetime for r in table.values())
    for key, a in by_key.items():
        if key not in table and a["alert_id"] not in retracted:
            assert pd.Timestamp(a["login_datetime"]).tz_localize(None) > horizon, a
    # the bots' bursts and short gaps went out as their logins arrived, before the watermark reached them
    log = _table(spark, cfg, "stream_alerts")
    early = {(r.login_id, r.rule) for r in log.where("stage = 'arrival' AND kind = 'alert'").collect()}
    confirmed = [k for k in table if table[k].rule in ("burst", "short_gap")]
    assert confirmed and sum(k in early for k in confirmed) >= 0.95 * len(confirmed)
    assert not [k for k in table if table[k].rule == "reactivation" and k in early]  # waits for the watermark
    updates = {a["alert_id"]: a["severity"] for a in records if a["kind"] == "update"}
    for key, r in table.items():  # the severity a consumer ends with is the table's
        assert updates.get(by_key[key]["alert_id"], by_key[key]["severity"]) == r.severity, key


def test_city_hour_counts_equal_the_silver_logins_per_city_and_hour(spark, streamed):
    cfg, _ = streamed
    counts = _table(spark, cfg, "stream_city_hour_logins")
    expected = (_table(spark, cfg, "silver_logins").selectExpr("coalesce(city, 'Unknown') AS city",
                                                               "date_trunc('hour', login_datetime) AS window_start")
                .groupBy("city", "window_start").count())
    got = {(r.city, r.window_start): r.login_count for r in counts.collect()}
    assert got == {(r.city, r.window_start): r["count"] for r in expected.collect()}
    assert counts.where("hour <> hour(window_start)").count() == 0


def _stream_cmd(cfg, *extra):
    return [sys.executable, "-m", "c360", "stream", *_args(cfg), "--sources", "customers,logins,orders", *extra]


def _child_env(cfg):
    env = dict(os.environ)
    for section, key in (("lake", "state_dir"), ("kafka", "topic_prefix"), ("kafka", "partitions"),
                         ("spark", "shuffle_partitions")):
        env[f"C360_{section.upper()}_{key.upper()}"] = str(getattr(getattr(cfg, section), key))
    env["C360_STREAM_TRIGGER_INTERVAL"] = env["C360_STREAM_DERIVED_TRIGGER_INTERVAL"] = "1 second"
    env["C360_STREAM_MAX_OFFSETS_PER_TRIGGER"] = "700"  # many small batches: kills land mid-stream
    return env


def _in_process(cfg, argv) -> int:
    """`c360 ARGV` in this process (its shared Spark session) with the child processes' settings."""
    mp = pytest.MonkeyPatch()
    _env(mp, cfg)
    for key, value in _child_env(cfg).items():
        if key.startswith("C360_"):
            mp.setenv(key, value)
    try:
        return cli.main(argv)
    finally:
        mp.undo()


def _snapshot(spark, cfg, names):
    # both runs cut the same batches (all records are in Kafka before either starts): updates count the same too
    return {name: sorted((tuple(r) for r in comparable(_table(spark, cfg, name), name,
                                                        (*OPS_TOTALS, "updated_rows")).collect()), key=repr)
            for name in names}


def test_kill_minus_9_at_any_moment_then_restart_gives_the_uninterrupted_tables(spark, kafka, tmp_path):
    from tests.conftest import make_config

    # One partition per topic: Kafka order is then the files' event-time order (late by at most 30 minutes), so
    # no login falls behind the watermark however the batches are cut. (Across partitions, a fast replay of
    # history skews event time between partitions, and Spark drops rows behind the watermark by design.)
    base = make_config(tmp_path / "ref", kafka.bootstrap).replace("kafka", topic_prefix=f"k{os.getpid()}.",
                                                                  partitions=1)
    data = tmp_path / "data"
    assert cli.main(["generate", "--scale", "120", "--seed", "8", "--out", str(data)]) == 0
    # the replay and the reference (one uninterrupted run) in this process, the killed runs in their own
    assert _in_process(base, ["replay", "--input", str(data), "--sources", "customers,logins,orders",
                              "--no-progress", *_args(base)]) == 0
    assert _in_process(base, _stream_cmd(base, "--available-now")[3:]) == 0

    killed = make_config(tmp_path / "killed", kafka.bootstrap).replace("kafka", topic_prefix=base.kafka.topic_prefix,
                                                                       partitions=1)
    scratch_root = tmp_path / "scratch"  # the killed runs' temporary files (spark.scratch_dir)
    env = dict(_child_env(killed), C360_SPARK_SCRATCH_DIR=str(scratch_root))
    kills, pids, left = 0, [], []
    for delay in (6, 22):  # during start-up, then mid-stream (`make chaos` kills 20 times at random moments)
        proc = subprocess.Popen(_stream_cmd(killed), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver JVM and its Python workers, no goodbye
            kills += 1
        proc.wait()
        pids.append(proc.pid)
        left.append([p.name for p in scratch_root.iterdir() if p.is_dir()])
    assert _in_process(killed, _stream_cmd(killed, "--available-now")[3:]) == 0  # the restart that drains Kafka
    assert kills == 2
    # Each killed run had a scratch folder of its own (named by its pid), where Spark's files stayed when it was
    # killed; the second run's start removed the first's, and the next start removes the second's
    first, (second,) = left
    assert len(first) <= 1 and all(n.startswith(f"{pids[0]}-") for n in first)  # none if killed before claiming
    assert second.startswith(f"{pids[1]}-")
    assert list((scratch_root / second).glob("spark-*")) and list((scratch_root / second).glob("blockmgr-*"))
    assert scratch.sweep(scratch_root) == [scratch_root / second]
    assert [p.name for p in scratch_root.iterdir()] == [".lock"]
    names = ["bronze_records", "silver_customers", "silver_logins",
             "silver_orders", "silver_quarantine", "ops_stream_batches", "stream_login_anomalies",
             "stream_city_hour_logins"]
    want, got = _snapshot(spark, base, names), _snapshot(spark, killed, names)
    for name in names:
        assert got[name] == want[name], name
    assert len(want["silver_logins"]) > 1000 and want["stream_login_anomalies"]
    # the alerts log: the same alerts, confirmations and updates (when they were logged aside)
    alerts = [{(r.alert_id, r.kind) for r in _table(spark, c, "stream_alerts").collect()} for c in (base, killed)]
    assert alerts[0] == alerts[1] and any(kind == "alert" for _, kind in alerts[0])


def test_the_embedded_writer_and_sparks_write_the_same_tables(spark, streamed, tmp_path, monkeypatch):
    """The shared lake was streamed with the embedded writer (delta-rs commits, the local default); Spark's writer
    streams the same Kafka records into a lake of its own. Every table the stream writes is compared whole: its
    columns and types, and every row (without the columns that say when c360 did something)."""
    from tests.conftest import make_config

    cfg, _ = streamed
    other = make_config(tmp_path, cfg.kafka.bootstrap_servers).replace("kafka", topic_prefix=cfg.kafka.topic_prefix)
    _env(monkeypatch, other)
    monkeypatch.setenv("C360_STREAM_WRITER", "spark")
    assert cli.main(["stream", "--available-now", *_args(other)]) == 0
    # the alerts log differs by design: Spark's writer sends no alert on arrival (every alert at the watermark)
    names = [n for n in stream_table_names(list(SOURCES)) if n != "stream_alerts"]
    for name in names:
        mine, theirs = _table(spark, cfg, name), _table(spark, other, name)
        assert mine.schema == theirs.schema, name
    want, got = _snapshot(spark, other, names), _snapshot(spark, cfg, names)
    for name in names:
        assert got[name] == want[name], name
    assert len(want["silver_logins"]) > 1000 and want["stream_login_anomalies"] and want["bronze_records"]
