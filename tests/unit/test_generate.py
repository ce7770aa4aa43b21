import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from lakehouse.errors import C360Error
from lakehouse.tables import GENERATED, SOURCES
from producers.generate import GenerateParams, generate, label_login_anomalies

CANONICAL = "%Y-%m-%d %H:%M:%S"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _csv(out, source):
    return pd.read_csv(out / SOURCES[source].file, dtype=str, keep_default_na=False, on_bad_lines="skip")


def _ts(series):
    return pd.to_datetime(series, format=CANONICAL, errors="coerce")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    summary = generate(out, GenerateParams(scale=1500, seed=7))
    return out, summary


def test_every_source_file_is_written_with_its_contract_header(generated):
    out, summary = generated
    for s in map(SOURCES.get, GENERATED):
        path = out / s.file
        assert path.is_file(), s.file
        first = path.open().readline().strip()
        if s.format == "csv":
            assert first.split(",") == list(s.columns), s.file
        else:
            assert list(json.loads(first)) == list(s.columns), s.file
        assert summary.rows[s.file] > 0
    # seed 002's Customers.csv never shares a folder with seed 000's customers.csv
    assert (out / "360" / "Customers.csv").parent != (out / "customers.csv").parent
    assert summary.events >= 20 * 1500


def test_same_parameters_same_bytes_and_a_new_seed_differs(generated, tmp_path):
    out, _ = generated
    generate(tmp_path / "again", GenerateParams(scale=1500, seed=7))
    for s in map(SOURCES.get, GENERATED):
        assert _digest(out / s.file) == _digest(tmp_path / "again" / s.file), s.file
    generate(tmp_path / "other", GenerateParams(scale=1500, seed=8))
    assert _digest(out / "logins.csv") != _digest(tmp_path / "other" / "logins.csv")


def test_regenerating_replaces_the_previous_output(tmp_path):
    generate(tmp_path, GenerateParams(scale=50))
    (tmp_path / "stale.csv").write_text("x")
    generate(tmp_path, GenerateParams(scale=50))
    assert not (tmp_path / "stale.csv").exists()


def test_tiny_and_clean_data_sets(tmp_path):
    for scale in (1, 2, 7):
        s = generate(tmp_path / str(scale), GenerateParams(scale=scale, dirty_rate=0))
        assert s.rows["customers.csv"] == scale
    clean = generate(tmp_path / "clean", GenerateParams(scale=300, dirty_rate=0)).truth
    assert clean["customers_valid"] == 300 and clean["login_duplicate_rows"] == 0
    labels = pd.read_csv(tmp_path / "clean" / "_labels" / "dirty_records.csv")
    assert labels.empty


def test_customer_files_match_the_reported_truth(generated):
    out, summary = generated
    t = summary.truth
    raw = (out / "customers.csv").read_text().splitlines()[1:]
    assert len(raw) == t["customer_rows"]
    assert sum(1 for line in raw if line.count(",") != 7) == t["customers_malformed_rows"]
    customers = _csv(out, "customers")
    unique = customers.drop_duplicates()
    assert len(customers) - len(unique) == t["customer_duplicate_rows"] - (
        t["customers_malformed_rows"] - t["customers_malformed"])
    assert (unique.registration_datetime == "not a date").sum() == t["customers_bad_registration"]
    logins = _csv(out, "logins")
    assert len(logins) == t["login_rows"]
    assert logins.login_id.duplicated().sum() == t["login_duplicate_rows"]
    assert (logins.drop_duplicates().customer_id == "").sum() == t["logins_missing_customer_id"]
    labels = pd.read_csv(out / "_labels" / "dirty_records.csv")
    assert set(labels.kind) >= {"bad_registration_datetime", "missing_customer_id", "invalid_email", "duplicate_row",
                                "malformed_row", "late_event", "unknown_customer_id", "negative_amount"}


def test_one_consistent_universe(generated):
    out, _ = generated
    customers = _csv(out, "customers")
    customers = customers[customers.customer_id != ""].drop_duplicates("customer_id")
    reg = customers.assign(reg=_ts(customers.registration_datetime)).dropna(subset=["reg"]).set_index("customer_id").reg

    def after_registration(df, col):
        df = df.assign(t=_ts(df[col])).dropna(subset=["t"])
        joined = df.join(reg, on=df.columns[df.columns.str.lower().str.contains("customer")][0], how="inner")
        assert len(joined) > 50
        return (joined.t > joined.reg).mean()

    assert after_registration(_csv(out, "logins"), "login_datetime") == 1.0
    assert after_registration(_csv(out, "orders"), "order_datetime") == 1.0
    # last_login = the latest login event (rows whose timestamps were written in another format aside)
    logins = _csv(out, "logins")
    latest = logins.assign(t=_ts(logins.login_datetime)).groupby("customer_id").t.max()
    c = customers.assign(last=_ts(customers.last_login_datetime)).dropna(subset=["last"]).set_index("customer_id")
    both = c.join(latest, how="inner").dropna()
    assert (both["last"] >= both["t"]).all() and (both["last"] == both["t"]).mean() > 0.95
    never = customers[customers.last_login_datetime.str.strip().isin(["", "NULL", "N/A"])]
    assert len(never) > 0 and not never.customer_id.isin(logins.customer_id).any()


def _clicks(out):
    rows = []
    for line in (out / "clickstream.json").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the truncated lines injected as dirt
    return pd.DataFrame(rows)


