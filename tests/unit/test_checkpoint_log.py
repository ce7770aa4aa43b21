"""Reading a streaming query's checkpoint logs (Spark's file layout, written here by hand as Spark writes it)."""

from __future__ import annotations

import json

from lakehouse import checkpoint_log


def _write(path, *lines: str, prefix: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prefix + "\n".join(lines))


def test_the_last_commit_the_offsets_and_the_watermark_of_a_batch(tmp_path):
    ck = str(tmp_path / "ingest")
    assert checkpoint_log.last_committed(ck) is None and checkpoint_log.kafka_offsets(ck, 0) is None
    # a Kafka source's first offsets, after the NUL byte Spark writes before them
    _write(tmp_path / "ingest/sources/0/0", "v1", json.dumps({"t": {"0": 0, "1": 5}}), prefix="\0")
    for n, end in ((0, {"t": {"0": 3, "1": 7}}), (1, {"t": {"0": 4, "1": 9}})):
        _write(tmp_path / f"ingest/offsets/{n}", "v1", json.dumps({"batchWatermarkMs": 1000 * n, "conf": {}}),
               json.dumps(end))
    _write(tmp_path / "ingest/commits/0", "v1", "{}")
    _write(tmp_path / "ingest/commits/.1.tmp", "v1")  # an interrupted write is no commit
    assert checkpoint_log.last_committed(ck) == 0
    assert checkpoint_log.kafka_offsets(ck, -1) == {"t": {"0": 0, "1": 5}}
    assert checkpoint_log.kafka_offsets(ck, 1) == {"t": {"0": 4, "1": 9}}
    assert checkpoint_log.batch_watermark_ms(ck, 1) == 1000
    assert checkpoint_log.batch_watermark_ms(ck, 2) is None


def test_an_object_store_checkpoint_is_not_read_here():
    assert not checkpoint_log.is_local("s3a://bucket/ck/ingest")
    assert checkpoint_log.is_local("file:///tmp/ck") and checkpoint_log.is_local("/tmp/ck")
    assert checkpoint_log.last_committed("s3a://bucket/ck/ingest") is None
