"""Operating the stream: per-query progress in the log and in ``ops_stream_progress``; table maintenance."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time

from lakehouse import schemas
from lakehouse.config import Config
from lakehouse.delta import ensure_table, retry, short_vacuum_retention
from lakehouse.engine import run_below_stream, stream_writer
from lakehouse.errors import first_line
from lakehouse.schemas import SILVER_SPECS
from lakehouse.tables import BRONZE_RECORDS, OPS_BATCHES, OPS_PROGRESS, QUARANTINE, SOURCES, table_path
from streaming.alerts import ALERTS_TABLE
from streaming.outputs import ANOMALIES_TABLE, CITY_HOUR_TABLE

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30


def stream_table_names(sources: list[str]) -> list[str]:
    """Every table the streaming app writes."""
    names = [BRONZE_RECORDS, QUARANTINE, OPS_BATCHES, ANOMALIES_TABLE, ALERTS_TABLE, CITY_HOUR_TABLE]
    for s in sources:
        names.append(SILVER_SPECS[s].table)
    return list(dict.fromkeys(names))


def _progress_row(p: dict) -> tuple:
    state_rows = sum(int(op.get("numRowsTotal") or 0) for op in p.get("stateOperators") or [])
    watermark = (p.get("eventTime") or {}).get("watermark")
    return (p.get("name"), int(p.get("batchId", -1)), p.get("timestamp"), int(p.get("numInputRows") or 0),
            float(p.get("inputRowsPerSecond") or 0.0), float(p.get("processedRowsPerSecond") or 0.0),
            int((p.get("durationMs") or {}).get("triggerExecution") or 0), state_rows, watermark,
            json.dumps(p.get("durationMs") or {}))


class ProgressLog:
    """Collects each query's progress reports; logs them and appends them to ``ops_stream_progress``."""

    def __init__(self, spark, lake_root: str):
        self.spark = spark
        self.path = table_path(lake_root, OPS_PROGRESS)
        self.seen: set[tuple] = set()
        ensure_table(spark, self.path, schemas.OPS_STREAM_PROGRESS)

    def flush(self, queries, *, log_it: bool = True) -> int:
        rows = []
        for q in queries:
            for p in q.recentProgress:
                key = (p.get("id"), p.get("runId"), p.get("batchId"))
                if key in self.seen:
                    continue
                self.seen.add(key)
                rows.append(_progress_row(p))
            p = q.lastProgress
            if log_it and p:
                log.info("%s: batch %s, %s rows, %.0f rows/s, %s ms, state rows %s, watermark %s", q.name,
                         p.get("batchId"), p.get("numInputRows"), p.get("processedRowsPerSecond") or 0,
                         (p.get("durationMs") or {}).get("triggerExecution"), _progress_row(p)[7],
                         (p.get("eventTime") or {}).get("watermark"))
        if rows:
            from pyspark.sql import functions as F

            df = (self.spark.createDataFrame(rows, schemas.OPS_STREAM_PROGRESS_RAW)
                  .withColumn("timestamp", F.to_timestamp("timestamp"))
                  .withColumn("watermark", F.to_timestamp("watermark")))
            try:
                retry(lambda: df.write.format("delta").mode("append").save(self.path), what=self.path)
            except Exception as exc:  # noqa: BLE001 - progress is for operators; never stop the stream for it
                log.warning("could not record stream progress: %s", str(exc).splitlines()[0])
        return len(rows)


def maintain(spark, paths: list[str], *, retention_hours: int) -> None:
    """OPTIMIZE (compact small files) then VACUUM (delete files unreferenced for ``retention_hours``) each table.

    Safe while the stream writes: compaction changes no data (``dataChange = false``, which stream readers skip)
    and conflicts are retried; VACUUM only deletes files no version within the retention needs."""
    from delta.tables import DeltaTable

    from lakehouse.lake_writes import compaction_lock

    with short_vacuum_retention(spark, retention_hours):
        for path in paths:
            table = DeltaTable.forPath(spark, path)
            with compaction_lock(path):  # not beside a delta-rs compaction of the table (the anomaly query's)
                retry(lambda t=table: t.optimize().executeCompaction(), what=f"optimize {path}")
            retry(lambda t=table: t.vacuum(retention_hours), what=f"vacuum {path}")
            log.info("maintained %s", path)


