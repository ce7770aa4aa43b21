"""Orders built from their lines (batch/lines.py), and a customer 360 for a lake without master customers: inline
DataFrames in the silver schemas, answers worked out by hand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from batch import customer_360, lines
from lakehouse.schemas import SILVER


def d(x) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.01"))


def _df(spark, source: str, rows: list[dict]):
    schema = SILVER[source]
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def _line(line_id, order_id, customer, product, qty, amount, day, **kw):
    ts = datetime(2024, 1, day, 10)
    return {"line_id": line_id, "order_id": order_id, "customer_id": customer, "product_id": product,
            "quantity": qty, "line_amount": d(amount), "order_datetime": ts, "order_date": ts.date(),
            "is_return": qty < 0 or amount < 0, "event_id": f"e{line_id}", **kw}


LINES = [
    _line("1", "A", "C1", "P1", 2, 20, 1), _line("2", "A", "C1", "P2", 1, 5.5, 1, payment_method="UPI"),
    _line("3", "B", "C1", "P1", 1, 10, 3, channel="In-Store"),
    _line("4", "C", "C2", "P3", 3, 30, 2),
    _line("5", "X", "C2", "P3", -1, -10, 4),            # a credit note's line: a return of P3
    _line("6", "S", "C3", "P1", 1, 7, 5), _line("7", "S", "C4", "P2", 2, 8, 5),  # one order, two customer ids
    _line("8", "B", "C1", "P1", 2, 20, 3),               # P1 again in order B: one order of P1
]


def test_an_order_is_one_purchase_of_its_sold_lines_per_customer_and_the_lines_win_over_a_transaction(spark):
    txn = _df(spark, "online_transactions", [
        {"transaction_id": "A", "customer_id": "C1", "amount": d(999), "channel": "Online", "status": "Completed"},
        {"transaction_id": "T9", "customer_id": "C9", "amount": d(1), "channel": "Online", "status": "Completed"}])
    got = {(r.transaction_id, r.customer_id): r for r in lines.transaction_rows(txn, _df(spark, "order_lines", LINES))
           .collect()}
    assert sorted(got) == [("A", "C1"), ("B", "C1"), ("C", "C2"), ("S", "C3"), ("S", "C4"), ("T9", "C9")]
    assert (got[("B", "C1")].amount, got[("B", "C1")].quantity) == (d(30), 3)
    a = got[("A", "C1")]  # A's lines, not the transaction's 999; the first line's channel: none -> Online
    assert (a.amount, a.quantity, a.transaction_datetime, a.channel, a.status) == (
        d(25.5), 3, datetime(2024, 1, 1, 10), "Online", "Completed")
    assert (got[("B", "C1")].channel, got[("S", "C3")].amount, got[("S", "C4")].amount) == ("In-Store", d(7), d(8))
    assert (a.transaction_year, a.transaction_month, a.transaction_hour, a.transaction_date) == (
        2024, 1, 10, date(2024, 1, 1))


def test_lines_are_order_rows_per_product_and_returned_lines_refunds_of_their_product(spark):
    orders = _df(spark, "orders", [{"order_id": "A", "customer_id": "C1", "product_id": "P9",
                                    "total_amount": d(999)},
                                   {"order_id": "Z", "customer_id": "C5", "product_id": "P9", "total_amount": d(3)}])
    rows = lines.order_rows(orders, _df(spark, "order_lines", LINES)).collect()
    got = sorted((r.order_id, r.product_id, r.quantity, r.total_amount, r.order_status) for r in rows)
    assert got == [("A", "P1", 2, d(20), "Placed"), ("A", "P2", 1, d(5.5), "Placed"), ("B", "P1", 3, d(30), "Placed"),
                   ("C", "P3", 3, d(30), "Placed"), ("S", "P1", 1, d(7), "Placed"), ("S", "P2", 2, d(8), "Placed"),
                   ("Z", "P9", None, d(3), None)]
    refunds = lines.refund_rows(_df(spark, "refunds", [{"refund_id": "R1", "order_id": "Z", "customer_id": "C5",
                                                        "refund_amount": d(3)}]),
                                _df(spark, "order_lines", LINES)).collect()
    assert sorted((r.refund_id, r.order_id, r.customer_id, r.product_id, r.refund_amount) for r in refunds) == [
        ("R1", "Z", "C5", None, d(3)), ("return:5", "X", "C2", "P3", d(10))]


def test_a_lake_without_masters_gets_every_customer_it_has_seen_with_their_latest_session_attributes(spark):
    master = customer_360.customers_master(_df(spark, "customers", []), _df(spark, "crm_customers", []))
    spend = spark.createDataFrame([("C1",), ("C2",)], "customer_id string")
    logins = _df(spark, "logins", [{"login_id": "L1", "customer_id": "C3"}])
    insights = _df(spark, "customer_insights", [
        {"session_id": "s1", "customer_id": "C2", "session_start": datetime(2024, 1, 1), "full_name": "Old Name",
         "city": "Pune"},
        {"session_id": "s2", "customer_id": "C2", "session_start": datetime(2024, 2, 1), "full_name": "Ann Lee",
         "gender": "Female", "city": "Delhi", "country": "India"}])
    got = {r.customer_id: r for r in customer_360.seen_customers(master, spend, logins, insights).collect()}
    assert sorted(got) == ["C1", "C2", "C3"]
    assert (got["C2"].customer_name, got["C2"].gender, got["C2"].city, got["C2"].country) == (
        "Ann Lee", "Female", "Delhi", "India")
    assert (got["C1"].customer_name, got["C3"].city, got["C3"].email) == (None, None, None)
