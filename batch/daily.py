"""``gold_daily_metrics`` (seeds 001 and 002): one row per calendar day.

- From purchases (``batch.spend``: online + in-store, not Cancelled): ``transactions``, ``revenue``,
  ``unique_customers``, ``online_transactions`` / ``instore_transactions``, ``avg_order_value``.
- ``refunded``: refunds issued that day; ``net_revenue`` = revenue - refunded.
- ``daily_active_users``: distinct customers who logged in that day (``silver_logins``).
- ``monthly_active_users`` (seed 001): distinct customers who logged in or bought during the day's calendar month.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.spend import ONLINE, purchases

TABLE = "gold_daily_metrics"


def transform_daily_metrics(transactions: DataFrame, refunds: DataFrame, logins: DataFrame) -> DataFrame:
    bought = purchases(transactions).withColumn("metric_date", F.to_date("transaction_datetime"))
    online = F.col("channel") == ONLINE
    sales = bought.groupBy("metric_date").agg(
        F.count(F.lit(1)).alias("transactions"),
        F.sum("amount").cast("decimal(18,2)").alias("revenue"),
        F.countDistinct("customer_id").alias("unique_customers"),
        F.count_if(online).alias("online_transactions"),
        F.count_if(~online).alias("instore_transactions"))
    refunded = (refunds.groupBy(F.to_date("refund_datetime").alias("metric_date"))
                .agg(F.sum("refund_amount").cast("decimal(18,2)").alias("refunded")))
    dau = (logins.groupBy(F.to_date("login_datetime").alias("metric_date"))
           .agg(F.countDistinct("customer_id").alias("daily_active_users")))
    month = F.date_trunc("month", "metric_date").cast("date")
    active = (bought.select("customer_id", "metric_date")
              .unionByName(logins.select("customer_id", F.to_date("login_datetime").alias("metric_date")))
              .groupBy(month.alias("month")).agg(F.countDistinct("customer_id").alias("monthly_active_users")))
    zero_dec, zero = F.lit(0).cast("decimal(18,2)"), F.lit(0).cast("long")
    df = (sales.join(refunded, "metric_date", "full").join(dau, "metric_date", "full")
          .withColumn("month", month).join(active, "month", "left"))
    return df.select(
        "metric_date", "month",
        *[F.coalesce(c, zero).alias(c) for c in ("transactions", "unique_customers", "online_transactions",
                                                  "instore_transactions", "daily_active_users")],
        F.coalesce("revenue", zero_dec).alias("revenue"), F.coalesce("refunded", zero_dec).alias("refunded"),
        (F.coalesce("revenue", zero_dec) - F.coalesce("refunded", zero_dec)).cast("decimal(18,2)")
        .alias("net_revenue"),
        F.when(F.col("transactions") > 0, (F.col("revenue") / F.col("transactions")).cast("decimal(18,2)"))
        .alias("avg_order_value"),
        F.coalesce("monthly_active_users", zero).alias("monthly_active_users"),
    )
