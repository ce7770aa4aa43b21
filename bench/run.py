"""``make bench``: c360's speed and memory figures, each measured against a peer or a limit in the same run.

Writes ``bench/results/latest.json``: a list of
``{"name", "value", "unit", "params", "peer", "ratio"}`` (ratio = value / peer, so for throughput higher is
better, for time and memory against a limit lower is better) and prints a Markdown table for README.

    python -m bench.run [--only profile,generate,replay,stream,demo,gold,soak] [--scale N] [--replay-scale N] [--gold-scale N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
sys.path.insert(0, str(ROOT))


def figure(name, value, unit, params, peer=None, ratio=None) -> dict:
    return {"name": name, "value": round(value, 3), "unit": unit, "params": params, "peer": peer,
            "ratio": None if ratio is None else round(ratio, 3)}


def bench_generate(scale: int, workdir: Path) -> list[dict]:
    """Generator wall time and peak memory (the child's max RSS) against the issue's limits."""
    out = workdir / "gen"
    code = ("import json,sys; from producers.generate import generate, GenerateParams; "
            f"s = generate({str(out)!r}, GenerateParams(scale={scale})); "
            "print(json.dumps({'events': s.events, 'rows': sum(s.rows.values())}))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - started
    peak_gib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 2**20
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    size_gib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**30
    params = {"customers": scale, "events": counts["events"], "rows": counts["rows"], "output_gib": round(size_gib, 2)}
    shutil.rmtree(out, ignore_errors=True)
    return [
        figure("generate_1m_seconds", seconds, "s", params, {"limit": 120}, seconds / 120),
        figure("generate_1m_peak_rss_gib", peak_gib, "GiB", params, {"limit": 4}, peak_gib / 4),
    ]


REAL_DATA = ROOT.parent / "shared" / "real-data"


def bench_profile(workdir: Path, megabytes: int = 100) -> list[dict]:
    """``c360 profile`` (the CLI, start-up included) on a ~100 MB export against the issue's 10 s limit: the real
    Superstore order lines repeated (row ids renumbered) until the file is that big. It samples, so its time should
    not grow with the file; pandas reading the whole file, same run, is in the params for scale."""
    import pandas as pd

    source = REAL_DATA / "superstore_orders.csv"
    if not source.is_file():
        print(f"profile: {source} not found; figure skipped", flush=True)
        return []
    header, *rows = source.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    body = [r.split(",", 1)[1] for r in rows if "," in r]
    big = workdir / "orders_100mb.csv"
    written, n = 0, 0
    with big.open("w", encoding="utf-8") as fh:
        fh.write(header)
        while written < megabytes * 2**20:
            for rest in body:
                n += 1
                line = f"{n},{rest}" if rest.endswith("\n") else f"{n},{rest}\n"
                written += fh.write(line)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "c360", "profile", str(big), "--out", str(workdir / "proposed.toml")],
                   cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - started
    started = time.monotonic()
    pd.read_csv(big, dtype=str)
    pandas_s = time.monotonic() - started
    params = {"file_mib": round(big.stat().st_size / 2**20, 1), "rows": n, "rows_sampled": 20_000,
              "pandas_read_csv_whole_file_s": round(pandas_s, 2)}
    big.unlink()
    return [figure("profile_seconds_100mb", seconds, "s", params, {"limit": 10}, seconds / 10)]


def bench_replay(scale: int, workdir: Path) -> list[dict]:
    """c360 replay's throughput next to Kafka's own Java producer perf tool, on one fresh broker."""
    from lakehouse import config
    from lakehouse.kafka_admin import ensure_topics
    from lakehouse.kafka_local import LocalKafka, free_port
    from producers.generate import GenerateParams, generate
    from producers.replay import replay

    data = workdir / "replay-data"
    generate(data, GenerateParams(scale=scale))
    broker = LocalKafka(ROOT / ".c360", "127.0.0.1", free_port(), free_port(), home=workdir / "broker")
    broker.start()
    try:
        cfg = config.load(environ={}, overrides={
            "kafka": {"bootstrap": broker.bootstrap, "topic_prefix": "bench."},
            "lake": {"state_dir": str(workdir / "state")}})
        summary = replay(cfg, data, progress=False)
        value_bytes = sum(f.stat().st_size for f in data.rglob("*.*") if "_labels" not in f.parts) / max(
            summary.total_sent, 1)
        record_size = int(value_bytes * 1.4)  # + event_id and field names in each JSON value
        ensure_topics(broker.bootstrap, ["bench.perf"], partitions=cfg.kafka.partitions, retention_hours=1,
                      timeout_s=30)
        peer = producer_perf(broker.bootstrap, summary.total_sent, record_size)
    finally:
        broker.stop()
    params = {"records": summary.total_sent, "files": len(summary.sent), "customers": scale,
              "avg_record_bytes": record_size, "acks": "all", "idempotence": True, "processes": 1}
    return [figure("replay_events_per_s", summary.events_per_s, "events/s", params,
                   {"name": "kafka ProducerPerformance (Java), same broker, same settings", "value": round(peer)},
                   summary.events_per_s / peer)]


def producer_perf(bootstrap: str, records: int, record_size: int) -> float:
    jars = ROOT / ".c360" / "jars" / "kafka" / "*"
    cmd = ["java", "-Xmx1g", f"-Dlog4j2.configurationFile={ROOT / 'jvm' / 'log4j2-kafka.properties'}",
           "-cp", str(jars), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", "bench.perf", "--num-records", str(records), "--record-size", str(record_size),
           "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all",
           "enable.idempotence=true", "linger.ms=20", "batch.size=1000000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    last = [ln for ln in proc.stdout.splitlines() if "records sent" in ln][-1]
    return float(re.search(r"([\d.]+) records/sec", last).group(1))


# The floor of this stack: a bare query that appends the raw Kafka records of every topic to one Delta table (no
# parse), with c360's session, source options and batch size; "drain" reads the backlog, "live" runs until SIGTERM
FLOOR_PEER = """
import json, signal, sys, threading
from pyspark.sql import functions as F
from lakehouse import config
from lakehouse.engine import stream_writer
from lakehouse.kafka_admin import ensure_topics
from lakehouse.kafka_security import client_security
from lakehouse.spark import get_spark
from streaming.app import kafka_stream
cfg = config.load()
spark = get_spark(cfg, "bench-floor-peer")
topics = [cfg.kafka.topic(t) for t in sys.argv[1].split(",")]
live = sys.argv[4] == "live"
# as c360 stream does before it subscribes (a live run starts before the replay creates the topics)
ensure_topics(cfg.kafka.bootstrap_servers, topics, partitions=cfg.kafka.partitions,
              retention_hours=cfg.kafka.retention_hours, timeout_s=cfg.kafka.connect_timeout_s,
              embedded=cfg.kafka.embedded, security=client_security(cfg.kafka))
rows = kafka_stream(spark, cfg, topics, embedded=stream_writer(cfg) == "embedded").select(
    "key", "value", "topic", "partition", "offset", "timestamp", F.current_timestamp().alias("_written_at"))
w = rows.writeStream.format("delta").option("checkpointLocation", sys.argv[2])
w = w.trigger(processingTime=cfg.stream.trigger_interval) if live else w.trigger(availableNow=True)
q = w.start(sys.argv[3])
if live:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    while q.isActive and not stop.wait(0.5):
        pass
    q.stop()
else:
    q.awaitTermination()
rows = sum(p["numInputRows"] for p in q.recentProgress)
ms = sum(p["durationMs"]["triggerExecution"] for p in q.recentProgress)
print(json.dumps({"rows": rows, "seconds": ms / 1000}))
"""

NOOP_PEER = """
import json, sys, time
from lakehouse import config
from lakehouse.spark import get_spark
from streaming.app import kafka_stream
cfg = config.load()
spark = get_spark(cfg, "bench-noop-peer")
topics = [cfg.kafka.topic(t) for t in sys.argv[1].split(",")]
q = (kafka_stream(spark, cfg, topics)  # the same source, with the same options, as c360 stream's ingest query
     .writeStream.format("noop").trigger(availableNow=True).option("checkpointLocation", sys.argv[2]).start())
q.awaitTermination()
rows = sum(p["numInputRows"] for p in q.recentProgress)
ms = sum(p["durationMs"]["triggerExecution"] for p in q.recentProgress)
print(json.dumps({"rows": rows, "seconds": ms / 1000}))
"""


def _env(bootstrap: str, workdir: Path, prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, C360_KAFKA_BOOTSTRAP=bootstrap, C360_KAFKA_TOPIC_PREFIX=prefix,
               C360_LAKE_ROOT=str(workdir / f"lake-{prefix}"), C360_LAKE_CHECKPOINT_ROOT=str(workdir / f"ck-{prefix}"),
               C360_LAKE_STATE_DIR=str(ROOT / ".c360"))
    return {**env, **extra}


def _c360(*args: str, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c360", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=True)


def _spark():
    from lakehouse import config
    from lakehouse.spark import get_spark

    return get_spark(config.load(environ={}, overrides={"lake": {"state_dir": str(ROOT / ".c360")}}), "bench")


def anomaly_quality(spark, lake: Path, labels_csv: Path) -> dict[str, tuple[float, float, int]]:
    """Precision and recall per rule against the generator's labels (logins up to an hour before the last one:
    the watermark holds back the rest)."""
    import pandas as pd

    from streaming.anomalies import RULES

    labels = pd.read_csv(labels_csv)
    last = spark.read.format("delta").load(str(lake / "silver_logins")).agg({"login_datetime": "max"}).first()[0]
    horizon = pd.Timestamp(last) - pd.Timedelta(hours=1)
    labels = labels[pd.to_datetime(labels.login_datetime) <= horizon]
    found = (spark.read.format("delta").load(str(lake / "stream_login_anomalies"))
             .where(f"login_datetime <= '{horizon}'").select("login_id", "rule").toPandas())
    out = {}
    for rule in RULES:
        truth, hits = set(labels[labels.rule == rule].login_id), set(found[found.rule == rule].login_id)
        out[rule] = (len(truth & hits) / max(len(hits), 1), len(truth & hits) / max(len(truth), 1), len(truth))
    return out


def commit_latencies(spark, paths: list[str], written: str, produced: str):
    """Per row of the Delta tables at ``paths``: when its record was produced (column ``produced``, its Kafka
    timestamp) and the seconds from then to the commit that made it visible (the first commit of its table at or
    after the row's ``written`` time), as a pandas frame with columns ``produced`` and ``latency_s``."""
    import pandas as pd
    from delta.tables import DeltaTable

    parts = []
    for path in paths:
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        commits = (DeltaTable.forPath(spark, path).history().select("timestamp").toPandas()
                   .sort_values("timestamp").rename(columns={"timestamp": "visible"}))
        rows = spark.read.format("delta").load(path).select(written, produced).toPandas()
        if rows.empty:
            continue
        joined = pd.merge_asof(rows.sort_values(written), commits, left_on=written, right_on="visible",
                               direction="forward")
        parts.append(pd.DataFrame({"produced": joined[produced],
                                   "latency_s": (joined.visible - joined[produced]).dt.total_seconds()}))
    empty = pd.DataFrame({"produced": pd.Series([], dtype="datetime64[us]"), "latency_s": pd.Series([], dtype=float)})
    frame = pd.concat(parts, ignore_index=True) if parts else empty
    return frame.dropna()


def silver_latencies(spark, lake: Path, kinds: tuple[str, ...] | None = None):
    """:func:`commit_latencies` of every silver table (a row is written at its ``_updated_at``); ``kinds``: only the
    tables of sources of those kinds (``event``, ``entity``, ``reference``)."""
    from lakehouse.schemas import SILVER_SPECS
    from lakehouse.tables import SOURCES

    tables = {spec.table for name, spec in SILVER_SPECS.items() if kinds is None or SOURCES[name].kind in kinds}
    return commit_latencies(spark, [str(lake / table) for table in sorted(tables)], "_updated_at", "_kafka_timestamp")


def read_topic(bootstrap: str, topic: str) -> list[tuple[dict, int]]:
    """Every record of ``topic`` from its start, as (JSON value, Kafka timestamp in ms), read until the topic has
    been quiet for 3 s."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "c360-read", "enable.auto.commit": False})
    records = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        idle = 0
        while idle < 3:
            msgs = consumer.consume(1000, timeout=1)
            idle = 0 if msgs else idle + 1
            records += [(json.loads(m.value()), m.timestamp()[1]) for m in msgs if m.error() is None]
    finally:
        consumer.close()
    return records


def alert_latencies(spark, bootstrap: str, topic: str, lake: Path, stage: str):
    """Per record of the alerts topic that raised an alert (kind ``alert``) at ``stage`` (``arrival``: as the
    login arrived; ``watermark``): when its login was produced and the seconds from then to the alert's own Kafka
    timestamp, as :func:`commit_latencies`' frame; and the count of the topic's records of each kind and stage."""
    import pandas as pd

    records = read_topic(bootstrap, topic)
    kinds: dict[str, int] = {}
    for value, _ in records:
        key = f"{value['kind']}_{value['stage']}"
        kinds[key] = kinds.get(key, 0) + 1
    picked = [(v["login_id"], ts) for v, ts in records if v["kind"] == "alert" and v["stage"] == stage]
    # typed even when empty (a run whose watermark sent nothing): the subtraction below needs datetimes
    alerts = pd.DataFrame({"login_id": pd.Series([p[0] for p in picked], dtype=object),
                           "sent": pd.to_datetime(pd.Series([p[1] for p in picked], dtype="int64"), unit="ms")})
    logins = (spark.read.format("delta").load(str(lake / "silver_logins"))
              .selectExpr("login_id", "_kafka_timestamp AS produced").toPandas())
    joined = alerts.merge(logins, on="login_id")
    return pd.DataFrame({"produced": joined.produced,
                         "latency_s": (joined.sent - joined.produced).dt.total_seconds()}), kinds


def latency_percentiles(latencies, since=None, until=None) -> dict[str, float | int | None]:
    """p50 and p95 of the latencies of the rows produced in [since, until) (naive UTC timestamps; None: open)."""
    import numpy as np

    rows = latencies
    if since is not None:
        rows = rows[rows.produced >= since]
    if until is not None:
        rows = rows[rows.produced < until]
    values = rows.latency_s.to_numpy()
    if not len(values):
        return {"rows": 0, "p50_s": None, "p95_s": None}
    return {"rows": int(len(values)), "p50_s": round(float(np.percentile(values, 50)), 2),
            "p95_s": round(float(np.percentile(values, 95)), 2)}


def load_capacity(batches, since, until) -> dict[str, float | int | None]:
    """Whether the app keeps up with a load that ran over [since, until) (naive UTC timestamps), from its ingest
    batches (pandas: ``timestamp`` (start), ``batch_duration_ms``, ``input_rows``): those started in the load, the
    first left out (it began before any backlog, in a JVM still warming up). ``events_per_s`` is what they read per
    second of batch: the records a second the app can take under this load. Below the load's rate the backlog,
    and with it the latency, grows for as long as the load lasts."""
    started = batches[(batches.timestamp >= since) & (batches.timestamp < until)].sort_values("timestamp")
    later = started.iloc[1:]
    seconds = later.batch_duration_ms.sum() / 1000
    return {"batches": len(later),
            "median_batch_s": round(float(later.batch_duration_ms.median()) / 1000, 1) if len(later) else None,
            "median_batch_records": int(later.input_rows.median()) if len(later) else None,
            "events_per_s": round(float(later.input_rows.sum() / seconds)) if seconds else None}


def utc_now() -> datetime:
    """Now in UTC without a zone: how the lake's Spark session (UTC) shows its timestamps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _wait_for(done, timeout_s: float) -> bool:
    """Wait until ``done()`` (checked every 5 s; a table not there yet counts as not done)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if done():
                return True
        except Exception:  # noqa: BLE001 - the table is created by the app's first batch
            pass
        time.sleep(5)
    return False


def _ingested(spark, lake: Path, records: int) -> bool:
    """Whether the ingest query has counted ``records`` records read (ops_stream_batches is written after a batch's
    silver commits: every one of them is then visible)."""
    done = (spark.read.format("delta").load(str(lake / "ops_stream_batches")).where("query = 'ingest'")
            .agg({"read_rows": "sum"}).first()[0] or 0)
    return done >= records


def _under_load(cmd: list[str], env: dict[str, str], data: Path, workdir: Path, name: str, warmup_s: int,
                seconds: int, caught_up, rate: int = 5000) -> tuple:
    """Run the streaming app ``cmd`` (1 s trigger) while ``c360 replay`` sends every source at once (as in
    production, not one file after another: a micro-batch then touches every source's tables) at ``rate`` events/s
    for ``warmup_s + seconds``; then wait until ``caught_up(sent)`` and stop the app (SIGTERM). Returns (load start,
    load end, whether it caught up) as naive UTC times."""
    app_log = (workdir / f"{name}.log").open("w")  # a pipe nobody reads fills up and blocks the app
    app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=app_log, text=True)
    try:
        time.sleep(45)  # start-up and the first (empty) batches
        replay_log = workdir / f"{name}-replay.log"
        with replay_log.open("w") as out:
            replayer = subprocess.Popen([sys.executable, "-m", "c360", "replay", "--input", str(data), "--rate",
                                         str(rate), "--interleave", "--no-progress"], cwd=ROOT, env=env, stdout=out,
                                        stderr=subprocess.STDOUT)
            load_start = utc_now()
            time.sleep(warmup_s + seconds)
            replayer.send_signal(signal.SIGTERM)
            replayer.wait(timeout=60)
        load_end = utc_now()
        sent = re.search(r"sent (\d+) records", replay_log.read_text())
        ok = _wait_for(lambda: app.poll() is not None or caught_up(int(sent.group(1)) if sent else 0),
                       timeout_s=600)
        if app.poll() is not None:
            raise RuntimeError(f"{name} stopped (exit {app.returncode}) before it caught up; its log ends with:\n"
                               + "".join((workdir / f"{name}.log").read_text().splitlines(True)[-20:]))
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=300)
        except subprocess.TimeoutExpired:
            app.kill()
            print(f"{name} did not stop within 300 s of SIGTERM; its log ends with:\n"
                  + "".join((workdir / f"{name}.log").read_text().splitlines(True)[-20:]), file=sys.stderr)
            raise
        finally:
            app_log.close()
    return load_start, load_end, ok


def bench_stream(scale: int, latency_seconds: int, warmup_seconds: int, workdir: Path) -> list[dict]:
    """The streaming app next to the floor of this stack (a bare query appending every topic's raw records to one
    Delta table, same session, source options and batch size, same run): the backlog drained (events/s) and the
    latency from Kafka to visible at 5,000 events/s; Spark's raw Kafka read into a noop sink as a second reference;
    anomaly quality against the labels."""
    import pandas as pd

    from lakehouse import config
    from lakehouse.engine import stream_writer
    from lakehouse.kafka_local import LocalKafka, free_port
    from lakehouse.tables import GENERATED
    from producers.generate import GenerateParams, generate

    data = workdir / "stream-data"
    generate(data, GenerateParams(scale=scale))
    broker = LocalKafka(ROOT / ".c360", "127.0.0.1", free_port(), free_port(), home=workdir / "stream-broker")
    broker.start()
    topics = ",".join(GENERATED)
    try:
        env = _env(broker.bootstrap, workdir, "tput.")
        _c360("replay", "--input", str(data), "--no-progress", env=env)
        # the references: Spark reading the same topics into a noop sink, and the floor draining them into Delta
        proc = subprocess.run([sys.executable, "-c", NOOP_PEER, topics, str(workdir / "ck-noop")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=True)
        noop = json.loads(proc.stdout.strip().splitlines()[-1])
        proc = subprocess.run([sys.executable, "-c", FLOOR_PEER, topics, str(workdir / "ck-floor-drain"),
                               str(workdir / "floor-drain"), "drain"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=True)
        floor = json.loads(proc.stdout.strip().splitlines()[-1])
        started = time.monotonic()
        _c360("stream", "--available-now", env=env)
        wall = time.monotonic() - started
        spark = _spark()
        lake = Path(env["C360_LAKE_ROOT"])
        progress = spark.read.format("delta").load(str(lake / "ops_stream_progress")).where("query = 'ingest'")
        batches = [(r.input_rows, r.batch_duration_ms / 1000) for r in
                   progress.orderBy("batch_id").select("input_rows", "batch_duration_ms").collect()]
        rows, seconds = sum(b[0] for b in batches), sum(b[1] for b in batches)
        # after the first batch, which also warms the JVM up (compiling, first reads of every table's log)
        later = batches[1:] or batches
        steady = sum(b[0] for b in later) / sum(b[1] for b in later)
        quality = anomaly_quality(spark, lake, data / "_labels" / "login_anomalies.csv")

        # latency under the 5,000 events/s load, the floor first, then the app, each on topics of its own; measured
        # on the records produced after a warm-up (the first batch of a fresh JVM compiles every plan)
        env = _env(broker.bootstrap, workdir, "floor.", C360_STREAM_TRIGGER_INTERVAL="1 second")
        floor_table = workdir / "floor-live"
        floor_start, floor_end, floor_ok = _under_load(
            [sys.executable, "-c", FLOOR_PEER, topics, str(workdir / "ck-floor-live"), str(floor_table), "live"],
            env, data, workdir, "floor-live", warmup_seconds, latency_seconds,
            lambda sent: spark.read.format("delta").load(str(floor_table)).count() >= sent)
        floor_lat = latency_percentiles(commit_latencies(spark, [str(floor_table)], "_written_at", "timestamp"),
                                        since=pd.Timestamp(floor_start) + pd.Timedelta(seconds=warmup_seconds),
                                        until=pd.Timestamp(floor_end))
        env = _env(broker.bootstrap, workdir, "lat.", C360_STREAM_TRIGGER_INTERVAL="1 second")
        lat_lake = Path(env["C360_LAKE_ROOT"])
        load_start, load_end, caught_up = _under_load(
            [sys.executable, "-m", "c360", "stream"], env, data, workdir, "latency-stream", warmup_seconds,
            latency_seconds, lambda sent: _ingested(spark, lat_lake, sent))
        latencies = silver_latencies(spark, lat_lake)
        steady_from = pd.Timestamp(load_start) + pd.Timedelta(seconds=warmup_seconds)
        measured = latency_percentiles(latencies, since=steady_from, until=pd.Timestamp(load_end))
        by_kind = {kind: latency_percentiles(silver_latencies(spark, lat_lake, kinds), since=steady_from,
                                             until=pd.Timestamp(load_end))
                   for kind, kinds in (("events", ("event",)), ("entities", ("entity", "reference")))}
        alerts_topic = "lat." + config.load(environ={}).stream.alerts_topic
        alert_lat, alert_kinds = alert_latencies(spark, broker.bootstrap, alerts_topic, lat_lake, "arrival")
        alerts_measured = latency_percentiles(alert_lat, since=steady_from, until=pd.Timestamp(load_end))
        settled = latency_percentiles(alert_latencies(spark, broker.bootstrap, alerts_topic, lat_lake, "watermark")[0],
                                      since=steady_from, until=pd.Timestamp(load_end))
        whole = latency_percentiles(latencies)
        # the app's micro-batches during the load: can it take 5,000 events/s?
        capacity = load_capacity(spark.read.format("delta").load(str(lat_lake / "ops_stream_progress"))
                                 .where("query = 'ingest'").select("timestamp", "batch_duration_ms", "input_rows")
                                 .toPandas(), pd.Timestamp(load_start), pd.Timestamp(load_end))
    finally:
        broker.stop()
    p95 = measured["p95_s"] if measured["p95_s"] is not None else float("nan")
    floor_p95 = floor_lat["p95_s"] if floor_lat["p95_s"] is not None else float("nan")
    floor_eps = floor["rows"] / floor["seconds"]
    cfg = config.load(environ={})
    writer = stream_writer(cfg)
    params = {"customers": scale, "records": rows, "sources": len(GENERATED), "batches": len(batches),
              "writer": writer, "max_offsets_per_trigger": cfg.stream.embedded_max_offsets_per_trigger
              if writer == "embedded" else cfg.stream.max_offsets_per_trigger,
              "parallel_sources": cfg.stream.parallel_sources, "after_first_batch_events_per_s": round(steady),
              "wall_seconds_incl_startup_and_derived": round(wall, 1),
              "noop_raw_read_events_per_s": round(noop["rows"] / noop["seconds"]),
              "ratio_to_noop_raw_read": round((rows / seconds) / (noop["rows"] / noop["seconds"]), 3)}
    floor_peer = "the floor: a bare Spark query appending every topic's raw records to one Delta table, same run"
    load = {"rate_eps": 5000, "sources_at_once": len(GENERATED), "warmup_seconds": warmup_seconds,
            "seconds": latency_seconds, "trigger": "1 second"}
    figs = [figure("stream_floor_events_per_s", floor_eps, "events/s",
                   {"records": floor["rows"], "includes": "backlog of every topic drained into one Delta table"},
                   {"name": "Spark raw Kafka read into a noop sink, same run",
                    "value": round(noop["rows"] / noop["seconds"])}, floor_eps / (noop["rows"] / noop["seconds"])),
            figure("stream_floor_p95_latency_s", floor_p95, "s",
                   {**load, "rows_measured": floor_lat["rows"], "p50_s": floor_lat["p50_s"],
                    "all_records_caught_up": floor_ok}, None, None),
            figure("stream_max_events_per_s", rows / seconds, "events/s", params,
                   {"name": floor_peer, "value": round(floor_eps), "goal_ratio": 0.5}, (rows / seconds) / floor_eps),
            figure("stream_p95_latency_s_at_5k_eps", p95, "s",
                   {**load, "writer": writer, "rows_measured": measured["rows"], "p50_s": measured["p50_s"],
                    "all_records_caught_up": caught_up, "incl_warmup_p95_s": whole["p95_s"],
                    "incl_warmup_p50_s": whole["p50_s"], "incl_warmup_rows": whole["rows"],
                    "batches_in_load_after_first": capacity["batches"],
                    "median_batch_s": capacity["median_batch_s"],
                    "median_batch_records": capacity["median_batch_records"],
                    "under_load_events_per_s": capacity["events_per_s"],
                    **{f"{kind}_p95_s": v["p95_s"] for kind, v in by_kind.items()},
                    **{f"{kind}_rows": v["rows"] for kind, v in by_kind.items()}},
                   {"name": floor_peer + " (p95)", "value": floor_p95, "goal_ratio": 2.0}, p95 / floor_p95)]
    alert_p95 = alerts_measured["p95_s"] if alerts_measured["p95_s"] is not None else float("nan")
    retractions = alert_kinds.get("retraction_watermark", 0)
    arrival_alerts = alert_kinds.get("alert_arrival", 0)
    figs += [figure("alert_p95_latency_s_at_5k_eps", alert_p95, "s",
                    {**load, "writer": writer, "alerts_measured": alerts_measured["rows"],
                     "p50_s": alerts_measured["p50_s"], "records_by_kind_and_stage": alert_kinds,
                     "silver_p95_s": measured["p95_s"], "anomaly_watermark": cfg.stream.anomaly_watermark,
                     "at_watermark_p95_s": settled["p95_s"], "at_watermark_alerts_measured": settled["rows"],
                     "what": "burst and short-gap alerts sent on arrival: login produced to its alert on the "
                             "alerts topic (Kafka timestamps); at_watermark: reactivations and what arrival missed"},
                    {"name": floor_peer + " (p95)", "value": floor_p95}, alert_p95 / floor_p95),
             figure("alert_retractions", retractions, "records",
                    {**alert_kinds, "why": "alerts sent on arrival that the in-order evaluation did not confirm"},
                    {"name": "alerts sent on arrival in the same run", "value": arrival_alerts},
                    retractions / max(arrival_alerts, 1))]
    for rule, (precision, recall, n) in quality.items():
        figs.append(figure(f"anomaly_precision_{rule}", precision, "ratio", {"labels": n, "customers": scale},
                           {"limit": 0.95}, precision / 0.95))
        figs.append(figure(f"anomaly_recall_{rule}", recall, "ratio", {"labels": n, "customers": scale},
                           {"limit": 0.95}, recall / 0.95))
    return figs


DEMO_LIMIT_S, GOLD_DEMO_LIMIT_S = 90, 10  # issue 43's goals: `c360 demo` after set-up; `c360 gold` on its lake


def bench_demo(workdir: Path) -> list[dict]:
    """``c360 demo`` end to end (2,000 customers: local broker, generate, replay, stream, gold, dashboard; set-up
    done), then ``c360 gold`` alone on the lake it left (every table, exports and the dashboard)."""
    started = time.monotonic()
    with (workdir / "demo.log").open("w") as fh:
        subprocess.run([sys.executable, "-m", "c360", "demo"], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                       check=True)
    demo_s = time.monotonic() - started
    started = time.monotonic()
    with (workdir / "gold-demo.log").open("w") as fh:
        subprocess.run([sys.executable, "-m", "c360", "gold", "--lake", str(ROOT / "demo" / "lake"), "--as-of",
                        "2025-01-01", "--exports", str(workdir / "demo-exports"), "--dashboard",
                        str(workdir / "demo-dashboard.html")], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                       check=True)
    gold_s = time.monotonic() - started
    return [
        figure("demo_seconds", demo_s, "s", {"customers": 2000, "includes": "c360 demo after set-up: local broker, "
                                             "generate, replay, stream (Spark), gold + dashboard (embedded)"},
               {"limit": DEMO_LIMIT_S}, demo_s / DEMO_LIMIT_S),
        figure("gold_demo_seconds", gold_s, "s", {"customers": 2000, "engine": "embedded (auto)", "includes":
                                                  "c360 gold on the demo's lake: 16 tables, exports, dashboard, "
                                                  "process start included"},
               {"limit": GOLD_DEMO_LIMIT_S}, gold_s / GOLD_DEMO_LIMIT_S),
    ]


def markdown(results: list[dict]) -> str:
    rows = ["| figure | value | peer or limit | ratio |", "| --- | --- | --- | --- |"]
    for r in results:
        peer = r["peer"] or {}
        peer_text = ("-" if not peer else f"limit {peer['limit']}" if "limit" in peer
                     else f"{peer.get('name')}: {peer.get('value'):,}")
        rows.append(f"| `{r['name']}` | {r['value']:,} {r['unit']} | {peer_text} | {r['ratio']} |")
    return "\n".join(rows)


def save_results(results: list[dict]) -> list[dict]:
    """Merge these figures into bench/results/latest.json (a figure measured again replaces its old value);
    returns every figure the file now holds."""
    previous = {r["name"]: r for r in json.loads(RESULTS.read_text())["figures"]} if RESULTS.exists() else {}
    merged = list({**previous, **{r["name"]: r for r in results}}.values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "figures": merged}, indent=2) + "\n")
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="profile,generate,replay,stream,demo,gold,soak",
                    help="comma-separated: profile, generate, replay, stream, demo, gold, soak")
    ap.add_argument("--scale", type=int, default=1_000_000, help="customers for the generator figure")
    ap.add_argument("--replay-scale", type=int, default=50_000, help="customers of the data set replayed")
    ap.add_argument("--stream-scale", type=int, default=150_000,
                    help="customers of the data set streamed (150k: 5M records, enough for the 5k events/s load)")
    ap.add_argument("--latency-seconds", type=int, default=180,
                    help="how long the 5k events/s load is measured, after its warm-up")
    ap.add_argument("--latency-warmup-seconds", type=int, default=120,
                    help="how long the 5k events/s load runs before the records measured")
    ap.add_argument("--soak-minutes", type=float, default=30, help="how long the soak's load lasts")
    ap.add_argument("--soak-rate", type=int, default=5000, help="events/s during the soak")
    ap.add_argument("--gold-scale", type=int, default=1_000_000, help="customers of the gold refresh figure")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL)  # e.g. "coordinator load in progress: retrying"
    wanted = set(args.only.split(","))
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="c360-bench-") as tmp:
        if "profile" in wanted:
            results += bench_profile(Path(tmp))
            print(markdown(results[-1:]), flush=True)
        if "generate" in wanted:
            results += bench_generate(args.scale, Path(tmp))
            print(markdown(results[-2:]), flush=True)
        if "replay" in wanted:
            results += bench_replay(args.replay_scale, Path(tmp))
            print(markdown(results[-1:]), flush=True)
        if "stream" in wanted:
            results += bench_stream(args.stream_scale, args.latency_seconds, args.latency_warmup_seconds, Path(tmp))
            print(markdown(results[-10:]), flush=True)
        if "demo" in wanted:
            results += bench_demo(Path(tmp))
            print(markdown(results[-2:]), flush=True)
        if "gold" in wanted:
            from bench.gold_bench import bench_gold

            results += bench_gold(args.gold_scale, Path(tmp), figure)
            print(markdown(results[-10:]), flush=True)
        if "soak" in wanted:
            from bench.soak import run_soak

            results += run_soak(args.soak_minutes, args.soak_rate, Path(tmp))
            print(markdown(results[-4:]), flush=True)
    print("\n" + markdown(save_results(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
