"""ensure_table: an interrupted creation does not block the next start; an older table gains new columns.
QueryRun: only the first batch of a query's run checks for an earlier commit."""

from __future__ import annotations

import contextlib

from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.delta import QueryRun, ensure_table

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
