"""c360 on a Spark standalone cluster (a master and a worker started here on localhost from PySpark's own
`spark-class`): `c360 stream` and `c360 gold` with `--master spark://...` write the same tables and exports as on
a local master.

Not in `make test` (about 4.5 minutes, more than its 15-minute budget allows): `make test-cluster` runs it
(C360_TEST_CLUSTER=1)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.chaos import OPS_TOTALS, comparable
from c360 import cli
from lakehouse.kafka_local import free_port
from tests.conftest import make_config
from tests.integration.test_pipeline import _args, _env, _table

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("C360_TEST_CLUSTER") != "1",
                                 reason="the standalone-cluster test runs in `make test-cluster` (about 4.5 min, "
                                        "over make test's budget)")]

SOURCES = "customers,logins,orders"
# the tables a stream over SOURCES writes, compared between the local and the cluster run
COMPARED = ["bronze_records", "silver_customers", "silver_logins",
            "silver_orders", "silver_quarantine", "ops_stream_batches", "stream_login_anomalies",
            "stream_city_hour_logins"]
AS_OF = "2025-01-01"  # gold's "days since" measured to a fixed day in both runs


@contextlib.contextmanager
def standalone_cluster(work: Path):
    """A Spark standalone cluster on this machine: a master and a worker (1 core, 1 GiB for executors) started from
    PySpark's own distribution, on free ports of 127.0.0.1; yields the master's URL and its JSON status page's.
    Stopped after."""
    from pyspark.find_spark_home import _find_spark_home

    spark_class = str(Path(_find_spark_home(), "bin", "spark-class"))
    port, web = free_port(), free_port()
    master, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}/json/"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1")
    work.mkdir(parents=True)
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                               str(port), "--webui-port", str(web)], env=env, start_new_session=True,
                              stdout=(work / "master.log").open("w"), stderr=subprocess.STDOUT)]
    try:
        procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host",
                                       "127.0.0.1", "--cores", "1", "--memory", "1g", "--work-dir", str(work),
                                       "--webui-port", str(free_port())], env=env, start_new_session=True,
                                      stdout=(work / "worker.log").open("w"), stderr=subprocess.STDOUT))
        _wait_for(lambda: _master_state(ui).get("aliveworkers") == 1, 120, "the standalone worker to register")
        yield master, ui
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def _master_state(ui: str) -> dict:
    try:
        with urllib.request.urlopen(ui, timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _config(root: Path, bootstrap: str, prefix: str):
    # one partition per topic: Kafka order is the files' event-time order, so no login falls behind the watermark
    # however the batches are cut
    return make_config(root, bootstrap).replace("kafka", topic_prefix=prefix, partitions=1)


def _env_vars(cfg) -> dict[str, str]:
    mp = pytest.MonkeyPatch()
    try:
        _env(mp, cfg)
        return {k: v for k, v in os.environ.items() if k.startswith("C360_")}
    finally:
        mp.undo()


def _snapshot(spark, cfg):
    # the counters that do not depend on where batches were cut (bench.chaos.OPS_TOTALS)
    return {name: sorted((tuple(r) for r in comparable(_table(spark, cfg, name), name, OPS_TOTALS).collect()),
                         key=repr)
            for name in COMPARED}


def _exports(folder: Path) -> dict[str, list[tuple[str, ...]]]:
    """Every exported gold CSV's rows (sorted: the row order of a CSV is not part of its contract)."""
    out = {}
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="") as f:
            out[str(path.relative_to(folder))] = sorted(tuple(row) for row in csv.reader(f))
    return out


def test_stream_and_gold_on_a_standalone_cluster_give_the_local_tables_and_exports(spark, kafka, tmp_path,
                                                                                  monkeypatch):
    """`--master spark://...`: the driver in the command's process, the work in an executor of its own (c360's jars
    shipped to it with spark.jars, the login anomalies' Python run there); `--conf` reaches the cluster."""
    local = _config(tmp_path / "local", kafka.bootstrap, f"cl{os.getpid()}.")
    data = tmp_path / "data"
    assert cli.main(["generate", "--scale", "120", "--seed", "8", "--out", str(data)]) == 0
    for key, value in _env_vars(local).items():
        monkeypatch.setenv(key, value)
    assert cli.main(["replay", "--input", str(data), "--sources", SOURCES, "--no-progress", *_args(local)]) == 0
    # the local reference: this process's session (local master)
    assert cli.main(["stream", *_args(local), "--sources", SOURCES, "--available-now"]) == 0
    assert cli.main(["gold", *_args(local), "--as-of", AS_OF, "--exports", str(tmp_path / "local-exports"),
                     "--no-dashboard"]) == 0

    cluster = _config(tmp_path / "cluster", kafka.bootstrap, local.kafka.topic_prefix)
    env = dict(os.environ, **_env_vars(cluster), SPARK_LOCAL_IP="127.0.0.1")
    with standalone_cluster(tmp_path / "spark") as (master, ui):
        on_cluster = ["--master", master, "--conf", "spark.executor.memory=600m"]
        for argv in (["stream", *_args(cluster), "--sources", SOURCES, "--available-now", *on_cluster],
                     ["gold", *_args(cluster), "--as-of", AS_OF, "--exports", str(tmp_path / "cluster-exports"),
                      "--no-dashboard", *on_cluster]):
            proc = subprocess.run([sys.executable, "-m", "c360", *argv], env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, (argv[0], (proc.stdout + proc.stderr)[-4000:])
        _wait_for(lambda: len(_master_state(ui).get("completedapps", [])) == 2, 60, "the master to see both apps end")
        apps = sorted((a["name"], a["memoryperexecutor"]) for a in _master_state(ui)["completedapps"])
    assert apps == [("c360-gold", 600), ("c360-stream", 600)]  # both ran there, with --conf's executor memory
    # the executors fetched c360's jars (spark.jars) for their tasks
    assert len(list((tmp_path / "spark").glob("app-*/*/delta-spark_*.jar"))) == 2

    want, got = _snapshot(spark, local), _snapshot(spark, cluster)
    for name in COMPARED:
        assert got[name] == want[name], name
    assert len(want["silver_logins"]) > 1000 and want["stream_login_anomalies"]
    want, got = _exports(tmp_path / "local-exports"), _exports(tmp_path / "cluster-exports")
    # three sources streamed: the tables of the others (campaigns, products, ...) export their header only
    with_rows = [name for name, rows in want.items() if len(rows) > 1]
    assert len(want) >= 15 and len(with_rows) >= 8, with_rows
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
