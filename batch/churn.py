"""``gold_churn`` and ``gold_churn_summary`` (seeds 000, 001, 003): churn flags per customer and the rates.

- Login churn (seed 000, criterion 15): days since the last login -> Active below ``churn_at_risk_days``, At
  Risk below ``churn_churned_days``, else Churned; customers who never logged in get ``never_logged_in_label``
  (the same rule as ``gold_customer_activity``, whose rows this table starts from).
- Subscription churn (seed 001): a subscriber has at least one subscription order (``silver_orders``,
  ``is_subscription``); a subscriber whose subscriptions are all ``Cancelled`` has churned.
  ``subscription_churn_rate`` = churned subscribers / subscribers.
- Purchase churn (seed 003): a buyer without a purchase for ``purchase_churn_days`` days.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.functions import round_half_up

TABLE = "gold_churn"
SUMMARY_TABLE = "gold_churn_summary"


def subscriptions(orders: DataFrame) -> DataFrame:
    """Per subscriber: subscriptions, active and cancelled ones (seed 001)."""
    subs = orders.where(F.col("is_subscription"))
    return subs.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("subscriptions"),
        F.count_if(F.col("subscription_status") == "Active").alias("active_subscriptions"),
        F.count_if(F.col("subscription_status") == "Cancelled").alias("cancelled_subscriptions"),
    )


def transform_churn(activity: DataFrame, orders: DataFrame, spend: DataFrame, *, as_of: date,
                    purchase_churn_days: int = 180) -> DataFrame:
    """Activity rows (``batch.activity``), orders and spend (``batch.spend``) -> one churn row per customer."""
    subs = subscriptions(orders)
    df = (activity.select("customer_id", "days_since_last_login", F.col("churn_status").alias("login_churn_status"))
          .join(subs, "customer_id", "left")
          .join(spend.select("customer_id", "days_since_last_purchase", "order_count"), "customer_id", "left"))
    zero = F.lit(0).cast("long")
    df = (df.withColumn("subscriptions", F.coalesce("subscriptions", zero))
          .withColumn("active_subscriptions", F.coalesce("active_subscriptions", zero))
          .withColumn("cancelled_subscriptions", F.coalesce("cancelled_subscriptions", zero)))
    buyer = F.coalesce(F.col("order_count"), zero) > 0
    return df.select(
        "customer_id", "days_since_last_login", "login_churn_status",
        (F.col("login_churn_status") == "Churned").alias("is_login_churned"),
        "subscriptions", "active_subscriptions", "cancelled_subscriptions",
        (F.col("subscriptions") > 0).alias("is_subscriber"),
        ((F.col("subscriptions") > 0) & (F.col("active_subscriptions") == 0)).alias("is_subscription_churned"),
        "days_since_last_purchase",
        (buyer & (F.col("days_since_last_purchase") >= purchase_churn_days)).alias("is_purchase_churned"),
        F.lit(as_of).alias("as_of"),
    )


def transform_churn_summary(churn: DataFrame, *, never_label: str) -> DataFrame:
    """One row: customers per login churn status and the login, subscription and purchase churn rates."""
    status = F.col("login_churn_status")

    def n(cond):
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    agg = churn.agg(
        F.count(F.lit(1)).alias("customers"),
        n(status == "Active").alias("active"), n(status == "At Risk").alias("at_risk"),
        n(status == "Churned").alias("churned"), n(status == never_label).alias("never_logged_in"),
        n(F.col("is_subscriber")).alias("subscribers"),
        n(F.col("is_subscription_churned")).alias("churned_subscribers"),
        F.sum("subscriptions").cast("long").alias("subscriptions"),
        F.sum("cancelled_subscriptions").cast("long").alias("cancelled_subscriptions"),
        n(F.col("days_since_last_purchase").isNotNull()).alias("buyers"),
        n(F.col("is_purchase_churned")).alias("purchase_churned"),
        F.max("as_of").alias("as_of"),
    )

    def rate(num, den):
        return F.when(F.col(den) > 0, round_half_up(F.col(num) / F.col(den), 4))

    return agg.select(
        "*",
        rate("churned", "customers").alias("login_churn_rate"),
        rate("churned_subscribers", "subscribers").alias("subscription_churn_rate"),
        rate("cancelled_subscriptions", "subscriptions").alias("subscription_cancellation_rate"),
        rate("purchase_churned", "buyers").alias("purchase_churn_rate"),
    )