def maintain_embedded(paths: list[str], *, retention_hours: int, reorder: bool = False) -> dict:
    """What :func:`maintain` does, on delta-rs (the embedded writer's tables): compact, then VACUUM, each table;
    with ``reorder``, each event table is first rewritten whole in event-time order (``OpenTables.reorder``).

    Why not Spark here: Delta-Spark's OPTIMIZE and VACUUM plan Spark jobs and rebuild each table's state, about a
    minute of the stream's JVM for 23 tables, taken from the batches on a small machine (the soak,
    docs/performance.md); delta-rs reads each log itself and the embedded writer has compacted as it went."""
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.lake_writes import OpenTables
    from lakehouse.schemas import EVENT_TIME_OF_TABLE

    tables, done, deleted, reordered, failed = OpenTables(), 0, 0, 0, []
    for path in paths:
        try:
            tables.get(path)  # opened once: compact and vacuum use it
        except TableNotFoundError:
            continue
        column = EVENT_TIME_OF_TABLE.get(os.path.basename(path.rstrip("/")))
        try:
            if reorder and column:
                tables.reorder(path, column)
                reordered += 1
            tables.compact(path)
            deleted += tables.vacuum(path, retention_hours)
            done += 1
        except Exception as exc:  # noqa: BLE001 - the next round tries again; the other tables go on
            failed.append(f"{path}: {first_line(exc)}")
    return {"tables": done, "files_deleted": deleted, "reordered": reordered, "failed": failed}


def maintain_lake(cfg: Config, *, reorder: bool = False) -> dict:
    """``c360 maintain``: :func:`maintain_embedded` of every table the stream writes, now."""
    paths = [table_path(cfg.lake.root, n) for n in stream_table_names(list(SOURCES))]
    return maintain_embedded(paths, retention_hours=cfg.stream.vacuum_retention_hours, reorder=reorder)


