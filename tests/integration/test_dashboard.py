"""The dashboard in a real browser (headless Chromium): the page `c360 gold` wrote from the streamed lake, a fresh
lake's empty states, and `--serve` refreshing the streaming views while a stream table changes.

Screenshots for humans land in test-artifacts/ at the project root."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F
from selenium.webdriver.support.ui import WebDriverWait

from batch import dashboard_data as dd
from batch.dashboard_serve import DashboardServer
from c360 import cli
from lakehouse.jars import PROJECT_ROOT
from lakehouse.tables import table_path
from tests.integration.test_pipeline import _table

pytestmark = pytest.mark.integration
ARTIFACTS = PROJECT_ROOT / "test-artifacts"

SEED_004 = {"loyalty_donut", "acquisition", "balance_by_tier", "balance_points", "top_customers", "account_age",
            "retention_funnel", "last_login", "monthly_points", "points_treemap"}
BEYOND = {"rfm_segments", "clv_distribution", "clv_tiers", "retention_cohorts", "city_hour", "anomaly_counts",
          "latest_anomalies", "stream_progress", "products", "campaigns", "data_quality", "daily_revenue"}

# per plotly chart: its title, its axes' titles (cartesian charts), the marks drawn and the data points given
CHARTS_JS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => {
  const fl = g._fullLayout, cartesian = fl._has('cartesian');
  const label = a => a.visible === false ? 'hidden axis' : (a.title.text || '');
  return {id: g.id.replace('body-', ''), title: (fl.title && fl.title.text) || '', cartesian: cartesian,
          x: cartesian ? label(fl.xaxis) : null, y: cartesian ? label(fl.yaxis) : null,
          marks: g.querySelectorAll('.point, .slice, .hm, path.js-line, .js-fill').length,
          points: g._fullData.reduce((n, t) => n + ((t.x || t.values || t.z || []).length || 0), 0)};
});"""
VIEWS_JS = """
return Array.from(document.querySelectorAll('figure.view')).map(v => ({
  id: v.id.replace('view-', ''), empty: v.querySelector('.empty') ? v.querySelector('.empty').textContent : null,
  kind: v.querySelector('.body').dataset.kind, text: v.textContent}));"""
CARDS_JS = """
return Object.fromEntries(Array.from(document.querySelectorAll('.card')).map(c => [c.id.replace('card-', ''),
  {value: c.dataset.value, display: c.querySelector('.value').textContent}]));"""


def _open(browser, url: str) -> list[dict]:
    """Load the page until its script has drawn everything; returns the console's errors meanwhile."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && window.c360 !== undefined"))
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _screenshot(browser, name: str) -> None:
    """A full-page screenshot for humans (test-artifacts/<name>.png)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1440, min(height, 16000))
    try:
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    finally:
        browser.set_window_size(1440, 900)


def test_the_gold_dashboard_renders_every_chart_and_its_cards_equal_the_gold_tables(browser, gold, spark):
    cfg, exports = gold
    page = exports / "dashboard.html"
    assert page.is_file(), "c360 gold did not refresh the dashboard"
    assert _open(browser, page.as_uri()) == []  # no console errors, opened straight from disk

    views = {v["id"]: v for v in browser.execute_script(VIEWS_JS)}
    assert set(views) >= SEED_004 | BEYOND, sorted(views)
    assert {i: v["empty"] for i, v in views.items() if v["empty"]} == {}  # every view has data
    charts = browser.execute_script(CHARTS_JS)
    assert {c["id"] for c in charts} == {i for i, v in views.items() if v["kind"] == "figure"}
    for chart in charts:
        assert chart["marks"] > 0 and chart["points"] > 0, chart  # rendered data points
        assert " v" in chart["title"] and "written" in chart["title"], chart  # table, version, time of the data
        if chart["cartesian"]:
            assert chart["x"] and chart["y"], chart  # axes labelled
    assert len(charts) >= 18

    c360 = _table(spark, cfg, "gold_customer_360")
    total, active = c360.count(), c360.where("is_active").count()
    above = c360.where(F.col("account_balance") > cfg.dashboard.balance_above).count()
    points = c360.agg(F.sum("loyalty_points")).first()[0]
    logged = _table(spark, cfg, "gold_engagement_score").where("login_count > 0").toPandas()
    per_month = (logged.login_count / logged.days_since_registration.clip(lower=1) * dd.DAYS_PER_MONTH).mean()
    cards = browser.execute_script(CARDS_JS)
    assert browser.find_elements("id", "fresh-lake") == []
    assert int(cards["total_customers"]["value"]) == total > 0
    assert int(cards["active_customers"]["value"]) == active
    assert int(cards["inactive_customers"]["value"]) == total - active
    assert cards["total_customers"]["display"] == f"{total:,}"
    assert int(cards["total_loyalty_points"]["value"]) == points > 0
    assert float(cards["share_balance_above_pct"]["value"]) == round(100 * above / total, 2)
    assert float(cards["avg_logins_per_month"]["value"]) == round(per_month, 2)

    richest = c360.where("account_balance IS NOT NULL").orderBy(F.desc("account_balance"), "customer_id").limit(10)
    cells = browser.execute_script("""return Array.from(document.querySelectorAll('#body-top_customers tbody tr'))
        .map(r => Array.from(r.cells).map(c => c.textContent));""")
    assert [r[0] for r in cells] == [r.customer_id for r in richest.collect()]
    emails = [r[2] for r in cells]
    assert all("***@" in e or e == "—" for e in emails) and any("***@" in e for e in emails)  # PII masked
    _screenshot(browser, "dashboard")


