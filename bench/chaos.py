"""``make chaos``: kill -9 the streaming app at random moments across a replay, restart it each time, and compare
every table with an uninterrupted run over the same Kafka records.

One broker, one partition per topic (Kafka order is then each file's event-time order, so no login can fall
behind a watermark however batches are cut). The producer replays every source at a steady rate while
``c360 stream`` is started and killed (SIGKILL to its whole process group: driver JVM and Python workers)
``--kills`` times, half of them a random few seconds after the start, the others a random few seconds after the
run committed a batch; a last ``c360 stream --available-now`` drains the rest. The reference is one
``c360 stream --available-now`` over the same topics into its own lake. Then:

- lost: records in Kafka missing from the killed run's bronze, plus rows of the reference's tables (every bronze,
  silver and stream table, the quarantine, the per-source counters) missing from the killed run's;
- duplicated: bronze rows sharing a Kafka offset, plus rows the killed run has beyond the reference's.

Prints ``chaos: kills=N lost=0 duplicated=0`` when exactly-once holds (exit 0; else exit 1), and merges the
figures ``chaos_kills``, ``chaos_lost_events``, ``chaos_duplicated_events`` into bench/results/latest.json.

    python -m bench.chaos [--events 1000000] [--kills 20] [--seed 7] [--rate 700] [--batch 100000]
                          [--max-delay 45] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import ROOT, figure, markdown, save_results

# columns that record when c360 did something, not what: they differ between two runs over the same records
VOLATILE = ("_ingestion_timestamp", "_ingestion_date", "_updated_at", "_quarantined_at", "_quarantine_date",
            "processed_at", "logged_at")
# per-source counters that do not depend on where batches were cut (updated vs. duplicate does: a key seen twice
# in one batch is one insert and one duplicate, in two batches one insert and one update)
OPS_TOTALS = ("read_rows", "quarantined_rows", "inserted_rows", "rescued_rows")
EVENTS_PER_CUSTOMER = 33  # what the generator's defaults give (measured: 668,864 records for 20,000 customers)


def comparable(df, name: str, ops_totals=OPS_TOTALS):
    """A table as two runs over the same records must agree on it: without the columns that say when c360 did
    something, and the batch counters as per-source totals."""
    df = df.drop(*[c for c in df.columns if c in VOLATILE])
    if name == "stream_alerts":  # which batch sent an alert, and so its stage, depends on where batches were cut;
        return df.select("alert_id", "kind")  # what was sent does not (as `make test`'s kill test compares it)
    if name == "ops_stream_batches":
        df = df.groupBy("source").sum(*ops_totals)
    return df


def _stream(env, *extra, **popen):
    return subprocess.Popen([sys.executable, "-m", "c360", "stream", *extra], cwd=ROOT, env=env,
                            start_new_session=True, **popen)


def _batches(checkpoint: Path) -> tuple[int, int]:
    """The ingest query's last planned and last committed batch ids (-1: none)."""
    def last(kind):
        return max((int(p.name) for p in (checkpoint / kind).glob("[0-9]*")), default=-1)

    return last("offsets"), last("commits")


def _moment(at_start: tuple[int, int], now: tuple[int, int]) -> str:
    """Where a kill landed: before the run finished or planned any batch (start-up, or re-running the batch the
    last kill interrupted), inside a batch it planned or re-ran after committing one, or between batches."""
    if now == at_start:
        return "start_up_or_recovery"
    return "mid_batch" if now[0] > now[1] else "between_batches"


def start_replay(data: Path, rate: int, env: dict[str, str], log_file: Path,
                 interleave: bool = False) -> subprocess.Popen:
    """``c360 replay`` at ``rate`` events/s in the background (``interleave``: all files at once), its output in
    ``log_file`` (a file, not a pipe: nobody reads a pipe until the end)."""
    with open(log_file, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "c360", "replay", "--input", str(data), "--rate", str(rate),
                                 "--no-progress", *(["--interleave"] if interleave else [])],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def kafka_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records per topic: the sum of its partitions' high watermarks."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "c360-bench", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=30).topics
        return {t: sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30)[1]
                       for p in (meta[t].partitions if t in meta else {})) for t in topics}
    finally:
        consumer.close()


