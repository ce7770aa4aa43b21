"""``make bench``: c360's speed and memory figures, each measured against a peer or a limit in the same run.

Writes ``bench/results/latest.json``: a list of
``{"name", "value", "unit", "params", "peer", "ratio"}`` (ratio = value / peer, so for throughput higher is
better, for time and memory against a limit lower is better) and prints a Markdown table for README.

    python -m bench.run [--only generate,replay] [--scale N] [--replay-scale N]
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


def markdown(results: list[dict]) -> str:
    rows = ["| figure | value | peer or limit | ratio |", "| --- | --- | --- | --- |"]
    for r in results:
        peer = r["peer"] or {}
        peer_text = f"limit {peer['limit']}" if "limit" in peer else f"{peer.get('name')}: {peer.get('value'):,}"
        rows.append(f"| `{r['name']}` | {r['value']:,} {r['unit']} | {peer_text} | {r['ratio']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="generate,replay", help="comma-separated: generate, replay")
    ap.add_argument("--scale", type=int, default=1_000_000, help="customers for the generator figure")
    ap.add_argument("--replay-scale", type=int, default=50_000, help="customers of the data set replayed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL)  # e.g. "coordinator load in progress: retrying"
    wanted = set(args.only.split(","))
    previous = {r["name"]: r for r in json.loads(RESULTS.read_text())["figures"]} if RESULTS.exists() else {}
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="c360-bench-") as tmp:
        if "generate" in wanted:
            results += bench_generate(args.scale, Path(tmp))
            print(markdown(results[-2:]), flush=True)
        if "replay" in wanted:
            results += bench_replay(args.replay_scale, Path(tmp))
            print(markdown(results[-1:]), flush=True)
    merged = {**previous, **{r["name"]: r for r in results}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "figures": list(merged.values())}, indent=2) + "\n")
    print("\n" + markdown(list(merged.values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
