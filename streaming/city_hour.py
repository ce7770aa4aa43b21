"""City x hour login counts (seed 000, criterion 13): event-time one-hour tumbling windows per city.

Reads the deduplicated ``silver_logins`` stream, so a login sent twice is counted once. With a watermark, the
aggregation emits (update mode) the new count of every window a micro-batch touched, and
``stream_city_hour_logins`` is upserted with it: a login arriving late, within the watermark, updates its
window's count; a window older than the watermark is final and its state dropped.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.schemas import STREAM_CITY_HOUR_LOGINS

CITY_HOUR_SCHEMA = STREAM_CITY_HOUR_LOGINS


def transform_city_hour(logins: DataFrame, *, watermark: str) -> DataFrame:
    """Logins -> login counts per (city, one-hour event-time window); a missing city counts as ``Unknown``."""
    counts = (logins.withWatermark("login_datetime", watermark)
              .groupBy(F.coalesce(F.col("city"), F.lit("Unknown")).alias("city"),
                       F.window("login_datetime", "1 hour"))
              .agg(F.count(F.lit(1)).alias("login_count")))
    return counts.select(
        "city",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        F.to_date("window.start").alias("login_date"),
        F.hour("window.start").alias("hour"),
        "login_count",
    )
