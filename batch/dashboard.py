"""The c360 dashboard (``c360 dashboard``): one self-contained HTML file built from the gold and stream tables.

Sections: the four dashboards of seed 004 (Customer Overview, Financial Insights, Customer Engagement,
Transaction & Activity Trends), then customer value (RFM segments, CLV, retention cohorts), the live streaming
views (city x hour logins, login-gap anomalies, stream throughput), products and campaigns, and the data quality
of the last gold run. plotly.js is embedded once, so the file opens offline straight from disk; every chart's
title names the table, version and commit time it shows. A table not written yet (a fresh lake) gives an
explanatory empty state. Emails and phones are masked unless ``dashboard.mask_pii`` is off.

``c360 dashboard --serve`` (``batch.dashboard_serve``) serves the same page on localhost and refreshes the
streaming views every few seconds; the numbers come from ``batch.dashboard_data``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from pyspark.sql import DataFrame, SparkSession

from batch import dashboard_data as dd
from lakehouse.config import Config, DashboardConfig
from lakehouse.engine import cached, is_embedded
from lakehouse.tables import OPS_PROGRESS

log = logging.getLogger(__name__)

C360, ENGAGEMENT, RFM, CLV = "gold_customer_360", "gold_engagement_score", "gold_rfm_segments", "gold_customer_clv"
COHORTS, PRODUCTS, CAMPAIGNS = "gold_retention_cohorts", "gold_product_performance", "gold_campaign_performance"
DAILY, QUALITY = "gold_daily_metrics", "gold_data_quality"
CITY_HOUR, ANOMALIES = "stream_city_hour_logins", "stream_login_anomalies"
GOLD_TABLES = (C360, ENGAGEMENT, RFM, CLV, COHORTS, PRODUCTS, CAMPAIGNS, DAILY, QUALITY)
LIVE_TABLES = (CITY_HOUR, ANOMALIES, OPS_PROGRESS)

SECTIONS = (
    ("overview", "Customer Overview", "Who our customers are (seed 004, dashboard 1)."),
    ("financial", "Financial Insights", "Account balances and loyalty (seed 004, dashboard 2)."),
    ("engagement", "Customer Engagement", "Tenure, the retention journey and recent logins (seed 004, dashboard 3)."),
    ("trends", "Transaction & Activity Trends", "Loyalty points and login activity (seed 004, dashboard 4)."),
    ("value", "Customer Value", "RFM segments, customer lifetime value and retention cohorts."),
    ("live", "Live Streaming", "Logins by city and hour, login-gap anomalies and the stream's throughput; "
                               "refreshed every few seconds under c360 dashboard --serve."),
    ("commerce", "Products & Campaigns", "What sells and which campaigns convert."),
    ("quality", "Data Quality", "The last gold run's view of every silver table."),
)
TIER_COLORS = {"Platinum": "#7b8794", "Gold": "#d4a017", "Silver": "#a8a9ad", "Bronze": "#b06d2c",
               dd.NO_TIER: "#d9d9d9"}
HEIGHT = 400


@dataclass
class View:
    """One chart or table of the page: a plotly figure, an HTML table, or why there is nothing to show."""

    id: str
    section: str
    title: str
    source: str = ""
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None
    empty: str | None = None
    live: bool = False

    def spec(self) -> dict:
        if self.figure is not None:
            return {"figure": json.loads(pio.to_json(self.figure, validate=False)), "source": self.source}
        head = (f'<h3 class="view-title">{html.escape(self.title)}</h3>'
                f'<p class="source">{html.escape(self.source)}</p>')
        if self.table is not None:
            return {"html": head + _html_table(self.table), "source": self.source}
        return {"html": head + f'<div class="empty">{html.escape(self.empty or "No data.")}</div>',
                "source": self.source}


@dataclass
class Card:
    id: str
    section: str
    label: str
    value: float | int | None
    display: str
    hint: str = ""


@dataclass
class Page:
    generated_at: datetime
    lake_root: str
    cards: list[Card] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    live_version: dict[str, int | None] = field(default_factory=dict)


# --- formatting -------------------------------------------------------------------------------------------------

def _fmt(value, decimals: int = 0) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    return f"{value:,.{decimals}f}"


def _cell(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (pd.Timestamp, datetime)):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _html_table(pdf: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in pdf.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in pdf.itertuples(index=False))
    return f'<div class="table-wrap"><table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _source(info: dd.TableInfo, as_of=None) -> str:
    text = info.describe()
    return f"{text} · as of {as_of}" if as_of else text


def _layout(fig: go.Figure, x: str | None = None, y: str | None = None, **extra) -> go.Figure:
    layout = {"template": "plotly_white", "height": HEIGHT, "margin": {"l": 64, "r": 24, "t": 100, "b": 56},
              "font": {"size": 12},
              "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0}}
    fig.update_layout(**{**layout, **extra})
    if x is not None:  # the first (primary) axes; a secondary axis is titled where it is made
        fig.layout.xaxis.title.text = x
    if y is not None:
        fig.layout.yaxis.title.text = y
    return fig


def _dual_axis(primary, secondary, secondary_title: str) -> go.Figure:
    """Two traces sharing the x axis, the second on its own y axis (titled here; the first is titled by _layout)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(primary, secondary_y=False)
    fig.add_trace(secondary, secondary_y=True)
    fig.update_yaxes(title_text=secondary_title, secondary_y=True, rangemode="tozero")
    return fig


