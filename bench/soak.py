"""The soak (part of ``make bench``): ``c360 stream`` under a steady load of every source at once (``c360 replay
--interleave``) for N minutes while ``c360 gold`` runs twice and the stream's own maintenance (OPTIMIZE + VACUUM)
runs every ten minutes: the lag, the batch duration trend and memory over time, and that nothing was lost.

The lag's peer is the floor of this stack measured first in the same run, on the same broker, data, rate and 1 s
trigger: a bare query appending every topic's raw records to one Delta table (``bench.run.FLOOR_PEER``), its p95
from production to visible. The goal (issue 44) is a maximum lag of at most 3 times that p95.

Every 5 s it samples the stream's memory (the driver JVM and its Python workers: the app's process tree; resident
and proportional sets) and its backlog (records in Kafka beyond the last committed batch's offsets). Meanwhile a
reader (a Spark session of its own, like a BI tool's) queries a bronze, two silver and a gold table over and over
while they are appended, merged, compacted and overwritten: each answer must be exactly one committed version's
content (its rows, keys and a checksum of every column equal what time travel to that version gives afterwards),
never a mix or an error. After the load, the app drains what is left and stops; then every record Kafka holds must
be in bronze exactly once, both gold runs must have succeeded, and the lag is measured per silver row, from its
Kafka timestamp to the commit that made it visible.

    python -m bench.soak [--minutes 30] [--rate 5000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.chaos import EVENTS_PER_CUSTOMER, _batches, bronze_offsets, kafka_counts, start_replay
from bench.run import (
    FLOOR_PEER,
    ROOT,
    _spark,
    _under_load,
    commit_latencies,
    figure,
    latency_percentiles,
    markdown,
    save_results,
    silver_latencies,
    utc_now,
)
from lakehouse.engine import run_below_stream

SAMPLE_EVERY_S = 5
READ_EVERY_S = 10
# what the reader queries during the soak, and each table's key (unique in every version)
READ_TABLES = {"bronze_records": ("topic", "partition", "offset"), "silver_orders": ("order_id",),
               "silver_customers": ("customer_id",), "gold_customer_360": ("customer_id",)}
# the tables whose rows never change once written (appended only): their key is their content, so a read's checksum
# covers the key's columns. Hashing every column of bronze (the raw JSON of every record) made the reader the
# soak's biggest consumer of CPU at 5,000 events/s (24 CPU-minutes in 35 minutes, more than the stream), which
# starved the stream it was there to watch
APPEND_ONLY = {"bronze_records"}
MAINTENANCE_EVERY_MIN = 10  # the stream's OPTIMIZE + VACUUM during the soak (the default is every 6 hours)
GOLD_AT = (0.2, 0.6)  # the two gold refreshes start at these fractions of the load
DRIVER_MEMORY_GIB = 4
FLOOR_WARMUP_S, FLOOR_S = 60, 120  # the floor's load: a warm-up, then the records measured (as bench.run's)
LAG_GOAL = 3.0  # the maximum lag, in p95s of the floor
READER_NICE = 10  # the default batch.nice
# the stream, gold and the reader run in the soak's session, in a process group of their own: Linux's autogroup
# scheduling shares the CPU between sessions before nice values count, so a stream in a session of its own took
# only its session's share against the reader's and gold's, whatever their nice values (2026-12-07 21:19)
SAME_SESSION = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}


def _same_address_space(a: int, b: int) -> bool:
    """Whether two processes share one address space (kcmp(2), KCMP_VM; False where it is unavailable)."""
    import ctypes
    import platform

    if platform.machine() != "x86_64":
        return False
    kcmp, kcmp_vm = 312, 1  # the x86_64 syscall number, and the comparison of memory maps
    return ctypes.CDLL(None, use_errno=True).syscall(kcmp, a, b, kcmp_vm, 0, 0) == 0


def tree_memory(pid: int) -> dict[str, float | int]:
    """Memory of a process and all its descendants, from /proc (PySpark's worker daemon puts itself in a process
    group of its own, so the app's group alone leaves the Python workers out): the sum of resident sets
    (``rss_gib``; pages that forked Python workers share with their daemon count once per process), the sum of
    proportional sets (``pss_gib``: each shared page split between its sharers, what the tree really holds), the
    JVMs' resident sets and the Python processes' count and resident sets. A process that shares its parent's
    address space (spawned with vfork, not yet exec'd) is counted once, not twice."""
    procs: dict[int, tuple[str, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
            procs[int(stat.parent.name)] = (name.split("(", 1)[1], int(rest.split()[1]))  # name, ppid
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    children: dict[int, list[int]] = {}
    for child, (_, parent) in procs.items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid] if pid in procs else []
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    out: dict[str, float | int] = {"rss_gib": 0.0, "pss_gib": 0.0, "jvm_rss_gib": 0.0, "python_processes": 0,
                                   "python_rss_gib": 0.0, "other_rss_gib": 0.0, "shared_address_spaces": 0}
    for p in tree:
        if p != pid and _same_address_space(p, procs[p][1]):  # a vfork'd child before its exec: its parent's pages
            out["shared_address_spaces"] += 1
            continue
        try:  # both sets from one read: kB
            sizes = {k: int(v.split()[0]) / 2**20 for k, v in (line.split(":", 1) for line in
                     Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]) if k in ("Rss", "Pss")}
            rss, pss = sizes["Rss"], sizes["Pss"]
        except (OSError, ValueError, KeyError):
            continue  # ended meanwhile, or a kernel thread without memory
        name = procs[p][0]
        out["rss_gib"] += rss
        out["pss_gib"] += pss
        if name == "java":
            out["jvm_rss_gib"] += rss
        elif name.startswith("python"):
            out["python_processes"] += 1
            out["python_rss_gib"] += rss
        else:
            out["other_rss_gib"] += rss
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def committed_offsets(checkpoint: Path) -> int:
    """Records the stream has committed: the sum of the last committed batch's end offsets."""
    last = _batches(checkpoint)[1]
    if last < 0:
        return 0
    offsets = json.loads((checkpoint / "offsets" / str(last)).read_text().splitlines()[-1])
    return sum(sum(parts.values()) for parts in offsets.values())


def fingerprint(df, keys: tuple[str, ...], *, content: tuple[str, ...] | None = None) -> dict:
    """Rows, distinct keys and a checksum of the ``content`` columns (every column when None) of one read of a
    table."""
    from pyspark.sql import functions as F

    row_hash = F.xxhash64(F.to_json(F.struct(*[F.col(f"`{c}`") for c in content or df.columns])))
    got = df.agg(F.count("*").alias("rows"), F.countDistinct(*keys).alias("keys"),
                 F.sum(row_hash.cast("decimal(38,0)")).alias("checksum")).first()
    return {"rows": got["rows"], "keys": got["keys"], "checksum": str(got["checksum"])}


def _content(table: str) -> tuple[str, ...] | None:
    """The columns a read's checksum covers (:data:`APPEND_ONLY`)."""
    return READ_TABLES[table] if table in APPEND_ONLY else None


def latest_version(path: Path) -> int | None:
    """A local Delta table's newest committed version, from its log's file names (None before its first commit:
    a table being created has a ``_delta_log`` folder before that)."""
    versions = [int(f.stem) for f in (path / "_delta_log").glob("*.json") if f.stem.isdigit()]
    return max(versions, default=None)


def read_once(spark, path: Path, keys: tuple[str, ...]) -> dict:
    """One reader's query of a table while others write it: its answer and the version it read (None when a
    commit landed during the query, so that which version it saw is not known)."""
    before = latest_version(path)
    got = fingerprint(spark.read.format("delta").load(str(path)), keys, content=_content(path.name))
    return {**got, "version": before if latest_version(path) == before else None}


def check_reads(spark, lake: Path, reads: list[dict]) -> dict:
    """Each read against its table's keys and, where its version is known, against that version read afterwards
    by time travel: the reads that saw duplicated keys, a mix of versions or failed."""
    truth: dict[tuple[str, int], dict] = {}
    bad = {"failed": 0, "duplicate_keys": 0, "not_a_committed_version": 0}
    for r in reads:
        if "error" in r:
            bad["failed"] += 1
            continue
        if r["rows"] != r["keys"]:
            bad["duplicate_keys"] += 1
        if r["version"] is not None:
            at = (r["table"], r["version"])
            if at not in truth:
                df = spark.read.format("delta").option("versionAsOf", r["version"]).load(str(lake / r["table"]))
                truth[at] = fingerprint(df, READ_TABLES[r["table"]], content=_content(r["table"]))
            if {k: r[k] for k in ("rows", "keys", "checksum")} != truth[at]:
                bad["not_a_committed_version"] += 1
    return {"reads": len(reads), "versions_checked": len(truth), **bad}


def read_all(spark, lake: Path, reads: list[dict]) -> None:
    """One round of the reader: each table of READ_TABLES that has a first commit (before it, the table is not
    there yet for a reader)."""
    from lakehouse.errors import error_text

    for name, keys in READ_TABLES.items():
        path = lake / name
        if latest_version(path) is None:
            continue
        started = time.monotonic()
        try:
            reads.append({"table": name, **read_once(spark, path, keys)})
        except Exception as exc:  # noqa: BLE001 - a failed read is what this counts
            reads.append({"table": name, "error": error_text(exc)[:300]})
        reads[-1]["seconds"] = round(time.monotonic() - started, 1)


def read_while_writing(spark, lake: Path, stop: threading.Event, reads: list[dict]) -> None:
    """The reader: a round every READ_EVERY_S until ``stop``."""
    while not stop.wait(READ_EVERY_S):
        read_all(spark, lake, reads)


def trend_ms_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, batch ms)."""
    import numpy as np

    if len(points) < 2:
        return 0.0
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def lag_by_minute(latencies) -> dict[str, float]:
    """The maximum latency of the rows produced in each minute of the load (from its first row): where the lag
    peaked."""
    if not len(latencies):
        return {}
    minute = ((latencies.produced - latencies.produced.min()).dt.total_seconds() // 60).astype(int)
    return {str(m): round(float(v), 1) for m, v in latencies.latency_s.groupby(minute).max().items()}


_TIMINGS = re.compile(r"^(\d\d:\d\d:\d\d) INFO streaming\.ingest: \S+ batch (\d+) timings: (.*)$")
_COMPACTED = re.compile(r"^(\d\d:\d\d:\d\d) INFO \S+: compacted (\S+) in ([\d.]+)s( in the background)?$")


def stream_log_summary(text: str, slowest: int = 5) -> dict:
    """Where the stream's batches spent their time, from its log: each step's p50, p95 and maximum seconds over the
    batches, the ``slowest`` batches with their steps (and the clock time each ended), and the compactions per
    table (count, total and longest seconds; ``<table> (background)`` for those made beside the batches)."""
    import numpy as np

    batches, compactions = [], {}
    for line in text.splitlines():
        if m := _TIMINGS.match(line):
            steps = {k: float(v.rstrip("s")) for k, v in (kv.split("=", 1) for kv in m[3].split())}
            batches.append({"batch": int(m[2]), "ended": m[1], "total_s": round(sum(steps.values()), 2), **steps})
        elif m := _COMPACTED.match(line):
            name = Path(m[2]).name + (" (background)" if m[4] else "")
            c = compactions.setdefault(name, {"count": 0, "seconds_total": 0.0, "seconds_max": 0.0})
            c["count"] += 1
            c["seconds_total"] = round(c["seconds_total"] + float(m[3]), 2)
            c["seconds_max"] = max(c["seconds_max"], float(m[3]))
    names = list(dict.fromkeys(k for b in batches for k in b if k not in ("batch", "ended")))
    steps = {}
    for name in names:
        values = np.array([b[name] for b in batches if name in b])
        steps[name] = {"p50": round(float(np.percentile(values, 50)), 2),
                       "p95": round(float(np.percentile(values, 95)), 2), "max": round(float(values.max()), 2)}
    return {"batches": len(batches), "steps_s": steps,
            "slowest_batches": sorted(batches, key=lambda b: -b["total_s"])[:slowest], "compactions": compactions}


def _outside(latencies, windows: list[tuple]) -> float | None:
    """The maximum latency of the rows produced outside every ``(start, end)`` window (naive UTC) and the 30 s
    after each (a gold run's effect on the stream outlasts it while the backlog it left drains)."""
    import pandas as pd

    keep = pd.Series(True, index=latencies.index)
    for start, end in windows:
        keep &= ~latencies.produced.between(pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(seconds=30))
    rows = latencies[keep]
    return round(float(rows.latency_s.max()), 1) if len(rows) else None


def measure_floor(spark, bootstrap: str, data: Path, rate: int, workdir: Path) -> dict:
    """The floor's p50 and p95 from production to visible (the bare query of ``bench.run.FLOOR_PEER``) under the
    soak's load, on topics of its own: the peer of the soak's lag."""
    import pandas as pd

    from lakehouse.tables import GENERATED

    table = workdir / "soak-floor-table"
    env = dict(os.environ, C360_KAFKA_BOOTSTRAP=bootstrap, C360_KAFKA_TOPIC_PREFIX="soakfloor.",
               C360_LAKE_ROOT=str(workdir / "soak-floor-lake"), C360_LAKE_STATE_DIR=str(ROOT / ".c360"),
               C360_STREAM_TRIGGER_INTERVAL="1 second")
    start, end, ok = _under_load(
        [sys.executable, "-c", FLOOR_PEER, ",".join(GENERATED), str(workdir / "soak-floor-ck"), str(table), "live"],
        env, data, workdir, "soak-floor", FLOOR_WARMUP_S, FLOOR_S,
        lambda sent: spark.read.format("delta").load(str(table)).count() >= sent, rate=rate)
    lat = latency_percentiles(commit_latencies(spark, [str(table)], "_written_at", "timestamp"),
                              since=pd.Timestamp(start) + pd.Timedelta(seconds=FLOOR_WARMUP_S), until=pd.Timestamp(end))
    return {**lat, "all_records_caught_up": ok}


def run_soak(minutes: float, rate: int, workdir: Path) -> list[dict]:
    from lakehouse.kafka_local import LocalKafka, free_port
    from lakehouse.tables import GENERATED
    from producers.generate import GenerateParams, generate

    data = workdir / "soak-data"
    scale = max(math.ceil(1.2 * rate * minutes * 60 / EVENTS_PER_CUSTOMER), 50)  # more than the load needs
    generate(data, GenerateParams(scale=scale, seed=11))
    broker = LocalKafka(ROOT / ".c360", "127.0.0.1", free_port(), free_port(), home=workdir / "soak-broker")
    broker.start()
    lake, checkpoints = workdir / "soak-lake", workdir / "soak-ck"
    env = dict(os.environ, C360_KAFKA_BOOTSTRAP=broker.bootstrap, C360_KAFKA_TOPIC_PREFIX="soak.",
               C360_LAKE_ROOT=str(lake), C360_LAKE_CHECKPOINT_ROOT=str(checkpoints),
               C360_LAKE_STATE_DIR=str(ROOT / ".c360"), C360_GOLD_EXPORT_DIR=str(workdir / "soak-exports"),
               C360_DASHBOARD_FILE=str(workdir / "soak-dashboard.html"),
               C360_STREAM_MAINTENANCE_INTERVAL_MINUTES=str(MAINTENANCE_EVERY_MIN), C360_STREAM_TRIGGER_INTERVAL="1 second")
    samples: list[dict] = []
    gold_runs: list[dict] = []
    reads: list[dict] = []
    spark = _spark()  # the reader's session now, the checks' afterwards
    try:
        floor = measure_floor(spark, broker.bootstrap, data, rate, workdir)
        with open(workdir / "soak-stream.log", "w") as out:
            app = subprocess.Popen([sys.executable, "-m", "c360", "stream"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, **SAME_SESSION)
        checkpoint = checkpoints / "ingest"
        deadline = time.monotonic() + 300
        while _batches(checkpoint)[1] < 0 and app.poll() is None and time.monotonic() < deadline:
            time.sleep(1)  # the first (empty) batch: the app is up
        if app.poll() is not None or _batches(checkpoint)[1] < 0:
            raise RuntimeError(f"c360 stream did not start: see {workdir / 'soak-stream.log'}")
        topics = [f"soak.{s}" for s in GENERATED]
        stop = threading.Event()
        started = time.monotonic()

        def sample():
            while not stop.wait(SAMPLE_EVERY_S):
                try:
                    backlog = sum(kafka_counts(broker.bootstrap, topics).values()) - committed_offsets(checkpoint)
                except Exception:  # noqa: BLE001 - a sample may fail while a file is being written
                    continue
                samples.append({"minute": round((time.monotonic() - started) / 60, 2), **tree_memory(app.pid),
                                "backlog_records": backlog})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # the reader is a BI tool's: like `c360 gold`, it runs below the stream's CPU priority (batch.nice). At
        # full priority its checks took 27% of the 2 cores at minute 10 (2026-12-07 20:27), more than the
        # stream's JVM and its parse worker together
        run_below_stream(READER_NICE, spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        reader = threading.Thread(target=read_while_writing, args=(spark, lake, stop, reads), daemon=True)
        reader.start()
        replay_log = workdir / "soak-replay.log"
        replayer = start_replay(data, rate, env, replay_log, interleave=True)

        def refresh_gold():  # twice, at fixed moments of the load (the second waits if the first is still running)
            for at in GOLD_AT:
                time.sleep(max(0.0, started + at * minutes * 60 - time.monotonic()))
                t0, began = time.monotonic(), utc_now()
                gold = subprocess.run([sys.executable, "-m", "c360", "gold", "--as-of", "2025-01-15"], cwd=ROOT,
                                      env=env, capture_output=True, text=True)
                gold_runs.append({"started_min": round((t0 - started) / 60, 1), "exit": gold.returncode,
                                  "seconds": round(time.monotonic() - t0), "started_at": began,
                                  "ended_at": utc_now(),
                                  "error": gold.stderr.strip()[-300:] if gold.returncode else ""})

        refresher = threading.Thread(target=refresh_gold, daemon=True)
        refresher.start()
        time.sleep(max(0.0, started + minutes * 60 - time.monotonic()))
        replayer.send_signal(signal.SIGTERM)  # the load lasts `minutes`, whatever is left of the files
        replayer.wait(timeout=300)
        replay_out = replay_log.read_text()
        load_minutes = (time.monotonic() - started) / 60
        refresher.join()  # a gold refresh still running goes on with the stream draining
        sent = sum(kafka_counts(broker.bootstrap, topics).values())
        drain_deadline = time.monotonic() + 1800
        while committed_offsets(checkpoint) < sent and app.poll() is None and time.monotonic() < drain_deadline:
            time.sleep(2)
        stop.set()
        sampler.join()
        reader.join()
        crashed = app.poll()
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=300)
        kafka = kafka_counts(broker.bootstrap, topics)
    finally:
        broker.stop()

    counts = [bronze_offsets(spark, lake, name) for name in GENERATED]
    lost = sum(kafka.values()) - sum(distinct for _, distinct in counts)
    doubled = sum(rows - distinct for rows, distinct in counts)
    latencies = silver_latencies(spark, lake)
    lat = sorted(latencies.latency_s.tolist())
    quiet = _outside(latencies, [(g["started_at"], g["ended_at"]) for g in gold_runs])
    for g in gold_runs:
        g["started_at"], g["ended_at"] = str(g["started_at"]), str(g["ended_at"])
    progress = (spark.read.format("delta").load(str(lake / "ops_stream_progress"))
                .where("query = 'ingest' AND input_rows > 0").select("timestamp", "batch_duration_ms")
                .orderBy("timestamp").toPandas())
    times, durations = progress["timestamp"], progress["batch_duration_ms"]
    points = [((t - times.min()).total_seconds() / 60, ms) for t, ms in zip(times, durations, strict=True)]
    thirds = [durations[i * len(progress) // 3:(i + 1) * len(progress) // 3].mean() / 1000
              for i in range(3)] if len(progress) >= 3 else []
    by_minute: dict[str, float] = {}  # each minute's peak
    for s in samples:
        minute = str(int(s["minute"]))
        by_minute[minute] = max(by_minute.get(minute, 0.0), s["rss_gib"])
    params = {
        "rate_eps": rate, "events": sum(kafka.values()), "customers": scale, "load_minutes": round(load_minutes, 1),
        "gold_runs": gold_runs, "maintenance_every_min": MAINTENANCE_EVERY_MIN, "stream_exited_early": crashed is not None,
        "replay": replay_out.strip().splitlines()[-1] if replay_out.strip() else "",
        "batches": len(progress), "batch_s_by_third": [round(x, 1) for x in thirds],
        "batch_ms_trend_per_min": round(trend_ms_per_min(points)),
        "max_backlog_records": max((s["backlog_records"] for s in samples), default=None),
        "p95_lag_s": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
        "max_lag_outside_gold_s": quiet,
        "max_lag_s_by_minute": lag_by_minute(latencies),
        "stream_log": stream_log_summary((workdir / "soak-stream.log").read_text(errors="replace")),
        "floor": floor,
        "rss_gib_by_minute": by_minute,
        "doubled_records": doubled,
        "reader": check_reads(spark, lake, reads),
    }
    gold_ok = all(g["exit"] == 0 for g in gold_runs)
    reader = params["reader"]
    inconsistent = reader["failed"] + reader["duplicate_keys"] + reader["not_a_committed_version"]
    print(f"soak: {load_minutes:.1f} min at {rate} ev/s, gold runs {[g['exit'] for g in gold_runs]}, "
          f"lost={lost} doubled={doubled}, max lag {lat[-1] if lat else float('nan'):.0f}s "
          f"({quiet}s outside the gold runs; the floor's p95 {floor['p95_s']}s), "
          f"reads {reader['reads']} inconsistent={inconsistent}", flush=True)
    top = max(samples, key=lambda s: s["rss_gib"], default={})
    peak = top.get("rss_gib", float("nan"))
    return [
        figure("soak_minutes", load_minutes if gold_ok and crashed is None else 0, "min", params, {"limit": minutes},
               load_minutes / minutes),
        figure("soak_lost_events", lost, "events", {"events": sum(kafka.values()), "doubled": doubled},
               {"limit": 0}),
        figure("soak_max_lag_s", lat[-1] if lat else float("nan"), "s",
               {"p95_s": params["p95_lag_s"], "rate_eps": rate, "rows_measured": len(lat),
                "max_outside_gold_runs_s": quiet},
               {"name": "the floor's p95 at the same rate, same run (a bare Spark query appending every topic's raw "
                        "records to one Delta table)", "value": floor["p95_s"], "goal_ratio": LAG_GOAL},
               (lat[-1] if lat else float("nan")) / (floor["p95_s"] or float("nan"))),
        figure("soak_peak_rss_gib", peak, "GiB", {"driver_memory_gib": DRIVER_MEMORY_GIB,
                                                  "samples": len(samples), "what": "driver JVM + Python workers",
                                                  "peak_sample": top,
                                                  "peak_pss_gib": max((s["pss_gib"] for s in samples), default=None)},
               {"limit": DRIVER_MEMORY_GIB * 2}, peak / (DRIVER_MEMORY_GIB * 2)),
        figure("soak_inconsistent_reads", inconsistent, "reads",
               {**reader, "tables": sorted(READ_TABLES), "every_s": READ_EVERY_S,
                "read_s_max": max((r["seconds"] for r in reads), default=None),
                "errors": sorted({r["error"] for r in reads if "error" in r})[:3]}, {"limit": 0}),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30, help="how long the load lasts (default 30)")
    ap.add_argument("--rate", type=int, default=5000, help="events/s replayed meanwhile (default 5,000)")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.rate < 1:
        ap.error("--minutes and --rate must be positive")
    with tempfile.TemporaryDirectory(prefix="c360-soak-") as tmp:
        figs = run_soak(args.minutes, args.rate, Path(tmp))
    save_results(figs)
    print(markdown(figs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
