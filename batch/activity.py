"""Seed 000's activity reports (criteria 2-10, 15).

- ``gold_customer_activity``: one row per customer answering each question (columns below);
- ``gold_registrations_by_hour``: registrations per date and hour slot, with each day's peak hour(s) (criterion 2);
- ``gold_activity_summary``: one row of headline answers: customers registered in the report year (3), never
  logged in (4), logged in during the report month (6), evening loggers (7), earliest and latest registration
  (8), and the overall peak registration hour (2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.functions import days_between

TABLE = "gold_customer_activity"
HOURS_TABLE = "gold_registrations_by_hour"
SUMMARY_TABLE = "gold_activity_summary"


@dataclass(frozen=True)
class ActivityParams:
    """Business thresholds (seed 000; defaults in lakehouse/defaults.toml [business]).

    Attributes:
        as_of: the day "days since" is measured to (the refresh date by default).
        at_risk_days, churned_days: criterion 15 thresholds on days since the last login.
        evening_hour: criterion 7: a login at or after this hour is an evening login.
        never_label: criterion 10: what business readers see instead of a null last login.
        report_year: criterion 3: the year ``registered_in_report_year`` asks about.
        report_month: criterion 6: the month (``YYYY-MM``) ``logged_in_report_month`` asks about.
    """

    as_of: date
    at_risk_days: int = 30
    churned_days: int = 90
    evening_hour: int = 18
    never_label: str = "Never Logged In"
    report_year: int = 2024
    report_month: str = "2024-12"


def login_summary(logins: DataFrame, params: ActivityParams, *, days: bool = True) -> DataFrame:
    """One row per customer with a login event: what the activity report and the engagement score need from the
    login stream, in one aggregation: ``login_count``, ``evening_login_count`` (at or after ``evening_hour``),
    ``first_login_event``, ``latest_login_event``, ``month_logins`` (in ``report_month``) and ``login_days`` (the
    distinct days with a login: ``batch.daily``'s active users per day and month; left out when ``days`` is
    false)."""
    return logins.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("login_count"),
        F.count_if(F.hour("login_datetime") >= params.evening_hour).alias("evening_login_count"),
        F.min("login_datetime").alias("first_login_event"),
        F.max("login_datetime").alias("latest_login_event"),
        F.count_if(F.date_format("login_datetime", "yyyy-MM") == params.report_month).alias("month_logins"),
        # array_distinct(collect_list): collect_set's result, and 20x faster on the embedded engine
        *([F.array_distinct(F.collect_list(F.to_date("login_datetime"))).alias("login_days")] if days else []),
    )


def transform_customer_activity(customers: DataFrame, logins_by_customer: DataFrame, *,
                                params: ActivityParams) -> DataFrame:
    """Silver customers and their ``login_summary`` rows (same ``params``) -> one activity row per customer.

    Columns and their seed 000 criteria:
    ``registration_date``, ``registration_hour`` (2), ``registration_year`` (3), ``never_logged_in`` (4),
    ``days_registration_to_last_login`` (5), ``evening_login_count`` / ``logs_in_evenings`` (7: at or after
    ``evening_hour``), ``last_login_rank`` (9: 1 = most recent login, never-logged-in last),
    ``last_login_label`` (10: the last login as text, or ``never_label``), ``days_since_last_login`` and
    ``churn_status`` (15: Active below ``at_risk_days``, At Risk below ``churned_days``, else Churned;
    never-logged-in customers get ``never_label``). ``login_count`` counts login events.
    ``registered_in_report_year`` (3), ``logged_in_report_month`` (6: a login event, or the record's last
    login, in ``report_month``), ``is_earliest_registration`` / ``is_latest_registration`` (8; ties all flagged).

    The last login is the later of the customer record's ``last_login_datetime`` and the latest login event.
    """
    per_customer = logins_by_customer.select("customer_id", "login_count", "evening_login_count",
                                             "latest_login_event", "month_logins")
    df = customers.join(per_customer, "customer_id", "left")
    last_login = F.greatest(F.col("last_login_datetime"), F.col("latest_login_event"))
    df = df.withColumn("last_login_at", last_login)
    days_since = days_between(F.lit(params.as_of), F.to_date("last_login_at"))
    churn = (F.when(F.col("last_login_at").isNull(), F.lit(params.never_label))
             .when(days_since < params.at_risk_days, F.lit("Active"))
             .when(days_since < params.churned_days, F.lit("At Risk"))
             .otherwise(F.lit("Churned")))
    rank = Window.orderBy(F.col("last_login_at").desc_nulls_last(), F.col("customer_id"))
    # min/max over the rank's own ordering and partitioning: computed in the same window pass (no second exchange)
    everyone = rank.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    in_month = (F.coalesce("month_logins", F.lit(0)) > 0) | \
        (F.date_format("last_login_datetime", "yyyy-MM") == params.report_month)
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
        days_between(F.to_date("last_login_at"), F.to_date("registration_datetime"))
        .alias("days_registration_to_last_login"),
        F.coalesce("login_count", F.lit(0)).cast("long").alias("login_count"),
        F.coalesce("evening_login_count", F.lit(0)).cast("long").alias("evening_login_count"),
        (F.coalesce("evening_login_count", F.lit(0)) > 0).alias("logs_in_evenings"),
        days_since.alias("days_since_last_login"),
        churn.alias("churn_status"),
        F.row_number().over(rank).alias("last_login_rank"),
        (F.year("registration_datetime") == params.report_year).alias("registered_in_report_year"),
        F.coalesce(in_month, F.lit(False)).alias("logged_in_report_month"),
        (F.col("registration_datetime") == F.min("registration_datetime").over(everyone))
        .alias("is_earliest_registration"),
        (F.col("registration_datetime") == F.max("registration_datetime").over(everyone))
        .alias("is_latest_registration"),
        F.lit(params.as_of).alias("as_of"),
    )


def transform_registrations_by_hour(customers: DataFrame) -> DataFrame:
    """Registrations per date and hour slot (criterion 2); ``is_peak_hour``: the day's busiest hour(s)."""
    counts = customers.groupBy(F.to_date("registration_datetime").alias("registration_date"),
                               F.hour("registration_datetime").alias("registration_hour")).agg(
        F.count(F.lit(1)).alias("registrations"))
    day = Window.partitionBy("registration_date")
    slot = F.format_string("%02d:00-%02d:59", F.col("registration_hour"), F.col("registration_hour"))
    return counts.select("registration_date", "registration_hour", slot.alias("hour_slot"), "registrations",
                         (F.col("registrations") == F.max("registrations").over(day)).alias("is_peak_hour"))


def transform_activity_summary(activity: DataFrame, params: ActivityParams) -> DataFrame:
    """One row of headline answers from ``gold_customer_activity`` rows (criteria 2, 3, 4, 6, 7, 8)."""
    def n(col):
        return F.sum(F.when(F.col(col), 1).otherwise(0)).cast("long")

    peak = (activity.groupBy("registration_hour").agg(F.count(F.lit(1)).alias("n"))
            .orderBy(F.col("n").desc(), "registration_hour").limit(1)
            .select(F.col("registration_hour").alias("peak_registration_hour"),
                    F.col("n").alias("peak_hour_registrations")))
    summary = activity.agg(
        F.count(F.lit(1)).alias("customers"),
        n("registered_in_report_year").alias("registered_in_report_year"),
        n("never_logged_in").alias("never_logged_in"),
        n("logged_in_report_month").alias("logged_in_report_month"),
        n("logs_in_evenings").alias("evening_loggers"),
        F.min("registration_datetime").alias("earliest_registration"),
        F.max("registration_datetime").alias("latest_registration"),
    ).select(F.lit(params.report_year).alias("report_year"), F.lit(params.report_month).alias("report_month"), "*")
    return summary.join(peak, F.lit(True), "left")