def _bins(pdf: pd.DataFrame, hover: str, x: str) -> go.Figure | None:
    """A histogram of customers computed in Spark (``lo``, ``hi``, ``count`` per bin) as touching bars."""
    if pdf.empty:
        return None
    fig = go.Figure(go.Bar(x=(pdf.lo + pdf.hi) / 2, y=pdf["count"], width=(pdf.hi - pdf.lo) * 0.95,
                           customdata=pdf[["lo", "hi"]], hovertemplate=hover + ": %{y:,} customers<extra></extra>"))
    return _layout(fig, x=x, y="customers")


def _period_label(grain: str) -> str:
    return "day" if grain == "day" else "month"


# --- the views ----------------------------------------------------------------------------------------------------

class _Builder:
    """Builds the views from one ``Lake`` (each table read at one version)."""

    def __init__(self, lake: dd.Lake, dcfg: DashboardConfig, mask_pii: bool):
        self.lake, self.dcfg, self.mask_pii = lake, dcfg, mask_pii
        self.cards: list[Card] = []
        self.views: list[View] = []
        self._c360: DataFrame | None = None
        self.as_of = None

    def _hint(self, name: str) -> str:
        return ("start `c360 stream`" if name.startswith(("stream_", "ops_")) else
                "run `c360 gold` (after `c360 stream` has filled silver)")

    def need(self, name: str) -> tuple[DataFrame | None, str | None]:
        """The table, or None and why it cannot be shown (not written yet)."""
        df = self.lake.table(name)
        if df is None:
            return None, f"No data yet: {name} has not been written. To fill it, {self._hint(name)}."
        return df, None

    def _no_rows(self, name: str) -> str:
        return (f"No data yet: {name} (version {self.lake.info(name).version}) has no rows for this view. "
                f"To fill it, {self._hint(name)}.")

    def add(self, section: str, vid: str, title: str, table: str,
            make: Callable[[DataFrame], go.Figure | pd.DataFrame | None], *, live: bool = False,
            df: DataFrame | None = None) -> None:
        started = time.monotonic()
        why = None
        if df is None:
            df, why = self.need(table)
        source = _source(self.lake.info(table), self.as_of if table.startswith("gold_") else None)
        view = View(vid, section, title, source, empty=why, live=live)
        if df is not None:
            try:
                made = make(df)
            except Exception as exc:  # noqa: BLE001 - one unreadable table must not take the page down
                log.warning("dashboard view %s failed on %s: %s", vid, table, exc)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                view.empty = f"This view could not be drawn from {table}: {first}"
            else:
                if made is None or (isinstance(made, pd.DataFrame) and made.empty):
                    view.empty = self._no_rows(table)
                elif isinstance(made, go.Figure):  # the view's title, with the table and time of its data
                    view.figure = made.update_layout(title={
                        "text": f"{html.escape(title)}<br><sup>{html.escape(source)}</sup>", "x": 0.01})
                else:
                    view.table = made
        self.views.append(view)
        log.debug("view %s: %.2fs", vid, time.monotonic() - started)

    def card(self, section: str, cid: str, label: str, value, display: str, hint: str = "") -> None:
        self.cards.append(Card(cid, section, label, value, display, hint))

    # -- seed 004 ---------------------------------------------------------------------------------------------------

    def gold_views(self) -> None:
        c360, why = self.need(C360)
        if c360 is not None and c360.limit(1).count() == 0:
            c360, why = None, self._no_rows(C360)
        if c360 is not None:
            c360 = c360.select("customer_id", "customer_name", "email", "phone", "registration_datetime",
                               "is_active", "loyalty_tier", "loyalty_points", "account_balance", "first_purchase_at",
                               "last_login_at", "customer_segment", "as_of")
            c360 = cached(c360)
            self._c360 = c360
            self.as_of = c360.select("as_of").first()[0]
        self._overview(c360, why)
        self._financial()
        self._engagement()
        self._trends(c360, why)
        self._value()
        self._commerce()
        self.add("quality", "data_quality", "Data quality of the last gold run (per silver table)", QUALITY,
                 lambda df: dd.data_quality(df).rename(columns={
                     "table_name": "silver table", "silver_version": "version", "as_of": "as of",
                     "null_values": "null values", "records_read": "records read",
                     "duplicates_removed": "duplicates removed", "top_quarantine_reason": "top quarantine reason",
                     "fix": "what to change"}))

    def release(self) -> None:
        if self._c360 is not None and not is_embedded(self._c360.sparkSession):
            self._c360.unpersist()

    def _overview(self, c360, why) -> None:
        hint = why or _source(self.lake.info(C360), self.as_of)
        cards = dd.overview_cards(c360) if c360 is not None else {}
        for key, label in (("total_customers", "Total customers"), ("active_customers", "Active customers"),
                           ("inactive_customers", "Inactive customers")):
            value = cards.get(key)
            self.card("overview", key, label, value, _fmt(value), hint)

        def donut(df):
            pdf = dd.loyalty_distribution(df)
            if pdf.empty:
                return None
            fig = go.Figure(go.Pie(labels=pdf.loyalty_tier, values=pdf.customers, hole=0.5, sort=False,
                                   marker={"colors": [TIER_COLORS.get(t, "#999") for t in pdf.loyalty_tier]},
                                   hovertemplate="%{label}: %{value:,} customers (%{percent})<extra></extra>"))
            return _layout(fig)

        def acquisition(df):
            pdf, grain = dd.acquisition(df)
            if pdf.empty:
                return None
            fig = _dual_axis(go.Scatter(x=pdf.period, y=pdf.customers, mode="lines+markers",
                                        name=f"new customers per {_period_label(grain)}"),
                             go.Scatter(x=pdf.period, y=pdf.total, mode="lines", name="customers to date",
                                        line={"dash": "dot"}), "customers to date")
            return _layout(fig, x=f"join {_period_label(grain)}", y="new customers")

        self._c360_or_empty("overview", "loyalty_donut", "Loyalty status distribution", donut)
        self._c360_or_empty("overview", "acquisition", "Customer acquisition over time", acquisition)

    def _c360_or_empty(self, section, vid, title, make):
        self.add(section, vid, title, C360, make, df=self._c360)

    def _financial(self) -> None:
        def by_tier(df):
            pdf = dd.balance_by_tier(df)
            if pdf.empty:
                return None
            fig = go.Figure(go.Bar(x=pdf.loyalty_tier, y=pdf.avg_balance, customdata=pdf.customers,
                                   marker={"color": [TIER_COLORS.get(t, "#999") for t in pdf.loyalty_tier]},
                                   hovertemplate="%{x}: average $%{y:,.2f} over %{customdata:,} customers"
                                                 "<extra></extra>"))
            return _layout(fig, x="loyalty status", y="average account balance ($)")

        def heat(df):
            grid = dd.heatmap2d(df, "loyalty_points", "account_balance", bins=20)
            if grid is None:
                return None
            mid = lambda e: [(a + b) / 2 for a, b in zip(e[:-1], e[1:], strict=True)]  # noqa: E731
            fig = go.Figure(go.Heatmap(x=mid(grid["x_edges"]), y=mid(grid["y_edges"]), z=grid["z"],
                                       colorscale="Blues", colorbar={"title": {"text": "customers"}},
                                       hovertemplate="points ≈ %{x:,.0f}, balance ≈ $%{y:,.0f}: %{z:,} customers"
                                                     "<extra></extra>"))
            return _layout(fig, x="loyalty points", y="account balance ($)")

        def top(df):
            pdf = dd.top_customers(df, self.dcfg.top_customers, mask_pii=self.mask_pii)
            if pdf.empty:
                return None
            return pdf.rename(columns={"customer_id": "customer", "customer_name": "name",
                                       "account_balance": "account balance ($)", "loyalty_tier": "loyalty status",
                                       "loyalty_points": "loyalty points"})

        self._c360_or_empty("financial", "balance_by_tier", "Average account balance by loyalty status", by_tier)
        self._c360_or_empty("financial", "balance_points", "Account balance vs. loyalty points", heat)
        self._c360_or_empty("financial", "top_customers",
                            f"Top {self.dcfg.top_customers} customers by account balance", top)

    def _engagement(self) -> None:
        def age(df):
            return _bins(dd.histogram(df.select(dd.account_age_days(df).alias("age")), "age", bins=30),
                         "%{customdata[0]:,.0f}-%{customdata[1]:,.0f} days", "account age (days)")

        def funnel(df):
            pdf = dd.retention_funnel(df)
            if pdf.empty:
                return None
            fig = go.Figure(go.Funnel(y=pdf.stage, x=pdf.customers, textinfo="value+percent initial"))
            return _layout(fig, x="customers", y="stage")

        def last_login(df):
            pdf, grain = dd.last_login_trend(df)
            if pdf.empty:
                return None
            fig = go.Figure(go.Scatter(x=pdf.period, y=pdf.customers, mode="lines+markers",
                                       hovertemplate="%{x}: %{y:,} customers<extra></extra>"))
            return _layout(fig, x=f"{_period_label(grain)} of last login", y="customers")

        self._c360_or_empty("engagement", "account_age", "Account age distribution", age)
        self._c360_or_empty("engagement", "retention_funnel", "Customer retention journey", funnel)
        self._c360_or_empty("engagement", "last_login", "Last login trend", last_login)

    def _trends(self, c360, why) -> None:
        engagement = self.lake.table(ENGAGEMENT)
        kpis = dd.trend_kpis(c360, engagement, self.dcfg.balance_above) if c360 is not None else {}
        hint = why or _source(self.lake.info(C360), self.as_of)
        points = kpis.get("total_loyalty_points")
        self.card("trends", "total_loyalty_points", "Total loyalty points awarded", points, _fmt(points), hint)
        freq, gap = kpis.get("avg_logins_per_month"), kpis.get("avg_login_gap_days")
        self.card("trends", "avg_logins_per_month", "Average login frequency (logins per month)", freq,
                  _fmt(freq, 2), (f"mean gap between logins {_fmt(gap, 1)} days · " if gap is not None else "")
                  + _source(self.lake.info(ENGAGEMENT), self.as_of))
        share = kpis.get("share_balance_above_pct")
        self.card("trends", "share_balance_above_pct",
                  f"Customers with a balance above ${self.dcfg.balance_above:,.0f}", share,
                  "—" if share is None else f"{share:.1f}%", hint)

        def area(df):
            pdf = dd.monthly_points(df)
            if pdf.empty:
                return None
            fig = go.Figure(go.Scatter(x=pdf.period, y=pdf.loyalty_points, mode="lines", fill="tozeroy",
                                       hovertemplate="%{x|%Y-%m}: %{y:,} points<extra></extra>"))
            return _layout(fig, x="month of joining", y="loyalty points")

        def treemap(df):
            pdf = dd.points_treemap(df)
            if pdf.empty:
                return None
            tiers = pdf.groupby("loyalty_tier", as_index=False)["loyalty_points"].sum()
            ids = list(tiers.loyalty_tier) + [f"{t}/{s}" for t, s in zip(pdf.loyalty_tier, pdf.customer_segment,
                                                                          strict=True)]
            fig = go.Figure(go.Treemap(
                ids=ids, labels=list(tiers.loyalty_tier) + list(pdf.customer_segment),
                parents=[""] * len(tiers) + list(pdf.loyalty_tier),
                values=list(tiers.loyalty_points) + list(pdf.loyalty_points), branchvalues="total",
                hovertemplate="%{label}: %{value:,} points<extra></extra>"))
            return _layout(fig)

        def revenue(df):
            pdf = dd.daily_revenue(df)
            if pdf.empty:
                return None
            fig = _dual_axis(go.Scatter(x=pdf.metric_date, y=pdf.net_revenue, mode="lines", name="net revenue ($)"),
                             go.Scatter(x=pdf.metric_date, y=pdf.monthly_active_users, mode="lines",
                                        name="monthly active users", line={"dash": "dot"}), "monthly active users")
            return _layout(fig, x="day", y="net revenue ($)")

        self._c360_or_empty("trends", "monthly_points", "Monthly loyalty points (by month of joining)", area)
        self._c360_or_empty("trends", "points_treemap", "Loyalty points by loyalty status and customer segment",
                            treemap)
        self.add("trends", "daily_revenue", "Daily net revenue and monthly active users", DAILY, revenue)

    # -- beyond seed 004 ----------------------------------------------------------------------------------------------

    def _value(self) -> None:
        def segments(df):
            pdf = dd.rfm_segments(df)
            if pdf.empty:
                return None
            fig = _dual_axis(go.Bar(x=pdf.customer_segment, y=pdf.customers, name="customers"),
                             go.Scatter(x=pdf.customer_segment, y=pdf.spend, mode="lines+markers", name="spend ($)"),
                             "spend ($)")
            return _layout(fig, x="segment", y="customers")

        def clv_hist(df):
            return _bins(dd.histogram(df, "predicted_clv_3yr", bins=30), "$%{customdata[0]:,.0f}-%{customdata[1]:,.0f}",
                         "predicted 3-year CLV ($)")

        def clv_tiers(df):
            pdf = dd.clv_tiers(df)
            if pdf.empty:
                return None
            fig = go.Figure([go.Bar(x=pdf.clv_tier, y=pdf.historical_clv, name="historical CLV ($)"),
                             go.Bar(x=pdf.clv_tier, y=pdf.predicted_clv_3yr, name="predicted 3-year CLV ($)")])
            fig.update_traces(customdata=pdf.customers,
                              hovertemplate="%{x} (%{customdata:,} customers): $%{y:,.0f}<extra></extra>")
            return _layout(fig, x="CLV tier", y="value ($)",
                           barmode="group")

        def cohorts(df):
            m = dd.cohort_matrix(df)
            if m.empty:
                return None
            fig = go.Figure(go.Heatmap(
                x=list(m.columns), y=[f"{d:%Y-%m}" for d in m.index], z=(m * 100).round(1).values.tolist(),
                colorscale="Greens", zmin=0, zmax=100, colorbar={"title": {"text": "retained %"}},
                hovertemplate="cohort %{y}, month %{x}: %{z}% retained<extra></extra>"))
            fig.update_yaxes(autorange="reversed", type="category")
            return _layout(fig, x="months since first purchase", y="cohort (first-purchase month)")

        self.add("value", "rfm_segments", "RFM segments: customers and spend", RFM, segments)
        self.add("value", "clv_distribution", "Predicted 3-year CLV distribution", CLV, clv_hist)
        self.add("value", "clv_tiers", "CLV tiers: historical and predicted value", CLV, clv_tiers)
        self.add("value", "retention_cohorts", "Retention cohorts", COHORTS, cohorts)

    def _commerce(self) -> None:
        def products(df):
            pdf = dd.top_products(df).iloc[::-1]
            if pdf.empty:
                return None
            fig = go.Figure(go.Bar(
                y=pdf.product_name + " (" + pdf.product_id + ")", x=pdf.revenue, orientation="h",
                customdata=pdf[["page_views", "add_to_carts", "abandoned_carts", "orders", "refund_rate"]],
                hovertemplate="%{y}: $%{x:,.0f}<br>views %{customdata[0]:,} · carts %{customdata[1]:,} · abandoned "
                              "%{customdata[2]:,} · orders %{customdata[3]:,} · refund rate %{customdata[4]:.1%}"
                              "<extra></extra>"))
            return _layout(fig, x="revenue ($)", y="product",
                           margin={"l": 220, "r": 24, "t": 100, "b": 56})

        def campaigns(df):
            pdf = dd.campaigns(df)
            if pdf.empty:
                return None
            fig = _dual_axis(go.Bar(x=pdf.campaign_source, y=pdf.revenue, name="revenue ($)"),
                             go.Scatter(x=pdf.campaign_source, y=pdf.conversion_rate * 100, mode="markers+lines",
                                        name="conversion rate (%)"), "conversion rate (%)")
            return _layout(fig, x="campaign source", y="revenue ($)")

        self.add("commerce", "products", "Top 15 products by revenue", PRODUCTS, products)
        self.add("commerce", "campaigns", "Campaign performance", CAMPAIGNS, campaigns)

    # -- live ---------------------------------------------------------------------------------------------------------

    def live_views(self) -> None:
        dcfg = self.dcfg

        def city_hour(df):
            pdf = dd.city_hour(df, dcfg.cities)
            if pdf.empty:
                return None
            cities = list(dict.fromkeys(pdf.city))
            grid = pdf.pivot(index="city", columns="hour", values="logins").reindex(index=cities,
                                                                                   columns=range(24)).fillna(0)
            peaks = pdf[pdf.is_peak]
            fig = go.Figure([
                go.Heatmap(x=list(range(24)), y=cities, z=grid.values.tolist(), colorscale="Viridis",
                           colorbar={"title": {"text": "logins"}},
                           hovertemplate="%{y}, %{x}:00: %{z:,} logins<extra></extra>", name="logins"),
                go.Scatter(x=peaks.hour, y=peaks.city, mode="markers", name="peak hour",
                           marker={"symbol": "star", "size": 11, "color": "#ff4136", "line": {"width": 1}},
                           customdata=peaks.logins,
                           hovertemplate="%{y}: peak at %{x}:00 (%{customdata:,} logins)<extra></extra>")])
            fig.update_yaxes(autorange="reversed", type="category")
            fig.update_xaxes(dtick=2)
            return _layout(fig, x="hour of day (UTC)", y="city", height=max(HEIGHT, 110 + 18 * len(cities)))

        def counts(df):
            pdf = dd.anomaly_counts(df)
            if pdf.empty:
                return None
            fig = go.Figure([go.Bar(x=g.rule, y=g["count"], name=sev) for sev, g in pdf.groupby("severity")])
            return _layout(fig, x="rule", y="anomalies",
                           barmode="stack")

        def latest(df):
            pdf = dd.latest_anomalies(df, dcfg.latest_anomalies)
            return None if pdf.empty else pdf.rename(columns={
                "login_datetime": "login time (UTC)", "customer_id": "customer", "gap_s": "gap (s)"})

        def progress(df):
            pdf = dd.stream_progress(df)
            if pdf.empty:
                return None
            fig = go.Figure([go.Scatter(x=g.timestamp, y=g.processed_rows_per_s, mode="lines+markers", name=q)
                             for q, g in pdf.groupby("query")])
            return _layout(fig, x="micro-batch time (UTC)", y="rows processed per second")

        self.add("live", "city_hour", f"Logins by city and hour of day (the {dcfg.cities} busiest cities; ★ = peak hour)",
                 CITY_HOUR, city_hour, live=True)
        self.add("live", "anomaly_counts", "Login-gap anomalies by rule and severity", ANOMALIES, counts, live=True)
        self.add("live", "latest_anomalies", f"Latest {dcfg.latest_anomalies} login-gap anomalies", ANOMALIES,
                 latest, live=True)
        self.add("live", "stream_progress", "Stream throughput per query", OPS_PROGRESS, progress, live=True)


