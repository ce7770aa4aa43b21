"""The embedded writer's idempotent delta-rs writes, on real Delta tables (no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakehouse.lake_writes import OpenTables, append_once, committed_counts, merge_once

SCHEMA = pa.schema([("id", pa.string()), ("v", pa.int64()), ("ts", pa.timestamp("us", "UTC"))])


def _table(path: Path) -> str:
    write_deltalake(str(path), pa.Table.from_pylist([], SCHEMA), mode="overwrite")
    return str(path)


def _rows(path: str) -> list[tuple]:
    return sorted((r["id"], r["v"]) for r in DeltaTable(path).to_pyarrow_table().to_pylist())


def _commits(path: str) -> list[dict]:
    out = []
    for commit in sorted(Path(path, "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        out.append({"operation": next(a["commitInfo"]["operation"] for a in actions if "commitInfo" in a),
                    "tag": next(a["commitInfo"].get("userMetadata") for a in actions if "commitInfo" in a),
                    "txn": [(a["txn"]["appId"], a["txn"]["version"]) for a in actions if "txn" in a]})
    return out


def _batch(*rows: tuple[str, int]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "v": [r[1] for r in rows],
                     "ts": pa.array([None] * len(rows), pa.timestamp("us", "UTC"))})


def test_an_append_happens_once_per_version_and_carries_its_transaction_id_and_tag(tmp_path):
    path, tables = _table(tmp_path / "t"), OpenTables()
    assert append_once(tables, path, _batch(("a", 1)), app_id="q:t", version=0)
    assert not append_once(tables, path, _batch(("a", 1)), app_id="q:t", version=0)  # a re-run batch
    assert not append_once(OpenTables(), path, _batch(("a", 1)), app_id="q:t", version=0)  # after a restart
    assert append_once(tables, path, _batch(("b", 2)), app_id="q:t", version=1)
    assert _rows(path) == [("a", 1), ("b", 2)]
    assert [c["txn"] for c in _commits(path)[1:]] == [[("q:t", 0)], [("q:t", 1)]]
    assert [c["tag"] for c in _commits(path)[1:]] == ["q:t:0", "q:t:1"]


def test_a_batch_gets_the_tables_columns_and_types(tmp_path):
    path = _table(tmp_path / "t")
    naive = pa.table({"v": pa.array([3], pa.int32()), "id": ["x"], "extra": [1.5],
                      "ts": pa.array([0], pa.timestamp("us"))})
    append_once(OpenTables(), path, naive, app_id="q", version=0)
    got = DeltaTable(path).to_pyarrow_table()
    assert got.schema == SCHEMA
    assert got.to_pylist()[0]["v"] == 3 and got.to_pylist()[0]["id"] == "x"


def test_a_merge_inserts_new_keys_updates_only_when_its_condition_holds_and_runs_once(tmp_path):
    path, tables = _table(tmp_path / "t"), OpenTables()
    append_once(tables, path, _batch(("a", 1), ("b", 5)), app_id="seed", version=0)
    source = _batch(("a", 2), ("b", 4), ("c", 1))
    counts = merge_once(tables, path, source, predicate="t.id = s.id", app_id="q:silver", version=7,
                        update_when="s.v > t.v")
    assert counts == {"inserted": 1, "updated": 1}
    assert _rows(path) == [("a", 2), ("b", 5), ("c", 1)]
    # the same batch again (a restart): nothing is written, and the counts are the first run's
    version = DeltaTable(path).version()
    again = merge_once(OpenTables(), path, source, predicate="t.id = s.id", app_id="q:silver", version=7,
                       update_when="s.v > t.v")
    assert again == counts and DeltaTable(path).version() == version
    # insert-only (events): a key already there is left alone however its values differ
    assert merge_once(tables, path, _batch(("a", 9), ("d", 1)), predicate="t.id = s.id", app_id="q:silver",
                      version=8) == {"inserted": 1, "updated": 0}
    assert _rows(path) == [("a", 2), ("b", 5), ("c", 1), ("d", 1)]


def test_a_merge_that_changes_nothing_commits_nothing_and_counts_nothing(tmp_path):
    path, tables = _table(tmp_path / "t"), OpenTables()
    append_once(tables, path, _batch(("a", 1)), app_id="seed", version=0)
    version = DeltaTable(path).version()
    assert merge_once(tables, path, _batch(("a", 1)), predicate="t.id = s.id", app_id="q", version=0) == \
        {"inserted": 0, "updated": 0}
    assert DeltaTable(path).version() == version


def test_committed_counts_read_either_writers_metric_names():
    class History:
        def __init__(self, entries):
            self.entries = entries

        def history(self, depth):
            return self.entries[:depth]

    spark_style = History([{"operation": "OPTIMIZE", "userMetadata": "q:1"},
                           {"operation": "MERGE", "userMetadata": "q:1",
                            "operationMetrics": {"numTargetRowsInserted": "3", "numTargetRowsUpdated": "2"}}])
    assert committed_counts(spark_style, "q:1") == {"inserted": 3, "updated": 2}
    assert committed_counts(spark_style, "q:2") == {"inserted": 0, "updated": 0}


def test_small_files_are_compacted_every_n_commits_without_changing_data(tmp_path):
    path = _table(tmp_path / "t")
    tables = OpenTables(compact_every=4)
    for n in range(12):
        append_once(tables, path, _batch((f"k{n}", n)), app_id="q", version=n)
    commits = _commits(path)
    compactions = [c for c in commits if c["operation"] == "OPTIMIZE"]
    assert len(compactions) == 3 and all(c["tag"] == "c360 compaction" for c in compactions)
    assert _rows(path) == sorted((f"k{n}", n) for n in range(12))
    assert len(DeltaTable(path).file_uris()) <= 4


def test_spark_writes_timestamps_of_the_type_delta_rs_writes(spark, tmp_path):
    """A table both writers touch (the stream's delta-rs commits, then Spark's OPTIMIZE or `c360 forget`) must hold
    one timestamp type in every file: the embedded engine refused to read a table whose files mixed Spark's INT96
    with delta-rs' UTC microseconds (the soak's second gold run failed on it)."""
    import glob

    import pyarrow.parquet as pq
    from delta.tables import DeltaTable as SparkDeltaTable

    path = _table(tmp_path / "t")
    tables = OpenTables()
    for version in range(2):  # two delta-rs files
        append_once(tables, path, pa.table({"id": [f"r{version}"], "v": [version], "ts": pa.array(
            [1_700_000_000_000_000 + version], pa.timestamp("us", "UTC"))}), app_id="a", version=version)
    spark.sql(f"INSERT INTO delta.`{path}` VALUES ('r2', 2, TIMESTAMP'2024-01-01 10:00:00')")  # a Spark file
    SparkDeltaTable.forPath(spark, path).optimize().executeCompaction()  # Spark rewrites them all
    types = {str(pq.read_schema(f).field("ts").type) for f in glob.glob(f"{path}/*.parquet")}
    assert types == {"timestamp[us, tz=UTC]"}
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == ["r0", "r1", "r2"]


def test_the_streams_maintenance_compacts_and_vacuums_in_a_child_process_without_changing_data(tmp_path):
    """The embedded writer's scheduled maintenance (a child process below the stream's CPU priority): the small
    files become one, the ones no version needs any more are deleted from disk, the rows are the same, and a
    folder with no table yet is passed over."""
    import glob

    from streaming.ops import _maintain_in_child

    path, tables = _table(tmp_path / "t"), OpenTables(compact_every=1000)
    for n in range(5):
        append_once(tables, path, _batch((f"k{n}", n)), app_id="q", version=n)
    assert len(glob.glob(f"{path}/*.parquet")) == 5
    done = _maintain_in_child([path, str(tmp_path / "not-yet")], retention_hours=0, nice=1)
    assert done == {"tables": 1, "files_deleted": 5, "failed": []}
    assert _rows(path) == sorted((f"k{n}", n) for n in range(5))
    on_disk = {Path(f).name for f in glob.glob(f"{path}/*.parquet")}
    assert on_disk == {Path(u).name for u in DeltaTable(path).file_uris()} and len(on_disk) == 1
    assert [c["tag"] for c in _commits(path)[-3:]] == ["c360 compaction", "c360 maintenance", "c360 maintenance"]


def test_batch_work_runs_below_the_streams_cpu_priority_on_every_thread(tmp_path):
    """``run_below_stream`` lowers the threads a process already has and the ones it starts afterwards (a nice
    value belongs to each thread on Linux). In a child process: the test run keeps its own priority."""
    import subprocess
    import sys

    import pytest

    if not Path("/proc/self/task").is_dir():
        pytest.skip("per-thread priorities are read from /proc (Linux)")
    code = """
import os, threading, time
from lakehouse.engine import run_below_stream
gate = threading.Event()
before = threading.Thread(target=gate.wait); before.start()
base = os.getpriority(os.PRIO_PROCESS, before.native_id)
run_below_stream(3)
after = threading.Thread(target=gate.wait); after.start()
print(base, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
      os.getpriority(os.PRIO_PROCESS, before.native_id), os.getpriority(os.PRIO_PROCESS, after.native_id))
gate.set()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    base = int(out[0])
    assert [int(v) for v in out[1:]] == [min(19, base + 3)] * 3
