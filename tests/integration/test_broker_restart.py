"""The Kafka broker restarted in the middle of a replay and a stream: the producer retries without loss or
duplicates, the running stream resumes by itself, and every record ends in bronze once. Then the broker stays away
longer than the stream waits (stream.broker_outage_s): the stream stops with exit 1 and one line saying so, and
started again once the broker is back it reads the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.chaos import kafka_counts
from c360 import cli
from lakehouse.kafka_local import LocalKafka, free_port
from tests.conftest import STATE_DIR, make_config
from tests.integration.test_pipeline import _bronze, _table

pytestmark = pytest.mark.integration

SOURCES = "customers,orders"  # no logins: no derived queries, a quicker start
OUTAGE_S = 45  # how long the stream waits for the broker here (stream.broker_outage_s; 180 by default)


def _wait(what: str, ready, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(1)


def test_broker_restart_mid_replay_and_stream_loses_and_doubles_nothing(spark, tmp_path, monkeypatch):
    broker = LocalKafka(STATE_DIR, "127.0.0.1", free_port(), free_port(), heap="512m", home=tmp_path / "broker")
    broker.start()
    try:
        cfg = make_config(tmp_path, broker.bootstrap).replace("kafka", topic_prefix="r.", partitions=1)
        data = tmp_path / "data"
        assert cli.main(["generate", "--scale", "100", "--seed", "5", "--out", str(data)]) == 0
        env = dict(os.environ, C360_KAFKA_BOOTSTRAP=broker.bootstrap, C360_KAFKA_TOPIC_PREFIX="r.",
                   C360_KAFKA_PARTITIONS="1", C360_LAKE_ROOT=cfg.lake.root,
                   C360_LAKE_CHECKPOINT_ROOT=cfg.lake.checkpoint_root, C360_LAKE_STATE_DIR=str(STATE_DIR),
                   C360_SPARK_SHUFFLE_PARTITIONS="2", C360_SPARK_DRIVER_MEMORY="1g",
                   C360_STREAM_TRIGGER_INTERVAL="1 second", C360_STREAM_BROKER_OUTAGE_S=str(OUTAGE_S))
        c360 = [sys.executable, "-m", "c360"]
        stream = subprocess.Popen([*c360, "stream", "--sources", SOURCES], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            commits = Path(cfg.lake.checkpoint_root, "ingest_customers_orders", "commits")
            _wait("the stream's first batch", lambda: (commits / "0").exists() or stream.poll() is not None, 240)
            assert stream.poll() is None, stream.stdout.read()[-3000:]
            replay = subprocess.Popen([*c360, "replay", "--input", str(data), "--sources", SOURCES, "--rate", "20",
                                       "--no-progress"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
            time.sleep(5)
            assert replay.poll() is None  # the broker goes away in the middle of the replay...
            broker.stop()
            time.sleep(10)  # ...for ten seconds
            broker.start()
            out, _ = replay.communicate(timeout=300)
            assert replay.returncode == 0, out
            sent = int(re.search(r"sent (\d+) records", out).group(1))
            assert " failed 0;" in out, out
            kafka_records = sum(kafka_counts(broker.bootstrap, [f"r.{s}" for s in SOURCES.split(",")]).values())
            assert kafka_records == sent  # the producer's retries doubled nothing (idempotent producer)

            def bronze_rows():
                return sum(_bronze(spark, cfg, s).count() for s in SOURCES.split(","))

            # the stream kept running through the outage and catches up by itself
            _wait("the stream to read every record", lambda: bronze_rows() >= sent or stream.poll() is not None,
                  300)
            assert stream.poll() is None, stream.stdout.read()[-3000:]
            broker.stop()  # now for longer than the stream waits
            _wait("the stream to give up on the broker", lambda: stream.poll() is not None, OUTAGE_S + 240)
        finally:
            if stream.poll() is None:
                stream.send_signal(signal.SIGTERM)
            out, _ = stream.communicate(timeout=180)
        assert stream.returncode == 1, out[-3000:]
        last = out.strip().splitlines()[-1]
        assert last.startswith("c360: error: query ingest_customers_orders stopped: the Kafka broker stayed "
                               "unreachable for longer than stream.broker_outage_s; nothing was skipped"), last
        broker.start()
        for key, value in env.items():
            if key.startswith("C360_"):
                monkeypatch.setenv(key, value)
        # the broker is back: customers are sent again (the producer re-sending a file), and the stream started
        # again reads them from its checkpoint
        assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 0
        assert cli.main(["stream", "--available-now", "--sources", SOURCES]) == 0
        total = sum(kafka_counts(broker.bootstrap, [f"r.{s}" for s in SOURCES.split(",")]).values())
        assert total > sent
    finally:
        broker.stop()
    orders = _bronze(spark, cfg, "orders")
    keys = orders.select("_source_file", "_source_line")
    assert orders.count() == keys.distinct().count() == orders.select("offset").distinct().count()
    customers = _bronze(spark, cfg, "customers")  # each file line twice (sent twice), each offset once
    assert customers.count() == customers.select("offset").distinct().count()
    assert customers.groupBy("_source_file", "_source_line").count().where("count != 2").count() == 0
    assert sum(_bronze(spark, cfg, s).count() for s in SOURCES.split(",")) == total
    ops = {r.source: r for r in _table(spark, cfg, "ops_stream_batches").groupBy("source").sum().collect()}
    assert sum(r["sum(read_rows)"] for r in ops.values()) == total
    truth = json.loads((data / "_labels" / "summary.json").read_text())["truth"]
    orders = _table(spark, cfg, "silver_orders")
    assert orders.count() == orders.select("order_id").distinct().count() == ops["orders"]["sum(inserted_rows)"]
    assert _table(spark, cfg, "silver_customers").count() == truth["customers_valid"]
