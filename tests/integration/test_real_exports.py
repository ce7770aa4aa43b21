"""Real exports nobody here wrote (../shared/real-data/), through replay -> stream -> gold with nothing but a source
mapping (examples/), against figures computed independently from the original file with pandas."""

from __future__ import annotations

import importlib.util
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from batch import gold
from c360 import cli
from tests.integration.test_pipeline import _args, _env, _table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "real-data"
SESSIONS = REAL / "customer360insights_sessions.csv"
SESSIONS_MAPPING = ROOT / "examples" / "customer360insights_sessions.toml"


def _sessions() -> pd.DataFrame:
    df = pd.read_csv(SESSIONS, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    return df


def test_the_session_export_lands_whole_and_its_funnel_drives_campaign_performance(spark, kafka_cfg, monkeypatch):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    config = ["--config", str(SESSIONS_MAPPING)]
    assert cli.main(["replay", *config, "--input", str(REAL), "--sources", "customer_insights", "--no-progress",
                     *_args(cfg)]) == 0
    assert cli.main(["stream", *config, "--available-now", "--sources", "customer_insights", *_args(cfg)]) == 0

    src = _sessions()
    silver = _table(spark, cfg, "silver_customer_insights").toPandas()
    assert _table(spark, cfg, "silver_quarantine").count() == 0
    assert len(silver) == len(src) == 2000  # every session, converted or not, each its own row
    got = silver.set_index("session_id").sort_index()
    want = src.assign(session_id=src.CustomerID + "|" + src.SessionStart).set_index("session_id").sort_index()
    assert list(got.index) == list(want.index)
    assert list(got.customer_id) == list(want.CustomerID)
    assert list(got.session_start) == list(pd.to_datetime(want.SessionStart))
    assert list(got.price) == [Decimal(v) for v in want.Price]
    assert list(got.quantity) == [int(v) for v in want.Quantity]
    assert list(got.campaign) == list(want.CampaignSchema)
    assert list(got.order_confirmed) == [v == "TRUE" for v in want.OrderConfirmation]
    assert list(got.order_return) == [{"TRUE": True, "FALSE": False}.get(v) for v in want.OrderReturn]
    assert list(got.payment_method.fillna("")) == [  # c360's spelling where listed, else as written
        {"Cash On Delivery": "Cash on Delivery"}.get(v, v) for v in want.PaymentMethod]
    assert list(got.session_end) == list(pd.to_datetime(want.SessionEnd))
    ops = _table(spark, cfg, "ops_stream_batches").groupBy().sum("read_rows", "unlisted_rows").first()
    assert (ops[0], ops[1]) == (2000, (src.PaymentMethod == "Paypal").sum())  # Paypal: kept and counted

    assert cli.main(["gold", *config, "--only", "gold_campaign_performance", "--no-exports", "--no-dashboard",
                     *_args(cfg)]) == 0
    gold = _table(spark, cfg, "gold_campaign_performance").toPandas().set_index("campaign_source").sort_index()
    converted = src[src.OrderConfirmation == "TRUE"]
    revenue = converted.Price.astype(float) * converted.Quantity.astype(float)
    by = src.groupby("CampaignSchema")
    assert list(gold.index) == sorted(src.CampaignSchema.unique())
    assert list(gold.sessions) == list(by.size())
    assert list(gold.conversions) == list(by.OrderConfirmation.apply(lambda s: (s == "TRUE").sum()))
    assert list(gold.orders) == list(converted.groupby("CampaignSchema").size())
    assert [float(v) for v in gold.revenue] == pytest.approx(list(revenue.groupby(converted.CampaignSchema).sum()))
    returns = converted.groupby("CampaignSchema").OrderReturn.apply(lambda s: (s == "TRUE").sum())
    assert list(gold.returns) == list(returns)
    assert list(gold.return_rate) == [round(r / o, 4) for r, o in zip(returns, gold.orders, strict=True)]


def test_times_no_format_reads_fail_the_run_loudly_with_the_fix_and_the_fix_lets_them_in(
        spark, kafka_cfg, monkeypatch, tmp_path, capsys):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    # the first 40 sessions with their times written month first without zeros (1/13/2019 2:42), as a US export
    src = _sessions().head(40)
    start = pd.to_datetime(src.SessionStart)
    us = src.assign(SessionStart=[f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}" for t in start])
    data = tmp_path / "in"
    data.mkdir()
    us.to_csv(data / SESSIONS.name, index=False)
    config = ["--config", str(SESSIONS_MAPPING)]
    replay = ["replay", *config, "--input", str(data), "--sources", "customer_insights", "--no-progress", *_args(cfg)]
    assert cli.main(replay) == 0
    capsys.readouterr()
    assert cli.main(["stream", *config, "--available-now", "--sources", "customer_insights", *_args(cfg)]) == 1
    err = capsys.readouterr().err
    assert ("customer_insights: 40 of 40 records quarantined (unparseable_session_start 40); fix: add "
            "'M/d/yyyy H:mm' to sources.customer_insights.timestamp_formats") in err
    assert "c360: error: all 40 records of customer_insights were quarantined" in err
    assert _table(spark, cfg, "silver_quarantine").count() == 40  # every raw record kept, with its reason
    # c360 gold ends with the same line, read back from the lake
    assert [line.split("; fix: ")[0] for line in gold.quality_lines(cfg)] == [
        "customer_insights: 40 of 40 records quarantined (unparseable_session_start 40)"]

    fixed = tmp_path / "fixed.toml"
    fixed.write_text(SESSIONS_MAPPING.read_text() + 'timestamp_formats = ["M/d/yyyy H:mm"]\n')
    config = ["--config", str(fixed)]
    assert cli.main(["replay", *config, "--input", str(data), "--sources", "customer_insights", "--no-progress",
                     *_args(cfg)]) == 0
    assert cli.main(["stream", *config, "--available-now", "--sources", "customer_insights", *_args(cfg)]) == 0
    silver = _table(spark, cfg, "silver_customer_insights").toPandas().sort_values("session_start")
    assert list(silver.session_start) == sorted(start)


SUPERSTORE = REAL / "superstore_orders.csv"
SUPERSTORE_MAPPING = ROOT / "examples" / "superstore_orders.toml"
AS_OF = "2023-01-01"


def _cents(text: str) -> Decimal:
    """An amount as silver keeps it: to the cent, half up (16.448 -> 16.45)."""
    return Decimal(text).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_order_lines_land_line_by_line_and_gold_builds_orders_spend_and_products_from_them(spark, kafka_cfg,
                                                                                          monkeypatch):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    config = ["--config", str(SUPERSTORE_MAPPING)]
    assert cli.main(["replay", *config, "--input", str(REAL), "--sources", "order_lines", "--no-progress",
                     *_args(cfg)]) == 0
    assert cli.main(["stream", *config, "--available-now", "--sources", "order_lines", *_args(cfg)]) == 0

    src = pd.read_csv(SUPERSTORE, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    src["amount"] = src.Sales.map(_cents)
    src["day"] = pd.to_datetime(src["Order Date"], format="%d/%m/%y")
    assert _table(spark, cfg, "silver_quarantine").count() == 0
    silver = _table(spark, cfg, "silver_order_lines").toPandas().set_index("line_id").sort_index()
    want = src.set_index("Row ID").sort_index()
    assert len(silver) == len(src) == 10194  # every line, none collapsed into its order
    assert list(silver.index) == list(want.index)
    assert list(silver.order_id) == list(want["Order ID"]) and list(silver.customer_id) == list(want["Customer ID"])
    assert list(silver.line_amount) == list(want.amount) and list(silver.quantity) == list(want.Quantity.astype(int))
    assert list(silver.order_datetime) == list(want.day)  # 03/01/19 is 3 January 2019

    assert cli.main(["gold", *config, "--as-of", AS_OF, "--only", "gold_customer_360,gold_product_performance",
                     "--no-exports", "--no-dashboard", *_args(cfg)]) == 0
    # per customer: spend, orders, first and last purchase (RFM's inputs); no master customers: every buyer is one
    c360 = _table(spark, cfg, "gold_customer_360").toPandas().set_index("customer_id").sort_index()
    by = src.groupby("Customer ID")
    assert list(c360.index) == sorted(src["Customer ID"].unique())
    assert list(c360.total_spend) == list(by.amount.sum())
    assert list(c360.order_count) == list(by["Order ID"].nunique())
    assert list(c360.last_purchase_at) == list(by.day.max()) and list(c360.first_purchase_at) == list(by.day.min())
    assert list(c360.days_since_last_purchase) == [(pd.Timestamp(AS_OF) - t).days for t in by.day.max()]
    assert list(c360.customer_name.isna()) == [True] * len(c360)  # unmapped attributes stay null
    # per product: revenue, units and orders (an order with the product on two lines is one order of it)
    products = _table(spark, cfg, "gold_product_performance").toPandas().set_index("product_id").sort_index()
    per_product = src.assign(q=src.Quantity.astype(int)).groupby("Product ID")
    assert list(products.index) == sorted(src["Product ID"].unique())
    assert list(products.revenue) == list(per_product.amount.sum())
    assert list(products.units) == list(per_product.q.sum())
    assert list(products.orders) == list(per_product["Order ID"].nunique())


CDNOW_COLUMNS = ["customer_id", "customer_index", "date", "number_of_cds", "dollar_value"]


def _lifetimes_datasets() -> Path:
    """The data files of the `lifetimes` wheel (a dev dependency: only its files are read, it is never imported)."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None, "the lifetimes wheel is missing: `make test` installs it (pyproject's dev extra)"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


def test_the_cdnow_purchase_history_goes_the_same_way_and_rfm_inputs_equal_pandas(spark, kafka_cfg, monkeypatch,
                                                                                   tmp_path):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    # examples/cdnow_purchases.toml maps CDNOW_master.txt; its 1/10 sample (the paper's 2,357 customers) has no
    # header row and one more column: the same mapping, with the file and its column names
    mapping = (ROOT / "examples" / "cdnow_purchases.toml").read_text().replace(
        'file = "CDNOW_master.txt"', f'file = "CDNOW_sample.txt"\nheader = {json.dumps(CDNOW_COLUMNS)}')
    (tmp_path / "cdnow.toml").write_text(mapping)
    config = ["--config", str(tmp_path / "cdnow.toml")]
    data = _lifetimes_datasets()
    assert cli.main(["replay", *config, "--input", str(data), "--sources", "order_lines", "--no-progress",
                     *_args(cfg)]) == 0
    assert cli.main(["stream", *config, "--available-now", "--sources", "order_lines", *_args(cfg)]) == 0
    src = pd.read_csv(data / "CDNOW_sample.txt", sep=r"\s+", header=None, names=CDNOW_COLUMNS,
                      dtype={"customer_id": str, "date": str, "dollar_value": str})
    src["amount"] = src.dollar_value.map(_cents)
    src["day"] = pd.to_datetime(src.date, format="%Y%m%d")
    assert _table(spark, cfg, "silver_quarantine").count() == 0
    assert _table(spark, cfg, "silver_order_lines").count() == len(src) == 6919  # two purchases of a day: 2 lines

    as_of = "1998-07-01"
    assert cli.main(["gold", *config, "--as-of", as_of, "--only", "gold_rfm_segments", "--no-exports",
                     "--no-dashboard", *_args(cfg)]) == 0
    rfm = _table(spark, cfg, "gold_rfm_segments").toPandas().set_index("customer_id").sort_index()
    by = src.groupby("customer_id")
    assert list(rfm.index) == sorted(src.customer_id.unique())
    assert list(rfm.frequency) == list(by.date.nunique())  # a customer's purchases of one day: one order
    assert list(rfm.monetary) == list(by.amount.sum())
    assert list(rfm.recency_days) == [(pd.Timestamp(as_of) - t).days for t in by.day.max()]
