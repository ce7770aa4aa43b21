"""Bronze: the raw Kafka record with its lineage, append-only."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def _header(name: str) -> Column:
    """The value of the first header called ``name`` (null when there is none). Found by position rather than with
    ``filter`` and a lambda: a higher-order function keeps the whole bronze projection out of whole-stage code
    generation, so every task generated its code again."""
    pos = F.array_position(F.col("headers.key"), F.lit(name))
    return F.when(pos > 0, F.element_at(F.col("headers.value"), pos.cast("int"))).cast("string")


def transform_bronze(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows (as the Spark Kafka source gives them, with headers) -> bronze rows.

    Keeps the raw key and value as text, the record's topic, partition, offset and timestamp, the source
    file and line the replay producer put in the headers, and when c360 ingested it (seed 002 lineage columns:
    ``_source_file``, ``_ingestion_timestamp``, ``_ingestion_date``).
    """
    now = F.current_timestamp()
    return kafka_df.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        _header("source_file").alias("_source_file"),
        _header("source_line").cast("int").alias("_source_line"),
        now.alias("_ingestion_timestamp"),
        F.to_date(now).alias("_ingestion_date"),
    )