def build(spark: SparkSession, cfg: Config, *, mask_pii: bool | None = None) -> Page:
    """Every view of the page from the lake as it is now."""
    lake = dd.Lake(spark, cfg.lake.root)
    b = _Builder(lake, cfg.dashboard, cfg.dashboard.mask_pii if mask_pii is None else mask_pii)
    try:
        b.gold_views()
        b.live_views()
    finally:
        b.release()
    return Page(datetime.now(timezone.utc), cfg.lake.root, b.cards, b.views,
                {t: lake.info(t).version for t in LIVE_TABLES})


def build_live(spark: SparkSession, cfg: Config) -> list[View]:
    """The streaming views only (what --serve refreshes every few seconds)."""
    b = _Builder(dd.Lake(spark, cfg.lake.root), cfg.dashboard, cfg.dashboard.mask_pii)
    b.live_views()
    return b.views


# --- the page ----------------------------------------------------------------------------------------------------

def script_json(obj) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' that could close it)."""
    return (json.dumps(obj, default=str, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


_CSS = """
*{box-sizing:border-box} body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2933;background:#f4f6f8} header{background:#1f2933;color:#fff;padding:14px 24px;position:sticky;top:0;
z-index:10} header h1{margin:0;font-size:20px} header .meta{margin:2px 0 6px;color:#cbd2d9;font-size:12px}
nav a{color:#9fd3ff;margin-right:14px;text-decoration:none;font-size:13px;white-space:nowrap} nav a:hover{text-decoration:underline}
main{padding:8px 24px 40px;max-width:1600px;margin:0 auto} section{margin-top:22px}
section h2{font-size:18px;margin:0 0 2px} section .about{margin:0 0 10px;color:#52606d}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px;margin-bottom:12px}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .label{color:#52606d;font-size:13px} .card .value{font-size:28px;font-weight:600;margin:2px 0}
.card .hint{color:#7b8794;font-size:11px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:12px}
.view{background:#fff;border-radius:8px;padding:6px;margin:0;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
.view.wide{grid-column:1/-1} .view-title{font-size:15px;margin:8px 10px 0} .source{color:#7b8794;font-size:11px;margin:2px 10px 8px}
.empty{margin:10px;padding:28px 16px;border:1px dashed #cbd2d9;border-radius:6px;color:#52606d;text-align:center}
.table-wrap{overflow:auto;max-height:420px;margin:0 6px 8px} table.data{border-collapse:collapse;width:100%;font-size:12px}
table.data th{position:sticky;top:0;background:#eef2f6;text-align:left;padding:6px 8px}
table.data td{padding:5px 8px;border-top:1px solid #e4e7eb;white-space:nowrap}
.notice{margin:16px 0 0;padding:14px 18px;background:#fff8e1;border:1px solid #f0c36d;border-radius:8px}
code{background:#eef2f6;padding:1px 4px;border-radius:3px}
@media (max-width:700px){.grid{grid-template-columns:1fr}}
"""

_JS = """
(function () {
  const data = JSON.parse(document.getElementById('c360-data').textContent);
  const config = {responsive: true, displaylogo: false};
  function render(id, spec) {
    const box = document.getElementById('body-' + id);
    if (!box) return;
    if (spec.figure) {
      if (box.dataset.kind !== 'figure') { box.innerHTML = ''; box.dataset.kind = 'figure'; }
      Plotly.react(box, spec.figure.data, spec.figure.layout, config);
    } else {
      if (box.dataset.kind === 'figure') Plotly.purge(box);
      box.dataset.kind = 'html';
      box.innerHTML = spec.html;
    }
  }
  for (const [id, spec] of Object.entries(data.views)) render(id, spec);
  window.c360 = {data: data, render: render, updates: 0};
  if (!data.live || !location.protocol.startsWith('http')) return;
  const status = document.getElementById('live-status');
  async function poll() {
    try {
      const response = await fetch(data.live.url, {cache: 'no-store'});
      const update = await response.json();
      if (update.page_version !== data.page_version) { location.reload(); return; }
      for (const [id, spec] of Object.entries(update.views)) render(id, spec);
      window.c360.updates += 1;
      status.textContent = 'live: streaming views updated ' + update.updated_at + ' UTC';
    } catch (e) {
      status.textContent = 'live updates paused: the dashboard server is not answering';
    }
    setTimeout(poll, data.live.seconds * 1000);
  }
  status.textContent = 'live: streaming views refresh every ' + data.live.seconds + ' s';
  setTimeout(poll, data.live.seconds * 1000);
})();
"""

_WIDE = {"top_customers", "city_hour", "latest_anomalies", "data_quality", "retention_cohorts", "daily_revenue"}


def render(page: Page, *, live: dict | None = None, page_version: int = 0) -> str:
    """The page as one HTML document (plotly.js embedded). ``live``: {"url", "seconds"} when served."""
    from plotly.offline import get_plotlyjs

    body = []
    for sid, name, about in SECTIONS:
        cards = "".join(
            f'<div class="card" id="card-{c.id}" data-value="{"" if c.value is None else c.value}">'
            f'<div class="label">{html.escape(c.label)}</div><div class="value">{html.escape(c.display)}</div>'
            f'<div class="hint">{html.escape(c.hint)}</div></div>' for c in page.cards if c.section == sid)
        views = "".join(
            f'<figure class="view{" wide" if v.id in _WIDE else ""}" id="view-{v.id}" data-live="{str(v.live).lower()}">'
            f'<div class="body" id="body-{v.id}"></div></figure>' for v in page.views if v.section == sid)
        body.append(f'<section id="{sid}"><h2>{html.escape(name)}</h2><p class="about">{html.escape(about)}</p>'
                    + (f'<div class="cards">{cards}</div>' if cards else "") + f'<div class="grid">{views}</div></section>')
    nav = "".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in SECTIONS)
    notice = ('<div class="notice" id="fresh-lake">This lake has no gold or stream tables yet. Fill it with '
              '<code>c360 replay</code> and <code>c360 stream</code>, then <code>c360 gold</code> (which refreshes '
              'this page); <code>make demo</code> does all of it on generated data.</div>'
              if page.views and all(v.empty for v in page.views) else "")
    data = {"views": {v.id: v.spec() for v in page.views}, "live": live, "page_version": page_version,
            "generated_at": f"{page.generated_at:%Y-%m-%d %H:%M:%S}"}
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>c360 — Customer 360 dashboard'
        f'</title><link rel="icon" href="data:,"><style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>'
        f'<header><h1>c360 — Customer 360</h1><p class="meta">Generated {page.generated_at:%Y-%m-%d %H:%M:%S} UTC '
        f'from {html.escape(page.lake_root)} · <span id="live-status">static snapshot</span></p><nav>{nav}</nav>'
        f'</header><main>{notice}{"".join(body)}</main>'
        f'<script id="c360-data" type="application/json">{script_json(data)}</script><script>{_JS}</script>'
        '</body></html>')


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename: a browser or a copy never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write(spark: SparkSession, cfg: Config, path: str | os.PathLike[str] | None = None,
          *, mask_pii: bool | None = None) -> Path:
    """Build the page from the lake and write it (default ``dashboard.file``); returns where."""
    out = Path(path or cfg.dashboard.file)
    page = build(spark, cfg, mask_pii=mask_pii)
    write_atomic(out, render(page))
    empty = sum(v.empty is not None for v in page.views)
    log.info("dashboard: %d views (%d without data) -> %s", len(page.views), empty, out)
    if page.views and empty == len(page.views):
        log.warning("no gold or stream table exists in the lake (%s) yet, so every view of the dashboard is empty: "
                    "run `c360 replay` and `c360 stream`, then `c360 gold`", cfg.lake.root)
    return out