def bronze_offsets(spark, lake: Path, source: str) -> tuple[int, int]:
    """A source's bronze rows and distinct Kafka records (topic, partition, offset) among them."""
    from pyspark.sql import functions as F

    r = (spark.read.format("delta").load(str(lake / "bronze_records")).where(F.col("source") == source)
         .agg(F.count(F.lit(1)), F.countDistinct("topic", "partition", "offset")).first())
    return int(r[0]), int(r[1])


def compare(spark, ref_lake: Path, killed_lake: Path, names: list[str], kafka: dict[str, int]) -> dict:
    """Rows lost and duplicated by the killed run, per table, against the reference; and per bronze table
    against Kafka's record counts (``kafka``: topic -> records, topics named ``<prefix>.<source>``)."""
    lost, duplicated = {}, {}
    for name in names:
        want = comparable(spark.read.format("delta").load(str(ref_lake / name)), name)
        got = comparable(spark.read.format("delta").load(str(killed_lake / name)), name)
        lost[name], duplicated[name] = want.exceptAll(got).count(), got.exceptAll(want).count()
    for topic, records in kafka.items():
        rows, distinct = bronze_offsets(spark, killed_lake, topic.rsplit(".", 1)[1])
        lost[f"kafka->{topic}"], duplicated[f"kafka->{topic}"] = records - distinct, rows - distinct
    return {"lost": lost, "duplicated": duplicated}


def _writer() -> str:
    """Who commits the stream's Delta writes in these runs (``stream.writer``, as the stream resolves it)."""
    from lakehouse.config import load
    from lakehouse.engine import stream_writer

    return stream_writer(load())


