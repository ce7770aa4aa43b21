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
                    "txn": [(a["txn"]["appId"], a["txn"]["version"]) for a in actions if "txn" in a],
                    "add": [a["add"] for a in actions if "add" in a],
                    "remove": [a["remove"] for a in actions if "remove" in a]})
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
    assert done == {"tables": 1, "files_deleted": 5, "reordered": 0, "failed": []}
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
    if Path("/proc/self/autogroup").exists():  # Linux's autogroup: a session leader lowers its session's group
        leads = "from lakehouse.engine import run_below_stream; run_below_stream(3); print(open('/proc/self/autogroup').read())"
        group = subprocess.run([sys.executable, "-c", leads], capture_output=True, text=True, check=True,
                               start_new_session=True).stdout
        assert group.strip().endswith("nice 3"), group


def _event_rows(minutes: list[int], channel: str | None = None) -> pa.Table:
    """Login-like rows at 2024-01-01 00:00 + each minute (ids l<minute>)."""
    base = 1_704_067_200_000_000
    cols = {"login_id": pa.array([f"l{m}" for m in minutes], pa.string()),
            "login_datetime": pa.array([base + m * 60_000_000 for m in minutes], pa.timestamp("us", "UTC"))}
    if channel:
        cols["channel"] = pa.array([channel] * len(minutes), pa.string())
    return pa.table(cols)


def _files(path: str) -> list[dict]:
    return sorted(pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist(),
                  key=lambda f: f["min.login_datetime"])


def test_an_event_table_is_compacted_in_event_time_order_and_its_big_files_are_left_alone(tmp_path, monkeypatch):
    """silver_logins' files are joined with their neighbours in event time only: afterwards each file's
    event-time range is disjoint from the others' (a merge reads only the files its batch's range overlaps), a
    file already big is not rewritten, the rows are the same, and the commit changes no data."""
    from lakehouse import lake_writes

    path = str(tmp_path / "silver_logins")
    write_deltalake(path, _event_rows([]).slice(0, 0), mode="overwrite")
    tables = OpenTables(compact_every=1000)
    # batches whose times interleave: 0-9, 100-109, 10-19, 110-119, ... (a compaction by size would mix them)
    for n in range(8):
        start = (n // 2) * 10 + (100 if n % 2 else 0)
        append_once(tables, path, _event_rows(list(range(start, start + 10))), app_id="q", version=n)
    sizes = sorted(f["size_bytes"] for f in _files(path))
    monkeypatch.setattr(lake_writes, "SMALL_FILE_BYTES", sizes[-1])  # the biggest file counts as big
    monkeypatch.setattr(lake_writes, "TARGET_FILE_BYTES", 4 * sizes[-1])
    big = max(_files(path), key=lambda f: f["size_bytes"])["path"]
    before = _rows_of(path)

    tables.compact(path)

    files = _files(path)
    assert big in [f["path"] for f in files]
    ranges = [(f["min.login_datetime"], f["max.login_datetime"]) for f in files]
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)), ranges
    assert len(files) < 8 and _rows_of(path) == before
    last = _commits(path)[-1]
    assert last["tag"] == "c360 compaction"
    assert {a["dataChange"] for a in last["add"] + last["remove"]} == {False}
    assert not (tmp_path / "silver_logins" / "_c360_compaction").exists() or not any(
        (tmp_path / "silver_logins" / "_c360_compaction").iterdir())


