"""The nightly gold refresh (``c360 gold``): every gold table from one consistent silver snapshot.

Each gold table is a module of ``batch/`` with its business rules and seed (docs/gold.md lists them). The
refresh pins every silver table it reads at the version it has when the run starts (``SilverSnapshot``), builds
the shared per-customer figures once (spend, activity, RFM, CLV, engagement: ``Context``), and replaces each gold
table in one Delta overwrite (readers see the old table or the new one, never a half-written one; a rerun on
the same snapshot and day writes the same rows). Write conflicts are retried with bounded backoff. Exports
(CSV and Parquet, PII masked) follow each table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch import (
    activity,
    campaigns,
    churn,
    clv,
    cohorts,
    customer_360,
    daily,
    engagement,
    export,
    lines,
    products,
    quality,
    rfm,
    spend,
    tiers,
)
from lakehouse import lake
from lakehouse.config import Config
from lakehouse.delta import insert_new, retry
from lakehouse.engine import Intermediates, read_table
from lakehouse.errors import C360Error
from lakehouse.schemas import SILVER, SILVER_SPECS
from lakehouse.tables import OPS_BATCHES, QUARANTINE, table_path

log = logging.getLogger(__name__)
SILVER_TABLES = sorted({spec.table for spec in SILVER_SPECS.values()})


@dataclass(frozen=True)
class GoldResult:
    table: str
    rows: int
    seconds: float
    path: str
    exports: list[str] = field(default_factory=list)


class SilverSnapshot:
    """Silver tables pinned at the version each had when the refresh started: a refresh reads one consistent
    state even while the stream keeps writing. A silver table the stream has not written yet reads as empty
    (with a warning); when none exists the refresh stops and says to run the stream first."""

    def __init__(self, spark: SparkSession, lake_root: str, tables: list[str]):
        self.spark, self.lake_root = spark, lake_root
        self.versions: dict[str, int] = {}
        self.missing: list[str] = []
        for name in tables:
            version = lake.version(table_path(lake_root, name))
            if version is None:
                self.missing.append(name)
            else:
                self.versions[name] = version
        if tables and not self.versions:
            raise C360Error(f"no silver table exists in {lake_root} ({', '.join(tables[:3])}...): "
                            "run `c360 stream` first")
        if self.missing:
            log.warning("silver tables not written yet, read as empty: %s", ", ".join(self.missing))

    def read(self, name: str) -> DataFrame:
        """The table at its pinned version; columns a table written by an older c360 lacks read as null (the
        stream adds them to the table when it next starts)."""
        schema = _schema_of(name)
        if name in self.missing:
            return self.spark.createDataFrame([], schema)
        df = read_table(self.spark, table_path(self.lake_root, name), self.versions[name])
        have = set(df.columns)
        lacking = [f for f in schema.fields if f.name not in have]
        return df.withColumns({f.name: F.lit(None).cast(f.dataType) for f in lacking}) if lacking else df


def _schema_of(table: str):
    return next(SILVER[src] for src, spec in SILVER_SPECS.items() if spec.table == table)


class Context:
    """What several gold tables share, computed once per run (and cached) from the snapshot."""

    def __init__(self, spark: SparkSession, snap: SilverSnapshot, cfg: Config, as_of: date, days: bool = True):
        """``days``: the summaries keep each customer's purchase and login days (only daily metrics need them)."""
        self.spark, self.snap, self.cfg, self.as_of, self.b = spark, snap, cfg, as_of, cfg.business
        self.days = days
        self._kept = Intermediates(spark, cfg)

    def read(self, name: str) -> DataFrame:
        return self.snap.read(name)

    def _keep(self, df: DataFrame, name: str) -> DataFrame:
        return self._kept.keep(df, name)

    def release(self) -> None:
        self._kept.release()

    @cached_property
    def order_lines(self) -> DataFrame | None:
        """``silver_order_lines`` when it holds any line (a user's line-level export), else None: gold then reads
        the orders, purchases and refunds it builds from them (batch/lines.py) with the other sources' rows."""
        if "silver_order_lines" not in self.snap.versions:
            return None
        df = self.read("silver_order_lines")
        return None if df.isEmpty() else df

    @cached_property
    def transactions(self) -> DataFrame:
        """Purchases: ``silver_transactions``, and one per order of the order lines."""
        txn = self.read("silver_transactions")
        return txn if self.order_lines is None else lines.transaction_rows(txn, self.order_lines)

    @cached_property
    def orders(self) -> DataFrame:
        """Seed 001's orders: ``silver_orders``, and one row per sold order line."""
        orders = self.read("silver_orders")
        return orders if self.order_lines is None else lines.order_rows(orders, self.order_lines)

    @cached_property
    def refunds(self) -> DataFrame:
        """``silver_refunds``, and one per returned order line."""
        refunds = self.read("silver_refunds")
        return refunds if self.order_lines is None else lines.refund_rows(refunds, self.order_lines)

    @cached_property
    def purchase_summary(self) -> DataFrame:
        """Purchases per customer (spend, the CLV model's summary, cohort months): one shuffle of the biggest
        table most gold tables need, instead of one per table."""
        return self._keep(spend.purchase_summary(self.transactions, observation_end=self.as_of, days=self.days), "purchase_summary")

    @cached_property
    def spend(self) -> DataFrame:
        return self._keep(spend.customer_spend(self.purchase_summary, self.refunds,
                                               as_of=self.as_of, omnichannel_min_share=self.b.omnichannel_min_share), "spend")

    @cached_property
    def activity_params(self) -> activity.ActivityParams:
        b = self.b
        return activity.ActivityParams(as_of=self.as_of, at_risk_days=b.churn_at_risk_days,
                                       churned_days=b.churn_churned_days, evening_hour=b.evening_hour,
                                       never_label=b.never_logged_in_label, report_year=b.report_year,
                                       report_month=b.report_month)

    @cached_property
    def login_summary(self) -> DataFrame:
        """Logins per customer (activity and engagement): one pass over the login stream for both."""
        return self._keep(activity.login_summary(self.read("silver_logins"), self.activity_params,
                                                           days=self.days), "login_summary")

    @cached_property
    def activity(self) -> DataFrame:
        return self._keep(activity.transform_customer_activity(
            self.read("silver_customers"), self.login_summary, params=self.activity_params), "activity")

    @cached_property
    def rfm(self) -> DataFrame:
        return self._keep(rfm.transform_rfm(self.spend), "rfm")

    @cached_property
    def clv_params(self) -> clv.ClvParams:
        b = self.b
        return clv.ClvParams(as_of=self.as_of, platinum_min=b.clv_platinum_min, gold_min=b.clv_gold_min,
                             silver_min=b.clv_silver_min, months=b.clv_months, annual_discount=b.clv_annual_discount,
                             time_unit=b.clv_time_unit, fit_sample=b.clv_fit_sample)

    @cached_property
    def clv_fit(self) -> tuple[DataFrame, dict]:
        return clv.fit_and_predict(self.spark, self.purchase_summary, self.clv_params)

    @cached_property
    def clv(self) -> DataFrame:
        return self._keep(clv.transform_clv(self.spend, self.clv_fit[0], self.clv_params), "clv")

    @cached_property
    def engagement(self) -> DataFrame:
        b = self.b
        params = engagement.EngagementParams(
            as_of=self.as_of, weight_registration=b.engagement_weight_registration,
            weight_login_frequency=b.engagement_weight_login_frequency,
            weight_activity_gap=b.engagement_weight_activity_gap, weight_status=b.engagement_weight_status,
            logins_per_month_target=b.engagement_logins_per_month_target,
            registration_horizon_days=b.engagement_registration_horizon_days, churned_days=b.churn_churned_days)
        return self._keep(engagement.transform_engagement(self.read("silver_customers"), self.login_summary,
                                                          params), "engagement")

    @cached_property
    def churn(self) -> DataFrame:
        return self._keep(churn.transform_churn(self.activity, self.orders, self.spend,
                                                as_of=self.as_of, purchase_churn_days=self.b.purchase_churn_days), "churn")


