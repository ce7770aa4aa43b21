"""The measuring code of `make chaos`, the soak and the gold peers: what it counts must be right for its figures to
mean anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from bench.chaos import _batches, _moment, comparable
from bench.gold_bench import _jsonable, duckdb_peer, spark_sql_peer
from bench.soak import (
    _outside,
    _same_address_space,
    check_reads,
    committed_offsets,
    read_all,
    read_once,
    tree_memory,
    trend_ms_per_min,
)


def _checkpoint(tmp_path, offsets: dict[int, dict], commits: list[int]):
    for batch, ends in offsets.items():
        (tmp_path / "offsets").mkdir(exist_ok=True)
        (tmp_path / "offsets" / str(batch)).write_text("v1\n{\"batchWatermarkMs\":0}\n" + json.dumps(ends))
    (tmp_path / "commits").mkdir(exist_ok=True)
    for batch in commits:
        (tmp_path / "commits" / str(batch)).write_text("v1\n{}")
    (tmp_path / "offsets" / ".3.tmp").write_text("a kill's leftover")  # not a batch
    return tmp_path


def test_a_kill_moment_and_the_committed_offsets_come_from_the_checkpoint(tmp_path):
    ck = _checkpoint(tmp_path, {0: {"t.a": {"0": 5}}, 1: {"t.a": {"0": 9, "1": 4}, "t.b": {"0": 2}},
                                2: {"t.a": {"0": 20}}}, commits=[0, 1])
    assert _batches(ck) == (2, 1)
    assert committed_offsets(ck) == 9 + 4 + 2  # batch 2 is planned, not committed
    assert _moment((2, 1), (2, 1)) == "start_up_or_recovery"
    assert _moment((1, 1), (2, 1)) == "mid_batch"
    assert _moment((2, 1), (3, 3)) == "between_batches"
    assert _batches(tmp_path / "none") == (-1, -1) and committed_offsets(tmp_path / "none") == 0


def test_comparable_drops_when_columns_and_sums_the_counters_per_source(spark):
    ops = spark.createDataFrame(
        [("logins", 0, 10, 1, 7, 2, 0, "2026-01-01"), ("logins", 1, 5, 0, 3, 2, 0, "2026-01-02"),
         ("orders", 0, 4, 0, 4, 0, 1, "2026-01-01")],
        "source string, batch_id int, read_rows int, quarantined_rows int, inserted_rows int, updated_rows int, "
        "rescued_rows int, processed_at string")
    got = {tuple(r) for r in comparable(ops, "ops_stream_batches").collect()}
    assert got == {("logins", 15, 1, 10, 0), ("orders", 4, 0, 4, 1)}  # updated_rows depends on batch cuts: left out
    bronze = spark.createDataFrame([("k", 1, "2026-01-01 10:00:00")], "key string, offset int, _ingestion_timestamp string")
    assert comparable(bronze, "bronze_logins").columns == ["key", "offset"]


def _children(pid: int) -> list[int]:
    return [int(t) for t in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_memory_of_a_process_tree_and_the_batch_trend():
    # a child that forks a grandchild in a process group of its own (as PySpark's worker daemon does)
    code = ("import os, time\nif os.fork() == 0:\n    os.setpgid(0, 0)\n    time.sleep(30)\n    os._exit(0)\n"
            "time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1)
        got = tree_memory(child.pid)
        shared = _same_address_space(os.getpid(), os.getpid()), _same_address_space(os.getpid(), child.pid)
    finally:
        os.killpg(next(p for p in _children(child.pid)), 9)
        child.kill()
        child.wait()
    assert got["python_processes"] == 2 and got["jvm_rss_gib"] == 0
    assert 0.002 < got["rss_gib"] == got["python_rss_gib"] < 1
    assert 0 < got["pss_gib"] < got["rss_gib"]  # the forked pair shares pages: PSS splits them
    assert got["shared_address_spaces"] == 0 and got["other_rss_gib"] == 0  # fork: copies, not one space
    assert shared == (True, False)
    assert tree_memory(2**22 + 7) == {"rss_gib": 0.0, "pss_gib": 0.0, "jvm_rss_gib": 0.0, "python_processes": 0,
                                      "python_rss_gib": 0.0, "other_rss_gib": 0.0, "shared_address_spaces": 0}
    assert abs(trend_ms_per_min([(0, 1000), (1, 1500), (2, 2000)]) - 500) < 1e-6
    assert trend_ms_per_min([(0, 1000)]) == 0.0


def test_the_soaks_lag_outside_the_gold_runs_leaves_out_each_run_and_the_30_s_after_it():
    import pandas as pd

    at = pd.Timestamp("2026-12-07 10:00:00")
    rows = pd.DataFrame({"produced": [at + pd.Timedelta(seconds=s) for s in (0, 60, 100, 126, 140, 300)],
                         "latency_s": [2.0, 40.0, 35.0, 20.0, 3.0, 4.0]})
    # a gold run from 50 s to 95 s: the rows produced at 60 and 100 s (within 30 s after it) are left out; 126 s is
    # past 95 + 30 and counts
    assert _outside(rows, [(at + pd.Timedelta(seconds=50), at + pd.Timedelta(seconds=95))]) == 20.0
    assert _outside(rows, []) == 40.0
    assert _outside(rows, [(at - pd.Timedelta(seconds=1), at + pd.Timedelta(seconds=400))]) is None


def test_a_read_is_checked_against_the_version_it_saw(spark, tmp_path):
    lake = tmp_path / "lake"
    table = lake / "silver_orders"
    spark.createDataFrame([("O1", 10.0, {"a": 1}), ("O2", 5.0, None)], "order_id string, amount double, m map<string,int>") \
        .write.format("delta").save(str(table))
    first = {"table": "silver_orders", **read_once(spark, table, ("order_id",))}
    assert (first["rows"], first["keys"], first["version"]) == (2, 2, 0)
    spark.sql(f"UPDATE delta.`{table}` SET amount = 11.0 WHERE order_id = 'O1'")  # same rows and keys, new content
    second = {"table": "silver_orders", **read_once(spark, table, ("order_id",))}
    assert second["version"] == 1 and second["checksum"] != first["checksum"]
    spark.createDataFrame([("O1", 12.0, None)], "order_id string, amount double, m map<string,int>") \
        .write.format("delta").mode("append").save(str(table))  # version 2 holds O1 twice

    mixed = {**second, "version": 0}  # version 1's answer claimed for version 0: a mix
    doubled = {"table": "silver_orders", **read_once(spark, table, ("order_id",))}
    failed = {"table": "silver_orders", "error": "FileNotFoundException"}
    unknown = {**first, "version": None, "checksum": "0"}  # a commit landed meanwhile: only its keys are checked
    assert check_reads(spark, lake, [first, second, mixed, doubled, failed, unknown]) == {
        "reads": 6, "versions_checked": 3, "failed": 1, "duplicate_keys": 1, "not_a_committed_version": 1}


def test_a_table_before_its_first_commit_is_not_read(spark, tmp_path):
    lake = tmp_path / "lake"
    spark.createDataFrame([("C1",)], "customer_id string").write.format("delta").save(str(lake / "silver_customers"))
    (lake / "gold_customer_360" / "_delta_log").mkdir(parents=True)  # gold is writing its first version
    reads: list[dict] = []
    read_all(spark, lake, reads)
    assert [(r["table"], r.get("rows"), "error" in r) for r in reads] == [("silver_customers", 1, False)]


def test_a_rows_latency_runs_from_its_production_to_the_commit_that_made_it_visible(spark, tmp_path):
    import time

    import pandas as pd

    from bench.run import latency_percentiles, silver_latencies

    path = str(tmp_path / "lake" / "silver_logins")  # the other silver tables do not exist: skipped
    for produced_ago in (10, 20):  # two commits, 2 s apart: a row matched to the later commit would be 2 s late
        spark.range(2).selectExpr("current_timestamp() AS _updated_at",
                                  f"current_timestamp() - INTERVAL {produced_ago} SECONDS AS _kafka_timestamp") \
            .write.format("delta").mode("append").save(path)
        time.sleep(2)
    got = silver_latencies(spark, tmp_path / "lake").sort_values("latency_s")
    assert len(got) == 4
    # logins are events: none among the entities' latencies
    assert len(silver_latencies(spark, tmp_path / "lake", ("event",))) == 4
    assert silver_latencies(spark, tmp_path / "lake", ("entity", "reference")).empty
    # each row is visible from its own commit (not the other one, 2 s away), whatever a commit took here
    from delta.tables import DeltaTable

    commits = {r.version: r.timestamp for r in DeltaTable.forPath(spark, path).history().collect()}
    rows = spark.read.format("delta").load(path).collect()
    want = sorted(((commits[0] if r._updated_at <= commits[0] else commits[1]) - r._kafka_timestamp).total_seconds()
                  for r in rows)
    assert got.latency_s.tolist() == pytest.approx(want)
    assert got.latency_s.iloc[:2].between(10, 19).all() and got.latency_s.iloc[2:].between(20, 29).all()

    frame = pd.DataFrame({"produced": pd.to_datetime(["2026-01-01 00:00:00", "2026-01-01 00:01:00",
                                                      "2026-01-01 00:02:00", "2026-01-01 00:03:00"]),
                          "latency_s": [100.0, 4.0, 2.0, 6.0]})
    window = latency_percentiles(frame, since=pd.Timestamp("2026-01-01 00:01:00"),
                                 until=pd.Timestamp("2026-01-01 00:03:00"))  # the warm-up's row is left out
    assert window == {"rows": 2, "p50_s": 3.0, "p95_s": 3.9}
    assert latency_percentiles(frame)["rows"] == 4
    assert latency_percentiles(frame, since=pd.Timestamp("2027-01-01")) == {"rows": 0, "p50_s": None, "p95_s": None}


def test_the_load_capacity_counts_the_batches_of_the_load_after_its_first():
    import pandas as pd

    from bench.run import load_capacity

    at = pd.Timestamp("2026-01-01 00:00:00")
    batches = pd.DataFrame({
        "timestamp": [at - pd.Timedelta(seconds=30), at + pd.Timedelta(seconds=1), at + pd.Timedelta(seconds=40),
                      at + pd.Timedelta(seconds=140), at + pd.Timedelta(seconds=300), at + pd.Timedelta(seconds=700)],
        "batch_duration_ms": [2_000, 39_000, 100_000, 160_000, 90_000, 5_000],
        "input_rows": [0, 5_000, 400_000, 800_000, 450_000, 9],
    })
    # the load ran 10 minutes: the batch before it, its first one and the one after it are left out
    got = load_capacity(batches, at, at + pd.Timedelta(minutes=10))
    assert got == {"batches": 3, "median_batch_s": 100.0, "median_batch_records": 450_000,
                   "events_per_s": round(1_650_000 / 350)}  # 4,714/s: less than a 5,000/s load
    assert load_capacity(batches, at + pd.Timedelta(hours=1), at + pd.Timedelta(hours=2)) == \
        {"batches": 0, "median_batch_s": None, "median_batch_records": None, "events_per_s": None}


def test_the_spark_sql_run_of_the_gold_peer_gives_duckdbs_answers(spark, tmp_path):
    """The Spark SQL figure times the very work DuckDB does: same segments, cohort matrix and CLV summary."""
    lake = tmp_path / "lake"
    spark.createDataFrame([
        ("C1", "100.00", "2024-01-10 10:00:00", None), ("C1", "50.00", "2024-01-10 15:00:00", "Completed"),
        ("C1", "30.00", "2024-03-05 12:00:00", None), ("C1", "999.00", "2024-02-01 12:00:00", "Cancelled"),
        ("C2", "10.00", "2024-02-15 12:00:00", None),
        ("C3", "40.00", "2024-01-31 12:00:00", None), ("C3", "60.00", "2024-02-01 12:00:00", None),
    ], "customer_id string, amount string, at string, status string").selectExpr(
        "customer_id", "CAST(amount AS DECIMAL(12,2)) AS amount",
        "CAST(at AS TIMESTAMP) AS transaction_datetime", "status",
    ).write.format("delta").save(str(lake / "silver_transactions"))
    spark.createDataFrame([("C1", 20.0)], "customer_id string, refund_amount double").selectExpr(
        "customer_id", "CAST(refund_amount AS DECIMAL(12,2)) AS refund_amount",
    ).write.format("delta").save(str(lake / "silver_refunds"))

    _, duck = duckdb_peer(lake, tmp_path / "duck")
    _, ours = spark_sql_peer(spark, lake, tmp_path / "spark")
    assert _jsonable(ours) == _jsonable(duck)
    assert sum(ours["segments"].values()) == ours["summary_rows"] == 3
    assert ours["cohorts"] == [("2024-01-01", 0, 2), ("2024-01-01", 1, 1), ("2024-01-01", 2, 1),
                               ("2024-02-01", 0, 1)]
    c1 = spark.read.parquet(str(tmp_path / "spark" / "clv_summary")).where("customer_id = 'C1'").first()
    # two purchase days (Jan 10: 150, Mar 5: 30; the cancelled one is no purchase), end = the last purchase day
    assert (c1.frequency, c1.recency, c1.T, c1.monetary) == (1, 55 / 7, 55 / 7, 30.0)
    rfm = {r.customer_id: (r.recency_days, r.frequency, float(r.monetary))
           for r in spark.read.parquet(str(tmp_path / "spark" / "rfm")).collect()}
    assert rfm["C1"] == ((date(2025, 1, 1) - date(2024, 3, 5)).days, 3, 160.0)


def test_alert_latencies_per_stage_from_a_real_topic_also_when_a_stage_sent_nothing(spark, kafka, tmp_path):
    import json
    from datetime import datetime

    from confluent_kafka import Producer

    from bench.run import alert_latencies
    from lakehouse.kafka_admin import ensure_topics

    topic = f"alerts{tmp_path.name}"
    ensure_topics(kafka.bootstrap, [topic], partitions=1, retention_hours=1, timeout_s=10)
    produced = datetime(2026, 1, 1, 10, 0, 0)
    spark.createDataFrame([("L1", produced)], "login_id string, _kafka_timestamp timestamp").write.format(
        "delta").save(str(tmp_path / "lake" / "silver_logins"))
    sent_ms = int((produced - datetime(1970, 1, 1)).total_seconds() * 1000) + 2500  # 2.5 s after its login
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, value=json.dumps({"login_id": "L1", "kind": "alert", "stage": "arrival"}), timestamp=sent_ms)
    producer.flush(10)
    arrival, kinds = alert_latencies(spark, kafka.bootstrap, topic, tmp_path / "lake", "arrival")
    assert arrival.latency_s.tolist() == [2.5] and kinds == {"alert_arrival": 1}
    watermark, _ = alert_latencies(spark, kafka.bootstrap, topic, tmp_path / "lake", "watermark")
    assert watermark.empty


def test_the_soaks_lag_by_minute_is_each_minutes_peak_from_the_first_row():
    import pandas as pd

    from bench.soak import lag_by_minute

    at = pd.Timestamp("2026-12-07 10:00:30")
    rows = pd.DataFrame({"produced": [at + pd.Timedelta(seconds=s) for s in (0, 59, 60, 130, 179)],
                         "latency_s": [2.0, 7.5, 40.0, 3.0, 9.25]})
    # minute 0: 0-59 s after the first row; minute 1: 60-119 s (none at 120 s... would be minute 2)
    assert lag_by_minute(rows) == {"0": 7.5, "1": 40.0, "2": 9.2}
    assert lag_by_minute(rows.iloc[:0]) == {}


def test_the_soaks_log_summary_gives_each_steps_spread_the_slowest_batches_and_the_compactions():
    from bench.soak import stream_log_summary

    log = "\n".join([
        "21:30:01 INFO streaming.ingest: ingest batch 7 timings: read=0.5s parse=2.0s bronze=0.5s silver=1.0s",
        "21:30:05 INFO lakehouse.lake_writes: compacted /lake/bronze_records in 12.70s",
        "21:30:09 INFO streaming.ingest: ingest batch 8 timings: read=0.25s parse=1.0s bronze=13.0s silver=1.5s",
        "21:30:10 WARNING lakehouse.lake_writes: compaction of /lake/silver_logins failed: x",
        "21:30:12 INFO lakehouse.lake_writes: compacted /lake/bronze_records in 0.30s",
        "21:30:13 INFO streaming.ingest: ingest batch 9 timings: read=0.5s parse=3.0s bronze=0.25s silver=0.5s",
        "21:30:14 INFO lakehouse.lake_writes: compacted /lake/silver_logins in 1.00s",
        "21:30:15 INFO streaming.ops: compacted /lake/silver_logins in 2.50s in the background",
    ])
    got = stream_log_summary(log, slowest=2)
    assert got["batches"] == 3
    # numpy's percentiles of three values (linear): p50 the middle one, p95 = a + 0.9 * (b - a) of the top two
    assert got["steps_s"]["parse"] == {"p50": 2.0, "p95": 2.9, "max": 3.0}
    assert got["steps_s"]["bronze"] == {"p50": 0.5, "p95": 11.75, "max": 13.0}
    assert [(b["batch"], b["ended"], b["total_s"]) for b in got["slowest_batches"]] == [
        (8, "21:30:09", 15.75), (9, "21:30:13", 4.25)]
    assert got["compactions"] == {"bronze_records": {"count": 2, "seconds_total": 13.0, "seconds_max": 12.7},
                                  "silver_logins": {"count": 1, "seconds_total": 1.0, "seconds_max": 1.0},
                                  "silver_logins (background)": {"count": 1, "seconds_total": 2.5,
                                                                 "seconds_max": 2.5}}
