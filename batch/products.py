"""``gold_product_performance`` (seed 001, task 2): one row per product with its funnel, sales and refunds.

- From ``silver_clickstream``: ``page_views`` and ``add_to_carts`` (events of that type for the product),
  ``abandoned_carts``: sessions with an add-to-cart of the product and no purchase of it in the same session.
- From ``silver_orders``: ``orders`` (not Cancelled), ``units``, ``revenue``; ``cancelled_orders``;
  ``active_subscriptions`` / ``cancelled_subscriptions`` (subscription orders by ``subscription_status``).
- From ``silver_refunds``: ``refunds``, ``refunded_amount``; ``refund_rate`` = refunds / orders. A refund
  without a product is attributed through its order, when that order is of one product (else it stays
  unattributed: a row without a product).
- Name, category, brand and price from ``silver_products`` (seed 002's catalogue), else the order's own.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.functions import round_half_up

TABLE = "gold_product_performance"


def transform_product_performance(clickstream: DataFrame, orders: DataFrame, refunds: DataFrame,
                                  products: DataFrame) -> DataFrame:
    clicks = clickstream.where(F.col("product_id").isNotNull())
    event = F.col("event_type")
    funnel = clicks.groupBy("product_id").agg(F.count_if(event == "page_view").alias("page_views"),
                                              F.count_if(event == "add_to_cart").alias("add_to_carts"))
    per_session = clicks.groupBy("product_id", "session_id").agg(
        F.max(F.when(event == "add_to_cart", 1).otherwise(0)).alias("carted"),
        F.max(F.when(event == "purchase", 1).otherwise(0)).alias("purchased"))
    abandoned = per_session.groupBy("product_id").agg(
        F.count_if((F.col("carted") == 1) & (F.col("purchased") == 0)).alias("abandoned_carts"))
    placed = F.col("order_status") != "Cancelled"
    sub = F.col("is_subscription")
    sales = orders.groupBy("product_id").agg(
        F.count_if(placed).alias("orders"),
        F.sum(F.when(placed, F.col("quantity")).otherwise(0)).cast("long").alias("units"),
        F.sum(F.when(placed, F.col("total_amount"))).cast("decimal(18,2)").alias("revenue"),
        F.count_if(~placed).alias("cancelled_orders"),
        F.count_if(sub & (F.col("subscription_status") == "Active")).alias("active_subscriptions"),
        F.count_if(sub & (F.col("subscription_status") == "Cancelled")).alias("cancelled_subscriptions"),
        F.first("product_name", ignorenulls=True).alias("_order_name"),
        F.first("category", ignorenulls=True).alias("_order_category"))
    # only the orders of refunds without a product (few: broadcast), not a shuffle of every order (10 s at 10M)
    orphans = F.broadcast(refunds.where(F.col("product_id").isNull()).select("order_id").distinct())
    single = (orders.join(orphans, "order_id", "left_semi")
              .groupBy("order_id").agg(F.min("product_id").alias("_p"), F.max("product_id").alias("_q"))
              .where(F.col("_p") == F.col("_q")).select("order_id", F.col("_p").alias("_order_product")))
    refunds = (refunds.join(single, "order_id", "left")
               .withColumn("product_id", F.coalesce(F.col("product_id"), F.col("_order_product"))))
    refunded = refunds.groupBy("product_id").agg(F.count(F.lit(1)).alias("refunds"),
                                                 F.sum("refund_amount").cast("decimal(18,2)").alias("refunded_amount"))
    df = (funnel.join(abandoned, "product_id", "full").join(sales, "product_id", "full")
          .join(refunded, "product_id", "full")
          .join(products.select("product_id", "name", "category", "brand", "price"), "product_id", "full"))
    counts = ["page_views", "add_to_carts", "abandoned_carts", "orders", "units", "cancelled_orders",
              "active_subscriptions", "cancelled_subscriptions", "refunds"]
    zero = F.lit(0).cast("decimal(18,2)")
    return df.select(
        "product_id",
        F.coalesce("name", "_order_name").alias("product_name"),
        F.coalesce(df["category"], F.col("_order_category")).alias("category"), "brand", "price",
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in counts],
        F.coalesce("revenue", zero).alias("revenue"), F.coalesce("refunded_amount", zero).alias("refunded_amount"),
        F.when(F.col("orders") > 0, round_half_up(F.coalesce("refunds", F.lit(0)) / F.col("orders"), 4))
        .alias("refund_rate"),
        F.when(F.col("page_views") > 0, round_half_up(F.col("orders") / F.col("page_views"), 4))
        .alias("view_to_order_rate"),
    )