def _customer_360(ctx: Context) -> DataFrame:
    master = customer_360.customers_master(ctx.read("silver_customers"), ctx.read("silver_crm_customers"))
    population = ctx.b.customer_360_population
    if population == "all" or (population == "auto" and master.isEmpty()):
        master = customer_360.seen_customers(master, ctx.spend, ctx.read("silver_logins"),
                                             ctx.read("silver_customer_insights"))
    return customer_360.transform_customer_360(
        master,
        ctx.spend, ctx.read("silver_loyalty_accounts"), ctx.read("silver_accounts"),
        ctx.read("silver_service_interactions"), ctx.activity, ctx.rfm, ctx.clv, ctx.engagement, as_of=ctx.as_of,
        purchase_churn_days=ctx.b.purchase_churn_days, churned_days=ctx.b.churn_churned_days)


@dataclass(frozen=True)
class Product:
    """A gold table: the silver tables it reads, how to build it, its partition columns."""

    silver: tuple[str, ...]
    build: Callable[[Context], DataFrame]
    partition_by: tuple[str, ...] = ()


_TXN = ("silver_transactions", "silver_refunds", "silver_order_lines")
_LOGIN = ("silver_customers", "silver_logins")
PRODUCTS: dict[str, Product] = {
    rfm.TABLE: Product(_TXN, lambda c: c.rfm),
    clv.TABLE: Product(_TXN, lambda c: c.clv),
    clv.MODEL_TABLE: Product(_TXN, lambda c: clv.model_row(c.spark, c.clv_fit[1])),
    activity.TABLE: Product(_LOGIN, lambda c: c.activity),
    activity.HOURS_TABLE: Product(("silver_customers",),
                                  lambda c: activity.transform_registrations_by_hour(c.read("silver_customers"))),
    activity.SUMMARY_TABLE: Product(_LOGIN, lambda c: activity.transform_activity_summary(c.activity,
                                                                                          c.activity_params)),
    engagement.TABLE: Product(_LOGIN, lambda c: c.engagement),
    churn.TABLE: Product((*_LOGIN, *_TXN, "silver_orders"), lambda c: c.churn),
    churn.SUMMARY_TABLE: Product((*_LOGIN, *_TXN, "silver_orders"), lambda c: churn.transform_churn_summary(
        c.churn, never_label=c.b.never_logged_in_label)),
    tiers.TABLE: Product(("silver_orders", "silver_refunds", "silver_order_lines", "silver_customers"), lambda c: tiers.transform_spend_tiers(
        c.orders, c.refunds, c.read("silver_customers"),
        gold_above=c.b.spend_tier_gold_above, silver_above=c.b.spend_tier_silver_above), tuple(tiers.PARTITION_BY)),
    products.TABLE: Product(("silver_clickstream", "silver_orders", "silver_refunds", "silver_order_lines",
                             "silver_products"),
                            lambda c: products.transform_product_performance(
                                c.read("silver_clickstream"), c.orders, c.refunds,
                                c.read("silver_products"))),
    campaigns.TABLE: Product(("silver_clickstream", "silver_customer_insights"),
                             lambda c: campaigns.transform_campaign_performance(
                                 c.read("silver_clickstream"), c.read("silver_customer_insights"))),
    daily.TABLE: Product((*_TXN, "silver_logins"), lambda c: daily.transform_daily_metrics(
        c.transactions, c.refunds, c.purchase_summary, c.login_summary)),
    cohorts.TABLE: Product(("silver_transactions", "silver_order_lines"), lambda c: cohorts.transform_retention_cohorts(c.purchase_summary)),
    customer_360.TABLE: Product((*_LOGIN, *_TXN, "silver_crm_customers", "silver_loyalty_accounts",
                                 "silver_accounts", "silver_service_interactions", "silver_customer_insights"),
                                _customer_360),
    quality.TABLE: Product(tuple(SILVER_TABLES), lambda c: _data_quality(c)),
}


