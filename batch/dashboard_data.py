"""What the dashboard shows, computed in Spark from the gold and stream tables.

Every function here takes Spark DataFrames and returns a small pandas frame (or a dict of numbers): the heavy
lifting (counts, sums, histogram bins, the top N) runs in Spark, so the dashboard of a million customers is a
few dozen rows per chart. ``Lake`` reads each table at one version and remembers when that version was written,
which every chart shows as the time of its data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from batch.export import mask_email, mask_phone
from batch.rfm import SEGMENT_RULES
from lakehouse.engine import read_table
from lakehouse.functions import days_between
from lakehouse.quality import fix_for
from lakehouse.schemas import SILVER_SPECS

log = logging.getLogger(__name__)

NO_TIER = "No loyalty account"
TIER_ORDER = ("Platinum", "Gold", "Silver", "Bronze", NO_TIER)
CLV_TIER_ORDER = ("Platinum", "Gold", "Silver", "Bronze")
SEGMENT_ORDER = tuple(rule[0] for rule in SEGMENT_RULES)
DAYS_PER_MONTH = 30.4375
FUNNEL_STAGES = ("Joined", "Made a first purchase", "Logged in since", "Active now")


@dataclass(frozen=True)
class TableInfo:
    """One table as the dashboard read it: its Delta version and when that version was committed."""

    name: str
    version: int | None = None
    written_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.version is not None

    def describe(self) -> str:
        if not self.exists:
            return f"{self.name}: not written yet"
        when = f", written {self.written_at:%Y-%m-%d %H:%M:%S} UTC" if self.written_at else ""
        return f"{self.name} v{self.version}{when}"


class Lake:
    """The tables of one lake, each read at the version it had when first asked for (a table not written yet
    reads as None)."""

    def __init__(self, spark: SparkSession, lake_root: str):
        from lakehouse.tables import table_path

        self.spark, self.root, self._path = spark, lake_root, table_path
        self.infos: dict[str, TableInfo] = {}
        self._frames: dict[str, DataFrame | None] = {}

    def info(self, name: str) -> TableInfo:
        if name not in self.infos:
            from lakehouse import lake

            commit = lake.last_commit(self._path(self.root, name))
            self.infos[name] = TableInfo(name) if commit is None else TableInfo(name, *commit)
        return self.infos[name]

    def table(self, name: str) -> DataFrame | None:
        if name not in self._frames:
            info = self.info(name)
            self._frames[name] = None if not info.exists else read_table(self.spark, self._path(self.root, name),
                                                                         info.version)
        return self._frames[name]


# --- building blocks ---------------------------------------------------------------------------------------------

def to_pandas(df: DataFrame) -> pd.DataFrame:
    """A small Spark result as pandas, decimals as floats (plotly and JSON want numbers)."""
    out = df.toPandas()
    for col, dtype in df.dtypes:
        if dtype.startswith("decimal"):
            out[col] = out[col].astype("float64")
    return out


def _bin(col: Column, lo: float, width: float, bins: int) -> Column:
    return F.least(F.floor((col - F.lit(lo)) / F.lit(width)), F.lit(bins - 1)).cast("int")


def _range(df: DataFrame, col: str) -> tuple[float, float] | None:
    row = df.agg(F.min(F.col(col).cast("double")), F.max(F.col(col).cast("double"))).first()
    if row[0] is None:
        return None
    lo, hi = float(row[0]), float(row[1])
    return lo, (hi if hi > lo else lo + 1.0)


def histogram(df: DataFrame, col: str, bins: int = 30) -> pd.DataFrame:
    """Equal-width bins over [min, max] of a numeric column (nulls left out; the maximum falls in the last bin):
    ``lo``, ``hi``, ``count`` per bin, empty bins included."""
    span = _range(df, col)
    if span is None:
        return pd.DataFrame({"lo": [], "hi": [], "count": []})
    lo, hi = span
    width = (hi - lo) / bins
    counts = {r[0]: r[1] for r in df.where(F.col(col).isNotNull())
              .groupBy(_bin(F.col(col).cast("double"), lo, width, bins).alias("b")).count().collect()}
    return pd.DataFrame({"lo": [lo + i * width for i in range(bins)], "hi": [lo + (i + 1) * width for i in range(bins)],
                         "count": [int(counts.get(i, 0)) for i in range(bins)]})


def heatmap2d(df: DataFrame, x: str, y: str, bins: int = 20) -> dict | None:
    """Counts of rows in a ``bins`` x ``bins`` grid of equal-width cells over the two columns' ranges (rows with a
    null in either left out): ``x_edges``, ``y_edges`` (bins + 1 each) and ``z`` (``z[j][i]``: y bin j, x bin i)."""
    both = df.where(F.col(x).isNotNull() & F.col(y).isNotNull())
    xs, ys = _range(both, x), _range(both, y)
    if xs is None or ys is None:
        return None
    (xlo, xhi), (ylo, yhi) = xs, ys
    xw, yw = (xhi - xlo) / bins, (yhi - ylo) / bins
    z = [[0] * bins for _ in range(bins)]
    for r in both.groupBy(_bin(F.col(x).cast("double"), xlo, xw, bins).alias("i"),
                          _bin(F.col(y).cast("double"), ylo, yw, bins).alias("j")).count().collect():
        z[r.j][r.i] = int(r["count"])
    return {"x_edges": [xlo + i * xw for i in range(bins + 1)], "y_edges": [ylo + j * yw for j in range(bins + 1)],
            "z": z}


def time_grain(lo: datetime | None, hi: datetime | None) -> str:
    """Daily points for up to three months of data, monthly beyond."""
    return "day" if lo is not None and hi is not None and (hi - lo).days <= 92 else "month"


def per_period(df: DataFrame, ts: str, value: Column | None = None, name: str = "customers",
               grain: str | None = None) -> tuple[pd.DataFrame, str]:
    """Rows (or ``value`` summed) per day or month of a timestamp column; the grain is chosen from its span
    unless given. Returns (``period``, ``name``) rows in time order and the grain."""
    present = df.where(F.col(ts).isNotNull())
    if grain is None:
        lo, hi = present.agg(F.min(ts), F.max(ts)).first()
        grain = time_grain(lo, hi)
    agg = F.count(F.lit(1)) if value is None else F.coalesce(F.sum(value), F.lit(0))
    out = to_pandas(present.groupBy(F.date_trunc(grain, F.col(ts)).alias("period")).agg(agg.alias(name))
                    .orderBy("period"))
    return out, grain


def _ordered(pdf: pd.DataFrame, col: str, order: tuple[str, ...]) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(order)}
    return pdf.assign(_o=pdf[col].map(lambda v: rank.get(v, len(rank)))).sort_values(["_o", col]) \
        .drop(columns="_o").reset_index(drop=True)


def _tier(c360: DataFrame) -> Column:
    return F.coalesce(F.col("loyalty_tier"), F.lit(NO_TIER))


# --- seed 004: Customer Overview -----------------------------------------------------------------------------------

def overview_cards(c360: DataFrame) -> dict[str, int]:
    """Total, active and inactive customers (``is_active`` of gold_customer_360)."""
    row = c360.agg(F.count(F.lit(1)).alias("total"), F.count_if(F.col("is_active")).alias("active")).first()
    return {"total_customers": int(row.total), "active_customers": int(row.active),
            "inactive_customers": int(row.total - row.active)}


def loyalty_distribution(c360: DataFrame) -> pd.DataFrame:
    """Customers per loyalty status (customers without a loyalty account counted as such)."""
    return _ordered(to_pandas(c360.groupBy(_tier(c360).alias("loyalty_tier")).agg(F.count(F.lit(1))
                                                                                 .alias("customers"))),
                    "loyalty_tier", TIER_ORDER)


def acquisition(c360: DataFrame) -> tuple[pd.DataFrame, str]:
    """New customers per day or month of joining, with the running total."""
    out, grain = per_period(c360, "registration_datetime")
    return out.assign(total=out["customers"].cumsum()), grain


# --- seed 004: Financial Insights ----------------------------------------------------------------------------------

def balance_by_tier(c360: DataFrame) -> pd.DataFrame:
    """Average account balance per loyalty status (customers with an account)."""
    return _ordered(to_pandas(c360.where(F.col("account_balance").isNotNull())
                              .groupBy(_tier(c360).alias("loyalty_tier"))
                              .agg(F.round(F.avg(F.col("account_balance").cast("double")), 2).alias("avg_balance"),
                                   F.count(F.lit(1)).alias("customers"))), "loyalty_tier", TIER_ORDER)


def top_customers(c360: DataFrame, n: int, *, mask_pii: bool) -> pd.DataFrame:
    """The ``n`` customers with the highest account balance, highest first (ties by customer id)."""
    email = mask_email(F.col("email")) if mask_pii else F.col("email")
    phone = mask_phone(F.col("phone")) if mask_pii else F.col("phone")
    return to_pandas(c360.where(F.col("account_balance").isNotNull())
                     .orderBy(F.desc("account_balance"), "customer_id").limit(n)
                     .select("customer_id", "customer_name", email.alias("email"), phone.alias("phone"),
                             "account_balance", _tier(c360).alias("loyalty_tier"), "loyalty_points"))


# --- seed 004: Customer Engagement --------------------------------------------------------------------------------

def account_age_days(c360: DataFrame) -> Column:
    """Days from joining to the day the gold tables were computed (their ``as_of``)."""
    return days_between(F.col("as_of"), F.to_date("registration_datetime"))


def retention_funnel(c360: DataFrame) -> pd.DataFrame:
    """Seed 004's retention journey, each stage counting the customers who reached it and every earlier one:
    joined -> made a first purchase -> logged in (a last login on record) -> active now (``is_active``)."""
    bought = F.col("first_purchase_at").isNotNull()
    logged = bought & F.col("last_login_at").isNotNull()
    row = c360.agg(F.count(F.lit(1)), F.count_if(bought), F.count_if(logged),
                   F.count_if(logged & F.col("is_active"))).first()
    return pd.DataFrame({"stage": list(FUNNEL_STAGES), "customers": [int(v) for v in row]})


def last_login_trend(c360: DataFrame) -> tuple[pd.DataFrame, str]:
    """Customers per day or month of their last login (those who never logged in left out)."""
    return per_period(c360, "last_login_at")


# --- seed 004: Transaction & Activity Trends ----------------------------------------------------------------------

def monthly_points(c360: DataFrame) -> pd.DataFrame:
    """Loyalty points held, summed per month of joining (seed 004: month(join_date), SUM(loyalty_points))."""
    return per_period(c360, "registration_datetime", F.col("loyalty_points"), "loyalty_points", grain="month")[0]


def points_treemap(c360: DataFrame) -> pd.DataFrame:
    """Loyalty points per loyalty status and, inside it, per RFM segment."""
    return to_pandas(c360.where(F.col("loyalty_points") > 0)
                     .groupBy(_tier(c360).alias("loyalty_tier"), F.col("customer_segment"))
                     .agg(F.sum("loyalty_points").alias("loyalty_points"), F.count(F.lit(1)).alias("customers"))
                     .orderBy("loyalty_tier", "customer_segment"))


def trend_kpis(c360: DataFrame, engagement: DataFrame | None, balance_above: float) -> dict[str, float | None]:
    """Seed 004's KPIs: total loyalty points awarded; the average login frequency (logins per month since
    joining, over customers who logged in, from gold_engagement_score) and the mean gap between logins; the
    share of customers (%) whose account balance is above ``balance_above``."""
    row = c360.agg(F.coalesce(F.sum("loyalty_points"), F.lit(0)).alias("points"),
                   F.count(F.lit(1)).alias("n"),
                   F.count_if(F.col("account_balance") > F.lit(balance_above)).alias("above")).first()
    out: dict[str, float | None] = {
        "total_loyalty_points": int(row.points),
        "share_balance_above_pct": round(100.0 * row.above / row.n, 2) if row.n else None,
        "avg_logins_per_month": None, "avg_login_gap_days": None}
    if engagement is not None:
        freq = engagement.where(F.col("login_count") > 0).agg(
            F.avg(F.col("login_count") / F.greatest(F.col("days_since_registration"), F.lit(1)) * DAYS_PER_MONTH),
            F.avg("mean_login_gap_days")).first()
        out["avg_logins_per_month"] = None if freq[0] is None else round(float(freq[0]), 2)
        out["avg_login_gap_days"] = None if freq[1] is None else round(float(freq[1]), 2)
    return out


# --- beyond seed 004 ------------------------------------------------------------------------------------------------

def rfm_segments(rfm: DataFrame) -> pd.DataFrame:
    """Customers and spend (RFM monetary) per RFM segment, in the order of the segment map."""
    return _ordered(to_pandas(rfm.groupBy("customer_segment").agg(
        F.count(F.lit(1)).alias("customers"), F.sum("monetary").alias("spend"))), "customer_segment", SEGMENT_ORDER)


def clv_tiers(clv: DataFrame) -> pd.DataFrame:
    """Customers, historical CLV and predicted 3-year CLV per CLV tier."""
    return _ordered(to_pandas(clv.groupBy("clv_tier").agg(
        F.count(F.lit(1)).alias("customers"), F.sum("historical_clv").alias("historical_clv"),
        F.sum("predicted_clv_3yr").alias("predicted_clv_3yr"))), "clv_tier", CLV_TIER_ORDER)


def cohort_matrix(cohorts: DataFrame) -> pd.DataFrame:
    """Retention rate by first-purchase month (rows) and months since (columns)."""
    pdf = to_pandas(cohorts.select("cohort_month", "months_since", "retention_rate", "cohort_size"))
    if pdf.empty:
        return pdf
    return pdf.pivot(index="cohort_month", columns="months_since", values="retention_rate").sort_index()


def city_hour(counts: DataFrame, cities: int) -> pd.DataFrame:
    """Logins per city and hour of day (all days summed) for the ``cities`` cities with the most logins, with
    each city's peak hour (the earliest of equal peaks): ``city``, ``hour``, ``logins``, ``is_peak``."""
    per = counts.groupBy("city", "hour").agg(F.sum("login_count").alias("logins"))
    top = (per.groupBy("city").agg(F.sum("logins").alias("_total"))
           .orderBy(F.desc("_total"), "city").limit(cities))
    peak = Window.partitionBy("city").orderBy(F.desc("logins"), "hour")
    return to_pandas(per.join(top, "city").withColumn("is_peak", F.row_number().over(peak) == 1)
                     .orderBy(F.desc("_total"), "city", "hour").drop("_total"))