def run_chaos(events: int, kills: int, seed: int, rate: int, batch: int, min_delay: float, max_delay: float,
              workdir: Path) -> tuple[list[dict], bool]:
    from lakehouse.kafka_local import LocalKafka, free_port
    from lakehouse.tables import GENERATED, SOURCES
    from producers.generate import GenerateParams, generate

    rng = random.Random(seed)
    data = workdir / "data"
    scale = max(math.ceil(events / EVENTS_PER_CUSTOMER), 50)
    summary = generate(data, GenerateParams(scale=scale, seed=seed))
    print(f"chaos: generated {sum(summary.rows.values()):,} records for {scale:,} customers", flush=True)
    broker = LocalKafka(ROOT / ".c360", "127.0.0.1", free_port(), free_port(), home=workdir / "broker")
    broker.start()
    try:
        base = dict(os.environ, C360_KAFKA_BOOTSTRAP=broker.bootstrap, C360_KAFKA_TOPIC_PREFIX="chaos.",
                    C360_KAFKA_PARTITIONS="1", C360_LAKE_STATE_DIR=str(ROOT / ".c360"),
                    C360_STREAM_TRIGGER_INTERVAL="1 second", C360_STREAM_DERIVED_TRIGGER_INTERVAL="1 second",
                    C360_STREAM_MAX_OFFSETS_PER_TRIGGER=str(batch))

        def env(run):
            return {**base, "C360_LAKE_ROOT": str(workdir / f"lake-{run}"),
                    "C360_LAKE_CHECKPOINT_ROOT": str(workdir / f"ck-{run}")}

        log_dir = workdir / "logs"
        log_dir.mkdir()
        replay_log = log_dir / "replay.log"
        replayer = start_replay(data, rate, base, replay_log)
        checkpoint = workdir / "ck-killed" / "ingest"
        moments: list[str] = []
        delays: list[float] = []
        started = time.monotonic()
        while len(moments) < kills:
            at_start = _batches(checkpoint)
            with open(log_dir / f"run-{len(delays):02d}.log", "w") as out:
                app = _stream(env("killed"), stdout=out, stderr=subprocess.STDOUT)
            # half the runs die early (start-up, or re-running the batch the last kill interrupted); the others
            # once they have committed a batch, a random moment later (between batches or inside the next one):
            # so the kills are spread over the whole replay, not piled up before the first commit
            early = rng.random() < 0.5
            delay = round(rng.uniform(min_delay, max_delay), 1)
            waited = time.monotonic()
            if not early:
                while _batches(checkpoint)[1] == at_start[1] and app.poll() is None \
                        and time.monotonic() - waited < 900:
                    time.sleep(0.5)
            time.sleep(delay)
            delays.append(round(time.monotonic() - waited, 1))
            if app.poll() is None:
                moment = _moment(at_start, _batches(checkpoint))
                os.killpg(app.pid, signal.SIGKILL)
                moments.append(moment)
                print(f"chaos: kill {len(moments)}/{kills} after {delays[-1]}s ({moment}; "
                      f"{_batches(checkpoint)[1] + 1} batches committed)", flush=True)
            else:
                print(f"chaos: run {len(delays)} exited by itself (code {app.returncode}): see "
                      f"{log_dir}/run-{len(delays) - 1:02d}.log", flush=True)
                if len(delays) > kills * 2:
                    raise RuntimeError("the streaming app keeps exiting on its own")
            app.wait()
        committed_by_kills = _batches(checkpoint)[1] + 1
        replayer.wait(timeout=3600)
        replay_out = replay_log.read_text()
        if replayer.returncode != 0:
            raise RuntimeError(f"replay failed: {replay_out[-2000:]}")
        print(f"chaos: {replay_out.strip().splitlines()[-1]}", flush=True)
        kill_phase = time.monotonic() - started
        for run in ("killed", "reference"):
            t0 = time.monotonic()
            done = _stream(env(run), "--available-now", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out, _ = done.communicate(timeout=7200)
            if done.returncode != 0:
                raise RuntimeError(f"c360 stream --available-now ({run}) failed:\n{out[-3000:]}")
            print(f"chaos: {run} run drained Kafka in {time.monotonic() - t0:.0f}s", flush=True)
        topics = [f"chaos.{s}" for s in GENERATED]
        kafka = kafka_counts(broker.bootstrap, topics)
    finally:
        broker.stop()

    from bench.run import _spark
    from streaming.ops import stream_table_names

    spark = _spark()
    names = stream_table_names(list(SOURCES))
    result = compare(spark, workdir / "lake-reference", workdir / "lake-killed", names, kafka)
    lost, duplicated = sum(result["lost"].values()), sum(result["duplicated"].values())
    sent = sum(kafka.values())
    params = {"events": sent, "sources": len(GENERATED), "kills": len(moments),
              "moments": {m: moments.count(m) for m in sorted(set(moments))}, "delays_s": delays,
              "kill_phase_s": round(kill_phase), "replay_rate_eps": rate, "max_offsets_per_trigger": batch,
              "batches_committed_by_killed_runs": committed_by_kills, "seed": seed,
              "tables_compared": len(names), "writer": _writer()}
    bad = {k: {"lost": result["lost"][k], "duplicated": result["duplicated"][k]} for k in result["lost"]
           if result["lost"][k] or result["duplicated"][k]}
    if bad:
        params["differences"] = bad
        print("chaos: differences " + json.dumps(bad), flush=True)
    figs = [figure("chaos_kills", len(moments), "kills", params, {"limit": kills}, len(moments) / kills),
            figure("chaos_lost_events", lost, "events", {"events": sent, "kills": len(moments)}, {"limit": 0}),
            figure("chaos_duplicated_events", duplicated, "events", {"events": sent, "kills": len(moments)},
                   {"limit": 0})]
    print(f"chaos: kills={len(moments)} lost={lost} duplicated={duplicated} ({sent:,} events, "
          f"{params['tables_compared']} tables compared)", flush=True)
    return figs, lost == 0 and duplicated == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="about this many events replayed (default 1M)")
    ap.add_argument("--kills", type=int, default=20, help="kill -9 the streaming app this many times")
    ap.add_argument("--seed", type=int, default=7, help="the data set's and the kill delays' random seed")
    ap.add_argument("--rate", type=int, default=700, help="replay rate, events/s (the replay spans the kills)")
    ap.add_argument("--batch", type=int, default=100_000, help="records per micro-batch at most (both runs)")
    ap.add_argument("--min-delay", type=float, default=5,
                    help="shortest wait before a kill, seconds (from the start, or from the run's first commit)")
    ap.add_argument("--max-delay", type=float, default=45, help="longest such wait, seconds")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)
    if min(args.events, args.kills, args.rate, args.batch) < 1 or not 0 < args.min_delay <= args.max_delay:
        ap.error("--events, --kills, --rate and --batch must be positive and 0 < --min-delay <= --max-delay")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="c360-chaos-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        figs, ok = run_chaos(args.events, args.kills, args.seed, args.rate, args.batch, args.min_delay, args.max_delay, workdir)
    save_results(figs)
    print(markdown(figs))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