def _optional(spark: SparkSession, path: str) -> DataFrame | None:
    version = lake.version(path)
    return None if version is None else read_table(spark, path, version)


def _data_quality(ctx: Context) -> DataFrame:
    root = ctx.cfg.lake.root
    tables = {name: (ctx.snap.versions.get(name, -1), ctx.read(name)) for name in SILVER_TABLES}
    return quality.transform_data_quality(ctx.spark, tables, _optional(ctx.spark, table_path(root, OPS_BATCHES)),
                                          _optional(ctx.spark, table_path(root, QUARANTINE)), ctx.as_of,
                                          stats=lambda name, v: lake.file_stats_counts(table_path(root, name), v))


def _write(spark: SparkSession, name: str, df: DataFrame, path: str, partition_by: tuple[str, ...]) -> None:
    if name == quality.TABLE:  # a history: one row per silver table and version (MERGE keeps reruns idempotent)
        lake.create_table(path, quality.SCHEMA)
        insert_new(spark, df, path, quality.KEY)
        return
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    retry(lambda: writer.save(path), what=path)


def run(cfg: Config, *, as_of: date | None = None, only: list[str] | None = None,
        exports: bool = True) -> list[GoldResult]:
    """Refresh the gold tables (all, or ``only`` these) and their exports."""
    from lakehouse import engine
    from lakehouse.spark import auto_driver_memory, resolve_accelerator

    names = only or list(PRODUCTS)
    unknown = [n for n in names if n not in PRODUCTS]
    if unknown:
        raise C360Error(f"unknown gold table {unknown[0]!r} (known: {', '.join(PRODUCTS)})")
    resolve_accelerator(cfg.gold.accelerator)  # Comet where it cannot run: refused before Spark starts
    as_of = as_of or date.today()
    if cfg.spark.master.startswith("local"):
        memory = cfg.gold.driver_memory
        cfg = cfg.replace("spark", driver_memory=auto_driver_memory() if memory == "auto" else memory)
    spark = engine.get_session(cfg, "c360-gold", accelerator=cfg.gold.accelerator)
    needed = sorted({t for n in names for t in PRODUCTS[n].silver})
    snap = SilverSnapshot(spark, cfg.lake.root, needed)
    log.info("gold refresh as of %s from silver versions %s", as_of, snap.versions)
    ctx = Context(spark, snap, cfg, as_of, days=daily.TABLE in names)
    results = []
    try:
        for name in names:
            started = time.monotonic()
            product = PRODUCTS[name]
            path = table_path(cfg.lake.root, name)
            _write(spark, name, product.build(ctx), path, product.partition_by)
            table = read_table(spark, path)
            rows = table.count()
            written = []
            if exports and (cfg.gold.export_csv or cfg.gold.export_parquet):
                written = export.export_table(table, name, cfg.gold.export_dir, csv=cfg.gold.export_csv,
                                              parquet=cfg.gold.export_parquet, mask_pii=cfg.gold.mask_pii,
                                              partition_by=list(product.partition_by) or None)
            results.append(GoldResult(name, rows, time.monotonic() - started, path, written))
            log.info("%s: %d rows in %.1fs", name, rows, results[-1].seconds)
    finally:
        ctx.release()
    return results


