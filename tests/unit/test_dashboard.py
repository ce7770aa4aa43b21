"""The dashboard's figures on small in-memory DataFrames (answers worked out by hand), and the page itself."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
import pytest

from batch import dashboard
from batch import dashboard_data as dd

C360_COLS = ("customer_id string, customer_name string, email string, phone string, registration_datetime timestamp, "
             "is_active boolean, loyalty_tier string, loyalty_points bigint, account_balance decimal(18,2), "
             "first_purchase_at timestamp, last_login_at timestamp, customer_segment string, as_of date")
AS_OF = date(2025, 1, 15)


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.fixture
def c360(spark):
    rows = [  # id, name, email, phone, joined, active, tier, points, balance, first purchase, last login, segment
        ("C1", "Ann", "ann.lee@example.com", "+1 555 0101", "2024-01-05 10:00:00", True, "Gold", 1200, "2500.00",
         "2024-01-10 09:00:00", "2025-01-10 08:00:00", "Champions"),
        ("C2", "Bob", "bob@example.com", "555-0102", "2024-01-20 11:00:00", False, "Silver", 300, "1000.00",
         "2024-02-01 09:00:00", None, "Lost"),
        ("C3", "Cy", None, None, "2024-03-02 12:00:00", True, None, None, "1000.01", None, "2025-01-14 20:00:00",
         "No Purchases"),
        ("C4", "Di", "di@example.com", "5550104", "2024-03-30 13:00:00", True, "Gold", 800, None,
         "2024-04-01 09:00:00", "2024-12-01 07:00:00", "Champions"),
        ("C5", "Ed", "ed@example.com", "5550105", "2024-06-30 14:00:00", False, "Bronze", 0, "2500.00",
         "2024-04-02 09:00:00", "2024-06-01 07:00:00", "Hibernating"),
    ]
    return spark.createDataFrame(
        [(i, n, e, p, _ts(j), a, t, pts, None if b is None else Decimal(b), _ts(f), _ts(ll), s, AS_OF)
         for i, n, e, p, j, a, t, pts, b, f, ll, s in rows], C360_COLS)


def test_overview_cards_count_active_and_inactive(c360):
    assert dd.overview_cards(c360) == {"total_customers": 5, "active_customers": 3, "inactive_customers": 2}


def test_loyalty_distribution_in_tier_order_with_customers_without_an_account(c360):
    pdf = dd.loyalty_distribution(c360)
    assert list(pdf.itertuples(index=False, name=None)) == [("Gold", 2), ("Silver", 1), ("Bronze", 1),
                                                            (dd.NO_TIER, 1)]


def test_acquisition_is_monthly_beyond_three_months_with_a_running_total(c360):
    pdf, grain = dd.acquisition(c360)
    assert grain == "month"
    assert [(p.strftime("%Y-%m"), n, t) for p, n, t in pdf.itertuples(index=False)] == [
        ("2024-01", 2, 2), ("2024-03", 2, 4), ("2024-06", 1, 5)]


def test_time_grain_is_daily_up_to_three_months():
    assert dd.time_grain(datetime(2024, 1, 1), datetime(2024, 4, 1)) == "day"  # 91 days
    assert dd.time_grain(datetime(2024, 1, 1), datetime(2024, 4, 3)) == "month"  # 93 days
    assert dd.time_grain(None, None) == "month"


def test_last_login_trend_is_daily_for_a_short_span_and_leaves_out_never_logged_in(spark):
    df = spark.createDataFrame([(_ts("2024-05-01 10:00:00"),), (_ts("2024-05-01 23:00:00"),),
                                (_ts("2024-05-03 01:00:00"),), (None,)], "last_login_at timestamp")
    pdf, grain = dd.last_login_trend(df)
    assert grain == "day"
    assert [(p.strftime("%Y-%m-%d"), n) for p, n in pdf.itertuples(index=False)] == [("2024-05-01", 2),
                                                                                      ("2024-05-03", 1)]


def test_balance_by_tier_averages_customers_with_an_account(c360):
    pdf = dd.balance_by_tier(c360)
    # Gold: only C1 has a balance (C4 is null); Silver 1000; Bronze 2500; no account: C3 1000.01
    assert list(pdf.itertuples(index=False, name=None)) == [("Gold", 2500.0, 1), ("Silver", 1000.0, 1),
                                                            ("Bronze", 2500.0, 1), (dd.NO_TIER, 1000.01, 1)]


def test_top_customers_sorted_by_balance_ties_by_id_pii_masked(c360):
    pdf = dd.top_customers(c360, 3, mask_pii=True)
    assert list(pdf.customer_id) == ["C1", "C5", "C3"]  # 2500 (C1 before C5 on the tie), 1000.01; C4 has none
    assert list(pdf.email) == ["a***@example.com", "e***@example.com", None]
    assert list(pdf.phone)[:2] == ["******0101", "******0105"]
    assert list(dd.top_customers(c360, 1, mask_pii=False).email) == ["ann.lee@example.com"]


def test_retention_funnel_stages_are_cumulative(c360):
    pdf = dd.retention_funnel(c360)
    # joined 5; bought: C1 C2 C4 C5; bought and logged in: C1 C4 C5; ... and active: C1 C4
    assert list(pdf.itertuples(index=False, name=None)) == list(zip(dd.FUNNEL_STAGES, [5, 4, 3, 2], strict=True))


def test_monthly_points_sum_per_month_of_joining(c360):
    pdf = dd.monthly_points(c360)
    assert [(p.strftime("%Y-%m"), n) for p, n in pdf.itertuples(index=False)] == [("2024-01", 1500),
                                                                                  ("2024-03", 800), ("2024-06", 0)]


def test_points_treemap_leaves_out_customers_without_points(c360):
    pdf = dd.points_treemap(c360)
    assert list(pdf.itertuples(index=False, name=None)) == [("Gold", "Champions", 2000, 2),
                                                            ("Silver", "Lost", 300, 1)]


def test_trend_kpis(spark, c360):
    engagement = spark.createDataFrame(
        [("C1", 61, 10, 3.0), ("C2", 0, 0, None), ("C3", 30, 30, 1.0), ("C4", 1, 3, 2.0)],
        "customer_id string, days_since_registration int, login_count bigint, mean_login_gap_days double")
    kpis = dd.trend_kpis(c360, engagement, balance_above=1000.0)
    assert kpis["total_loyalty_points"] == 2300
    assert kpis["share_balance_above_pct"] == 60.0  # C1, C3 (1000.01), C5 of 5; C2's 1000.00 is not above
    # logins per month over those who logged in: C1 10/61, C3 30/30, C4 3/1 per day, x 30.4375
    assert kpis["avg_logins_per_month"] == round((10 / 61 + 1 + 3) / 3 * dd.DAYS_PER_MONTH, 2)
    assert kpis["avg_login_gap_days"] == 2.0
    assert dd.trend_kpis(c360, None, 5000.0)["avg_logins_per_month"] is None


def test_histogram_equal_width_bins_the_maximum_in_the_last(spark):
    df = spark.createDataFrame([(float(v),) for v in range(11)] + [(None,)], "v double")
    pdf = dd.histogram(df, "v", bins=5)
    assert list(pdf.lo) == [0, 2, 4, 6, 8] and list(pdf.hi) == [2, 4, 6, 8, 10]
    assert list(pdf["count"]) == [2, 2, 2, 2, 3]
    constant = dd.histogram(spark.createDataFrame([(7.0,), (7.0,)], "v double"), "v", bins=4)
    assert constant["count"].sum() == 2 and constant.lo[0] == 7.0
    assert dd.histogram(spark.createDataFrame([(None,)], "v double"), "v").empty


def test_heatmap2d_counts_cells(spark):
    df = spark.createDataFrame([(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (5.0, 5.0), (None, 1.0)], "x double, y double")
    grid = dd.heatmap2d(df, "x", "y", bins=2)
    assert grid["x_edges"] == [0.0, 5.0, 10.0] and grid["y_edges"] == [0.0, 5.0, 10.0]
    assert grid["z"] == [[1, 1], [0, 2]]  # z[y bin][x bin]
    assert dd.heatmap2d(spark.createDataFrame([(None, None)], "x double, y double"), "x", "y") is None


def test_city_hour_top_cities_and_the_earliest_of_equal_peaks(spark):
    counts = spark.createDataFrame(
        [("Pune", 9, 5), ("Pune", 9, 2), ("Pune", 20, 7), ("Delhi", 8, 4), ("Delhi", 18, 4), ("Goa", 1, 1)],
        "city string, hour int, login_count bigint")
    pdf = dd.city_hour(counts, cities=2)
    assert list(pdf.itertuples(index=False, name=None)) == [
        ("Pune", 9, 7, True), ("Pune", 20, 7, False), ("Delhi", 8, 4, True), ("Delhi", 18, 4, False)]


def test_data_quality_shows_the_latest_version_per_table(spark):
    dq = spark.createDataFrame([
        ("silver_a", 1, AS_OF, 10, {"x": 1}, 12, 1, 1, {"bad_email": 1}),
        ("silver_a", 3, AS_OF, 20, {"x": 2, "y": 3}, 25, 2, 3, {"bad_email": 1, "bad_date": 2}),
        ("silver_b", 0, AS_OF, 5, {}, 5, 0, 0, {}),
        ("silver_order_lines", 2, AS_OF, 0, {}, 9, 0, 9, {"unparseable_order_datetime": 9}),
    ], "table_name string, silver_version bigint, as_of date, rows bigint, null_counts map<string,bigint>, "
       "records_read bigint, duplicates_removed bigint, quarantined bigint, quarantined_by_reason map<string,bigint>")
    pdf = dd.data_quality(dq)
    assert [tuple(r) for r in pdf.drop(columns="as_of").itertuples(index=False)] == [
        ("silver_a", 3, 20, 5, 25, 2, 3, "bad_date", None), ("silver_b", 0, 5, 0, 5, 0, 0, None, None),
        ("silver_order_lines", 2, 0, 0, 9, 0, 9, "unparseable_order_datetime",
         "add the pattern of order_datetime to sources.order_lines.timestamp_formats")]


def test_segment_and_tier_order(spark):
    rfm = spark.createDataFrame([("Lost", Decimal("1.00")), ("Champions", Decimal("10.00")),
                                 ("Champions", Decimal("5.50"))], "customer_segment string, monetary decimal(18,2)")
    assert list(dd.rfm_segments(rfm).itertuples(index=False, name=None)) == [("Champions", 2, 15.5), ("Lost", 1, 1.0)]


def test_script_json_cannot_close_the_script_element():
    text = dashboard.script_json({"name": "</script><script>alert(1)</script>", "a&b": "<!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "a&b": "<!--"}


def test_tables_are_escaped():
    view = dashboard.View("t", "overview", "Top <b>", "src", table=pd.DataFrame({"name": ["<img src=x>"],
                                                                                   "n": [1234.5]}))
    body = view.spec()["html"]
    assert "<img" not in body and "&lt;img src=x&gt;" in body and "Top &lt;b&gt;" in body and "1,234.50" in body


def test_a_fresh_lake_gives_an_explanatory_empty_state_for_every_view(spark, cfg, tmp_path, caplog):
    out = dashboard.write(spark, cfg, tmp_path / "d.html")
    assert f"no gold or stream table exists in the lake ({cfg.lake.root}) yet" in caplog.text  # said, not only shown
    page = out.read_text()
    data = json.loads(re.search(r'<script id="c360-data" type="application/json">(.*?)</script>', page).group(1))
    views = data["views"]
    assert len(views) >= 20 and all("figure" not in v for v in views.values())
    assert all("has not been written" in v["html"] for v in views.values())
    assert "run `c360 gold`" in views["loyalty_donut"]["html"]
    assert "start `c360 stream`" in views["city_hour"]["html"]
    assert 'id="card-total_customers" data-value=""' in page
    # plotly.js embedded, nothing loaded from elsewhere: the file works offline
    assert "Plotly" in page and not re.search(r"<(script|link)[^>]+(src|href)=\"?https?:", page)



def test_the_served_dashboard_opens_a_new_session_when_the_engine_ended_its_own(cfg, monkeypatch):
    """The embedded engine ends a session idle past its timeout: the server's next refresh runs on a new session,
    and rebuilds what the failed one would have (the versions it had seen are forgotten), rather than logging the
    failure at every refresh for ever."""
    from batch.dashboard_serve import DashboardServer
    from lakehouse import engine

    server = DashboardServer(cfg, "the first session", port=0, refresh_seconds=0.01)
    ticks = []

    def tick(*, check_gold):
        ticks.append((server.spark, server._live_versions))
        if len(ticks) == 1:
            raise RuntimeError("invalid argument: session 0dc9d5e7-2932 is not running")
        server._stop.set()

    server.tick = tick
    server._live_versions = {"stream_city_hour": 7}
    monkeypatch.setattr(engine, "get_session", lambda cfg, name, new=False: f"a new session: {new}")
    try:
        server._loop()
    finally:
        server.httpd.server_close()
    assert ticks == [("the first session", {"stream_city_hour": 7}), ("a new session: True", {})]
