"""Purchases and spend per customer (seed 002): the figures customer 360, RFM and CLV share.

A purchase is a row of ``silver_transactions`` (online and in-store, seed 002) whose status is not
``Cancelled``; returned orders stay purchases and their refunds (``silver_refunds``, seed 001) are netted out of
the spend. ``silver_orders`` holds the same online orders in seed 001's layout; spend is never counted from both.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

CANCELLED = "Cancelled"
ONLINE, IN_STORE, OMNICHANNEL = "Online", "In-Store", "Omnichannel"


def purchases(transactions: DataFrame) -> DataFrame:
    """The transactions that are purchases: every status but ``Cancelled``."""
    return transactions.where(F.col("status").isNull() | (F.col("status") != CANCELLED))


def customer_spend(transactions: DataFrame, refunds: DataFrame, *, as_of: date,
                   omnichannel_min_share: float = 0.2) -> DataFrame:
    """One row per customer with a purchase or a refund.

    Columns: ``online_spend``, ``instore_spend``, ``gross_spend``, ``refunded``, ``total_spend`` (gross - refunds),
    ``order_count`` (purchases), ``online_orders``, ``instore_orders``, ``avg_order_value`` (total spend /
    purchases), ``first_purchase_at``, ``last_purchase_at``, ``days_since_last_purchase`` (to ``as_of``) and
    ``preferred_channel``: Omnichannel when each channel has at least ``omnichannel_min_share`` of the customer's
    purchases, else the channel with more purchases (seed 002).
    """
    amount = F.col("amount").cast("decimal(18,2)")
    online = F.col("channel") == ONLINE
    per_customer = purchases(transactions).groupBy("customer_id").agg(
        F.sum(F.when(online, amount).otherwise(0)).alias("online_spend"),
        F.sum(F.when(~online, amount).otherwise(0)).alias("instore_spend"),
        F.count(F.lit(1)).alias("order_count"),
        F.count_if(online).alias("online_orders"),
        F.min("transaction_datetime").alias("first_purchase_at"),
        F.max("transaction_datetime").alias("last_purchase_at"),
    )
    refunded = refunds.groupBy("customer_id").agg(F.sum("refund_amount").alias("refunded"))
    df = per_customer.join(refunded, "customer_id", "full")
    zero = F.lit(0).cast("decimal(18,2)")
    df = (df.withColumn("online_spend", F.coalesce("online_spend", zero))
          .withColumn("instore_spend", F.coalesce("instore_spend", zero))
          .withColumn("refunded", F.coalesce("refunded", zero).cast("decimal(18,2)"))
          .withColumn("order_count", F.coalesce("order_count", F.lit(0)).cast("long"))
          .withColumn("online_orders", F.coalesce("online_orders", F.lit(0)).cast("long")))
    gross = (F.col("online_spend") + F.col("instore_spend")).cast("decimal(18,2)")
    total = (gross - F.col("refunded")).cast("decimal(18,2)")
    n, n_online = F.col("order_count"), F.col("online_orders")
    floor = n * omnichannel_min_share  # compared as counts: 1 - 0.8 is not 0.2 in floating point
    channel = (F.when(n == 0, F.lit(None).cast("string"))
               .when((n_online >= floor) & (n - n_online >= floor), F.lit(OMNICHANNEL))
               .when(n_online * 2 >= n, F.lit(ONLINE))
               .otherwise(F.lit(IN_STORE)))
    return df.select(
        "customer_id", "online_spend", "instore_spend", gross.alias("gross_spend"), "refunded",
        total.alias("total_spend"), "order_count", "online_orders",
        (F.col("order_count") - F.col("online_orders")).alias("instore_orders"),
        F.when(F.col("order_count") > 0, (total / F.col("order_count")).cast("decimal(18,2)"))
        .alias("avg_order_value"),
        "first_purchase_at", "last_purchase_at",
        F.datediff(F.lit(as_of), F.to_date("last_purchase_at")).alias("days_since_last_purchase"),
        channel.alias("preferred_channel"),
    )
