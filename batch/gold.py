"""The nightly gold refresh (``c360 gold``): every gold table from one consistent silver snapshot."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, SparkSession

from batch import activity
from lakehouse.config import Config
from lakehouse.delta import latest_version, retry
from lakehouse.errors import C360Error
from lakehouse.tables import table_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GoldResult:
    table: str
    rows: int
    seconds: float
    path: str


class SilverSnapshot:
    """Silver tables pinned at the version each had when the refresh started: a refresh reads one consistent
    state even while the stream keeps writing."""

    def __init__(self, spark: SparkSession, lake_root: str, tables: list[str]):
        self.spark, self.lake_root = spark, lake_root
        self.versions: dict[str, int] = {}
        for name in tables:
            path = table_path(lake_root, name)
            try:
                self.versions[name] = latest_version(spark, path)
            except Exception as exc:  # noqa: BLE001 - py4j's AnalysisException
                if "DELTA_MISSING_DELTA_TABLE" in str(exc) or "is not a Delta table" in str(exc):
                    raise C360Error(f"{name} does not exist in {lake_root}: run `c360 stream` first") from None
                raise

    def read(self, name: str) -> DataFrame:
        return (self.spark.read.format("delta").option("versionAsOf", self.versions[name])
                .load(table_path(self.lake_root, name)))


def _activity(snap: SilverSnapshot, cfg: Config, as_of: date) -> DataFrame:
    b = cfg.business
    params = activity.ActivityParams(as_of=as_of, at_risk_days=b.churn_at_risk_days,
                                     churned_days=b.churn_churned_days, evening_hour=b.evening_hour,
                                     never_label=b.never_logged_in_label)
    return activity.transform_customer_activity(snap.read("silver_customers"), snap.read("silver_logins"),
                                                params=params)


# gold table -> (silver tables it reads, builder)
PRODUCTS: dict[str, tuple[list[str], Callable[[SilverSnapshot, Config, date], DataFrame]]] = {
    activity.TABLE: (["silver_customers", "silver_logins"], _activity),
}


def run(cfg: Config, *, as_of: date | None = None, only: list[str] | None = None) -> list[GoldResult]:
    """Refresh the gold tables (all, or ``only`` these), each replaced atomically (readers never see a
    half-written table; a rerun on the same snapshot gives the same table)."""
    from lakehouse.spark import get_spark

    names = only or list(PRODUCTS)
    unknown = [n for n in names if n not in PRODUCTS]
    if unknown:
        raise C360Error(f"unknown gold table {unknown[0]!r} (known: {', '.join(PRODUCTS)})")
    as_of = as_of or date.today()
    spark = get_spark(cfg, "c360-gold")
    needed = sorted({t for n in names for t in PRODUCTS[n][0]})
    snap = SilverSnapshot(spark, cfg.lake.root, needed)
    log.info("gold refresh as of %s from silver versions %s", as_of, snap.versions)
    results = []
    for name in names:
        started = time.monotonic()
        df = PRODUCTS[name][1](snap, cfg, as_of)
        path = table_path(cfg.lake.root, name)
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        retry(lambda w=writer, p=path: w.save(p), what=path)
        rows = spark.read.format("delta").load(path).count()
        results.append(GoldResult(name, rows, time.monotonic() - started, path))
        log.info("%s: %d rows", name, rows)
    return results
