"""``gold_data_quality`` (seed 002's data quality checks): per silver table and silver version, what was read and
what was cleaned.

One row per silver table and version of it (``silver_version``): ``rows``, ``null_counts`` (column -> nulls, the
lineage columns left out), and from the stream's counters (``ops_stream_batches``, over its whole history, per
source feeding the table): ``records_read``, ``duplicates_removed``, ``quarantined``, and ``quarantined_by_reason``
(reason -> records, from ``silver_quarantine``). A rerun on the same silver versions adds no row (the table is
MERGEd on table and version), so the table is the history of every refresh.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.schemas import SILVER_SPECS

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


def null_counts(df: DataFrame) -> DataFrame:
    """One row: ``rows`` and ``null_counts`` (a map column -> nulls over the non-lineage columns)."""
    cols = [f.name for f in df.schema.fields if not f.name.startswith("_")]
    agg = df.agg(F.count(F.lit(1)).alias("rows"),
                 *[F.sum(F.when(F.col(c).isNull(), 1).otherwise(0)).cast("long").alias(c) for c in cols])
    pairs = [x for c in cols for x in (F.lit(c), F.coalesce(F.col(c), F.lit(0).cast("long")))]
    return agg.select(F.col("rows"), F.create_map(*pairs).alias("null_counts"))


def transform_data_quality(spark: SparkSession, tables: dict[str, tuple[int, DataFrame]], counters: DataFrame | None,
                           quarantine: DataFrame | None, as_of) -> DataFrame:
    """``tables``: silver table -> (version, DataFrame at that version); ``counters``: ``ops_stream_batches``;
    ``quarantine``: ``silver_quarantine`` (either may be None when the stream has not written it)."""
    per_source = (counters.groupBy("source").agg(*[F.sum(f"{c}_rows").cast("long").alias(c) for c in
                                                    ("read", "duplicate", "quarantined")])
                  if counters is not None else None)
    reasons = (quarantine.groupBy("source", "reason").agg(F.count(F.lit(1)).alias("n"))
               if quarantine is not None else None)
    rows = []
    for name, (version, df) in sorted(tables.items()):
        row = null_counts(df).select(F.lit(name).alias("table_name"), F.lit(version).cast("long")
                                     .alias("silver_version"), F.lit(as_of).alias("as_of"), "rows", "null_counts")
        srcs = sources_of(name)
        if per_source is not None:
            c = per_source.where(F.col("source").isin(srcs)).agg(
                F.sum("read").alias("records_read"), F.sum("duplicate").alias("duplicates_removed"),
                F.sum("quarantined").alias("quarantined"))
        else:
            c = spark.createDataFrame([(None, None, None)],
                                      "records_read long, duplicates_removed long, quarantined long")
        if reasons is not None:
            q = (reasons.where(F.col("source").isin(srcs)).groupBy("reason").agg(F.sum("n").cast("long").alias("n"))
                 .agg(F.map_from_entries(F.collect_list(F.struct("reason", "n"))).alias("quarantined_by_reason")))
        else:
            q = spark.createDataFrame([({},)], "quarantined_by_reason map<string,long>")
        rows.append(row.crossJoin(c).crossJoin(q))
    if not rows:
        return spark.createDataFrame([], SCHEMA)
    out = rows[0]
    for r in rows[1:]:
        out = out.unionByName(r)
    return out.select([F.col(f.name).cast(f.dataType) for f in SCHEMA.fields])
