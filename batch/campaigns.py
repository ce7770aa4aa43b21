"""``gold_campaign_performance`` (seed 002, use case 4): one row per campaign source.

- ``sessions``: distinct clickstream sessions of the campaign (``silver_clickstream``; no campaign = Direct),
  plus the ``silver_customer_insights`` sessions that carry their own funnel (``order_confirmed`` set: an export of
  every session, converted or not); ``conversions``: the clickstream sessions with a purchase event plus the
  funnel sessions whose order was confirmed; ``conversion_rate`` = conversions / sessions.
- From ``silver_customer_insights``' converted sessions (seed 002's file: every row, it holds converted sessions
  only; an export with a funnel: the rows with ``order_confirmed``): ``orders``, ``revenue`` (price x quantity),
  ``profit`` ((price - cost) x quantity), ``avg_order_value`` = revenue / orders, ``returns`` and ``return_rate``
  = returns / orders, ``customers`` (distinct). An unconverted session is never an order.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.functions import round_half_up

TABLE = "gold_campaign_performance"
DIRECT = "Direct"


def transform_campaign_performance(clickstream: DataFrame, insights: DataFrame) -> DataFrame:
    campaign = F.coalesce(F.col("campaign"), F.lit(DIRECT)).alias("campaign_source")
    clicks = (clickstream.groupBy(campaign, "session_id")
              .agg(F.max(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).alias("converted"))
              .select("campaign_source", "converted"))
    funnel = (insights.where(F.col("order_confirmed").isNotNull())
              .select(campaign, F.col("order_confirmed").cast("int").alias("converted")))
    sessions = (clicks.unionByName(funnel).groupBy("campaign_source")
                .agg(F.count(F.lit(1)).alias("sessions"), F.sum("converted").cast("long").alias("conversions")))
    revenue = F.col("price") * F.col("quantity")
    sales = insights.where(F.coalesce(F.col("order_confirmed"), F.lit(True))).groupBy(campaign).agg(
        F.count(F.lit(1)).alias("orders"),
        F.countDistinct("customer_id").alias("customers"),
        F.sum(revenue).cast("decimal(18,2)").alias("revenue"),
        F.sum((F.col("price") - F.col("cost")) * F.col("quantity")).cast("decimal(18,2)").alias("profit"),
        F.count_if("order_return").alias("returns"))
    df = sessions.join(sales, "campaign_source", "full")
    zero = F.lit(0).cast("long")
    return df.select(
        "campaign_source",
        F.coalesce("sessions", zero).alias("sessions"), F.coalesce("conversions", zero).alias("conversions"),
        F.when(F.col("sessions") > 0, round_half_up(F.col("conversions") / F.col("sessions"), 4)).alias("conversion_rate"),
        F.coalesce("orders", zero).alias("orders"), F.coalesce("customers", zero).alias("customers"),
        F.coalesce("revenue", F.lit(0).cast("decimal(18,2)")).alias("revenue"),
        F.coalesce("profit", F.lit(0).cast("decimal(18,2)")).alias("profit"),
        F.when(F.col("orders") > 0, (F.col("revenue") / F.col("orders")).cast("decimal(18,2)"))
        .alias("avg_order_value"),
        F.coalesce("returns", zero).alias("returns"),
        F.when(F.col("orders") > 0, round_half_up(F.col("returns") / F.col("orders"), 4)).alias("return_rate"),
    )
