"""ensure_table: an interrupted creation does not block the next start; an older table gains new columns.
QueryRun: only the first batch of a query's run checks for an earlier commit. lake.file_stats_counts (delta-rs):
rows and nulls from the file statistics Delta-Spark wrote, and None where they cannot answer. ensure_tables: every table the ingest writes,
created a few at a time."""

from __future__ import annotations

import contextlib

from delta.tables import DeltaTable
from pyspark.sql.types import StringType, StructField, StructType

from batch.quality import null_counts
from lakehouse import lake, schemas
from lakehouse.delta import QueryRun, ensure_table
from lakehouse.tables import OPS_BATCHES, QUARANTINE, table_path
from streaming.ingest import ensure_tables

OLD = StructType([StructField("customer_id", StringType())])
NEW = StructType([*OLD.fields, StructField("_rescued_data", StringType())])


def test_a_transaction_log_without_a_commit_is_replaced(spark, tmp_path):
    path = tmp_path / "silver_customers"
    (path / "_delta_log").mkdir(parents=True)  # what a kill -9 during the creation leaves
    (path / "_delta_log" / ".00000000000000000000.json.0a1b.tmp").write_text("{")
    ensure_table(spark, str(path), NEW)
    assert spark.read.format("delta").load(str(path)).schema == NEW


def test_an_older_table_keeps_its_rows_and_gains_the_new_columns(spark, tmp_path):
    path = str(tmp_path / "t")
    ensure_table(spark, path, OLD)
    spark.createDataFrame([("C1",)], OLD).write.format("delta").mode("append").save(path)
    ensure_table(spark, path, NEW)
    df = spark.read.format("delta").load(path)
    assert df.schema == NEW and [tuple(r) for r in df.collect()] == [("C1", None)]


def test_only_a_runs_first_batch_is_checked_for_an_earlier_commit():
    seen = []

    def write(df, batch_id, new):
        seen.append((batch_id, new))
        if df == "bad":
            raise RuntimeError("disk full")

    run = QueryRun(write)
    for batch_id in (7, 8, 9):  # a restarted query: batch 7 may have been partly written by the crashed run
        run("df", batch_id)
    assert seen == [(7, False), (8, True), (9, True)]

    seen.clear()
    run = QueryRun(write)  # the next start of the query runs batch 9 again: checked
    for df in ("bad", "df"):  # a batch that failed is not done: checked again
        with contextlib.suppress(RuntimeError):
            run(df, 9)
    run("df", 10)
    assert seen == [(9, False), (9, False), (10, True)]


ROWS = "id string, email string, amount double"


def _scan(spark, path: str, version: int):
    return null_counts(spark.read.format("delta").option("versionAsOf", version).load(path))


def test_file_statistics_give_the_rows_and_nulls_of_the_version_asked(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.createDataFrame([("A", None, 1.0), ("B", "b@x", None)], ROWS).write.format("delta").save(path)
    spark.createDataFrame([("C", None, None), (None, "d@x", 4.0)], ROWS).write.format("delta").mode("append").save(path)
    assert lake.file_stats_counts(path, 0) == (2, {"id": 0, "email": 1, "amount": 1})
    assert lake.file_stats_counts(path, 1) == (4, {"id": 1, "email": 2, "amount": 2}) == _scan(spark, path, 1)


def test_columns_without_statistics_are_left_to_the_scan(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.createDataFrame([], ROWS).write.format("delta").save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.dataSkippingNumIndexedCols' = '1')")
    spark.createDataFrame([(None, None, 1.0), ("B", None, None)], ROWS).write.format("delta").mode("append").save(path)
    stats = lake.file_stats_counts(path, 2)
    assert stats == (2, {"id": 1})  # only the first column is counted
    assert null_counts(spark.read.format("delta").load(path), stats) == (2, {"id": 1, "email": 2, "amount": 1})
    # what the statistics say is taken as it is (not scanned again); only the columns they leave open are scanned
    assert null_counts(spark.read.format("delta").load(path), (7, {"id": 5, "email": None})) == (
        7, {"id": 5, "email": 2, "amount": 1})


def test_files_with_deletion_vectors_or_without_statistics_leave_the_counts_to_the_scan(spark, tmp_path):
    dv = str(tmp_path / "dv")
    spark.createDataFrame([("A", None, 1.0), ("B", "b@x", None), ("C", None, 3.0)], ROWS).coalesce(1) \
        .write.format("delta").option("delta.enableDeletionVectors", "true").save(dv)
    spark.sql(f"DELETE FROM delta.`{dv}` WHERE id = 'A'")
    metrics = DeltaTable.forPath(spark, dv).history(1).first()["operationMetrics"]
    assert metrics["numDeletionVectorsAdded"] == "1"  # the file stays, its row marked deleted
    assert lake.file_stats_counts(dv, 0) == (3, {"id": 0, "email": 2, "amount": 1})
    assert lake.file_stats_counts(dv, 1) is None  # the file's counts include the deleted row
    assert _scan(spark, dv, 1) == (2, {"id": 0, "email": 1, "amount": 1})

    bare = str(tmp_path / "bare")
    spark.conf.set("spark.databricks.delta.stats.collect", "false")
    try:
        spark.createDataFrame([("A", None, 1.0)], ROWS).write.format("delta").save(bare)
    finally:
        spark.conf.unset("spark.databricks.delta.stats.collect")
    assert lake.file_stats_counts(bare, 0) is None
    assert lake.file_stats_counts(str(tmp_path / "nothing"), 0) is None  # no table


def test_the_ingest_tables_are_created_once_and_a_shared_silver_table_holds_every_sources_columns(spark, tmp_path):
    root = str(tmp_path)
    sources = ["customers", "online_transactions", "instore_transactions"]
    ensure_tables(spark, root, sources)
    tables = [QUARANTINE, OPS_BATCHES, "bronze_records", "silver_customers", "silver_transactions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(tables)
    versions = {t: lake.version(table_path(root, t)) for t in tables}
    columns = set(spark.read.format("delta").load(table_path(root, "silver_transactions")).columns)
    assert {f.name for s in sources[1:] for f in schemas.SILVER[s].fields} <= columns
    ensure_tables(spark, root, sources)  # a restart: nothing to create or add
    assert {t: lake.version(table_path(root, t)) for t in tables} == versions
