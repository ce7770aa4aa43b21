"""Idempotent micro-batches and order-safe upserts, on real Delta tables."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from lakehouse import lake
from lakehouse.delta import append_idempotent, commit_metadata, txn_tag
from lakehouse.tables import BRONZE_RECORDS, OPS_BATCHES, QUARANTINE, table_path
from streaming.ingest import IngestRun, ensure_tables, source_target, write_batch
from tests.unit.test_transforms import customer, kafka_rows

pytestmark = pytest.mark.integration
# every guarantee holds with both of the stream's Delta writers
WRITERS = pytest.mark.parametrize("writer", ["embedded", "spark"])


def _versions(spark, cfg, names):
    return {n: lake.version(table_path(cfg.lake.root, n)) for n in names}


def _appends(path):
    """(tag, transaction id versions) of each append committed to the table at ``path``, from its commit files."""
    out = []
    for commit in sorted(Path(path, "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
        if info["operation"] == "WRITE":
            out.append((info.get("userMetadata"), [a["txn"]["version"] for a in actions if "txn" in a]))
    return out


def _bronze_rows(spark, cfg, source):
    return spark.read.format("delta").load(table_path(cfg.lake.root, BRONZE_RECORDS)).where(f"source = '{source}'")


@WRITERS
def test_replaying_a_batch_adds_no_table_version(spark, cfg, writer):
    ensure_tables(spark, cfg.lake.root, ["customers"])
    target = source_target(cfg, "customers")
    batch = kafka_rows(spark, [customer(), customer(event_id="e2", customer_id="C2"), customer(customer_id="")])
    counts = write_batch(target, batch, 0, writer=writer)["customers"]
    assert counts == {"read_rows": 3, "quarantined_rows": 1, "duplicate_rows": 0, "inserted_rows": 2,
                      "updated_rows": 0, "rescued_rows": 0,
                      "unlisted_rows": 0}
    tables = [BRONZE_RECORDS, "silver_customers", QUARANTINE, OPS_BATCHES]
    before = _versions(spark, cfg, tables)
    # the same batch again, as after a crash before the checkpoint commit
    assert write_batch(target, batch, 0, writer=writer)["customers"] == counts
    assert _versions(spark, cfg, tables) == before
    assert _bronze_rows(spark, cfg, "customers").count() == 3
    assert spark.read.format("delta").load(target.silver).count() == 2


@WRITERS
def test_only_a_newer_version_overwrites_and_in_batch_duplicates_are_counted(spark, cfg, writer):
    ensure_tables(spark, cfg.lake.root, ["customers"])
    target = source_target(cfg, "customers")
    new_ts, old_ts = datetime(2025, 1, 2), datetime(2025, 1, 1)
    newer = customer(event_id="v2", status="Blocked")
    older = customer(event_id="v1", status="Active")
    write_batch(target, kafka_rows(spark, [newer, newer], start_offset=10, ts=new_ts), 0, writer=writer)
    silver = spark.read.format("delta").load(target.silver)
    assert [(r.customer_id, r.status) for r in silver.collect()] == [("C1", "Blocked")]
    counts = write_batch(target, kafka_rows(spark, [older], start_offset=3, ts=old_ts), 1,  # older
                         writer=writer)["customers"]
    assert (counts["updated_rows"], counts["duplicate_rows"]) == (0, 1)
    assert silver.select("status").first().status == "Blocked"
    counts = write_batch(target, kafka_rows(spark, [customer(event_id="v3", status="Inactive")],
                                            start_offset=20, ts=datetime(2025, 1, 3)), 2, writer=writer)["customers"]
    assert counts["updated_rows"] == 1
    assert silver.select("status", "event_id").first() == ("Inactive", "v3")
    ops = spark.read.format("delta").load(table_path(cfg.lake.root, OPS_BATCHES)).orderBy("batch_id").collect()
    assert [(r.batch_id, r.read_rows, r.duplicate_rows) for r in ops] == [(0, 2, 1), (1, 1, 1), (2, 1, 0)]


@WRITERS
def test_a_crash_between_the_silver_merge_and_the_counters_keeps_the_counts_right(spark, cfg, monkeypatch, writer):
    import streaming.embedded as embedded
    import streaming.ingest as ingest

    ensure_tables(spark, cfg.lake.root, ["customers"])
    target = source_target(cfg, "customers")
    batch = kafka_rows(spark, [customer(), customer(event_id="e2", customer_id="C2"), customer(customer_id="")])
    module, name = (embedded, "append_once") if writer == "embedded" else (ingest, "append_idempotent")
    real_append = getattr(module, name)

    class Killed(Exception):
        pass

    def crash_before_the_counters(*args, **kw):
        path = args[1]  # append_once(tables, path, ...) and append_idempotent(df, path, ...)
        if path == table_path(cfg.lake.root, OPS_BATCHES):
            # Spark's MERGE's auto compaction, which runs in its session, commits an OPTIMIZE carrying its tag
            with commit_metadata(spark, txn_tag(f"{target.query}:customers:silver", 0)):
                spark.sql(f"ALTER TABLE delta.`{target.silver}` SET TBLPROPERTIES ('c360.test' = 'compacted')")
            raise Killed  # bronze, silver and quarantine are committed; the counters are not
        return real_append(*args, **kw)

    monkeypatch.setattr(module, name, crash_before_the_counters)
    with pytest.raises(Killed):
        write_batch(target, batch, 0, writer=writer)
    monkeypatch.setattr(module, name, real_append)
    counts = write_batch(target, batch, 0, writer=writer)["customers"]  # the restart re-runs the batch: the MERGE
    assert counts == {"read_rows": 3, "quarantined_rows": 1, "duplicate_rows": 0, "inserted_rows": 2,  # is skipped
                      "updated_rows": 0, "rescued_rows": 0,
                      "unlisted_rows": 0}
    ops = spark.read.format("delta").load(table_path(cfg.lake.root, OPS_BATCHES)).collect()
    assert [(r.inserted_rows, r.duplicate_rows) for r in ops] == [(2, 0)]
    assert spark.read.format("delta").load(target.silver).count() == 2
    assert _bronze_rows(spark, cfg, "customers").count() == 3


@WRITERS
def test_silver_does_not_depend_on_where_batches_are_cut(spark, tmp_path, writer):
    from tests.conftest import make_config

    # C1: a version and its re-sent copy; C2: a version, a newer one, then the first re-sent (found by make chaos:
    # the copy's offset was kept or not depending on whether both copies fell into one batch)
    records = [customer(), customer(), customer(customer_id="C2", event_id="e1"),
               customer(customer_id="C2", event_id="e2", status="Blocked"), customer(customer_id="C2", event_id="e1")]
    silver = {}
    for cut in ("one batch", "one record per batch", "two batches"):
        cfg = make_config(tmp_path / cut.replace(" ", "-"))
        ensure_tables(spark, cfg.lake.root, ["customers"])
        target = source_target(cfg, "customers")
        bounds = {"one batch": [0, 5], "one record per batch": [0, 1, 2, 3, 4, 5], "two batches": [0, 3, 5]}[cut]
        for batch_id, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            write_batch(target, kafka_rows(spark, records[lo:hi], start_offset=lo), batch_id, writer=writer)
        silver[cut] = sorted(tuple(r) for r in spark.read.format("delta").load(target.silver)
                             .select("customer_id", "event_id", "status", "_kafka_offset").collect())
    assert silver["one record per batch"] == [("C1", "e1", "Active", 0), ("C2", "e1", "Active", 4)]
    assert silver["one batch"] == silver["two batches"] == silver["one record per batch"]


@WRITERS
def test_a_run_writes_later_batches_unchecked_and_a_restart_still_finds_them(spark, cfg, writer):
    """A run's batches after its first are appended unchecked (they cannot have been written before), tagged; the
    next run's first batch finds such a batch by its tag (Spark's writer) or its transaction id (delta-rs, whose
    check costs nothing). Two sources are written at once."""
    ensure_tables(spark, cfg.lake.root, ["customers", "logins"])
    targets = [source_target(cfg, n, "ingest") for n in ("customers", "logins")]
    topic = {t.source.name: t.topic for t in targets}

    def batch(n):
        login = {"event_id": f"l{n}", "login_id": f"L{n}", "customer_id": "C1", "login_datetime": "2024-03-01 10:00:00",
                 "city": "pune", "device": "ios"}
        return kafka_rows(spark, [customer(event_id=f"e{n}", customer_id=f"C{n}")], topic["customers"], n) \
            .unionByName(kafka_rows(spark, [json.dumps(login)], topic["logins"], n))

    first = IngestRun(targets, workers=2, writer=writer)
    for n in range(3):
        first(batch(n), n)
    bronze = table_path(cfg.lake.root, BRONZE_RECORDS)
    # every append is tagged; with Spark's writer none needed Delta's transaction id (the first batch's check read
    # the new table's tags)
    assert _appends(bronze) == [(f"ingest:bronze:{n}", [n] if writer == "embedded" else []) for n in range(3)]
    tables = [BRONZE_RECORDS, "silver_customers", "silver_logins", OPS_BATCHES]
    before = _versions(spark, cfg, tables)
    # a crash after batch 2's writes but before Spark's checkpoint commit: the next run starts with batch 2 again
    second = IngestRun(targets, workers=2, writer=writer)
    second(batch(2), 2)
    assert _versions(spark, cfg, tables) == before
    second(batch(3), 3)
    for name in ("customers", "logins"):
        assert sorted(r.offset for r in _bronze_rows(spark, cfg, name).collect()) == [0, 1, 2, 3], name
    ops = spark.read.format("delta").load(table_path(cfg.lake.root, OPS_BATCHES))
    assert sorted((r.batch_id, r.source, r.inserted_rows) for r in ops.collect()) == [
        (b, s, 1) for b in range(4) for s in ("customers", "logins")]


def test_a_table_an_older_c360_appended_to_untagged_falls_back_on_deltas_transaction_id(spark, tmp_path):
    path, app = str(tmp_path / "bronze_customers"), "ingest:customers:bronze"
    rows = spark.createDataFrame([("C1",)], "customer_id string")
    # what c360 before commit tags wrote: an append with Delta's transaction id only
    rows.write.format("delta").option("txnAppId", app).option("txnVersion", "4").save(path)
    append_idempotent(rows, path, app_id=app, version=4)  # the batch again: the tags cannot tell, Delta skips it
    append_idempotent(rows, path, app_id=app, version=5)
    assert _appends(path) == [(None, [4]), (f"{app}:5", [5])]
    append_idempotent(rows, path, app_id=app, version=5)  # found by its tag
    append_idempotent(rows, path, app_id=app, version=6)  # not there: another batch of the app is tagged
    append_idempotent(rows, path, app_id=app, version=6)
    assert _appends(path) == [(None, [4]), (f"{app}:5", [5]), (f"{app}:6", [])]
    assert spark.read.format("delta").load(path).count() == 3


def test_a_city_hour_batch_merged_before_a_kill_runs_again_and_the_query_goes_on(spark, kafka, tmp_path):
    """A kill after the city x hour MERGE committed and before the checkpoint recorded the batch: on restart Spark
    runs the batch again. Its MERGE is skipped (already committed), and the query must still read the batch, or
    Spark 4.1 stops it for good (STATE_STORE_COMMIT_VALIDATION_FAILED: the aggregation's state stores did not
    commit). The kill is made exact by removing the batch's entry from the checkpoint's commit log, which is the
    state a kill between the two leaves."""
    from pyspark.sql import functions as F

    from lakehouse.schemas import SILVER
    from lakehouse.tables import checkpoint_path
    from streaming.app import start_derived_queries
    from streaming.outputs import CITY_HOUR_QUERY, CITY_HOUR_TABLE, ensure_stream_tables
    from tests.conftest import make_config

    cfg = make_config(tmp_path, kafka.bootstrap).replace("stream", writer="spark")  # its city x hour query
    logins = spark.createDataFrame(
        [("L1", "C1", datetime(2025, 1, 1, 10, 5), "Pune"), ("L2", "C2", datetime(2025, 1, 1, 10, 40), "Pune"),
         ("L3", "C3", datetime(2025, 1, 1, 11, 5), None), ("L4", "C1", datetime(2025, 1, 2, 9, 0), "Delhi")],
        "login_id string, customer_id string, login_datetime timestamp, city string")
    logins.select([(F.col(f.name) if f.name in logins.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                   for f in SILVER["logins"].fields]).write.format("delta").save(
        table_path(cfg.lake.root, "silver_logins"))
    ensure_stream_tables(spark, cfg.lake.root)
    table = table_path(cfg.lake.root, CITY_HOUR_TABLE)

    def run() -> list:
        queries = start_derived_queries(spark, cfg, available_now=True)
        for q in queries:
            q.awaitTermination()
        assert [q.exception() for q in queries] == [None, None]
        return sorted((r.city, r.window_start.hour, r.login_count) for r in spark.read.format("delta").load(table)
                      .collect())

    # by hand: Pune 10:00 holds L1 and L2, Unknown (no city) 11:00 L3, Delhi 09:00 L4
    assert run() == [("Delhi", 9, 1), ("Pune", 10, 2), ("Unknown", 11, 1)]
    commits = Path(checkpoint_path(cfg.lake.checkpoint_root, CITY_HOUR_QUERY), "commits")
    merged = {json.loads(line)["commitInfo"].get("userMetadata")
              for commit in Path(table, "_delta_log").glob("*.json") for line in commit.read_text().splitlines()
              if "commitInfo" in line}
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    assert f"{CITY_HOUR_QUERY}:table:{last}" in merged  # the batch whose record the kill loses is in the table
    for written in (commits / str(last), commits / f".{last}.crc"):  # the entry and its checksum file
        written.unlink(missing_ok=True)
    assert run() == [("Delhi", 9, 1), ("Pune", 10, 2), ("Unknown", 11, 1)]  # run again: the same table, no failure
