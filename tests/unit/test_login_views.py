"""The login views an ingest batch keeps with the embedded writer: the anomalies a batch's logins make visible on
arrival, and the city x hour counts of the windows they fall in. Both are read from a real Delta table of logins,
on Spark in this process and on the embedded engine (the parse worker), and compared with answers worked out
independently: the in-order rule evaluation (:func:`streaming.anomalies.evaluate`, pure Python) over every login,
and pandas' counts."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse import config
from lakehouse.lake_writes import OpenTables
from streaming import parse_worker
from streaming.anomalies import ARRIVAL_RULES, AnomalyRules, CustomerState, arrival_anomalies, evaluate
from streaming.city_hour import recount_windows
from streaming.outputs import silver_logins_near

RULES = AnomalyRules(burst_logins=4, burst_window_s=60, short_gap_s=2, reactivation_days=90)
T0 = datetime(2024, 3, 1, 9, 40, tzinfo=timezone.utc)


def _logins(seed: int = 7) -> pd.DataFrame:
    """Logins of a few customers: bursts, gaps of a second or two, ties in time, quiet spells, missing cities."""
    rnd = random.Random(seed)
    rows = []
    for c in range(6):
        t = T0 + timedelta(seconds=rnd.randint(0, 600))
        for i in range(rnd.randint(8, 30)):
            t += timedelta(seconds=rnd.choice([0, 1, 2, 3, 5, 20, 90, 1800]))
            rows.append({"login_id": f"c{c}-{i}", "customer_id": f"c{c}", "login_datetime": t,
                         "city": rnd.choice(["Pune", "Lyon", None])})
    # the window's edge: the fourth login exactly burst_window_s after the first is a burst (inclusive)
    rows += [{"login_id": f"edge-{i}", "customer_id": "edge", "login_datetime": T0 + timedelta(seconds=20 * i),
              "city": "Pune"} for i in range(4)]
    # a customer of a month before, whose logins no batch here brings
    rows += [{"login_id": f"old-{i}", "customer_id": "old", "login_datetime": T0 - timedelta(days=30, seconds=i),
              "city": "Lyon"} for i in range(5)]
    return pd.DataFrame(rows)


def _in_order(logins: pd.DataFrame) -> dict[tuple[str, str], float | None]:
    """(login_id, rule) -> gap_s of every burst and short gap the in-order evaluation finds among all logins."""
    out = {}
    for _, group in logins.groupby("customer_id"):
        state = CustomerState.empty()
        for r in group.itertuples():
            state.add(int(r.login_datetime.timestamp() * 1000), r.login_id, -1)
        for f in evaluate(state, RULES, 2**62):
            if f["rule"] in ARRIVAL_RULES:
                out[(f["login_id"], f["rule"])] = f["gap_s"]
    return out


def _arrow(logins: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(logins, preserve_index=False).cast(pa.schema(
        [("login_id", pa.string()), ("customer_id", pa.string()), ("login_datetime", pa.timestamp("us", "UTC")),
         ("city", pa.string())]))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The logins in a Delta table (silver_logins' schema), and a batch's arrived logins: a late one among them."""
    from deltalake import write_deltalake

    logins = _logins()
    path = str(tmp_path_factory.mktemp("views") / "silver_logins")
    table = _arrow(logins)
    write_deltalake(path, table.append_column("login_date", pc.cast(table["login_datetime"], pa.date32())),
                    partition_by=["login_date"])
    # the batch: each customer's last five logins, and one early login of customer c2 arriving late
    recent = logins[logins.customer_id != "old"]
    arrived = pd.concat([recent.groupby("customer_id").tail(5), logins[logins.login_id == "c2-3"]])
    return path, logins, arrived


def _expected(logins: pd.DataFrame, arrived: pd.DataFrame) -> dict[tuple[str, str], float | None]:
    """The in-order findings for the logins an arrival can change: each customer's, from its earliest arrived."""
    first = arrived.groupby("customer_id").login_datetime.min()
    keep = set(logins[logins.login_datetime >= logins.customer_id.map(first)].login_id)
    return {k: v for k, v in _in_order(logins).items() if k[0] in keep}


def _found(table: pa.Table) -> dict[tuple[str, str], float | None]:
    rows = table.to_pylist()
    assert all(r["severity"] == ("high" if r["rule"] == "burst" else "medium") for r in rows)
    return {(r["login_id"], r["rule"]): r["gap_s"] for r in rows}


def _counts(logins: pd.DataFrame, arrived: pd.DataFrame) -> dict[tuple[str, datetime], int]:
    def windows(df):
        return list(zip(df.city.fillna("Unknown"), df.login_datetime.dt.floor("h"), strict=True))

    touched = set(windows(arrived))
    counts = pd.Series(windows(logins)).value_counts()
    return {k: int(n) for k, n in counts.items() if k in touched}


def _counted(table: pa.Table) -> dict[tuple[str, datetime], int]:
    rows = table.to_pylist()
    assert all(r["hour"] == r["window_start"].hour and r["window_end"] - r["window_start"] == timedelta(hours=1)
               for r in rows)
    return {(r["city"], pd.Timestamp(r["window_start"]).tz_localize("UTC") if r["window_start"].tzinfo is None
             else pd.Timestamp(r["window_start"])): r["login_count"] for r in rows}


def test_arrival_anomalies_on_spark_are_the_in_order_findings_the_batch_can_change(spark, lake):
    path, logins, arrived = lake
    expected = _expected(logins, arrived)
    assert {r for _, r in expected} == set(ARRIVAL_RULES) and len(expected) > 10  # the data holds both rules
    assert ("edge-3", "burst") in expected
    assert ("c2-3", "short_gap") in expected or ("c2-4", "short_gap") in expected  # the late login matters
    got = arrival_anomalies(spark.read.format("delta").load(path), spark.createDataFrame(arrived), RULES)
    assert _found(got.toArrow()) == expected


def test_city_hour_recount_on_spark_equals_pandas(spark, lake):
    path, logins, arrived = lake
    got = recount_windows(spark.read.format("delta").load(path), spark.createDataFrame(arrived))
    expected = _counts(logins, arrived)
    assert len(expected) > 3
    assert _counted(got.toArrow()) == expected


def test_the_parse_worker_gives_the_same_views(lake):
    path, logins, arrived = lake
    worker = parse_worker.shared(config.load())
    silver = silver_logins_near(OpenTables(), path, _arrow(arrived), RULES.burst_window_s)
    assert set(silver["customer_id"].to_pylist()) == set(logins.customer_id) - {"old"}  # the batch's days only
    views = worker.login_views(RULES, _arrow(arrived), silver)
    assert _found(views["anomalies"]) == _expected(logins, arrived)
    assert _counted(views["city_hour"]) == _counts(logins, arrived)
