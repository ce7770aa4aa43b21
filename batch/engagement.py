"""``gold_engagement_score`` (seed 000, criterion 14): one 0-100 score per customer to rank them by.

Four components in [0, 1], combined as ``100 x sum(weight x component) / sum(weights)`` (weights:
``business.engagement_weight_*``, defaults 0.15 / 0.35 / 0.35 / 0.15):

- ``registration_component``: registration recency: 1 - days since registration / the horizon
  (``engagement_registration_horizon_days``, 730), floored at 0;
- ``login_frequency_component``: logins per 30 days since registration / ``engagement_logins_per_month_target``,
  capped at 1;
- ``activity_gap_component``: 1 - (the larger of the mean gap between logins and the days since the last login)
  / ``churn_churned_days``, floored at 0; 0 for customers who never logged in;
- ``status_component``: Active 1, Inactive 0.3, Blocked 0.

``engagement_band``: High >= 70, Medium >= 40, else Low.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.functions import days_between, round_half_up

TABLE = "gold_engagement_score"
STATUS_WEIGHT = {"Active": 1.0, "Inactive": 0.3, "Blocked": 0.0}


@dataclass(frozen=True)
class EngagementParams:
    as_of: date
    weight_registration: float = 0.15
    weight_login_frequency: float = 0.35
    weight_activity_gap: float = 0.35
    weight_status: float = 0.15
    logins_per_month_target: float = 4.0
    registration_horizon_days: int = 730
    churned_days: int = 90


def transform_engagement(customers: DataFrame, logins_by_customer: DataFrame, p: EngagementParams) -> DataFrame:
    """Silver customers and their ``batch.activity.login_summary`` rows -> one engagement row per customer."""
    stats = logins_by_customer.select("customer_id", "login_count", "first_login_event", "latest_login_event")
    df = customers.select("customer_id", "registration_datetime", "last_login_datetime", "status").join(
        stats, "customer_id", "left")
    as_of = F.lit(p.as_of)
    last_login = F.greatest("last_login_datetime", "latest_login_event")
    days_registered = F.greatest(days_between(as_of, F.to_date("registration_datetime")), F.lit(0))
    logins = F.coalesce("login_count", F.lit(0))
    mean_gap = F.when(logins > 1, (F.unix_timestamp("latest_login_event") - F.unix_timestamp("first_login_event"))
                      / 86400 / (logins - 1))
    since_last = days_between(as_of, F.to_date(last_login))
    worst_gap = F.greatest(F.coalesce(mean_gap, since_last.cast("double")), since_last.cast("double"))
    components = {
        "registration_component": F.greatest(1 - days_registered / p.registration_horizon_days, F.lit(0.0)),
        "login_frequency_component": F.least(
            logins / F.greatest(days_registered / 30.0, F.lit(1.0)) / p.logins_per_month_target, F.lit(1.0)),
        "activity_gap_component": F.when(last_login.isNull(), F.lit(0.0))
        .otherwise(F.greatest(1 - worst_gap / p.churned_days, F.lit(0.0))),
        "status_component": F.coalesce(
            F.create_map(*[F.lit(x) for kv in STATUS_WEIGHT.items() for x in kv])[F.col("status")], F.lit(0.0)),
    }
    weights = {"registration_component": p.weight_registration,
               "login_frequency_component": p.weight_login_frequency,
               "activity_gap_component": p.weight_activity_gap, "status_component": p.weight_status}
    df = df.select("customer_id", "status", days_registered.alias("days_since_registration"),
                   logins.cast("long").alias("login_count"), round_half_up(mean_gap, 2).alias("mean_login_gap_days"),
                   since_last.alias("days_since_last_login"),
                   *[round_half_up(expr, 4).alias(name) for name, expr in components.items()])
    total = sum(weights.values())
    score = sum(F.col(name) * w for name, w in weights.items()) / total * 100
    df = df.withColumn("engagement_score", round_half_up(score, 1))
    band = (F.when(F.col("engagement_score") >= 70, "High").when(F.col("engagement_score") >= 40, "Medium")
            .otherwise("Low"))
    return df.withColumn("engagement_band", band)