def test_a_fresh_lake_shows_what_to_run_not_a_broken_page(browser, spark, tmp_path):
    out = tmp_path / "fresh.html"
    assert cli.main(["dashboard", "--lake", str(tmp_path / "lake"), "--out", str(out)]) == 0
    assert _open(browser, out.as_uri()) == []
    views = browser.execute_script(VIEWS_JS)
    assert len(views) >= 20 and browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 0
    assert all(v["empty"] and "has not been written" in v["empty"] and ("c360 gold" in v["empty"]
                                                                        or "c360 stream" in v["empty"]) for v in views)
    assert "c360 stream" in browser.find_element("id", "fresh-lake").text
    cards = browser.execute_script(CARDS_JS)
    assert cards and all(c["display"] == "—" and c["value"] == "" for c in cards.values())
    _screenshot(browser, "dashboard-fresh-lake")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_serve_refreshes_the_streaming_views_in_the_open_page(browser, gold, spark, tmp_path):
    cfg, _ = gold
    shutil.copytree(cfg.lake.root, tmp_path / "lake")  # a lake of its own: this test writes a stream table
    cfg = cfg.replace("lake", root=str(tmp_path / "lake"))
    server = DashboardServer(cfg, spark, port=0, refresh_seconds=1).start()
    try:
        assert server.httpd.server_address[0] == "127.0.0.1"  # localhost unless configured otherwise
        assert _get(server.url + "healthz")[0] == 200 and _get(server.url + "nope")[0] == 404
        assert _open(browser, server.url) == []
        city_js = "return Array.from(document.getElementById('body-city_hour')._fullData[0].y).includes('Testville')"
        assert browser.execute_script(city_js) is False

        # a new city x hour count lands (as `c360 stream` would write it): the open page shows it by itself
        counts = table_path(cfg.lake.root, "stream_city_hour_logins")
        start = datetime(2024, 12, 31, 12)
        row = spark.createDataFrame([("Testville", start, start + timedelta(hours=1), start.date(), 12, 10**6)],
                                    spark.read.format("delta").load(counts).schema)
        row.write.format("delta").mode("append").save(counts)
        WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda d: d.execute_script(city_js))
        peak = browser.execute_script("""const t = document.getElementById('body-city_hour')._fullData[1];
            return Array.from(t.x).filter((x, i) => t.y[i] === 'Testville');""")
        assert peak == [12]
        assert browser.execute_script("return window.c360.updates") >= 1
        assert "live: streaming views updated" in browser.find_element("id", "live-status").text
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        server.stop()


def test_serve_rebuilds_the_page_after_a_gold_run_and_the_open_page_reloads(spark, cfg):
    import json

    # a fresh lake; the background refresh never runs here (an hour apart): the test ticks by hand
    server = DashboardServer(cfg, spark, port=0, refresh_seconds=3600, gold_check_seconds=0).start()
    try:
        assert server.page_version == 1
        server.tick(check_gold=True)  # nothing moved: no rebuild
        assert server.page_version == 1
        # a gold run wrote a table (here one whose columns are not what the view reads: that view says so, the
        # rest of the page is built)
        spark.createDataFrame([("silver_x", 1)], "table_name string, silver_version long").write.format("delta") \
            .save(table_path(cfg.lake.root, "gold_data_quality"))
        server.tick(check_gold=True)
        assert server.page_version == 2
        page = _get(server.url)[1].decode()
        assert "This view could not be drawn from gold_data_quality" in page
        status, body = _get(server.url + "api/live")
        assert status == 200 and json.loads(body)["page_version"] == 2  # an open page of version 1 reloads
    finally:
        server.stop()