def test_refunds_follow_orders_and_carts_precede_purchases(generated):
    out, summary = generated
    orders = _csv(out, "orders").drop_duplicates("order_id").set_index("order_id")
    refunds = _csv(out, "refunds").drop_duplicates("refund_id")
    r = refunds.join(_ts(orders.order_datetime).rename("ordered"), on="order_id", how="inner")
    r = r.assign(t=_ts(r.refund_datetime)).dropna(subset=["t", "ordered"])
    assert len(r) > 10 and (r.t > r.ordered).all()
    clicks = _clicks(out).drop_duplicates("click_id")
    clicks["t"] = _ts(clicks.event_timestamp)
    bought = clicks[clicks.event_type == "purchase"].groupby("session_id").t.min()
    carted = clicks[clicks.event_type == "add_to_cart"].groupby("session_id").t.min()
    both = pd.concat([bought.rename("buy"), carted.rename("cart")], axis=1).dropna()
    assert len(both) > 10 and (both.cart < both.buy).all()
    assert len(bought) == summary.truth["orders"]  # one purchase per order
    # the same orders in seed 002's layout
    online = _csv(out, "online_transactions")
    assert len(online) == summary.truth["orders"] and set(orders.index) <= set(online.OrderID)


def test_shapes_festive_peak_and_evening_logins(tmp_path):
    out = tmp_path / "g"
    generate(out, GenerateParams(scale=3000, dirty_rate=0))
    logins = _csv(out, "logins")
    t = _ts(logins.login_datetime)
    per_month = t.dt.month.value_counts()
    assert per_month[12] > 1.3 * per_month[[3, 4, 5, 6, 7, 8, 9]].mean()
    hours = t.dt.hour.value_counts()
    assert hours[[19, 20, 21, 22]].sum() > hours[[8, 9, 10, 11]].sum() * 1.5
    by_city = logins.assign(h=t.dt.hour).groupby("city").h.agg(lambda h: h.value_counts().idxmax())
    assert by_city.nunique() > 1, "peak hours differ by city"
    orders = _csv(out, "orders")
    spend = pd.to_numeric(orders.total_amount).groupby(orders.customer_id).sum()
    assert spend.quantile(0.99) > 5 * spend.median(), "long-tailed spend"
    subs = orders[orders.is_subscription == "true"].subscription_status.value_counts()
    assert subs["Active"] > 0 and subs["Cancelled"] > 0
    insights = _csv(out, "customer_insights")
    rate = insights.groupby("CampaignSchema").OrderReturn.apply(lambda s: (s == "Yes").mean())
    assert rate.max() - rate.min() > 0.03, "campaigns return at different rates"


def test_anomaly_rules_by_hand():
    p = GenerateParams(burst_logins=3, burst_window_s=60, short_gap_s=2, reactivation_days=10)
    owner = np.array([0, 0, 0, 0, 1, 1, 1])
    ts = np.array([0, 30, 31, 200, 0, 10 * 86400, 10 * 86400 + 1])
    got = label_login_anomalies(owner, ts, p)
    assert got["burst"].tolist() == [False, False, True, False, False, False, False]
    assert got["short_gap"].tolist() == [False, False, True, False, False, False, True]
    assert got["reactivation"].tolist() == [False, False, False, False, False, True, False]


def test_injected_anomalies_are_labelled(generated):
    out, summary = generated
    labels = pd.read_csv(out / "_labels" / "login_anomalies.csv")
    assert set(labels.rule) == {"burst", "short_gap", "reactivation"}
    assert summary.truth["anomalies_burst"] == (labels.rule == "burst").sum() > 0
    logins = _csv(out, "logins").drop_duplicates("login_id").set_index("login_id")
    assert labels.login_id.isin(logins.index).all()
    assert (logins.loc[labels.login_id, "customer_id"].to_numpy() == labels.customer_id.to_numpy()).all()


def test_append_adds_one_new_day(tmp_path):
    params = GenerateParams(scale=800, seed=3)
    first = generate(tmp_path, params)
    before = {f: (tmp_path / f).read_text().count("\n") for f in first.rows}
    day = generate(tmp_path, params, append=True)
    logins = _csv(tmp_path, "logins")
    new_logins = logins.iloc[before["logins.csv"] - 1:]
    assert len(new_logins) == day.rows["logins.csv"] > 0
    assert (_ts(new_logins.login_datetime).dropna().dt.strftime("%Y-%m-%d") == "2025-01-01").all()
    assert not set(new_logins.login_id) & set(logins.iloc[:before["logins.csv"] - 1].login_id)
    assert (tmp_path / "customers.csv").read_text().count("\n") == before["customers.csv"] + day.rows["customers.csv"]
    state = json.loads((tmp_path / "_labels" / "summary.json").read_text())
    assert state["days_appended"] == 1
    with pytest.raises(C360Error, match="parameters of the first run"):
        generate(tmp_path, GenerateParams(scale=801, seed=3), append=True)
    with pytest.raises(C360Error, match="needs an earlier"):
        generate(tmp_path / "empty", params, append=True)


@pytest.mark.parametrize("params", [GenerateParams(scale=0), GenerateParams(dirty_rate=0.9),
                                    GenerateParams(start="2024-01-01", end="2024-01-10"),
                                    GenerateParams(start="yesterday")])
def test_bad_parameters_are_refused(params, tmp_path):
    with pytest.raises(C360Error):
        generate(tmp_path, params)