def test_a_compacted_file_is_rewritten_only_when_the_new_files_at_least_double_it(tmp_path, monkeypatch):
    """A slow table's compaction joins its new small files to each other, not to the big file the previous
    compaction wrote, until they add up to as much as it: round after round, a row is not rewritten every time."""
    from lakehouse import lake_writes

    monkeypatch.setattr(lake_writes, "SMALL_FILE_BYTES", 2**30)  # every file counts as small
    monkeypatch.setattr(lake_writes, "TARGET_FILE_BYTES", 2**31)
    path = str(tmp_path / "silver_logins")
    write_deltalake(path, _event_rows([]).slice(0, 0), mode="overwrite")
    tables = OpenTables(compact_every=1000)
    append_once(tables, path, _event_rows(list(range(0, 2000))), app_id="q", version=0)
    big = _files(path)[0]
    for n in range(1, 4):  # three small batches after it in event time, far smaller than it together
        append_once(tables, path, _event_rows(list(range(2000 + n * 10, 2010 + n * 10))), app_id="q", version=n)
    before = _rows_of(path)

    tables.compact(path)

    files = _files(path)
    assert [f["path"] for f in files][0] == big["path"] and len(files) == 2  # the big one untouched, the rest one
    assert _rows_of(path) == before
    for n in range(4, 40):  # new batches until they outweigh it: then it is joined with them
        append_once(tables, path, _event_rows(list(range(2000 + n * 60, 2060 + n * 60))), app_id="q", version=n)
    tables.compact(path)
    assert big["path"] not in [f["path"] for f in _files(path)] and len(_files(path)) == 1


def test_a_partitioned_event_table_is_compacted_per_partition(tmp_path):
    """silver_transactions is partitioned by channel: each partition's files are joined apart, and keep their
    partition value."""
    path = str(tmp_path / "silver_transactions")
    schema = pa.schema([("transaction_id", pa.string()), ("transaction_datetime", pa.timestamp("us", "UTC")),
                        ("channel", pa.string())])
    write_deltalake(path, pa.Table.from_pylist([], schema), mode="overwrite", partition_by=["channel"])
    tables = OpenTables(compact_every=1000)
    for n in range(6):
        rows = _event_rows(list(range(n * 5, n * 5 + 5)), "online" if n % 2 else "in-store").rename_columns(
            ["transaction_id", "transaction_datetime", "channel"])
        append_once(tables, path, rows, app_id="q", version=n, partition_by=["channel"])
    tables.compact(path)
    files = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()
    assert sorted(f["partition.channel"] for f in files) == ["in-store", "online"]
    got = DeltaTable(path).to_pyarrow_table().to_pylist()
    assert sorted((r["channel"], r["transaction_id"]) for r in got) == sorted(
        ("online" if n % 2 else "in-store", f"l{m}") for n in range(6) for m in range(n * 5, n * 5 + 5))


def test_bronze_is_compacted_in_kafka_time_order_per_source_and_day(tmp_path):
    """bronze_records (partitioned by source and a date) is compacted in order too: each partition's files are
    joined apart, in Kafka-timestamp order, and the log's removes carry the partition values as Delta writes them
    (a date as 2026-12-08). By size, its files were all rewritten every round (the soak's compactions grew to 168 s)."""
    import datetime

    path = str(tmp_path / "bronze_records")
    schema = pa.schema([("source", pa.string()), ("_ingestion_date", pa.date32()), ("offset", pa.int64()),
                        ("kafka_timestamp", pa.timestamp("us", "UTC"))])
    write_deltalake(path, pa.Table.from_pylist([], schema), mode="overwrite", partition_by=["source", "_ingestion_date"])
    tables = OpenTables(compact_every=1000)
    day = datetime.date(2026, 12, 8)
    for n in range(6):  # two sources' batches, their offsets (and times) interleaved
        source, offsets = ("logins" if n % 2 else "orders"), list(range(n * 5, n * 5 + 5))
        rows = pa.table({"source": [source] * 5, "_ingestion_date": pa.array([day] * 5, pa.date32()),
                         "offset": pa.array(offsets, pa.int64()),
                         "kafka_timestamp": pa.array([1_765_000_000_000_000 + o * 1000 for o in offsets],
                                                     pa.timestamp("us", "UTC"))})
        append_once(tables, path, rows, app_id="q", version=n, partition_by=["source", "_ingestion_date"])
    tables.compact(path)

    files = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()
    assert sorted((f["partition.source"], f["partition._ingestion_date"]) for f in files) == [
        ("logins", day), ("orders", day)]
    compactions = [c for c in _commits(path) if c["tag"] == "c360 compaction"]  # a commit per partition's run
    removed = [r for c in compactions for r in c["remove"]]
    assert len(compactions) == 2 and len(removed) == 6
    assert {r["partitionValues"]["_ingestion_date"] for r in removed} == {"2026-12-08"}
    for f in DeltaTable(path).file_uris():  # each new file in Kafka-time order
        import pyarrow.parquet as pq

        offsets = pq.read_table(f)["offset"].to_pylist()
        assert offsets == sorted(offsets) and len(offsets) == 15
    got = DeltaTable(path).to_pyarrow_table()
    assert sorted(zip(got["source"].to_pylist(), got["offset"].to_pylist(), strict=True)) == sorted(
        ("logins" if n % 2 else "orders", o) for n in range(6) for o in range(n * 5, n * 5 + 5))


