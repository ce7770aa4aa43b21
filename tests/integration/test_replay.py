"""The replay producer against the real broker: consume everything back and check it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lakehouse.kafka_admin import client_config, topic_partitions
from lakehouse.tables import GENERATED, SOURCES
from producers.generate import GenerateParams, generate
from producers.replay import Record, _event_time_order, replay

pytestmark = pytest.mark.integration


def consume(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 60) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer(client_config(bootstrap, **{"group.id": f"t-{time.monotonic_ns()}",
                                                    "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe(topics)
    got, deadline, idle = [], time.monotonic() + timeout_s, 0
    try:
        while time.monotonic() < deadline and (len(got) < expected or idle < 2):
            batch = consumer.consume(10_000, timeout=1.0)
            idle = 0 if batch else idle + 1
            for m in batch:
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        consumer.close()
    return got


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay-data")
    summary = generate(out, GenerateParams(scale=250, seed=5))
    return out, summary


def in_topic(bootstrap: str, topic: str) -> int:
    """How many records a topic holds (sum of its partitions' high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(bootstrap, **{"group.id": "watermarks"}))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    except Exception:  # noqa: BLE001 - the topic may not exist yet
        return 0
    finally:
        consumer.close()


def summary_truth(out: Path) -> dict:
    return json.loads((out / "_labels" / "summary.json").read_text())["truth"]


def _expected_lines(path: Path, fmt: str) -> int:
    lines = path.read_text().splitlines()
    return len(lines) - (1 if fmt == "csv" else 0)


def test_every_row_arrives_once_with_its_key_or_is_rejected(kafka_cfg, data, tmp_path):
    out, _ = data
    rejects = tmp_path / "rejects.jsonl"
    summary = replay(kafka_cfg, out, rejects_file=rejects, progress=False)
    assert summary.failed == 0 and not summary.interrupted
    assert set(summary.sent) == {SOURCES[s].file for s in GENERATED}
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(rejected) == sum(summary.rejected.values()) > 0
    assert {r["file"] for r in rejected} <= {"customers.csv", "orders_large.csv", "clickstream.json"}
    malformed = {"customers.csv": summary_truth(out)["customers_malformed_rows"],
                 "clickstream.json": summary_truth(out)["clicks_malformed"],
                 "orders_large.csv": summary_truth(out)["orders_malformed_rows"]}
    assert {f: summary.rejected[f] for f in malformed} == malformed
    for s in map(SOURCES.get, GENERATED):  # every line is either sent or rejected
        assert summary.sent[s.file] + summary.rejected[s.file] == _expected_lines(out / s.file, s.format), s.file
    topics = [kafka_cfg.kafka.topic(s) for s in GENERATED]
    got = consume(kafka_cfg.kafka.bootstrap_servers, topics, summary.total_sent)
    assert len(got) == summary.total_sent
    places = Counter((dict(m.headers())["source_file"].decode(), int(dict(m.headers())["source_line"])) for m in got)
    assert max(places.values()) == 1, "a row arrived twice"
    assert not set(places) & {(r["file"], r["line"]) for r in rejected}
    for m in got[:2000]:
        source = next(s for s in SOURCES.values() if kafka_cfg.kafka.topic(s.name) == m.topic())
        value = json.loads(m.value())
        assert (m.key() or b"").decode() == value.get(source.key_column, "").strip()
        assert len(value["event_id"]) == 32
    assert topic_partitions(kafka_cfg.kafka.bootstrap_servers, topics[0]) == kafka_cfg.kafka.partitions


def test_sigterm_flushes_and_resume_neither_loses_nor_repeats(kafka_cfg, data, tmp_path):
    out, summary = data
    env = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    env.update({"C360_KAFKA_BOOTSTRAP": kafka_cfg.kafka.bootstrap_servers,
                "C360_KAFKA_TOPIC_PREFIX": kafka_cfg.kafka.topic_prefix,
                "C360_LAKE_STATE_DIR": str(tmp_path / "state")})
    cmd = [sys.executable, "-m", "c360", "replay", "--input", str(out), "--sources", "logins", "--no-progress"]
    proc = subprocess.Popen([*cmd, "--rate", "300"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # --rate 300 over ~2000 logins: once records are arriving, the signal lands mid-way
    topic = kafka_cfg.kafka.topic("logins")
    deadline = time.monotonic() + 60
    while in_topic(kafka_cfg.kafka.bootstrap_servers, topic) < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted, everything sent was flushed" in stdout and "--resume" in stdout
    first = int(re.search(r"sent (\d+) records", stdout).group(1))
    total = summary.truth["login_rows"]
    assert 0 < first < total
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    second = int(re.search(r"sent (\d+) records", done.stdout).group(1))
    assert first + second == total
    got = consume(kafka_cfg.kafka.bootstrap_servers, [kafka_cfg.kafka.topic("logins")], total)
    lines = Counter(int(dict(m.headers())["source_line"]) for m in got)
    assert len(got) == total and set(lines) == set(range(2, total + 2)) and max(lines.values()) == 1


def test_event_time_replay_interleaves_sources(kafka_cfg, data):
    out, _ = data
    from producers.replay import InputFile, Layout, Positions

    files = [InputFile(SOURCES[s], out / SOURCES[s].file, s, Layout.of(SOURCES[s], None), SOURCES[s].file)
             for s in ("customers", "logins", "orders", "clickstream")]
    items = [i for i in _event_time_order(files, Positions(out / "unused.json", {})) if isinstance(i, Record)]
    first_timed = next(k for k, i in enumerate(items) if i.event_time is not None)
    assert {i.topic for i in items[:first_timed]} == {"customers"}  # records without an event time go first
    timed = [i for i in items[first_timed:] if i.event_time is not None]
    running = [max(i.event_time for i in timed[: k + 1]) for k in range(0, len(timed), 500)]
    assert running == sorted(running)
    in_order = sum(a.event_time <= b.event_time for a, b in zip(timed, timed[1:], strict=False)) / len(timed)
    assert in_order > 0.95  # the rest are the late events of the files, sent when reached
    window = [i.topic for i in timed[len(timed) // 2: len(timed) // 2 + 200]]
    assert len(set(window)) >= 3, "sources are interleaved, not one after another"
    summary = replay(kafka_cfg, out, sources=["logins", "orders"], speedup=1e9, progress=False)
    assert summary.failed == 0 and summary.total_sent > 0