def _maintain_in_child(paths: list[str], *, retention_hours: int, nice: int) -> dict:
    """:func:`maintain_embedded` in a child process ``nice`` below the stream's CPU priority (``batch.nice``): on a
    machine of few cores the stream's batches come first. (delta-rs runs on threads of its own that a thread of
    this process could not lower alone.)"""
    cmd = [sys.executable, "-m", "streaming.ops", "--retention-hours", str(retention_hours), "--nice", str(nice),
           *paths]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError((done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


class BackgroundCompactor:
    """Compacts the long-running stream's tables in a child process below its CPU priority (``batch.nice``), one
    table at a time, while the stream's batches go on: :class:`lakehouse.lake_writes.OpenTables` calls it when a
    table's turn comes, and it answers False while the previous table's compaction still runs (the table asks
    again at its next commit).

    Why: compacting in the batch that made the commit stopped that batch for as long as it took. In the soak at
    5,000 events/s one batch spent 12.7 s in its bronze step, a compaction rewriting that partition's files
    (docs/performance.md). A compaction commit changes no data and never conflicts with the stream's appends; a
    merge that read a file the compaction removed fails its commit and runs again (``_with_retries``), and a
    compaction that lost to a merge is planned again in the child."""

    def __init__(self, nice: int):
        self.nice = nice
        self._child: subprocess.Popen | None = None
        self._path = ""

    def __call__(self, path: str) -> bool:
        if not self._reap():
            return False
        self._child = subprocess.Popen([sys.executable, "-m", "streaming.ops", "--compact", "--nice", str(self.nice),
                                        path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._path = path
        return True

    def _reap(self) -> bool:
        """Whether no compaction runs (the last one's outcome logged)."""
        if self._child is None:
            return True
        if self._child.poll() is None:
            return False
        out, err = self._child.communicate()
        if self._child.returncode:
            log.warning("compaction of %s failed (the next one tries again): %s", self._path,
                        (err.strip().splitlines() or [f"exit {self._child.returncode}"])[-1])
        else:
            log.info("compacted %s in %.2fs in the background", self._path,
                     json.loads(out.strip().splitlines()[-1])["seconds"])
        self._child = None
        return True

    def close(self, timeout_s: float = 300) -> None:
        """Let a running compaction finish (then log it): a stream that stops leaves no child behind."""
        if self._child is not None:
            try:
                self._child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._child.kill()  # its commit is atomic: killed, it changed nothing
                self._child.wait()
        self._reap()


class Maintenance(threading.Thread):
    """Runs the stream tables' maintenance every ``stream.maintenance_interval_minutes``: :func:`maintain` on Spark
    with Spark's writer (on a cluster it runs on the executors), else :func:`maintain_embedded` in a child process
    below the stream's CPU priority."""

    def __init__(self, spark, cfg: Config, names: list[str], stop: threading.Event):
        super().__init__(name="c360-maintenance", daemon=True)
        self.spark, self.stop = spark, stop
        self.interval_s = cfg.stream.maintenance_interval_minutes * 60
        self.retention_hours = cfg.stream.vacuum_retention_hours
        self.paths = [table_path(cfg.lake.root, n) for n in names]
        self.embedded = stream_writer(cfg) == "embedded"
        self.nice = cfg.batch.nice
        self.runs = 0

    def run(self) -> None:
        if not self.interval_s:
            return
        next_run = time.monotonic() + self.interval_s
        while not self.stop.wait(max(0.0, min(5.0, next_run - time.monotonic()))):
            if time.monotonic() < next_run:
                continue
            try:
                self.maintain_once()
                self.runs += 1
            except Exception as exc:  # noqa: BLE001 - the next run tries again; the stream is unaffected
                log.warning("table maintenance failed: %s", str(exc).splitlines()[0])
            next_run = time.monotonic() + self.interval_s

    def maintain_once(self) -> None:
        started = time.monotonic()
        if self.embedded:
            done = _maintain_in_child(self.paths, retention_hours=self.retention_hours, nice=self.nice)
            log.info("table maintenance: %d tables compacted and vacuumed in %.1fs (%d files deleted)",
                     done["tables"], time.monotonic() - started, done["files_deleted"])
            for line in done["failed"]:  # the next round tries again
                log.warning("table maintenance failed on %s", line)
        else:
            maintain(self.spark, self.paths, retention_hours=self.retention_hours)
            log.info("table maintenance: %d tables in %.1fs", len(self.paths), time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """``python -m streaming.ops --retention-hours H --nice N path...``: :func:`maintain_embedded`, its counts as
    one JSON line on stdout (the stream's :class:`Maintenance` runs it); ``python -m streaming.ops --compact --nice
    N path``: compacts that table, its seconds as one JSON line (:class:`BackgroundCompactor`)."""
    parser = argparse.ArgumentParser(prog="python -m streaming.ops")
    parser.add_argument("--retention-hours", type=int)
    parser.add_argument("--compact", action="store_true", help="only compact the one table given")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.compact == (args.retention_hours is not None) or (args.compact and len(args.paths) != 1):
        parser.error("give either --retention-hours (maintenance) or --compact and one table")
    run_below_stream(args.nice)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.compact:
        from lakehouse.lake_writes import OpenTables

        started = time.monotonic()
        OpenTables().compact(args.paths[0])
        print(json.dumps({"seconds": round(time.monotonic() - started, 2)}))
        return 0
    print(json.dumps(maintain_embedded(args.paths, retention_hours=args.retention_hours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
