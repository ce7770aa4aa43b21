"""Gold transforms on small inline DataFrames whose right answers are worked out by hand (real Spark, no Kafka)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from batch import activity, campaigns, churn, cohorts, daily, engagement, products, quality, rfm, spend, tiers
from batch.clv import ClvParams, clv_tier, model_summary
from batch.export import export_table, masked

AS_OF = date(2025, 1, 31)
TXN = ("transaction_id string, customer_id string, amount decimal(18,2), transaction_datetime timestamp, "
       "status string, channel string")
REFUNDS = "refund_id string, customer_id string, order_id string, product_id string, refund_amount decimal(18,2), " \
          "refund_datetime timestamp"


def d(x) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.01"))


def txn(spark, rows):
    return spark.createDataFrame([(f"T{i}", c, d(a), t, s, ch) for i, (c, a, t, s, ch) in enumerate(rows)], TXN)


def summary(spark, rows, observation_end=AS_OF):
    return spend.purchase_summary(txn(spark, rows), observation_end=observation_end)


def refunds(spark, rows=()):
    return spark.createDataFrame([(f"R{i}", c, "O", "P", d(a), t) for i, (c, a, t) in enumerate(rows)], REFUNDS)


def test_spend_nets_refunds_skips_cancelled_and_picks_the_channel(spark):
    t = datetime(2025, 1, 10, 12)
    rows = [("A", 100, t, "Completed", "Online")] * 4 + [("A", 50, t, "Completed", "In-Store")]  # 1 of 5 in store
    rows += [("B", 10, t, "Completed", "Online")] * 5 + [("B", 999, t, "Cancelled", "In-Store")]
    rows += [("C", 10, t, "Completed", "Online"), ("C", 10, t, "Returned", "In-Store"),
             ("C", 10, datetime(2025, 1, 30), "Completed", "In-Store")]
    out = {r.customer_id: r for r in spend.customer_spend(
        summary(spark, rows), refunds(spark, [("A", 30, t), ("D", 5, t)]), as_of=AS_OF).collect()}
    a, b, c, dd = out["A"], out["B"], out["C"], out["D"]
    assert (a.gross_spend, a.refunded, a.total_spend, a.order_count) == (d(450), d(30), d(420), 5)
    assert (a.avg_order_value, a.preferred_channel) == (d(84), "Omnichannel")  # in-store share 0.2 >= 0.2
    assert (b.total_spend, b.order_count, b.preferred_channel) == (d(50), 5, "Online")  # the cancelled one left out
    assert (c.preferred_channel, c.days_since_last_purchase, c.order_count) == ("Omnichannel", 1, 3)
    assert (dd.order_count, dd.total_spend, dd.preferred_channel) == (0, d(-5), None)  # a refund, no purchase


def test_rfm_scores_by_quintile_with_ties_sharing_a_score(spark):
    t = datetime(2025, 1, 1)
    # five buyers with distinct values: percent ranks 0, .25, .5, .75, 1 -> scores 1, 2, 3, 4, 5
    rows = [(c, days, n, m) for c, days, n, m in
            [("A", 100, 1, 10), ("B", 50, 2, 20), ("C", 20, 3, 30), ("D", 10, 4, 40), ("E", 1, 9, 90)]]
    rows.append(("F", 1, 9, 90))  # ties E: same scores
    df = spark.createDataFrame([(c, days, n, d(m), t) for c, days, n, m in rows] + [("G", None, 0, d(0), None)],
                               "customer_id string, days_since_last_purchase int, order_count long, "
                               "total_spend decimal(18,2), last_purchase_at timestamp")
    out = {r.customer_id: r for r in rfm.transform_rfm(df).collect()}
    assert "G" not in out  # no purchase, no RFM row
    # 6 values: ranks 0, .2, .4, .6, .8 (E and F tie at .8) -> 1, 2, 3, 4, 5
    assert {k: (r.r_score, r.f_score, r.m_score) for k, r in out.items()} == {
        "A": (1, 1, 1), "B": (2, 2, 2), "C": (3, 3, 3), "D": (4, 4, 4), "E": (5, 5, 5), "F": (5, 5, 5)}
    assert out["E"].rfm_score == "555" and out["A"].customer_segment == "Lost" and out["A"].churn_risk == "Critical"


@pytest.mark.parametrize(("r", "f", "m", "segment", "risk"), [
    (5, 5, 5, "Champions", "Low"), (4, 4, 4, "Champions", "Low"),
    (2, 5, 5, "Can't Lose Them", "High"), (2, 4, 5, "At Risk", "High"), (1, 3, 3, "At Risk", "High"),
    (3, 4, 4, "Loyal Customers", "Low"), (3, 3, 3, "Loyal Customers", "Low"), (4, 3, 3, "Loyal Customers", "Low"),
    (5, 1, 1, "New Customers", "Low"), (4, 2, 5, "New Customers", "Low"),
    (3, 2, 1, "Potential Loyalists", "Low"), (4, 3, 2, "Potential Loyalists", "Low"),
    (1, 1, 1, "Lost", "Critical"), (2, 2, 2, "Lost", "Critical"),
    (2, 2, 3, "Hibernating", "Critical"), (1, 1, 5, "Hibernating", "Critical"),
    (3, 1, 1, "Needs Attention", "Medium"), (2, 3, 2, "Needs Attention", "Medium"),
])
def test_rfm_segment_map_at_its_boundaries(spark, r, f, m, segment, risk):
    df = spark.createDataFrame([(r, f, m)], "r int, f int, m int")
    seg = rfm.segment_of(F.col("r"), F.col("f"), F.col("m"))
    got = df.select(seg.alias("s")).select("s", rfm.churn_risk_of(F.col("s")).alias("risk")).first()
    assert (got.s, got.risk) == (segment, risk)


def test_spend_tiers_are_strictly_above_the_thresholds(spark):
    orders = spark.createDataFrame([
        ("O1", "A", 1, d(1000), "Delivered"), ("O2", "B", 1, d(1000.01), "Delivered"),
        ("O3", "C", 1, d(2000), "Delivered"), ("O4", "D", 2, d(2000.01), "Shipped"),
        ("O5", "E", 1, d(2100), "Delivered"), ("O6", "E", 1, d(5000), "Cancelled"),
    ], "order_id string, customer_id string, quantity int, total_amount decimal(18,2), order_status string")
    refs = refunds(spark, [("E", 100.5, datetime(2025, 1, 1))])
    customers = spark.createDataFrame([("A", "Ann", "Pune")], "customer_id string, customer_name string, city string")
    out = {r.customer_id: r for r in tiers.transform_spend_tiers(orders, refs, customers).collect()}
    assert {k: r.tier for k, r in out.items()} == {"A": "Bronze", "B": "Silver", "C": "Silver", "D": "Gold",
                                                   "E": "Silver"}  # E: 2100 - 100.50 refunded, cancelled 5000 out
    assert (out["E"].total_spend, out["E"].orders, out["A"].customer_name) == (d(1999.5), 1, "Ann")


def test_clv_tiers_at_their_thresholds(spark):
    df = spark.createDataFrame([(d(v),) for v in (199.99, 200, 499.99, 500, 999.99, 1000)], "v decimal(18,2)")
    got = [r.t for r in df.select(clv_tier("v", ClvParams(as_of=AS_OF)).alias("t")).collect()]
    assert got == ["Bronze", "Silver", "Silver", "Gold", "Gold", "Platinum"]


def test_product_performance_counts_abandoned_carts_per_session(spark):
    clicks = spark.createDataFrame([
        ("s1", "P1", "page_view"), ("s1", "P1", "add_to_cart"), ("s1", "P1", "purchase"),  # bought: not abandoned
        ("s2", "P1", "page_view"), ("s2", "P1", "page_view"), ("s2", "P1", "add_to_cart"),  # abandoned
        ("s3", "P1", "add_to_cart"), ("s3", "P1", "add_to_cart"),  # abandoned once, two add-to-carts
        ("s4", "P2", "page_view"),  # viewed only
    ], "session_id string, product_id string, event_type string")
    orders = spark.createDataFrame([
        ("O1", "P1", "Lamp", "Home", 2, d(200), "Delivered", True, "Active"),
        ("O2", "P1", "Lamp", "Home", 1, d(100), "Cancelled", True, "Cancelled"),
        ("O3", "P3", "Book", "Books", 1, d(10), "Delivered", False, None),
        ("O4", "P3", "Book", "Books", 1, d(10), "Delivered", False, None),  # O4: two products, two lines
        ("O4", "P2", "Pen", "Office", 1, d(5), "Delivered", False, None),
    ], "order_id string, product_id string, product_name string, category string, quantity int, "
       "total_amount decimal(18,2), order_status string, is_subscription boolean, subscription_status string")
    refs = spark.createDataFrame([("O1", "P1", d(50)), ("O3", None, d(10)), ("O4", None, d(5))],
                                 "order_id string, product_id string, refund_amount decimal(18,2)")
    catalogue = spark.createDataFrame([("P2", "Pen", "Office", "Acme", d(5))],
                                      "product_id string, name string, category string, brand string, "
                                      "price decimal(18,2)")
    out = {r.product_id: r for r in products.transform_product_performance(clicks, orders, refs, catalogue).collect()}
    p1 = out["P1"]
    assert (p1.page_views, p1.add_to_carts, p1.abandoned_carts) == (3, 4, 2)
    assert (p1.orders, p1.units, p1.revenue, p1.cancelled_orders) == (1, 2, d(200), 1)
    assert (p1.active_subscriptions, p1.cancelled_subscriptions, p1.refunds, p1.refund_rate) == (1, 1, 1, 1.0)
    assert (p1.product_name, p1.category) == ("Lamp", "Home")
    assert (out["P2"].product_name, out["P2"].page_views, out["P2"].orders, out["P2"].refund_rate) == ("Pen", 1, 1, 0.0)
    assert (out["P3"].orders, out["P3"].page_views, out["P3"].abandoned_carts) == (2, 0, 0)
    # a refund without a product: O3's product (one product); O4 has two, so its refund stays unattributed
    assert (out["P3"].refunds, out["P3"].refunded_amount, out[None].refunds, out[None].refunded_amount) == (
        1, d(10), 1, d(5))


def test_campaign_performance(spark):
    clicks = spark.createDataFrame([
        ("s1", "Google-ads", "page_view"), ("s1", "Google-ads", "purchase"), ("s2", "Google-ads", "page_view"),
        ("s3", None, "add_to_cart"), ("s4", "Google-ads", "page_view"), ("s5", "Google-ads", "page_view"),
    ], "session_id string, campaign string, event_type string")
    insights = spark.createDataFrame([  # seed 002's rows (converted sessions, no funnel), then an export's funnel
        ("C1", "Google-ads", d(100), d(60), 2, True, None), ("C1", "Google-ads", d(50), d(50), 1, False, None),
        ("C2", "Instagram-ads", d(80), d(50), 2, False, True), ("C3", "Instagram-ads", d(20), d(5), 1, True, True),
        ("C4", "Instagram-ads", d(999), d(1), 3, None, False),  # not converted: a session, never an order
    ], "customer_id string, campaign string, price decimal(18,2), cost decimal(18,2), quantity int, "
       "order_return boolean, order_confirmed boolean")
    out = {r.campaign_source: r for r in campaigns.transform_campaign_performance(clicks, insights).collect()}
    g = out["Google-ads"]
    assert (g.sessions, g.conversions, g.conversion_rate) == (4, 1, 0.25)
    assert (g.orders, g.customers, g.revenue, g.profit, g.avg_order_value) == (2, 1, d(250), d(80), d(125))
    assert (g.returns, g.return_rate) == (1, 0.5)
    assert (out["Direct"].sessions, out["Direct"].conversions, out["Direct"].orders) == (1, 0, 0)
    i = out["Instagram-ads"]  # by hand: 3 sessions, 2 confirmed; revenue 80x2 + 20x1, profit 30x2 + 15x1
    assert (i.sessions, i.conversions, i.conversion_rate, i.orders, i.customers) == (3, 2, 0.6667, 2, 2)
    assert (i.revenue, i.profit, i.avg_order_value, i.returns, i.return_rate) == (d(180), d(75), d(90), 1, 0.5)


def test_retention_cohorts_by_calendar_month(spark):
    rows = [("A", 10, datetime(2024, 1, 31), "Completed", "Online"), ("A", 10, datetime(2024, 2, 1), "Completed",
                                                                         "Online"),
            ("A", 10, datetime(2024, 2, 20), "Completed", "Online"),
            ("B", 10, datetime(2024, 1, 5), "Completed", "In-Store"), ("B", 10, datetime(2024, 3, 5), "Completed",
                                                                          "Online"),
            ("C", 10, datetime(2024, 1, 1), "Cancelled", "Online"), ("C", 10, datetime(2024, 2, 2), "Completed",
                                                                      "Online")]
    out = {(r.cohort_month, r.months_since): r
           for r in cohorts.transform_retention_cohorts(summary(spark, rows)).collect()}
    jan, feb = date(2024, 1, 1), date(2024, 2, 1)
    assert {k: (r.cohort_size, r.active_customers, r.retention_rate) for k, r in out.items()} == {
        (jan, 0): (2, 2, 1.0), (jan, 1): (2, 1, 0.5), (jan, 2): (2, 1, 0.5),  # A in Feb, B in Mar
        (feb, 0): (1, 1, 1.0),  # C: the cancelled January order does not make C a January customer
    }


def test_daily_metrics_and_monthly_active_users(spark):
    rows = [("A", 10, datetime(2024, 3, 1, 9), "Completed", "Online"), ("B", 30, datetime(2024, 3, 1, 20),
                                                                        "Completed", "In-Store"),
            ("A", 5, datetime(2024, 3, 1, 21), "Cancelled", "Online"),
            ("A", 20, datetime(2024, 3, 1, 22), "Completed", "Online"),  # A's second purchase that day
            ("D", 7, datetime(2024, 5, 3), "Cancelled", "Online")]  # no purchase: neither a day nor a month
    logins = spark.createDataFrame([("C", datetime(2024, 3, 2)), ("A", datetime(2024, 3, 2)),
                                    ("A", datetime(2024, 3, 2, 23)), ("A", datetime(2024, 4, 1)),
                                    ("B", datetime(2024, 4, 30))],
                                   "customer_id string, login_datetime timestamp")
    refs = refunds(spark, [("A", 4, datetime(2024, 3, 2))])
    out = {r.metric_date: r for r in daily.transform_daily_metrics(
        txn(spark, rows), refs, summary(spark, rows), activity.login_summary(logins, activity.ActivityParams(
            as_of=AS_OF))).collect()}
    assert sorted(out) == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 4, 1), date(2024, 4, 30)]
    m1, m2 = out[date(2024, 3, 1)], out[date(2024, 3, 2)]
    assert (m1.transactions, m1.revenue, m1.unique_customers, m1.online_transactions, m1.instore_transactions) == (
        3, d(60), 2, 2, 1)  # A counted once
    assert (m1.avg_order_value, m1.daily_active_users, m1.monthly_active_users) == (d(20), 0, 3)  # A, B, C in March
    assert (m2.transactions, m2.unique_customers, m2.refunded, m2.net_revenue, m2.daily_active_users) == (
        0, 0, d(4), d(-4), 2)  # A's two logins that day count once
    assert (out[date(2024, 4, 1)].monthly_active_users, out[date(2024, 4, 30)].daily_active_users) == (2, 1)
    assert out[date(2024, 4, 1)].month == date(2024, 4, 1)
    # a refresh without daily metrics leaves the day sets out of the shared summaries
    assert "purchase_days" not in spend.purchase_summary(txn(spark, rows), observation_end=AS_OF, days=False).columns
    assert "login_days" not in activity.login_summary(logins, activity.ActivityParams(as_of=AS_OF), days=False).columns


def test_engagement_score_components_by_hand(spark):
    customers = spark.createDataFrame([
        ("A", datetime(2024, 12, 2), None, "Active"),     # 60 days registered, 8 logins, last 1 day ago
        ("N", datetime(2023, 1, 31), None, "Blocked"),    # 731 days registered, never logged in
    ], "customer_id string, registration_datetime timestamp, last_login_datetime timestamp, status string")
    logins = spark.createDataFrame([("A", datetime(2025, 1, 2) + (datetime(2025, 1, 30) - datetime(2025, 1, 2)) * i / 7)
                                    for i in range(8)], "customer_id string, login_datetime timestamp")
    p = engagement.EngagementParams(as_of=AS_OF)
    out = {r.customer_id: r for r in engagement.transform_engagement(
        customers, activity.login_summary(logins, activity.ActivityParams(as_of=AS_OF)), p).collect()}
    a, n = out["A"], out["N"]
    # registration 1 - 60/730; frequency 8 logins / 2 months / 4 = 1; gap: max(mean 4 days, 1 day) -> 1 - 4/90
    assert a.registration_component == pytest.approx(1 - 60 / 730, abs=1e-4)
    assert (a.login_frequency_component, a.mean_login_gap_days, a.days_since_last_login) == (1.0, 4.0, 1)
    assert a.activity_gap_component == pytest.approx(1 - 4 / 90, abs=1e-4)
    expected = 100 * (0.15 * (1 - 60 / 730) + 0.35 * 1 + 0.35 * (1 - 4 / 90) + 0.15 * 1)
    assert a.engagement_score == pytest.approx(expected, abs=0.06) and a.engagement_band == "High"
    assert (n.registration_component, n.login_frequency_component, n.activity_gap_component,
            n.status_component, n.engagement_score, n.engagement_band) == (0.0, 0.0, 0.0, 0.0, 0.0, "Low")


def test_churn_flags_and_subscription_churn_rate(spark):
    act = spark.createDataFrame([("A", 5, "Active"), ("B", 120, "Churned"), ("C", None, "Never Logged In")],
                                "customer_id string, days_since_last_login int, churn_status string")
    orders = spark.createDataFrame([("A", True, "Active"), ("A", True, "Cancelled"), ("B", True, "Cancelled"),
                                    ("C", False, None)],
                                   "customer_id string, is_subscription boolean, subscription_status string")
    sp = spark.createDataFrame([("A", 10, 3), ("B", 200, 1)],
                               "customer_id string, days_since_last_purchase int, order_count long")
    out = churn.transform_churn(act, orders, sp, as_of=AS_OF, purchase_churn_days=180)
    got = {r.customer_id: r for r in out.collect()}
    assert (got["A"].is_subscription_churned, got["B"].is_subscription_churned, got["C"].is_subscriber) == (
        False, True, False)
    assert (got["A"].is_purchase_churned, got["B"].is_purchase_churned, got["C"].is_purchase_churned) == (
        False, True, False)
    s = churn.transform_churn_summary(out, never_label="Never Logged In").first()
    assert (s.customers, s.active, s.churned, s.never_logged_in, s.subscribers, s.churned_subscribers) == (
        3, 1, 1, 1, 2, 1)
    assert (s.subscription_churn_rate, s.subscription_cancellation_rate, s.purchase_churn_rate) == (0.5, 0.6667, 0.5)


def test_model_summary_in_spark_follows_the_fader_hardie_conventions(spark):
    rows = [("A", 10, datetime(2024, 1, 1, 9), "Completed", "Online"),
            ("A", 5, datetime(2024, 1, 1, 18), "Completed", "In-Store"),   # same day: one purchase of 15
            ("A", 20, datetime(2024, 1, 8), "Completed", "Online"), ("A", 40, datetime(2024, 1, 15), "Returned",
                                                                       "Online"),
            ("A", 99, datetime(2024, 1, 20), "Cancelled", "Online"),       # not a purchase
            ("B", 7, datetime(2024, 1, 29), "Completed", "Online"),
            ("A", 1000, datetime(2024, 2, 1), "Completed", "Online"),      # after the observation end
            ("C", 5, datetime(2024, 2, 2), "Completed", "Online")]         # a buyer only after it: no summary row
    end = date(2024, 1, 29)
    got = {r.customer_id: r for r in model_summary(summary(spark, rows, end), observation_end=end,
                                                    time_unit="W").collect()}
    a, b = got["A"], got["B"]
    assert "C" not in got
    assert (a.frequency, a.recency, a.T, a.monetary) == (2.0, 2.0, 4.0, 30.0)  # weeks: 14 / 7 and 28 / 7
    assert (b.frequency, b.recency, b.T, b.monetary) == (0.0, 0.0, 0.0, 0.0)


def test_data_quality_counts_nulls_and_quarantine_reasons(spark):
    silver = spark.createDataFrame([("A", None), ("B", "x"), (None, None)], "customer_id string, email string")
    counters = spark.createDataFrame([("customers", 10, 2, 3), ("logins", 99, 9, 9), ("customers", 5, 0, 1)],
                                     "source string, read_rows long, quarantined_rows long, duplicate_rows long")
    quarantine = spark.createDataFrame([("customers", "invalid_status"), ("customers", "invalid_status"),
                                        ("customers", "invalid_json"), ("logins", "invalid_json")],
                                       "source string, reason string")
    r = quality.transform_data_quality(spark, {"silver_customers": (7, silver)}, counters, quarantine, AS_OF).first()
    assert (r.table_name, r.silver_version, r.rows, r.null_counts) == (
        "silver_customers", 7, 3, {"customer_id": 1, "email": 2})
    assert (r.records_read, r.quarantined, r.duplicates_removed) == (15, 2, 4)
    assert r.quarantined_by_reason == {"invalid_status": 2, "invalid_json": 1}


def test_exports_mask_emails_and_phones(spark):
    df = spark.createDataFrame([("jane.doe@example.com", "+91 98765 43210", "x"), ("not-an-email", None, "y")],
                               "email string, phone string, note string")
    got = masked(df).collect()
    assert [tuple(r) for r in got] == [("j***@example.com", "******3210", "x"), ("***", None, "y")]


def test_csv_export_is_what_one_spark_task_would_write(spark, tmp_path):
    """Written by every task and joined under one header: byte for byte the file coalesce(1) gives, rows in order;
    a partitioned table one file per value."""
    rows = [(i, f"name {i}", 'say "hi", then\nleave' if i % 7 == 0 else None, datetime(2024, 1, 1, i % 24),
             d(i / 3), ["Gold", "Silver", "Bronze", "a/b c"][i % 4], {"k": i}) for i in range(40)]
    df = spark.createDataFrame(rows, "id int, `customer name` string, note string, at timestamp, "
                                     "spend decimal(18,2), tier string, extra map<string,int>").repartition(3, "id")
    export_table(df, "t", str(tmp_path / "out"), parquet=False, mask_pii=False)
    export_table(df, "p", str(tmp_path / "out"), parquet=False, mask_pii=False, partition_by=["tier"])
    flat = df.withColumn("extra", F.to_json("extra"))
    options = {"header": True, "timestampFormat": "yyyy-MM-dd HH:mm:ss", "escape": '"', "emptyValue": ""}

    def one_task(frame, path):
        frame.coalesce(1).write.options(**options).csv(str(path))
        (part,) = path.glob("part-*")
        return part.read_bytes()

    assert (tmp_path / "out/csv/t.csv").read_bytes() == one_task(flat, tmp_path / "ref")
    assert sorted(p.name for p in (tmp_path / "out/csv/p").iterdir()) == ["Bronze", "Gold", "Silver", "a%2Fb c"]
    for tier, folder in (("Gold", "Gold"), ("a/b c", "a%2Fb c")):  # a value that is no folder name stays escaped
        got = (tmp_path / "out/csv/p" / folder / "p.csv").read_bytes()
        assert got == one_task(flat.where(F.col("tier") == tier).drop("tier"), tmp_path / f"ref-{tier}")
    assert not list((tmp_path / "out/csv").glob(".*tmp*"))  # nothing left beside the exports
