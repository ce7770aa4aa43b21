"""Silver for every source: the specs match the input contract, and each rule does what it says."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from decimal import Decimal

import pytest

from lakehouse import config
from lakehouse.schemas import OPTIONAL_RAW_FIELDS, RAW_FIELDS, SILVER, SILVER_SPECS
from lakehouse.tables import GENERATED, SOURCES
from streaming.silver import split_valid, transform_source
from tests.unit.test_transforms import customer, kafka_rows

FORMATS = config.load(environ={}).stream.timestamp_formats


def _silver(spark, source, records):
    parsed = transform_source(transform_bronze_rows(spark, source, records), source, timestamp_formats=FORMATS)
    return parsed.collect()


def transform_bronze_rows(spark, source, records):
    from streaming.bronze import transform_bronze

    return transform_bronze(kafka_rows(spark, records, topic=f"c360.{source}"))


def _types(schema):
    return [(f.name, f.dataType) for f in schema.fields]


def test_every_source_has_a_spec_reading_exactly_its_file_columns():
    assert set(SILVER_SPECS) == set(SOURCES)
    for name, source in SOURCES.items():
        optional = {"StoreID", "Status", *OPTIONAL_RAW_FIELDS.get(name, ())}
        assert set(RAW_FIELDS[name]) - {"event_id"} <= set(source.columns) | optional, name
        assert set(source.columns) <= set(RAW_FIELDS[name]), name  # a contract file has no field to rescue
        assert SILVER[name].fieldNames()[-9:-2] == ["event_id", "_kafka_topic", "_kafka_partition", "_kafka_offset",
                                                    "_kafka_timestamp", "_source_file", "_source_line"]
        for field in SILVER[name].fieldNames():
            assert field == field.lower(), f"{name}.{field} is not snake_case"


def test_clean_generated_rows_of_every_source_are_all_valid(spark, generated):
    for name in GENERATED:
        source = SOURCES[name]
        path = generated / source.file
        if source.format == "jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines()[:20]]
        else:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))[:20]
        assert rows, name
        records = [{"event_id": f"e{i}", **row} for i, row in enumerate(rows)]
        parsed = transform_source(transform_bronze_rows(spark, name, records), name,
                                  timestamp_formats=FORMATS).localCheckpoint()  # parsed once for the three reads
        reasons = [r._reject_reason for r in parsed.select("_reject_reason").collect()]
        assert reasons == [None] * len(records), (name, reasons)
        valid, rejected = split_valid(parsed, name)
        assert _types(valid.schema) == _types(SILVER[name]) and valid.count() == len(records) and rejected.count() == 0


def order(**kw):
    base = {"event_id": "e1", "order_id": "O1", "customer_id": "C1", "product_id": "P1", "product_name": "Lamp",
            "category": "Home", "quantity": "2", "unit_price": "10.50", "total_amount": "21.00",
            "order_datetime": "2024-12-01 10:00:00", "order_status": "delivered", "payment_method": "credit card",
            "is_subscription": "false", "subscription_status": "", "subscription_cancelled_at": ""}
    return {**base, **kw}


def test_orders_are_typed_with_canonical_enums_and_decimal_amounts(spark):
    row = _silver(spark, "orders", [order()])[0]
    assert row._reject_reason is None
    assert (row.order_status, row.payment_method, row.is_subscription) == ("Delivered", "Credit Card", False)
    assert (row.quantity, row.unit_price, row.total_amount) == (2, Decimal("10.50"), Decimal("21.00"))
    assert row.order_datetime == datetime(2024, 12, 1, 10) and row.order_date == date(2024, 12, 1)
    assert row.subscription_status is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"total_amount": "-21.00"}, "negative_total_amount"),
    ({"total_amount": "abc"}, "unparseable_total_amount"),
    ({"total_amount": "N/A"}, "missing_total_amount"),
    ({"order_status": "Lost"}, "invalid_order_status"),
    ({"order_datetime": "31/31/2024"}, "unparseable_order_datetime"),
    ({"customer_id": " "}, "missing_customer_id"),
    ({"quantity": "0"}, "out_of_range_quantity"),
    ({"is_subscription": "maybe"}, "unparseable_is_subscription"),
    ({"subscription_status": "Paused"}, "invalid_subscription_status"),
])
def test_each_broken_rule_quarantines_the_order_with_its_reason(spark, change, reason):
    assert _silver(spark, "orders", [order(**change)])[0]._reject_reason == reason


def test_online_and_instore_transactions_share_one_schema_with_a_channel(spark):
    online = {"event_id": "e1", "OrderID": "O1", "CustomerID": "C1", "ProductID": "P1", "Quantity": "1",
              "Amount": "99.90", "DateTime": "2024-05-06T07:08:09", "PaymentMethod": "UPI", "Status": "Shipped"}
    store = {"event_id": "e2", "TransactionID": "T1", "CustomerID": "C1", "StoreID": "ST1", "ProductID": "P1",
             "Quantity": "3", "Amount": "10", "DateTime": "06-05-2024 07:08:09", "PaymentMethod": "Cash"}
    o = _silver(spark, "online_transactions", [online])[0]
    s = _silver(spark, "instore_transactions", [store])[0]
    assert _types(SILVER["online_transactions"]) == _types(SILVER["instore_transactions"])
    assert (o.transaction_id, o.channel, o.status, o.store_id) == ("O1", "Online", "Shipped", None)
    assert (s.transaction_id, s.channel, s.status, s.store_id) == ("T1", "In-Store", "Completed", "ST1")
    assert (s.transaction_datetime, s.transaction_year, s.transaction_month, s.transaction_hour) == (
        datetime(2024, 5, 6, 7, 8, 9), 2024, 5, 7)


def test_crm_customers_emails_are_validated_and_their_domain_extracted(spark):
    base = {"CustomerID": "C1", "Name": "A", "Phone": "1", "Address": "x", "City": "pune", "State": "MH",
            "Country": "India", "DateOfBirth": "1990-02-03", "Gender": "female", "JoinDate": "2023-01-01"}
    good, bad = _silver(spark, "crm_customers", [{**base, "event_id": "1", "Email": "A.B@Mail.COM"},
                                                 {**base, "event_id": "2", "Email": "not-an-email"}])
    assert (good.email, good.email_valid, good.email_domain, good.city, good.gender) == (
        "a.b@mail.com", True, "mail.com", "Pune", "Female")
    assert good.date_of_birth == date(1990, 2, 3)
    assert (bad._reject_reason, bad.email_valid, bad.email_domain) == (None, False, None)


def test_enrichments_tier_rank_resolution_flags_age_and_income_brackets(spark):
    loyalty = _silver(spark, "loyalty_accounts", [{"event_id": "1", "LoyaltyID": "L1", "CustomerID": "C1",
                                                   "JoinDate": "2024-01-01", "PointsEarned": "10",
                                                   "PointsRedeemed": "0", "PointsBalance": "10",
                                                   "TierLevel": "platinum"}])[0]
    assert (loyalty.tier_level, loyalty.tier_rank) == ("Platinum", 4)
    ticket = _silver(spark, "service_interactions", [{"event_id": "1", "InteractionID": "I1", "CustomerID": "C1",
                                                      "AgentID": "A1", "DateTime": "2024-01-01 10:00:00",
                                                      "Channel": "chat", "IssueType": "Billing",
                                                      "ResolutionStatus": "Escalated", "ResolutionTimeHours": "",
                                                      "SatisfactionScore": "2"}])[0]
    assert (ticket.is_resolved, ticket.is_escalated, ticket.resolution_time_hours) == (False, True, None)
    insight = {"event_id": "1", "SessionID": "S1", "SessionStart": "2024-01-01 10:00:00", "CustomerID": "C1",
               "Age": "24", "MonthlyIncome": "75000", "Cost": "60", "Price": "80", "Quantity": "1",
               "OrderReturn": "No", "Gender": "Male"}
    row = _silver(spark, "customer_insights", [insight])[0]
    assert (row.age_group, row.income_bracket, row.profit_margin, row.order_return) == (
        "18-24", "Upper Middle", Decimal("0.2500"), False)
    # found by the property tests: a margin beyond decimal(9,4) used to fail the whole batch (ANSI cast error)
    wild = _silver(spark, "customer_insights", [{**insight, "Cost": "300077787.99", "Price": "52.42"}])[0]
    assert (wild._reject_reason, wild.profit_margin, wild.cost) == (None, None, Decimal("300077787.99"))


# --- schema evolution (docs/input-contract.md, "Schema evolution") --------------------------------------------------

def _drift(spark, rule):
    from tests.unit.test_transforms import customer

    records = [
        customer(event_id="e1", customer_id="C1"),
        customer(event_id="e2", customer_id="C2", loyalty_tier="Gold", tags=["vip", 2], score=1.5),
        customer(event_id="e3", customer_id="C3", city={"name": "Pune"}),
        customer(event_id="e4", customer_id="C4", city="[Pune]", status=" [x]"),
        customer(event_id="e5", customer_id=["C5"]),
        customer(event_id="e6", customer_id="C6", customer_name=42, phone=True),
    ]
    parsed = transform_source(transform_bronze_rows(spark, "customers", records), "customers",
                              timestamp_formats=FORMATS, unknown_fields_rule=rule)
    valid, rejected = split_valid(parsed, "customers")
    return ({r.customer_id: r for r in valid.collect()}, {json.loads(r.raw_value)["event_id"]: r.reason
                                                          for r in rejected.collect()})


def test_new_fields_are_rescued_as_json_and_changed_types_quarantined(spark):
    valid, rejected = _drift(spark, "rescue")
    assert set(valid) == {"C1", "C2", "C6"}
    assert valid["C1"]._rescued_data is None
    assert json.loads(valid["C2"]._rescued_data) == {"loyalty_tier": "Gold", "tags": '["vip",2]', "score": "1.5"}
    assert valid["C2"].customer_name == "Asha Rao" and valid["C2"].status == "Active"  # known fields as usual
    assert (valid["C6"].customer_name, valid["C6"].phone) == ("42", "true")  # scalars are read as their text
    # an object or array where the contract has a scalar is a changed type; a string that looks like one is not
    assert rejected == {"e3": "type_changed_city", "e4": "invalid_status", "e5": "type_changed_customer_id"}


def test_new_fields_reject_the_record_when_the_rule_is_quarantine(spark):
    valid, rejected = _drift(spark, "quarantine")
    assert set(valid) == {"C1", "C6"}
    assert rejected["e2"] == "unknown_field_loyalty_tier"  # the first unknown field, by name
    assert rejected["e3"] == "type_changed_city"
    with pytest.raises(ValueError, match="unknown_fields_rule"):
        transform_source(transform_bronze_rows(spark, "customers", []), "customers", timestamp_formats=FORMATS,
                         unknown_fields_rule="ignore")


def test_every_silver_schema_ends_with_the_rescued_data_column():
    for name, schema in SILVER.items():
        assert schema.fieldNames()[-1] == "_rescued_data", name


def test_the_expressions_built_once_give_each_batch_its_own_rows_and_time(spark):
    """transform_source and split_valid reuse one set of expressions per source and Spark application (building
    them is thousands of JVM calls): a later batch still gets its own rows, its own ``_updated_at`` and its own
    quarantine, and other formats get expressions of their own."""
    from streaming import silver

    first = customer(customer_id="C1", registration_datetime="2024-01-02 03:04:05")
    second = customer(customer_id="C2", registration_datetime="02-01-2024 03:04:05")
    one = transform_source(transform_bronze_rows(spark, "customers", [first]), "customers", timestamp_formats=FORMATS)
    one_rows = one.collect()
    built = silver._source_columns.cache_info().currsize
    two = transform_source(transform_bronze_rows(spark, "customers", [second, customer(customer_id="")]),
                           "customers", timestamp_formats=FORMATS)
    assert silver._source_columns.cache_info().currsize == built  # reused, not built again
    valid, rejected = split_valid(two, "customers")
    two_rows = two.collect()
    assert [r.customer_id for r in one_rows] == ["C1"] and [r.customer_id for r in two_rows] == ["C2", None]
    assert two_rows[0].registration_datetime == datetime(2024, 1, 2, 3, 4, 5)
    assert two_rows[0]._updated_at > one_rows[0]._updated_at  # evaluated per query, not frozen in the cache
    assert [r.customer_id for r in valid.collect()] == ["C2"]
    assert [r.reason for r in rejected.collect()] == ["missing_customer_id"]
    # only the day-first format: a cache entry of its own, and the same text parses to null
    other = transform_source(transform_bronze_rows(spark, "customers", [first]), "customers",
                             timestamp_formats=["dd-MM-yyyy HH:mm:ss"])
    assert silver._source_columns.cache_info().currsize == built + 1
    assert other.collect()[0]._reject_reason == "unparseable_registration_datetime"