def test_two_compactions_of_one_table_at_once_never_double_its_rows(tmp_path, monkeypatch):
    """Two compactions of one table at once (the stream's own and its scheduled maintenance's, or `c360 maintain`):
    delta-rs lets both commit when they planned from the same version, and every row moved would be there twice
    (the soak doubled 2.3M bronze rows). The second waits for the first's lock, and plans on what it committed."""
    import threading
    import time

    from lakehouse import lake_writes

    path = str(tmp_path / "silver_logins")
    write_deltalake(path, _event_rows([]).slice(0, 0), mode="overwrite")
    for n in range(4):
        write_deltalake(path, _event_rows(list(range(n * 10, n * 10 + 10))), mode="append")
    before = _rows_of(path)
    planned, first_planned = [], threading.Event()
    real = lake_writes._runs_in_order

    def slow_plan(table, column, parts):  # the first compaction holds on after planning, as a big one does
        runs = real(table, column, parts)
        planned.append((threading.current_thread().name, table.version(), len(runs)))
        if not first_planned.is_set():
            first_planned.set()
            time.sleep(1.0)
        return runs

    monkeypatch.setattr(lake_writes, "_runs_in_order", slow_plan)
    first = threading.Thread(target=lambda: OpenTables().compact(path), name="first")
    second = threading.Thread(target=lambda: OpenTables().compact(path), name="second")
    first.start()
    first_planned.wait(10)
    second.start()
    first.join(30)
    second.join(30)

    assert _rows_of(path) == before  # each row once
    # the second planned only once the first had committed: on its version, with nothing left to join
    assert planned == [("first", 4, 1), ("second", 5, 0)]