def quality_lines(cfg: Config) -> list[str]:
    """What the lake's silver left out, per source (since the lake began: ``ops_stream_batches`` and
    ``silver_quarantine``): records quarantined, with the top reasons and the fix, and records kept with values
    outside an open vocabulary. ``c360 gold`` ends with them, so partial gold is never read without knowing why."""
    from lakehouse.engine import get_session
    from lakehouse.quality import RunQuality
    from streaming.ingest import REASON_SAMPLES

    spark = get_session(cfg, "c360-gold")
    ops = _optional(spark, table_path(cfg.lake.root, OPS_BATCHES))
    if ops is None:
        return []
    counters = [c for c in ("read_rows", "quarantined_rows", "duplicate_rows", "unlisted_rows") if c in ops.columns]
    totals = ops.groupBy("source").agg(*[F.sum(c).alias(c) for c in counters]).collect()
    reasons: dict[str, dict[str, tuple[int, list[str]]]] = {}
    quarantine = _optional(spark, table_path(cfg.lake.root, QUARANTINE))
    if quarantine is not None and any(r["quarantined_rows"] for r in totals):
        for r in quarantine.groupBy("source", "reason").agg(
                F.count(F.lit(1)).alias("n"),
                F.slice(F.collect_list("raw_value"), 1, REASON_SAMPLES).alias("samples")).collect():
            reasons.setdefault(r["source"], {})[r["reason"]] = (int(r["n"]), list(r["samples"]))
    report = RunQuality()
    for r in sorted(totals, key=lambda row: row["source"]):
        report.add(r["source"], {c: int(r[c] or 0) for c in counters}, reasons.get(r["source"]))
    return report.lines()


def refresh_dashboard(cfg: Config):
    """Rewrite the dashboard (``dashboard.file``) after a refresh, in the refresh's Spark session."""
    from batch import dashboard
    from lakehouse.engine import get_session

    return dashboard.write(get_session(cfg, "c360-gold"), cfg)