def latest_anomalies(anomalies: DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most recent login-gap anomalies."""
    return to_pandas(anomalies.orderBy(F.desc("login_datetime"), "customer_id", "rule").limit(n)
                     .select("login_datetime", "customer_id", "rule", "severity", "gap_s", "evidence"))


def anomaly_counts(anomalies: DataFrame) -> pd.DataFrame:
    """Anomalies per rule and severity."""
    return to_pandas(anomalies.groupBy("rule", "severity").count().orderBy("rule", "severity"))


def stream_progress(progress: DataFrame, batches: int = 200) -> pd.DataFrame:
    """The last ``batches`` micro-batches of every query: when, rows processed per second, duration."""
    recent = Window.partitionBy("query").orderBy(F.desc("timestamp"))
    return to_pandas(progress.withColumn("_n", F.row_number().over(recent)).where(F.col("_n") <= batches)
                     .select("query", "timestamp", "processed_rows_per_s", "input_rows", "batch_duration_ms")
                     .orderBy("query", "timestamp"))


def top_products(products: DataFrame, n: int = 15) -> pd.DataFrame:
    """The ``n`` products with the most revenue, with their funnel and refund figures."""
    return to_pandas(products.orderBy(F.desc("revenue"), "product_id").limit(n).select(
        "product_id", "product_name", "category", "page_views", "add_to_carts", "abandoned_carts", "orders",
        "revenue", "refund_rate"))


def campaigns(perf: DataFrame) -> pd.DataFrame:
    return to_pandas(perf.orderBy(F.desc("revenue"), "campaign_source").select(
        "campaign_source", "sessions", "conversions", "conversion_rate", "revenue", "avg_order_value", "return_rate"))


def daily_revenue(daily: DataFrame) -> pd.DataFrame:
    return to_pandas(daily.select("metric_date", "net_revenue", "transactions", "monthly_active_users")
                     .orderBy("metric_date"))


def data_quality(dq: DataFrame) -> pd.DataFrame:
    """The latest run's figures per silver table: rows, nulls (all columns), read, duplicates removed,
    quarantined, the most frequent quarantine reason and the configuration change that fixes it (what `c360 stream`
    and `c360 gold` print; without the records' values, so a time pattern is named, not proposed)."""
    latest = Window.partitionBy("table_name").orderBy(F.desc("silver_version"))
    nulls = F.aggregate(F.map_values("null_counts"), F.lit(0).cast("long"), lambda acc, v: acc + v)
    reasons = F.map_entries("quarantined_by_reason")
    top_reason = F.when(F.size(reasons) > 0, F.sort_array(F.transform(
        reasons, lambda e: F.struct((-e["value"]).alias("n"), e["key"].alias("reason"))))[0]["reason"])
    pdf = to_pandas(dq.withColumn("_n", F.row_number().over(latest)).where("_n = 1").select(
        "table_name", "silver_version", "as_of", "rows", nulls.alias("null_values"), "records_read",
        "duplicates_removed", "quarantined", top_reason.alias("top_quarantine_reason")).orderBy("table_name"))
    source_of: dict[str, str] = {}
    for name, spec in SILVER_SPECS.items():
        source_of.setdefault(spec.table, name)
    pdf["fix"] = [fix_for(source_of[t], r, []) if t in source_of and isinstance(r, str) else None
                  for t, r in zip(pdf["table_name"], pdf["top_quarantine_reason"], strict=True)]
    return pdf
