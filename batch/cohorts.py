"""``gold_retention_cohorts`` (seed 003): the retention cohort matrix, in long form.

A customer's cohort is the calendar month of their first purchase (``batch.spend`` purchases); for every month
since (0 = the cohort month), ``active_customers`` counts the cohort's customers with a purchase in that month,
and ``retention_rate`` = active customers / ``cohort_size``. Month 0 is always 1.0; months without any active
customer of the cohort have no row (read them as 0).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.functions import round_half_up

TABLE = "gold_retention_cohorts"


def transform_retention_cohorts(summary: DataFrame) -> DataFrame:
    """From ``batch.spend.purchase_summary`` rows: each customer's set of purchase months (the earliest is the
    cohort), exploded and counted."""
    months = F.col("purchase_months")
    per_customer = summary.select(F.array_min(months).alias("cohort_month"), F.explode(months).alias("month"))
    since = F.months_between("month", "cohort_month").cast("int")
    counts = (per_customer.groupBy("cohort_month", since.alias("months_since"))
              .agg(F.count(F.lit(1)).alias("active_customers")))
    # month 0 holds every customer of the cohort: its count is the cohort's size (a window, not a self-join that
    # would count the months twice)
    size = F.max(F.when(F.col("months_since") == 0, F.col("active_customers"))).over(Window.partitionBy("cohort_month"))
    return (counts.withColumn("cohort_size", size)
            .select("cohort_month", "months_since", "cohort_size", "active_customers",
                    round_half_up(F.col("active_customers") / F.col("cohort_size"), 4).alias("retention_rate")))
