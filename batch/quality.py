"""``gold_data_quality`` (seed 002's data quality checks): per silver table and silver version, what was read and
what was cleaned.

One row per silver table and version of it (``silver_version``): ``rows``, ``null_counts`` (column -> nulls, the
lineage columns left out: from Delta's file statistics where they answer, by a scan of the columns they do not),
and from the stream's counters (``ops_stream_batches``, over its whole history, per source feeding the table):
``records_read``, ``duplicates_removed``, ``quarantined``, and ``quarantined_by_reason`` (reason -> records, from
``silver_quarantine``). A rerun on the same silver versions adds no row (the table is
MERGEd on table and version), so the table is the history of every refresh.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.schemas import SILVER_SPECS
from lakehouse.spark import in_threads

TABLE = "gold_data_quality"
KEY = ("table_name", "silver_version")

SCHEMA = T.StructType([
    T.StructField("table_name", T.StringType()), T.StructField("silver_version", T.LongType()),
    T.StructField("as_of", T.DateType()), T.StructField("rows", T.LongType()),
    T.StructField("null_counts", T.MapType(T.StringType(), T.LongType())),
    T.StructField("records_read", T.LongType()), T.StructField("duplicates_removed", T.LongType()),
    T.StructField("quarantined", T.LongType()),
    T.StructField("quarantined_by_reason", T.MapType(T.StringType(), T.LongType())),
])


def sources_of(table: str) -> list[str]:
    return sorted(name for name, spec in SILVER_SPECS.items() if spec.table == table)


def null_counts(df: DataFrame, stats: tuple[int, dict[str, int | None]] | None = None) -> tuple[int, dict[str, int]]:
    """Rows and nulls per column (the lineage columns, ``_*``, left out), in one aggregation.

    ``stats``: what the table's file statistics already say (:func:`lakehouse.delta.file_stats_counts` of the
    version ``df`` reads): only the columns they leave open are scanned, and none when they answer for all.
    """
    cols = [f.name for f in df.schema.fields if not f.name.startswith("_")]
    rows, known = stats if stats is not None else (None, {})
    open_ = [c for c in cols if known.get(c) is None]
    scan = [F.count_if(F.col(c).isNull()).alias(c) for c in open_]
    scan += [F.count(F.lit(1)).alias("_rows")] if rows is None else []
    row = df.agg(*scan).first() if scan else {}
    if rows is None:
        rows = int(row["_rows"])
    return rows, {c: int(row[c] or 0) if c in open_ else known[c] for c in cols}


def transform_data_quality(spark: SparkSession, tables: dict[str, tuple[int, DataFrame]], counters: DataFrame | None,
                           quarantine: DataFrame | None, as_of,
                           stats: Callable[[str, int], tuple[int, dict[str, int | None]] | None] | None = None
                           ) -> DataFrame:
    """``tables``: silver table -> (version, DataFrame at that version); ``counters``: ``ops_stream_batches``;
    ``quarantine``: ``silver_quarantine`` (either may be None when the stream has not written it); ``stats``:
    (table, version) -> what its file statistics say of rows and nulls, or None (then the table is scanned). The
    inputs are aggregated to a few rows each and assembled here (16 small results, not one plan of 16 branches)."""
    per_source: dict[str, tuple[int, int, int]] = {}
    if counters is not None:
        for r in counters.groupBy("source").agg(*[F.sum(f"{c}_rows").cast("long").alias(c) for c in
                                                   ("read", "duplicate", "quarantined")]).collect():
            per_source[r["source"]] = (r["read"] or 0, r["duplicate"] or 0, r["quarantined"] or 0)
    reasons: dict[str, dict[str, int]] = {}
    if quarantine is not None:
        for r in quarantine.groupBy("source", "reason").agg(F.count(F.lit(1)).alias("n")).collect():
            reasons.setdefault(r["source"], {})[r["reason"]] = int(r["n"])

    def count(item: tuple[str, tuple[int, DataFrame]]) -> tuple[int, dict[str, int]]:
        name, (version, df) = item
        return null_counts(df, stats(name, version) if stats is not None and version >= 0 else None)

    ordered = sorted(tables.items())
    rows = []
    for (name, (version, _)), (n, nulls) in zip(ordered, in_threads(count, ordered), strict=True):
        srcs = sources_of(name)
        counted = [per_source[s] for s in srcs if s in per_source]
        by_reason: dict[str, int] = {}
        for s in srcs:
            for reason, k in reasons.get(s, {}).items():
                by_reason[reason] = by_reason.get(reason, 0) + k
        read, dups, quarantined = ((sum(c[i] for c in counted) for i in range(3)) if counted
                                   else (None, None, None))
        rows.append((name, version, as_of, n, nulls, read, dups, quarantined, by_reason))
    # maps in key order: Spark's Python conversion keeps a hash map's order, the embedded engine the dict's
    ordered_map = {c: F.map_from_entries(F.array_sort(F.map_entries(c))) for c in ("null_counts", "quarantined_by_reason")}
    return spark.createDataFrame(rows, SCHEMA).withColumns(ordered_map)
