"""``gold_spend_tiers`` (seed 001, task 1): customers tiered by what they spent on orders.

Spend = ``silver_orders.total_amount`` of every order not ``Cancelled``, minus the customer's refunds
(``silver_refunds``) — seed 001's own sources. Tier: Gold when spend > ``spend_tier_gold_above`` (2000),
Silver when > ``spend_tier_silver_above`` (1000), else Bronze (strictly above: exactly 2000 is Silver).
Written partitioned by ``tier``, and exported as one folder per tier.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

TABLE = "gold_spend_tiers"
PARTITION_BY = ["tier"]


def transform_spend_tiers(orders: DataFrame, refunds: DataFrame, customers: DataFrame, *, gold_above: float = 2000,
                          silver_above: float = 1000) -> DataFrame:
    placed = orders.where(F.col("order_status") != "Cancelled")
    per_customer = placed.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("orders"), F.sum("quantity").cast("long").alias("units"),
        F.sum("total_amount").cast("decimal(18,2)").alias("gross_spend"))
    refunded = refunds.groupBy("customer_id").agg(F.sum("refund_amount").cast("decimal(18,2)").alias("refunded"))
    zero = F.lit(0).cast("decimal(18,2)")
    df = (per_customer.join(refunded, "customer_id", "left")
          .withColumn("refunded", F.coalesce("refunded", zero))
          .withColumn("total_spend", (F.col("gross_spend") - F.col("refunded")).cast("decimal(18,2)")))
    tier = (F.when(F.col("total_spend") > gold_above, F.lit("Gold"))
            .when(F.col("total_spend") > silver_above, F.lit("Silver"))
            .otherwise(F.lit("Bronze")))
    names = customers.select("customer_id", "customer_name", "city")
    return (df.join(names, "customer_id", "left")
            .select("customer_id", "customer_name", "city", "orders", "units", "gross_spend", "refunded",
                    "total_spend", (F.col("total_spend") / F.col("orders")).cast("decimal(18,2)")
                    .alias("avg_order_value"), tier.alias("tier")))
