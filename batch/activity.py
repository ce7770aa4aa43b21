"""``gold_customer_activity``: one row per customer answering seed 000's activity questions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

TABLE = "gold_customer_activity"


@dataclass(frozen=True)
class ActivityParams:
    """Business thresholds (seed 000; defaults in lakehouse/defaults.toml [business]).

    Attributes:
        as_of: the day "days since" is measured to (the refresh date by default).
        at_risk_days, churned_days: criterion 15 thresholds on days since the last login.
        evening_hour: criterion 7: a login at or after this hour is an evening login.
        never_label: criterion 10: what business readers see instead of a null last login.
    """

    as_of: date
    at_risk_days: int = 30
    churned_days: int = 90
    evening_hour: int = 18
    never_label: str = "Never Logged In"


def transform_customer_activity(customers: DataFrame, logins: DataFrame, *, params: ActivityParams) -> DataFrame:
    """Silver customers and logins -> one activity row per customer.

    Columns and their seed 000 criteria:
    ``registration_date``, ``registration_hour`` (2), ``registration_year`` (3), ``never_logged_in`` (4),
    ``days_registration_to_last_login`` (5), ``evening_login_count`` / ``logs_in_evenings`` (7: at or after
    ``evening_hour``), ``last_login_rank`` (9: 1 = most recent login, never-logged-in last),
    ``last_login_label`` (10: the last login as text, or ``never_label``), ``days_since_last_login`` and
    ``churn_status`` (15: Active below ``at_risk_days``, At Risk below ``churned_days``, else Churned;
    never-logged-in customers get ``never_label``). ``login_count`` counts login events.

    The last login is the later of the customer record's ``last_login_datetime`` and the latest login event.
    """
    per_customer = logins.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("login_count"),
        F.sum(F.when(F.hour("login_datetime") >= params.evening_hour, 1).otherwise(0)).alias("evening_login_count"),
        F.max("login_datetime").alias("_latest_login_event"),
    )
    df = customers.join(per_customer, "customer_id", "left")
    last_login = F.greatest(F.col("last_login_datetime"), F.col("_latest_login_event"))
    df = df.withColumn("last_login_at", last_login)
    days_since = F.datediff(F.lit(params.as_of), F.to_date("last_login_at"))
    churn = (F.when(F.col("last_login_at").isNull(), F.lit(params.never_label))
             .when(days_since < params.at_risk_days, F.lit("Active"))
             .when(days_since < params.churned_days, F.lit("At Risk"))
             .otherwise(F.lit("Churned")))
    rank = Window.orderBy(F.col("last_login_at").desc_nulls_last(), F.col("customer_id"))
    return df.select(
        "customer_id", "customer_name", "city", "status",
        "registration_datetime",
        F.to_date("registration_datetime").alias("registration_date"),
        F.hour("registration_datetime").alias("registration_hour"),
        F.year("registration_datetime").alias("registration_year"),
        F.col("last_login_at").alias("last_login_datetime"),
        F.col("last_login_at").isNull().alias("never_logged_in"),
        F.coalesce(F.date_format("last_login_at", "yyyy-MM-dd HH:mm:ss"), F.lit(params.never_label))
        .alias("last_login_label"),
        F.datediff(F.to_date("last_login_at"), F.to_date("registration_datetime"))
        .alias("days_registration_to_last_login"),
        F.coalesce("login_count", F.lit(0)).cast("long").alias("login_count"),
        F.coalesce("evening_login_count", F.lit(0)).cast("long").alias("evening_login_count"),
        (F.coalesce("evening_login_count", F.lit(0)) > 0).alias("logs_in_evenings"),
        days_since.alias("days_since_last_login"),
        churn.alias("churn_status"),
        F.row_number().over(rank).alias("last_login_rank"),
        F.lit(params.as_of).alias("as_of"),
    )
