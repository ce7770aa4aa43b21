"""``gold_customer_360`` (seed 002, use case 1): one row per known customer, everything about them.

Customers are those of ``silver_customers`` (seed 000) and ``silver_crm_customers`` (seed 002), matched on
``customer_id`` (the seed 000 record wins for name, email, phone and city). Records of customers neither master
knows (dirty ids) stay out of this table; they still count in daily metrics and product figures. A lake without
any master customer (a user who brings only transactions, order lines, sessions or logins) takes every customer
seen in purchases, refunds, sessions or logins instead (``business.customer_360_population``: ``auto``; ``all``
always adds them, ``masters`` never); what such a customer lacks stays null, and their name, gender and place come
from their latest session when ``silver_customer_insights`` has one.

- Spend (``batch.spend``): ``total_spend`` (online + in-store purchases net of refunds), ``order_count``,
  ``avg_order_value``, ``preferred_channel`` (Online / In-Store / Omnichannel), first and last purchase.
- Loyalty (``silver_loyalty_accounts``, seed 002): ``loyalty_tier`` (the customer's highest tier) and
  ``loyalty_points`` (points balance), falling back to seed 004's ``silver_accounts``;
  ``account_balance`` from ``silver_accounts``.
- Support (``silver_service_interactions``): ``support_tickets``, ``resolved_tickets``, ``escalated_tickets``,
  ``resolution_rate`` = resolved / tickets, ``avg_satisfaction``.
- Activity (``batch.activity``): ``last_login_at``, ``days_since_last_login``, ``login_churn_status``.
- ``is_active``: not Blocked, and a purchase within ``purchase_churn_days`` or a login within
  ``churn_churned_days`` days.
- ``customer_segment`` and ``churn_risk`` (``batch.rfm``; "No Purchases" / null for customers without any),
  ``historical_clv``, ``predicted_clv_3yr``, ``clv_tier``, ``p_alive`` (``batch.clv``), ``engagement_score``
  and ``engagement_band`` (``batch.engagement``).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.functions import round_half_up

TABLE = "gold_customer_360"
NO_PURCHASES = "No Purchases"


def customers_master(customers: DataFrame, crm: DataFrame) -> DataFrame:
    """seed 000 customers full-outer seed 002 CRM customers, one row per customer_id."""
    c = customers.select("customer_id", "customer_name", "email", "phone", "city", "registration_datetime",
                         "status")
    m = crm.select("customer_id", F.col("name").alias("_crm_name"), F.col("email").alias("_crm_email"),
                   F.col("phone").alias("_crm_phone"), F.col("city").alias("_crm_city"), "state", "country",
                   "gender", "date_of_birth", F.col("join_date").alias("_crm_join"))
    df = c.join(m, "customer_id", "full")
    return df.select(
        "customer_id",
        F.coalesce("customer_name", "_crm_name").alias("customer_name"),
        F.coalesce("email", "_crm_email").alias("email"),
        F.coalesce("phone", "_crm_phone").alias("phone"),
        F.coalesce("city", "_crm_city").alias("city"), "state", "country", "gender", "date_of_birth",
        F.coalesce("registration_datetime", F.col("_crm_join").cast("timestamp")).alias("registration_datetime"),
        "status",
    )


def seen_customers(master: DataFrame, spend: DataFrame, logins: DataFrame, insights: DataFrame) -> DataFrame:
    """The master's customers plus every customer seen in purchases and refunds (``spend``), logins or sessions,
    in the master's columns: a customer the master lacks gets the name, gender and place of their latest session
    (``silver_customer_insights``), else nulls."""
    latest = F.struct("session_start", "session_id")
    sessions = insights.groupBy("customer_id").agg(
        *[F.max_by(c, latest).alias(f"_s_{c}") for c in ("full_name", "gender", "city", "state", "country")])
    ids = (spend.select("customer_id").unionByName(logins.select("customer_id"))
           .unionByName(insights.select("customer_id")).where(F.col("customer_id").isNotNull()).distinct())
    extra = ids.join(master.select("customer_id"), "customer_id", "left_anti").join(sessions, "customer_id", "left")
    renamed = extra.select("customer_id", F.col("_s_full_name").alias("customer_name"),
                           F.col("_s_city").alias("city"), F.col("_s_state").alias("state"),
                           F.col("_s_country").alias("country"), F.col("_s_gender").alias("gender"))
    return master.unionByName(renamed, allowMissingColumns=True)


def transform_customer_360(master: DataFrame, spend: DataFrame, loyalty: DataFrame, accounts: DataFrame,
                           service: DataFrame, activity: DataFrame, rfm: DataFrame, clv: DataFrame,
                           engagement: DataFrame, *, as_of: date, purchase_churn_days: int = 180,
                           churned_days: int = 90) -> DataFrame:
    loyal = loyalty.groupBy("customer_id").agg(F.max_by("tier_level", "tier_rank").alias("_tier"),
                                               F.sum("points_balance").cast("long").alias("_points"))
    acct = accounts.select("customer_id", "account_balance", F.col("loyalty_status").alias("_acct_tier"),
                           F.col("loyalty_points").alias("_acct_points"))
    support = service.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("support_tickets"),
        F.count_if("is_resolved").alias("resolved_tickets"),
        F.count_if("is_escalated").alias("escalated_tickets"),
        round_half_up(F.avg("satisfaction_score"), 2).alias("avg_satisfaction"))
    df = (master
          .join(spend.drop("online_orders", "instore_orders"), "customer_id", "left")
          .join(loyal, "customer_id", "left").join(acct, "customer_id", "left")
          .join(support, "customer_id", "left")
          .join(activity.select("customer_id", F.col("last_login_datetime").alias("last_login_at"),
                                "days_since_last_login", F.col("churn_status").alias("login_churn_status")),
                "customer_id", "left")
          .join(rfm.select("customer_id", "r_score", "f_score", "m_score", "rfm_score", "customer_segment",
                           "churn_risk"), "customer_id", "left")
          .join(clv.select("customer_id", "historical_clv", "predicted_clv_3yr", "clv_tier", "p_alive"),
                "customer_id", "left")
          .join(engagement.select("customer_id", "engagement_score", "engagement_band"), "customer_id", "left"))
    zero_dec, zero = F.lit(0).cast("decimal(18,2)"), F.lit(0).cast("long")
    tickets = F.coalesce("support_tickets", zero)
    recent_buy = F.coalesce(F.col("days_since_last_purchase") < purchase_churn_days, F.lit(False))
    recent_login = F.coalesce(F.col("days_since_last_login") < churned_days, F.lit(False))
    is_active = F.coalesce(F.col("status") != "Blocked", F.lit(True)) & (recent_buy | recent_login)
    return df.select(
        "customer_id", "customer_name", "email", "phone", "city", "state", "country", "gender",
        "registration_datetime", "status",
        *[F.coalesce(c, zero_dec).alias(c) for c in ("total_spend", "online_spend", "instore_spend", "refunded")],
        F.coalesce("order_count", zero).alias("order_count"), "avg_order_value", "preferred_channel",
        "first_purchase_at", "last_purchase_at", "days_since_last_purchase",
        F.coalesce("_tier", "_acct_tier").alias("loyalty_tier"),
        F.coalesce("_points", "_acct_points").alias("loyalty_points"), "account_balance",
        tickets.alias("support_tickets"), F.coalesce("resolved_tickets", zero).alias("resolved_tickets"),
        F.coalesce("escalated_tickets", zero).alias("escalated_tickets"),
        F.when(tickets > 0, round_half_up(F.col("resolved_tickets") / tickets, 4)).alias("resolution_rate"),
        "avg_satisfaction", "last_login_at", "days_since_last_login", "login_churn_status",
        is_active.alias("is_active"),
        F.coalesce("customer_segment", F.lit(NO_PURCHASES)).alias("customer_segment"),
        "rfm_score", "churn_risk", "historical_clv", "predicted_clv_3yr", "clv_tier", "p_alive",
        "engagement_score", "engagement_band", F.lit(as_of).alias("as_of"),
    )
