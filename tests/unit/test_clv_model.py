"""The CLV models: conventions by hand, parameter recovery from simulated data, and ``c360 clv fit``."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from batch import clv_cli, clv_model
from batch.clv import model_summary
from batch.spend import purchase_summary
from c360 import cli
from lakehouse.errors import C360Error

TRUE_BG = clv_model.BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=0)  # CDNOW's fit, in weeks
TRUE_GG = clv_model.GammaGamma(p=6.25, q=3.74, v=15.44, log_likelihood=0)


def _close(got: float, want: float, rel: float) -> bool:
    return abs(got - want) <= rel * want


def test_summary_conventions_by_hand():
    tx = pd.DataFrame({"c": ["A", "A", "A", "A", "B", "A"],
                       "t": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-08", "2024-01-15",
                                            "2024-01-29", "2024-02-01"], format="mixed"),
                       "amt": [10, 5, 20, 40, 7, 1000]})
    s = clv_model.summarize(tx, customer_col="c", date_col="t", amount_col="amt",
                            observation_end=pd.Timestamp("2024-01-29"), time_unit="W").set_index("customer")
    # A: same-day purchases are one; repeats on Jan 8 and 15 -> frequency 2, recency 14 d, age 28 d, mean 30
    assert s.loc["A"].tolist() == [2.0, 2.0, 4.0, 30.0]
    assert s.loc["B"].tolist() == [0.0, 0.0, 0.0, 0.0]
    days = clv_model.summarize(tx, customer_col="c", date_col="t", amount_col="amt", time_unit="D")
    assert days.set_index("customer").loc["A"].tolist() == [3.0, 31.0, 31.0, 1060 / 3]  # end = last day, Feb 1


def test_spark_and_pandas_summaries_agree(spark):
    tx = clv_model.simulate_transactions(clv_model.BgNbd(0.5, 20, 0.8, 2.4, 0), TRUE_GG, 300,
                                         observation_end="2024-06-30", max_age_days=200, seed=3)
    want = clv_model.summarize(tx, customer_col="customer", date_col="date", amount_col="amount",
                               observation_end=pd.Timestamp("2024-06-30"), time_unit="W")
    sdf = spark.createDataFrame(tx.assign(status="Completed", channel="Online").rename(
        columns={"customer": "customer_id", "date": "transaction_datetime"}).assign(
        amount=tx["amount"].round(2)))
    end = date(2024, 6, 30)
    got = model_summary(purchase_summary(sdf, observation_end=end), observation_end=end, time_unit="W").toPandas()
    got = got.rename(columns={"customer_id": "customer"}).sort_values("customer").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want.sort_values("customer").reset_index(drop=True), check_exact=False,
                                  rtol=1e-9)


def test_fits_recover_the_parameters_the_data_was_simulated_from():
    s = clv_model.simulate(TRUE_BG, TRUE_GG, 20_000, T=pd.Series(range(20_000)).mod(33).add(20).to_numpy(), seed=3)
    bg = clv_model.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    gg = clv_model.fit_gamma_gamma(s["frequency"], s["monetary"])
    for got, want in [(bg.r, TRUE_BG.r), (bg.alpha, TRUE_BG.alpha), (bg.a, TRUE_BG.a), (bg.b, TRUE_BG.b),
                      (gg.p, TRUE_GG.p), (gg.q, TRUE_GG.q), (gg.v, TRUE_GG.v)]:
        assert _close(got, want, 0.15), (got, want)
    # the fitted likelihood beats the true parameters' (it is the maximum) but not by much
    true_ll = clv_model.bgnbd_log_likelihood(TRUE_BG.r, TRUE_BG.alpha, TRUE_BG.a, TRUE_BG.b, s["frequency"],
                                             s["recency"], s["T"]).sum()
    assert true_ll <= bg.log_likelihood <= true_ll + 20


def test_conditional_expectation_matches_the_papers_worked_example():
    # Fader, Hardie & Lee (2005), section 5: CDNOW parameters; a customer with x = 2, t_x = 30.43, T = 38.86
    # weeks is expected to make 1.226 purchases in the next 39 weeks
    got = clv_model.expected_purchases(TRUE_BG, 39, [2.0], [30.43], [38.86])
    assert got[0] == pytest.approx(1.226, abs=5e-4)
    assert clv_model.p_alive(TRUE_BG, [0.0], [0.0], [38.86])[0] == 1.0


def test_predictions_are_consistent():
    s = pd.DataFrame({"frequency": [0.0, 5.0, 5.0, 5.0], "recency": [0.0, 30.0, 50.0, 50.0],
                      "T": [52.0, 52.0, 52.0, 52.0], "monetary": [0.0, 20.0, 20.0, 200.0]})
    out = clv_model.predicted_clv(TRUE_BG, TRUE_GG, s, months=36, annual_discount=0.1, time_unit="W")
    assert out["p_alive"][0] == 1.0  # BG/NBD: no repeat purchase, no chance to have dropped out
    assert out["p_alive"][1] < out["p_alive"][2]  # the same purchases, the later last one: more likely alive
    assert out["expected_purchases"][1] < out["expected_purchases"][2]
    assert out["expected_value"][3] > out["expected_value"][2]  # spends more per purchase
    assert out["expected_value"][0] == pytest.approx(TRUE_GG.mean_value)
    undiscounted = clv_model.predicted_clv(TRUE_BG, TRUE_GG, s, months=36, annual_discount=0.0, time_unit="W")
    assert (undiscounted["predicted_clv"] > out["predicted_clv"]).all()
    assert undiscounted["predicted_clv"].to_numpy() == pytest.approx(
        (undiscounted["expected_purchases"] * undiscounted["expected_value"]).to_numpy())


def test_clv_fit_cli_recovers_parameters_from_a_transaction_file(tmp_path, capsys):
    daily = clv_model.BgNbd(TRUE_BG.r, TRUE_BG.alpha * 7, TRUE_BG.a, TRUE_BG.b, 0)  # the same process, in days
    tx = clv_model.simulate_transactions(daily, TRUE_GG, 20_000, observation_end="2024-12-31", max_age_days=273,
                                         seed=11)
    tx.assign(date=tx["date"].dt.strftime("%d/%m/%Y")).rename(columns={"customer": "cust", "amount": "amt"}).to_csv(
        tmp_path / "tx.csv", index=False)
    args = ["clv", "fit", "--transactions", str(tmp_path / "tx.csv"), "--customer-col", "cust", "--date-col", "date",
            "--amount-col", "amt", "--date-format", "%d/%m/%Y", "--observation-end", "2024-12-31"]
    assert cli.main([*args, "--time-unit", "W"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["customers"], out["observation_end"], out["time_unit"]) == (20_000, "2024-12-31", "W")
    bg, gg = out["bg_nbd"], out["gamma_gamma"]
    for key, want in [("r", TRUE_BG.r), ("alpha", TRUE_BG.alpha), ("a", TRUE_BG.a), ("b", TRUE_BG.b)]:
        assert _close(bg[key], want, 0.2), (key, bg[key], want)
    for key, want in [("p", TRUE_GG.p), ("q", TRUE_GG.q), ("v", TRUE_GG.v)]:
        assert _close(gg[key], want, 0.2), (key, gg[key], want)
    assert cli.main([*args, "--time-unit", "D"]) == 0  # days: alpha scales by 7, the rest is the same model
    days = json.loads(capsys.readouterr().out)["bg_nbd"]
    assert days["alpha"] == pytest.approx(bg["alpha"] * 7, rel=1e-3) and days["r"] == pytest.approx(bg["r"], rel=1e-3)


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("cust,date,amt\nA,2024-01-01,10\n", ["--amount-col", "price"], "has no column 'price'"),
    ("cust,date,amt\nA,yesterday,10\n", [], "value(s) of 'date' are not dates"),
    ("cust,date,amt\nA,2024-01-01,ten\n", [], "value(s) of 'amt' are not numbers"),
    ("cust,date,amt\nA,2024-01-01,10\n", ["--date-format", "%d/%m/%Y"], "not dates in format '%d/%m/%Y'"),
    ("cust,date,amt\nA,2024-01-01,10\n", [], "needs at least 2 customers"),
    ("cust,date,amt\nA,2024-01-01,10\nB,05-01-2024,10\n", [], "1 date(s) in 'date' read as different days"),
])
def test_clv_fit_cli_errors_are_one_line(tmp_path, capsys, content, extra, message):
    (tmp_path / "t.csv").write_text(content)
    args = ["clv", "fit", "--transactions", str(tmp_path / "t.csv"), "--customer-col", "cust", "--date-col", "date",
            "--amount-col", "amt"]
    if "--amount-col" in extra:
        args = args[:-2]
    assert cli.main([*args, *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert ("--skip-bad-rows" in err) == ("value(s) of" in err)  # the way past a bad value is said


def test_clv_fit_cli_refuses_a_malformed_line_unless_told_to_skip_and_count_bad_rows(tmp_path, capsys):
    (tmp_path / "t.csv").write_text(
        "cust,date,amt\n"
        "A,2024-01-01,10\nA,2024-02-01,20\n"  # A: one repeat purchase of 20, 31 days on
        "B,2024-01-15,5\nB,2024-01-25,7\n"
        "B,2024-01-20,5,extra\n"  # malformed: four fields
        ",2024-01-03,7\n"  # no customer
        "C,someday,9\n"  # bad date
        "C,2024-03-01,nine\n"  # bad amount
        "D,never,nothing\n"  # both bad: counted once, as a bad date
    )
    args = ["clv", "fit", "--transactions", str(tmp_path / "t.csv"), "--customer-col", "cust", "--date-col", "date",
            "--amount-col", "amt", "--observation-end", "2024-03-31"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "Expected 3 fields in line 6, saw 4" in err and "--skip-bad-rows" in err and len(err.splitlines()) == 1
    assert cli.main([*args, "--skip-bad-rows"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == {"read": 9, "malformed": 1, "no_customer_or_date": 1, "bad_date": 2, "bad_amount": 1,
                           "used": 4}
    assert (out["customers"], out["repeat_customers"]) == (2, 2)  # A and B; C and D had no readable row


def test_dates_are_read_the_same_whatever_day_of_the_month_they_fall_on():
    raw = pd.Series(["2024-05-01 10:00:00", "2024-05-02T23:30:00-05:00", "2024-05-03T01:00:00Z", "20240504",
                     "13-01-2024 10:00:00", "Jan 5 2024", "soon"])
    got = clv_cli.parse_dates(raw, [], "d")
    assert list(got[:6]) == [pd.Timestamp(t) for t in ("2024-05-01 10:00", "2024-05-02 23:30", "2024-05-03 01:00",
                                                        "2024-05-04", "2024-01-13 10:00", "2024-01-05")]
    assert pd.isna(got[6])  # unreadable: left to the caller (an error, or skipped and counted)
    # 05-01-2024 is the 5th of January day-first, the 1st of May month-first: refused, not guessed
    with pytest.raises(C360Error, match=r"1 date\(s\) in 'd' read as different days .*'05-01-2024 10:00:00'"):
        clv_cli.parse_dates(pd.Series(["2024-05-01 10:00:00", "05-01-2024 10:00:00"]), [], "d")
    formats = ["%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S"]  # tried in order; nothing else is inferred
    got = clv_cli.parse_dates(pd.Series(["2024-05-01 10:00:00", "05-01-2024 10:00:00", "2024/05/01"]), formats, "d")
    assert list(got[:2]) == [pd.Timestamp("2024-05-01 10:00"), pd.Timestamp("2024-01-05 10:00")] and pd.isna(got[2])


def test_clv_fit_cli_missing_file(capsys):
    assert cli.main(["clv", "fit", "--transactions", "/nonexistent.csv", "--customer-col", "c", "--date-col", "d",
                     "--amount-col", "a"]) == 1
    assert "transactions file not found" in capsys.readouterr().err


def test_quantity_times_price_is_the_amount_and_a_fit_without_dropout_says_so(tmp_path, capsys):
    # 60 customers who buy every 5-14 days until the end: nobody drops out, which the fit can only put on a bound
    rng = pd.Series(range(60))
    rows = [(f"C{c}", pd.Timestamp("2024-01-01") + pd.Timedelta(days=d), q, round(p, 2))
            for c, start, step in zip(rng, rng.mul(7).mod(60), rng.mod(10).add(5), strict=True)
            for d, q, p in zip(range(start, 365, step), [1, 2, 3] * 200, [9.99, 4.5, 20.25, 7.0] * 150,
                               strict=False)]
    lines = pd.DataFrame(rows, columns=["cust", "day", "qty", "price"])
    lines.assign(amount=lines.qty * lines.price).to_csv(tmp_path / "tx.csv", index=False)
    base = ["clv", "fit", "--transactions", str(tmp_path / "tx.csv"), "--customer-col", "cust", "--date-col", "day"]
    assert cli.main([*base, "--amount-col", "amount"]) == 0
    by_amount = json.loads(capsys.readouterr().out)
    assert cli.main([*base, "--quantity-col", "qty", "--price-col", "price"]) == 0
    out = capsys.readouterr()
    by_lines = json.loads(out.out)
    assert by_lines == by_amount
    dropout = by_lines["bg_nbd"]["a"] / (by_lines["bg_nbd"]["a"] + by_lines["bg_nbd"]["b"])
    assert dropout < clv_model.NO_DROPOUT
    assert by_lines["warnings"][0].startswith("BG/NBD: no dropout observed")
    assert "c360: warning: BG/NBD: no dropout observed" in out.err and "P(alive) ~ 1 for everyone" in out.err
    assert cli.main([*base, "--quantity-col", "qty"]) == 1
    assert capsys.readouterr().err.strip() == (
        "c360: error: give --amount-col, or --quantity-col with --price-col (amount = quantity x price)")


def test_a_fit_inside_its_bounds_has_no_warnings():
    s = clv_model.simulate(TRUE_BG, TRUE_GG, 5_000, T=pd.Series(range(5_000)).mod(33).add(20).to_numpy(), seed=5)
    report = clv_model.fit_report(s, observation_end="2024-12-31", time_unit="W")
    assert report["warnings"] == []
