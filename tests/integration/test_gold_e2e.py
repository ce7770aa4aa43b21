"""`c360 gold` end to end: generated data -> Kafka -> stream -> every gold table and its exports, checked against
silver; a rerun on the same snapshot writes the same tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batch.gold import PRODUCTS, SILVER_TABLES
from batch.quality import null_counts
from c360 import cli
from lakehouse.tables import table_path
from tests.integration.test_pipeline import _args, _table

pytestmark = pytest.mark.integration


def _rows(df, *order):
    return [tuple(r) for r in df.orderBy(*order).collect()]


def test_every_gold_table_is_written_and_agrees_with_silver(spark, gold, capsys):
    cfg, _ = gold
    t = {name: _table(spark, cfg, name) for name in PRODUCTS}
    assert all(df.count() > 0 for df in t.values()), {n: df.count() for n, df in t.items()}
    txn = _table(spark, cfg, "silver_transactions").where("status != 'Cancelled'")
    refunds = _table(spark, cfg, "silver_refunds")
    customers = _table(spark, cfg, "silver_customers").select("customer_id") \
        .union(_table(spark, cfg, "silver_crm_customers").select("customer_id")).distinct()

    c360 = t["gold_customer_360"]
    assert c360.count() == customers.count() == c360.select("customer_id").distinct().count()
    # total spend = purchases - refunds, for the known customers
    known = txn.join(customers, "customer_id", "left_semi")
    want = (known.agg(F.sum("amount")).first()[0]
            - refunds.join(customers, "customer_id", "left_semi").agg(F.sum("refund_amount")).first()[0])
    assert c360.agg(F.sum("total_spend")).first()[0] == want
    buyers = txn.select("customer_id").distinct().count()
    assert t["gold_rfm_segments"].count() == buyers == t["gold_customer_clv"].count()
    assert c360.where("customer_segment = 'No Purchases'").count() == customers.join(
        txn, "customer_id", "left_anti").count()
    segments = {r[0] for r in t["gold_rfm_segments"].select("customer_segment").distinct().collect()}
    assert segments <= {"Champions", "Loyal Customers", "New Customers", "Potential Loyalists", "Needs Attention",
                        "At Risk", "Can't Lose Them", "Hibernating", "Lost"} and len(segments) >= 5

    model = t["gold_clv_model"].first()
    assert model.fitted and model.customers == buyers and model.bgnbd_r > 0
    clv = t["gold_customer_clv"]
    assert clv.where("predicted_clv_3yr IS NULL OR p_alive < 0 OR p_alive > 1").count() == 0

    daily = t["gold_daily_metrics"]
    assert daily.agg(F.sum("revenue")).first()[0] == txn.agg(F.sum("amount")).first()[0]
    assert daily.agg(F.sum("transactions")).first()[0] == txn.count()
    # the distinct counts (from per-customer day sets) equal count-distincts over silver's rows
    logins = _table(spark, cfg, "silver_logins").select("customer_id", F.to_date("login_datetime").alias("day"))
    bought = txn.select("customer_id", F.to_date("transaction_datetime").alias("day"))
    per_day = (bought.groupBy("day").agg(F.countDistinct("customer_id").alias("u"))
               .join(logins.groupBy("day").agg(F.countDistinct("customer_id").alias("dau")), "day", "full")
               .join(bought.union(logins).groupBy(F.trunc("day", "month").alias("m"))
                     .agg(F.countDistinct("customer_id").alias("mau")), F.trunc("day", "month") == F.col("m"))
               .select("day", F.coalesce("u", F.lit(0)), F.coalesce("dau", F.lit(0)), "mau"))
    assert _rows(daily.select("metric_date", "unique_customers", "daily_active_users", "monthly_active_users")
                 .where("transactions > 0 OR daily_active_users > 0"), "metric_date") == _rows(per_day, "day")

    cohorts = t["gold_retention_cohorts"]
    assert cohorts.where("months_since = 0 AND retention_rate != 1.0").count() == 0
    assert cohorts.where("months_since = 0").agg(F.sum("cohort_size")).first()[0] == buyers

    orders = _table(spark, cfg, "silver_orders")
    prod = t["gold_product_performance"]
    assert prod.agg(F.sum("orders")).first()[0] == orders.where("order_status != 'Cancelled'").count()
    clicks = _table(spark, cfg, "silver_clickstream")
    assert t["gold_campaign_performance"].agg(F.sum("sessions")).first()[0] == \
        clicks.select("session_id").distinct().count()
    assert prod.agg(F.sum("page_views")).first()[0] == clicks.where("event_type = 'page_view'").count()

    tiers = t["gold_spend_tiers"]
    assert tiers.where("(tier = 'Gold' AND total_spend <= 2000) OR (tier = 'Bronze' AND total_spend > 1000)"
                       ).count() == 0
    assert tiers.inputFiles() and all("tier=" in f for f in tiers.inputFiles())  # partitioned by tier

    activity = t["gold_customer_activity"]
    assert t["gold_churn"].count() == activity.count() == t["gold_engagement_score"].count()
    assert t["gold_engagement_score"].where("engagement_score < 0 OR engagement_score > 100").count() == 0
    summary = t["gold_activity_summary"].first()
    assert summary.never_logged_in == activity.where("never_logged_in").count()

    dq = t["gold_data_quality"]
    assert sorted(r[0] for r in dq.select("table_name").collect()) == SILVER_TABLES
    q = _table(spark, cfg, "silver_quarantine")
    assert dq.agg(F.sum("quarantined")).first()[0] == q.count()
    # rows and null counts (from the stream-written tables' file statistics) are what a scan of that version finds
    for r in dq.collect():
        scanned = null_counts(spark.read.format("delta").option("versionAsOf", r.silver_version)
                              .load(table_path(cfg.lake.root, r.table_name)))
        assert (r.rows, r.null_counts) == scanned, r.table_name


def test_exports_one_csv_per_table_with_pii_masked(spark, gold):
    cfg, exports = gold
    csvs = Path(exports, "csv")
    partitioned = {n for n, p in PRODUCTS.items() if p.partition_by}
    assert {p.stem for p in csvs.glob("*.csv")} == set(PRODUCTS) - partitioned
    assert {p.name for p in (csvs / "gold_spend_tiers").iterdir()} <= {"Gold", "Silver", "Bronze"}
    tier_rows = sum(sum(1 for _ in csv.DictReader(f.open())) for f in (csvs / "gold_spend_tiers").glob("*/*.csv"))
    assert tier_rows == _table(spark, cfg, "gold_spend_tiers").count()
    rows = list(csv.DictReader((csvs / "gold_customer_360.csv").open()))
    assert len(rows) == _table(spark, cfg, "gold_customer_360").count()
    emails = [r["email"] for r in rows if r["email"]]
    assert emails and all("***@" in e or e == "***" for e in emails)
    assert all(r["phone"].startswith("******") for r in rows if r["phone"])
    assert {p.name for p in Path(exports, "parquet").iterdir()} == set(PRODUCTS)
    back = spark.read.parquet(str(Path(exports, "parquet", "gold_customer_360")))
    assert back.count() == len(rows) and back.where("email LIKE '%***%'").count() == len(emails)


def test_a_rerun_on_the_same_snapshot_writes_the_same_tables(spark, gold, tmp_path):
    cfg, _ = gold
    names = ["gold_rfm_segments", "gold_customer_clv", "gold_data_quality"]
    before = {n: _rows(_table(spark, cfg, n), *_table(spark, cfg, n).columns[:2]) for n in names}
    assert cli.main(["gold", "--as-of", "2025-01-15", "--only", ",".join(names), "--no-exports", "--no-dashboard", *_args(cfg)]) == 0
    after = {n: _rows(_table(spark, cfg, n), *_table(spark, cfg, n).columns[:2]) for n in names}
    assert after == before  # data quality: one row per silver table and version, not one more per run
