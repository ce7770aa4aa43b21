"""City x hour login counts (seed 000, criterion 13): event-time one-hour tumbling windows per city.

Counted from the deduplicated ``silver_logins``, so a login sent twice is counted once. Two ways, one window rule
(:func:`_windows`):

- :func:`recount_windows`, with the embedded writer: each ingest batch recounts, in silver, the windows its
  logins fall in, and ``stream_city_hour_logins`` is upserted with those counts. A count always equals silver's,
  however late a login arrives, and a batch run again after a crash recounts the same.
- :func:`transform_city_hour`, a streaming aggregation over the silver_logins stream (Spark's writer, whose
  batches may be too big to recount in): with a watermark it emits (update mode) the new count of every window a
  micro-batch touched; a login arriving late, within the watermark, updates its window's count; a window older
  than the watermark is final and its state dropped.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.schemas import STREAM_CITY_HOUR_LOGINS

CITY_HOUR_SCHEMA = STREAM_CITY_HOUR_LOGINS


def _windows(logins: DataFrame) -> list:
    """The grouping columns: the city (a missing one counts as ``Unknown``) and the one-hour event-time window."""
    return [F.coalesce(F.col("city"), F.lit("Unknown")).alias("city"), F.window("login_datetime", "1 hour")]


def _rows(counts: DataFrame) -> DataFrame:
    """Counts per (city, window) as the table's rows."""
    return counts.select(
        "city",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        F.to_date("window.start").alias("login_date"),
        F.hour("window.start").alias("hour"),
        "login_count",
    )


def transform_city_hour(logins: DataFrame, *, watermark: str) -> DataFrame:
    """Logins (a stream) -> login counts per (city, one-hour event-time window), emitted as windows change."""
    return _rows(logins.withWatermark("login_datetime", watermark).groupBy(*_windows(logins))
                 .agg(F.count(F.lit(1)).alias("login_count")))


def recount_windows(silver_logins: DataFrame, arrived: DataFrame) -> DataFrame:
    """The counts, in ``silver_logins``, of every (city, hour) window a login of ``arrived`` falls in (the logins
    a batch brought; they are in silver already). Only the hours ``arrived`` spans are read."""
    touched = arrived.select(*_windows(arrived)).distinct()
    span = touched.agg(F.unix_seconds(F.min("window.start")).alias("lo"),
                       F.unix_seconds(F.max("window.end")).alias("hi")).first()
    ts = F.col("login_datetime")
    near = silver_logins.where((ts >= F.timestamp_seconds(F.lit(span["lo"] or 0)))
                               & (ts < F.timestamp_seconds(F.lit(span["hi"] or 0))))
    counts = (near.select(*_windows(near)).join(touched, ["city", "window"], "left_semi")
              .groupBy("city", "window").agg(F.count(F.lit(1)).alias("login_count")))
    return _rows(counts)
