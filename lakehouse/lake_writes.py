"""Idempotent Delta writes without a JVM: delta-rs appends and merges for batches that fit in the driver.

Why: Delta-Spark 4.4 rebuilds a table's state (three Spark jobs) for every MERGE and every transaction-id check,
about 3.5 s per silver table per micro-batch whatever its size (docs/performance.md), so a stream that writes 17
tables a batch cannot be near-real-time on Spark's writer. delta-rs reads the log itself, keeps the table's state
between commits (:class:`OpenTables`) and merges a few thousand rows in tens of milliseconds.

Exactly-once as on Spark (``lakehouse.delta``): every commit carries Delta's transaction id ``(app_id,
version)`` (a ``txn`` action, which Spark's writer checks too, so either writer may resume the other's
checkpoint) and the tag ``app_id:version`` as its ``userMetadata``. A write whose transaction id the table
already holds is skipped, and a merge skipped that way reports the counts of the commit that made it, found by
its tag (else a batch run again after a crash would count its rows as duplicates). The tables stay ordinary
Delta tables (reader 1 / writer 2): Spark reads, OPTIMIZEs, VACUUMs and DELETEs from them (``c360 forget``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

from lakehouse.errors import first_line
from lakehouse.lake import uri

log = logging.getLogger(__name__)
T = TypeVar("T")

CONFLICT_ATTEMPTS = 5


# commits of a table between two compactions of its small files (Delta-Spark's auto compaction, which delta-rs does
# not run, starts at 50 small files)
COMPACT_EVERY = 50
# the compaction in event-time order (OpenTables.compact_in_order) joins neighbouring files smaller than the first
# into files of up to the second; a file as big as the first is never rewritten again
SMALL_FILE_BYTES = 32 * 2**20
TARGET_FILE_BYTES = 64 * 2**20


class OpenTables:
    """delta-rs tables kept open between micro-batches: each is brought up to date (the log's new commits only,
    milliseconds) before it is written, so a commit by another writer (Spark's OPTIMIZE, ``c360 forget``) is seen.

    Every ``compact_every`` commits of a table its small files are compacted (delta-rs ``optimize.compact``: one
    commit that changes no data, which stream readers skip), as Delta-Spark's auto compaction would: a stream
    writes a file per table per batch, and a merge reads the files that may hold its keys. The tables start at
    different points of that count (a hash of the table's folder name, so the same table compacts at the same
    commits wherever the lake lives), so that they do not all compact in the same batch."""

    def __init__(self, compact_every: int = COMPACT_EVERY, compactor: Callable[[str], bool] | None = None):
        """``compactor(path)``, given, compacts a table whose turn has come instead of the committing thread (the
        long-running stream's :class:`streaming.ops.BackgroundCompactor`); False when it cannot take the table
        now, which then asks again at its next commit."""
        self._open: dict[str, object] = {}
        self._commits: dict[str, int] = {}
        self.compact_every = compact_every
        self.compactor = compactor

    def get(self, path: str):
        from deltalake import DeltaTable

        table = self._open.get(path)
        if table is None:
            table = self._open[path] = DeltaTable(uri(path))
        else:
            table.update_incremental()
        return table

    def forget(self, path: str) -> None:
        self._open.pop(path, None)

    def committed(self, path: str) -> None:
        """Count a commit to ``path``; compact the table when its turn has come."""
        every = self.compact_every
        done = self._commits.get(path, zlib.crc32(os.path.basename(path.rstrip("/")).encode()) % every) + 1
        if done >= every and self.compactor is not None:
            done = 0 if self.compactor(path) else every
        elif done >= every:
            started = time.monotonic()
            try:
                self.compact(path)
            except Exception as exc:  # noqa: BLE001 - the data is committed; compaction only helps readers
                log.warning("compaction of %s failed (the next one tries again): %s", path, first_line(exc))
            else:  # inside the batch that made the commit: its share of the batch's time
                log.info("compacted %s in %.2fs", path, time.monotonic() - started)
            done = 0
        self._commits[path] = done

    def compact(self, path: str) -> None:
        """Rewrite the table's small files into bigger ones: one commit that changes no data (stream readers skip
        it), retried when it loses to a concurrent writer. A table of ``COMPACTION_ORDER`` (event tables, bronze)
        in a local folder is compacted in the order of its column there (:meth:`compact_in_order`), any other with
        delta-rs' ``optimize.compact``."""
        from deltalake import CommitProperties

        from lakehouse.schemas import COMPACTION_ORDER

        column = COMPACTION_ORDER.get(os.path.basename(path.rstrip("/")))
        with compaction_lock(path):
            if column and _local(path) and _plain(self.get(path)):
                _with_retries(lambda: self.compact_in_order(path, column), self, path, f"compact {path}")
                return
            metadata = CommitProperties(custom_metadata={"userMetadata": COMPACTION_TAG})
            metrics = _with_retries(lambda: self.get(path).optimize.compact(commit_properties=metadata), self,
                                    path, f"compact {path}")
        log.debug("compacted %s: %s files into %s", path, metrics.get("numFilesRemoved"),
                  metrics.get("numFilesAdded"))

    def compact_in_order(self, path: str, column: str) -> int:
        """Join the table's neighbouring small files, in the order of ``column``, into files sorted by it; returns
        the files removed.

        Why not delta-rs' ``optimize.compact``: it packs files largest first, whatever their content, and
        rewrites every file under its target size each time. An event table's files then each span the whole
        history, and a merge, which reads only the files whose event-time range overlaps its batch's, reads the
        whole table every batch (silver_logins in the soak: one 75 MB file of 1.8M rows, 0.7 s a merge against
        0.07 s with its files in order; docs/performance.md). delta-rs' ``z_order`` keeps the order but rewrites
        the whole table each time. Here a file of ``SMALL_FILE_BYTES`` or more is left as it is, and the others
        are joined with their neighbours in event time only, up to ``TARGET_FILE_BYTES``.

        delta-rs writes the new files (into a scratch table in the table's folder, for their statistics), and one
        commit adds them and removes the old ones, neither a data change; a concurrent writer that removed one of
        the old files (``c360 forget``, another compaction) makes the commit fail, and it is planned again."""
        import shutil
        import uuid

        import pyarrow as pa
        import pyarrow.parquet as pq
        from deltalake import CommitProperties, write_deltalake
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction, RemoveAction

        _remove_stale_scratch(os.path.join(path, "_c360_compaction"))
        table = self.get(path)
        parts = list(table.metadata().partition_columns)
        removed = 0
        for run in _runs_in_order(table, column, parts):
            schema = target_schema(table)
            pieces = []
            for f in run:
                piece = pq.ParquetFile(os.path.join(path, unquote(f["path"]))).read()  # no partitions from the path
                for c in parts:  # the values as delta-rs gives them (a date partition's as dates)
                    piece = piece.append_column(c, pa.array([f[f"partition.{c}"]] * piece.num_rows,
                                                            schema.field(c).type))
                pieces.append(conform(piece, schema))  # (a file may hold string views, or Spark's types)
            data = pa.concat_tables(pieces).sort_by(column)
            scratch = os.path.join(path, "_c360_compaction", uuid.uuid4().hex)
            moved: list[str] = []
            try:
                write_deltalake(scratch, data, partition_by=parts or None)
                first = Path(scratch, "_delta_log", f"{0:020d}.json").read_text().splitlines()
                adds = [a["add"] for a in map(json.loads, first) if "add" in a]
                for a in adds:
                    dest = os.path.join(path, unquote(a["path"]))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.replace(os.path.join(scratch, unquote(a["path"])), dest)
                    moved.append(dest)
                now = int(time.time() * 1000)
                actions = [AddAction(a["path"], a["size"], a["partitionValues"], a["modificationTime"], False,
                                     a["stats"]) for a in adds]
                actions += [RemoveAction(f["path"], False, now, f["size_bytes"],
                                         {c: _partition_text(f[f"partition.{c}"]) for c in parts} or None)
                            for f in run]
                table.create_write_transaction(
                    actions, mode="append", schema=table.schema(), partition_by=parts or None,
                    commit_properties=CommitProperties(custom_metadata={"userMetadata": COMPACTION_TAG}))
            except CommitFailedError:
                for dest in moved:  # never committed: nobody reads them
                    os.remove(dest)
                raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            table = self.get(path)
            removed += len(run)
        return removed

    def reorder(self, path: str, column: str) -> None:
        """Rewrite the whole table sorted by ``column`` (delta-rs' ``z_order`` on one column; per partition), one
        commit that changes no data: for a table whose files each span its whole history (compacted before the
        compaction in order), after which :meth:`compact_in_order` keeps it in order."""
        from deltalake import CommitProperties

        metadata = CommitProperties(custom_metadata={"userMetadata": COMPACTION_TAG})
        with compaction_lock(path):
            _with_retries(lambda: self.get(path).optimize.z_order([column], commit_properties=metadata), self, path,
                          f"reorder {path}")

    def vacuum(self, path: str, retention_hours: int) -> int:
        """Delete the files of ``path`` that no version of the last ``retention_hours`` needs (the number
        deleted). The hours are the operator's (``stream.vacuum_retention_hours``), below Delta's 168 too."""
        from deltalake import CommitProperties

        metadata = CommitProperties(custom_metadata={"userMetadata": "c360 maintenance"})
        return len(_with_retries(lambda: self.get(path).vacuum(retention_hours, dry_run=False,
                                                               enforce_retention_duration=False,
                                                               commit_properties=metadata),
                                 self, path, f"vacuum {path}"))


COMPACTION_TAG = "c360 compaction"
COMPACTION_LOCK = "_c360_compaction.lock"  # in the table's folder: hidden from readers and VACUUM (a leading _)


@contextlib.contextmanager
def compaction_lock(path: str):
    """Hold the table's compaction lock (a local table: an exclusive ``flock`` on a file in its folder, across
    processes) while a compaction plans and commits.

    Why: delta-rs 1.6.6 lets two commits that remove the same files both succeed when the first removed them as no
    data change (delta-rs#3982: a concurrent compaction no longer conflicts with anything). Two compactions of one
    table planned from the same version then both commit, and every row they moved is there twice: the soak at
    2026-12-08 01:04 doubled 2.3M bronze rows when the stream's background compaction and its scheduled
    maintenance compacted bronze at once (two ``optimize.compact`` calls do the same, tested). Waiting for the
    lock, the second plans on the version the first committed. A table on an object store has no lock: run one
    compactor per table there (``c360 maintain`` not while the stream's maintenance runs)."""
    if not _local(path) or not os.path.isdir(path):
        yield
        return
    import fcntl

    with open(os.path.join(path, COMPACTION_LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _partition_text(value) -> str | None:
    """A partition value as the Delta log writes it (delta-rs gives a date partition's values as dates)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return str(value)  # a date's ISO form, a number's digits


def _local(path: str) -> bool:
    return "://" not in path


def _plain(table) -> bool:
    """Whether the table's files hold its rows as they are (no deletion vectors, no column mapping): then they
    can be read and rewritten with pyarrow."""
    protocol = table.protocol()
    if protocol.min_reader_version < 3:  # 2: column mapping
        return protocol.min_reader_version == 1
    return not set(protocol.reader_features or []) & {"deletionVectors", "columnMapping"}


STALE_SCRATCH_S = 3600


def _remove_stale_scratch(folder: str) -> None:
    """Remove the scratch tables a compaction killed mid-way left (an hour old: none is still being written).
    Delta's VACUUM does not look into folders whose name starts with an underscore."""
    import shutil

    if not os.path.isdir(folder):
        return
    for entry in os.scandir(folder):
        if time.time() - entry.stat().st_mtime > STALE_SCRATCH_S:
            shutil.rmtree(entry.path, ignore_errors=True)


def _runs_in_order(table, column: str, parts: list[str]) -> list[list[dict]]:
    """Per partition, the table's files in the order of their smallest ``column`` value, cut into runs of
    neighbouring files under ``SMALL_FILE_BYTES`` of at most ``TARGET_FILE_BYTES`` together; runs of one file
    are left out (nothing to join)."""
    import pyarrow as pa

    files = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    groups: dict[tuple, list[dict]] = {}
    for f in files:
        groups.setdefault(tuple(f.get(f"partition.{c}") for c in parts), []).append(f)
    runs: list[list[dict]] = []
    for group in groups.values():
        group.sort(key=lambda f: (f.get(f"min.{column}") is not None, f.get(f"min.{column}") or 0, f["path"]))
        run: list[dict] = []
        run_bytes = 0
        for f in [*group, None]:
            size = f["size_bytes"] if f else 0
            if f is None or size >= SMALL_FILE_BYTES or run_bytes + size > TARGET_FILE_BYTES:
                run = _worth_joining(run)
                if len(run) > 1:
                    runs.append(run)
                run = [f] if f is not None and size < SMALL_FILE_BYTES else []
                run_bytes = size if run else 0
            else:
                run.append(f)
                run_bytes += size
    return runs


def _worth_joining(run: list[dict]) -> list[dict]:
    """``run`` without the files at its head that are bigger than the rest of it together. The head is the
    previous compaction's file (the oldest times); joining a few new small files to it rewrote it for little, each
    round (the soak's bronze compactions grew round after round while the partitions of its slower sources stayed
    under ``SMALL_FILE_BYTES``). So a file is rewritten only into a file at least twice its size, and a row is
    rewritten a number of times logarithmic in its partition's size, not once per round."""
    total = sum(f["size_bytes"] for f in run)
    while len(run) > 1 and 2 * run[0]["size_bytes"] > total:
        total -= run[0]["size_bytes"]
        run = run[1:]
    return run


def txn_tag(app_id: str, version: int) -> str:
    """The ``userMetadata`` of a commit made once per ``(app_id, version)`` (the same as Spark's writer's)."""
    return f"{app_id}:{version}"


def is_committed(table, app_id: str, version: int) -> bool:
    """Whether the table holds the transaction ``(app_id, version)`` (or a later one of ``app_id``)."""
    done = table.transaction_version(app_id)
    return done is not None and int(done) >= version


def _commit(app_id: str, version: int):
    from deltalake import CommitProperties, Transaction

    return CommitProperties(custom_metadata={"userMetadata": txn_tag(app_id, version)},
                            app_transactions=[Transaction(app_id, version)])


def target_schema(table):
    """The table's columns as a pyarrow schema (to cast a batch to before writing it)."""
    import pyarrow as pa

    return pa.schema(table.schema().to_arrow())


def conform(data, schema):
    """``data`` (a pyarrow Table) with exactly ``schema``'s columns and types: the columns the table lacks go, the
    ones the batch lacks are null (a table an older c360 made keeps its columns), timestamps take the table's
    zone."""
    import pyarrow as pa

    columns = [data[f.name].cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _with_retries(fn: Callable[[], T], tables: OpenTables, path: str, what: str) -> T:
    """Run ``fn``, retrying a commit that lost to a concurrent writer (bounded, with backoff). Safe: a retry
    re-reads the table and re-checks the transaction id first."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return fn()
        except CommitFailedError as exc:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            delay = 0.2 * 2 ** (attempt - 1)
            log.warning("write conflict on %s (attempt %d/%d: %s), retrying in %.1fs", what, attempt,
                        CONFLICT_ATTEMPTS, str(exc).splitlines()[0], delay)
            time.sleep(delay)
            tables.forget(path)
    raise AssertionError("unreachable")


def append_once(tables: OpenTables, path: str, data, *, app_id: str, version: int,
                partition_by: list[str] | None = None) -> bool:
    """Append ``data`` (pyarrow) to the table at ``path`` once per ``(app_id, version)``; False when that
    version was already committed (nothing written)."""
    from deltalake import write_deltalake

    def write() -> bool:
        table = tables.get(path)
        if is_committed(table, app_id, version):
            log.info("%s: %s is already committed, skipped", path, txn_tag(app_id, version))
            return False
        write_deltalake(table, conform(data, target_schema(table)), mode="append", partition_by=partition_by,
                        commit_properties=_commit(app_id, version))
        return True

    done = _with_retries(write, tables, path, f"append to {path}")
    if done:
        tables.committed(path)
    return done


def merge_once(tables: OpenTables, path: str, source, *, predicate: str, app_id: str, version: int,
               update_when: str | None = None) -> dict[str, int]:
    """MERGE ``source`` (pyarrow; alias ``s``) into the table at ``path`` (alias ``t``) on ``predicate``, once
    per ``(app_id, version)``: insert the rows that match nothing; with ``update_when``, a matched row whose
    condition holds takes the source row. The table's columns are written (the source's other columns only serve
    the conditions). Returns ``{"inserted": n, "updated": n}``; for a version already committed, the counts of
    the commit that made it (none: the merge changed nothing, so nothing was committed)."""

    def merge() -> dict[str, int]:
        table = tables.get(path)
        if is_committed(table, app_id, version):
            return committed_counts(table, txn_tag(app_id, version))
        schema = target_schema(table)
        columns = {f.name: f"s.`{f.name}`" for f in schema}
        # the source's own columns, cast to the table's types (zones, decimals); extra ones kept for conditions
        data = conform(source, schema)
        for name in source.column_names:
            if name not in data.column_names:
                data = data.append_column(name, source[name])
        # the source is small and in memory: not streamed, so that delta-rs can prune the target's files with the
        # source's key and time ranges
        merger = table.merge(data, predicate, source_alias="s", target_alias="t", streamed_exec=False,
                             commit_properties=_commit(app_id, version))
        if update_when is not None:
            merger = merger.when_matched_update(columns, predicate=update_when)
        metrics = merger.when_not_matched_insert(columns).execute()
        counts = {"inserted": int(metrics.get("num_target_rows_inserted") or 0),
                  "updated": int(metrics.get("num_target_rows_updated") or 0)}
        if counts["inserted"] or counts["updated"]:  # delta-rs commits nothing for a merge that changes nothing
            tables.committed(path)
        return counts

    return _with_retries(merge, tables, path, f"merge into {path}")


def committed_counts(table, tag: str, depth: int = 100) -> dict[str, int]:
    """Rows inserted and updated by the newest MERGE tagged ``tag`` among the table's last ``depth`` commits,
    whichever writer made it (delta-rs and Spark name the metrics differently)."""
    for entry in table.history(depth):
        if entry.get("userMetadata") != tag or entry.get("operation") != "MERGE":
            continue
        m = entry.get("operationMetrics") or {}
        return {"inserted": int(m.get("num_target_rows_inserted", m.get("numTargetRowsInserted")) or 0),
                "updated": int(m.get("num_target_rows_updated", m.get("numTargetRowsUpdated")) or 0)}
    return {"inserted": 0, "updated": 0}
