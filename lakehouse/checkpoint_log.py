"""What a streaming query's checkpoint on a local file system says about its batches: which was recorded done
last, and the Kafka offsets and event-time watermark each ran with.

Spark's offset log holds, per batch, ``v1``, the batch's metadata (watermark, time, conf) and one line per source
with the offsets it ends at; its commit log has an entry per batch recorded done; a Kafka source's first offsets
are in ``sources/0/0``. These are Spark's own files (``OffsetSeqLog``, ``CommitLog``, ``KafkaSourceInitialOffsetWriter``),
read here rather than through Spark's internals. Every reader answers None for a checkpoint on an object store
(``://``): the callers then do without (the alerts' settling) or do not use what needs them (the pipelined ingest).
"""

from __future__ import annotations

import json
from pathlib import Path


def is_local(checkpoint: str) -> bool:
    return "://" not in checkpoint or checkpoint.startswith("file:")


def _folder(checkpoint: str) -> Path:
    return Path(checkpoint.removeprefix("file://").removeprefix("file:"))


def _entry(checkpoint: str, log: str, batch_id: int) -> list[str] | None:
    path = _folder(checkpoint) / log / str(batch_id)
    if not is_local(checkpoint) or not path.exists():
        return None
    return path.read_text().lstrip("\0").splitlines()


def last_committed(checkpoint: str) -> int | None:
    """The last batch the commit log records done (None: none yet)."""
    folder = _folder(checkpoint) / "commits"
    if not is_local(checkpoint) or not folder.is_dir():
        return None
    done = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    return max(done) if done else None


def batch_watermark_ms(checkpoint: str, batch_id: int) -> int | None:
    """The event-time watermark a batch ran with (None when its entry cannot be read here)."""
    lines = _entry(checkpoint, "offsets", batch_id)
    return int(json.loads(lines[1]).get("batchWatermarkMs", 0)) if lines and len(lines) > 1 else None


def kafka_offsets(checkpoint: str, batch_id: int) -> dict[str, dict[str, int]] | None:
    """The offsets (topic -> partition -> offset) the query's one Kafka source ends batch ``batch_id`` at, or for
    ``batch_id`` -1 the source's first offsets; None when the log does not hold them."""
    lines = _entry(checkpoint, "offsets", batch_id) if batch_id >= 0 else _entry(checkpoint, "sources/0", 0)
    if not lines or len(lines) < 2:
        return None
    return json.loads(lines[-1])