def test_a_compaction_planned_before_a_delete_commits_nothing_that_brings_the_row_back(tmp_path):
    """`c360 forget` deletes a row while a compaction of the same files is under way: the compaction's commit
    loses (its old files are gone), is planned again on the new version, and the forgotten row stays gone."""
    from deltalake.exceptions import CommitFailedError

    path = str(tmp_path / "silver_logins")
    write_deltalake(path, _event_rows([]).slice(0, 0), mode="overwrite")
    tables = OpenTables(compact_every=1000)
    for n in range(4):
        append_once(tables, path, _event_rows(list(range(n * 10, n * 10 + 10))), app_id="q", version=n)
    stale = tables.get(path)  # the compaction's view, before the delete
    DeltaTable(path).delete("login_id = 'l15'")
    tables.get = lambda p: stale  # plan and commit from the stale version
    try:
        tables.compact_in_order(path, "login_datetime")
        raise AssertionError("the stale compaction committed")
    except CommitFailedError:
        pass
    del tables.get
    tables.compact(path)  # planned again
    ids = {r["login_id"] for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert "l15" not in ids and len(ids) == 39


def _rows_of(path: str) -> list[tuple]:
    return sorted((r["login_id"], r["login_datetime"]) for r in DeltaTable(path).to_pyarrow_table().to_pylist())


def test_the_long_running_streams_compactions_run_beside_its_commits_one_table_at_a_time(tmp_path, caplog):
    """A table whose turn comes is compacted in a child process while the commits go on; while it runs, another
    table's turn waits for its next commit rather than starting a second compaction. The rows never change, and
    the compaction commits are logged with their seconds."""
    import logging

    from streaming.ops import BackgroundCompactor

    first, second = _table(tmp_path / "a"), _table(tmp_path / "b")
    compactor = BackgroundCompactor(nice=0)
    asked = []
    tables = OpenTables(compact_every=3, compactor=lambda path: asked.append(path) or compactor(path))
    tables._commits = {first: 0, second: 0}  # both turns after their third commit
    with caplog.at_level(logging.INFO, logger="streaming.ops"):
        for n in range(3):
            append_once(tables, first, _batch((f"a{n}", n)), app_id="q", version=n)
        # the first table's compaction is running: the second's turn is refused and asked again at each commit
        for n in range(4):
            append_once(tables, second, _batch((f"b{n}", n)), app_id="q", version=n)
        assert asked[0] == first and asked[1] == second
        assert sum(p == second for p in asked) >= 2  # refused (first still running), then asked again
        compactor.close()  # waits for the one running, as the stream's stop does
        tables_rows = (_rows(first), _rows(second))
    assert tables_rows == ([(f"a{n}", n) for n in range(3)], [(f"b{n}", n) for n in range(4)])
    compacted = [c for c in _commits(first) if c["tag"] == "c360 compaction"]
    assert len(compacted) == 1 and len(compacted[0]["remove"]) == 3
    assert any(f"compacted {first} in" in r.message and r.message.endswith("in the background")
               for r in caplog.records)


def test_c360_maintain_reorder_puts_an_event_table_whose_files_span_all_history_in_order(cfg, monkeypatch):
    """A lake compacted before the compaction in order: every file of silver_logins spans the table's whole
    history, and is too big for the compaction in order to touch. ``c360 maintain --reorder`` rewrites the table
    sorted by event time, rows unchanged, in a commit that changes no data; ``c360 maintain`` says what it did."""
    import pyarrow.parquet as pq

    from lakehouse import lake_writes
    from streaming import ops
    from tests.unit.test_cli_errors import run_cli

    path = str(Path(cfg.lake.root) / "silver_logins")
    write_deltalake(path, _event_rows([]).slice(0, 0), mode="overwrite")
    for n in range(4):  # file n holds minutes n, n+4, n+8...: each spans all history
        write_deltalake(path, _event_rows(list(range(n, 400, 4))), mode="append")
    before = _rows_of(path)
    monkeypatch.setattr(lake_writes, "SMALL_FILE_BYTES", 1)  # every file counts as big: compaction leaves them

    assert ops.maintain_lake(cfg)["reordered"] == 0
    assert len(_files(path)) == 4  # without --reorder, nothing to do
    done = ops.maintain_lake(cfg, reorder=True)

    assert done == {"tables": 1, "files_deleted": 0, "reordered": 1, "failed": []}
    assert _rows_of(path) == before
    files = DeltaTable(path).file_uris()
    times = [t for f in sorted(files) for t in pq.read_table(f)["login_datetime"].to_pylist()]
    assert len(files) == 1 and times == sorted(times) and len(times) == 400
    last = _commits(path)[-1]
    assert last["tag"] == "c360 compaction" and {a["dataChange"] for a in last["add"] + last["remove"]} == {False}
    proc = run_cli("maintain", "--lake", cfg.lake.root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 tables compacted and vacuumed in ")
    assert proc.stdout.rstrip().endswith("0 old files deleted (no version of the last 168 h needs them)")
