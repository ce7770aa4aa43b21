import hashlib

import pandas as pd
import pytest

from lakehouse.errors import C360Error
from producers.generate import CANONICAL_TS, GenerateParams, generate


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    summary = generate(out, GenerateParams(scale=800, seed=7))
    return out, summary


def test_same_seed_same_bytes_and_a_new_seed_differs(generated, tmp_path):
    out, _ = generated
    generate(tmp_path / "again", GenerateParams(scale=800, seed=7))
    for f in ("customers.csv", "logins.csv"):
        assert _digest(out / f) == _digest(tmp_path / "again" / f)
    generate(tmp_path / "other", GenerateParams(scale=800, seed=8))
    assert _digest(out / "customers.csv") != _digest(tmp_path / "other" / "customers.csv")


def test_regenerating_replaces_the_previous_output(tmp_path):
    generate(tmp_path, GenerateParams(scale=50))
    (tmp_path / "stale.csv").write_text("x")
    generate(tmp_path, GenerateParams(scale=50))
    assert not (tmp_path / "stale.csv").exists()


def test_files_match_the_reported_truth(generated):
    out, summary = generated
    customers = pd.read_csv(out / "customers.csv", dtype=str, keep_default_na=False)
    logins = pd.read_csv(out / "logins.csv", dtype=str, keep_default_na=False)
    t = summary.truth
    assert len(customers) == t["customer_rows"] == 800 + t["customer_duplicate_rows"]
    assert customers.duplicated().sum() == t["customer_duplicate_rows"]
    unique = customers.drop_duplicates()
    assert (unique.registration_datetime == "not a date").sum() == t["customers_bad_registration"]
    assert len(logins) == t["login_rows"]
    assert logins.login_id.duplicated().sum() == t["login_duplicate_rows"]
    assert (logins.drop_duplicates().customer_id == "").sum() == t["logins_missing_customer_id"]
    labels = pd.read_csv(out / "_labels" / "dirty_records.csv")
    assert set(labels.kind) >= {"bad_registration_datetime", "missing_customer_id", "invalid_email", "duplicate_row"}


def test_one_consistent_universe(generated):
    out, _ = generated
    customers = pd.read_csv(out / "customers.csv", dtype=str, keep_default_na=False).drop_duplicates()
    logins = pd.read_csv(out / "logins.csv", dtype=str, keep_default_na=False).drop_duplicates()
    parse = lambda s: pd.to_datetime(s, format=CANONICAL_TS, errors="coerce")  # noqa: E731
    c = customers.assign(reg=parse(customers.registration_datetime), last=parse(customers.last_login_datetime))
    lg = logins.assign(ts=parse(logins.login_datetime)).dropna(subset=["ts"])
    lg = lg[lg.customer_id != ""]
    joined = lg.merge(c[["customer_id", "reg"]].dropna(), on="customer_id")
    assert len(joined) > 0
    assert (joined.ts > joined.reg).all(), "nobody logs in before registering"
    latest = lg.groupby("customer_id").ts.max()
    check = c.dropna(subset=["last"]).set_index("customer_id").join(latest, how="inner")
    assert len(check) > 100
    assert (check["last"] == check["ts"]).mean() > 0.9  # the rest had their last login event's id dirtied
    never = c[c.last_login_datetime.str.strip().isin(["", "NULL", "N/A"])]
    assert len(never) > 0 and not never.customer_id.isin(lg.customer_id).any()


@pytest.mark.parametrize("params", [GenerateParams(scale=0), GenerateParams(dirty_rate=0.9),
                                    GenerateParams(start="2024-01-01", end="2024-01-10"),
                                    GenerateParams(start="yesterday")])
def test_bad_parameters_are_refused(params, tmp_path):
    with pytest.raises(C360Error):
        generate(tmp_path, params)
