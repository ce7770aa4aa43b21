"""Pure transforms on small in-memory DataFrames (real Spark, no Kafka)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from batch.activity import ActivityParams, login_summary, transform_customer_activity
from lakehouse import config
from lakehouse.schemas import SILVER
from streaming.bronze import transform_bronze
from streaming.silver import (
    clean_text,
    first_per_key,
    latest_per_key,
    parse_timestamp,
    split_valid,
    transform_customers,
    transform_logins,
)

FORMATS = config.load(environ={}).stream.timestamp_formats
KAFKA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
    StructField("headers", ArrayType(StructType([StructField("key", StringType()),
                                                 StructField("value", BinaryType())]))),
])
T0 = datetime(2025, 1, 1, 12, 0, 0)


def kafka_rows(spark, values, topic="c360.customers", start_offset=0, ts=T0):
    """Rows shaped like the Spark Kafka source's, with the replay producer's headers."""
    rows = []
    for i, v in enumerate(values):
        raw = v if isinstance(v, str) else json.dumps(v)
        rows.append((b"k", raw.encode(), topic, 0, start_offset + i, ts, 0,
                     [("source_file", b"customers.csv"), ("source_line", str(i + 2).encode())]))
    return spark.createDataFrame(rows, KAFKA)


def customer(**kw):
    base = {"event_id": "e1", "customer_id": "C1", "customer_name": "Asha Rao", "email": "Asha@Example.COM",
            "phone": "+91 1", "city": "pune", "registration_datetime": "2024-01-02 10:00:00",
            "last_login_datetime": "", "status": "active"}
    return {**base, **kw}


def test_bronze_keeps_raw_value_and_lineage(spark):
    bronze = transform_bronze(kafka_rows(spark, [customer()], start_offset=41)).first()
    assert json.loads(bronze.value)["customer_id"] == "C1"
    assert (bronze.key, bronze.topic, bronze.offset, bronze.kafka_timestamp) == ("k", "c360.customers", 41, T0)
    assert (bronze._source_file, bronze._source_line) == ("customers.csv", 2)
    assert bronze._ingestion_date == bronze._ingestion_timestamp.date()


def test_bronze_without_headers_gives_null_lineage(spark):
    df = kafka_rows(spark, [customer()]).withColumn("headers", F.array().cast(KAFKA["headers"].dataType))
    row = transform_bronze(df).first()
    assert row._source_file is None and row._source_line is None


def test_bronze_takes_the_first_header_of_a_name_and_is_one_generated_stage(spark):
    headers = KAFKA["headers"].dataType
    df = kafka_rows(spark, [customer(), customer()]).withColumn("headers", F.when(
        F.col("offset") == 0, F.array(*[F.struct(F.lit(k).alias("key"), F.lit(v).cast("binary").alias("value"))
                                        for k, v in (("other", "x"), ("source_file", "a.csv"), ("source_file", "b.csv"),
                                                     ("source_line", "7"))])).cast(headers))
    bronze = transform_bronze(df)
    rows = bronze.orderBy("offset").collect()
    assert [(r._source_file, r._source_line) for r in rows] == [("a.csv", 7), (None, None)]  # second: headers null
    plan = bronze._jdf.queryExecution().executedPlan().toString()
    projects = [line for line in plan.splitlines() if "Project [" in line]
    assert projects and all(line.lstrip(":- +").startswith("*(") for line in projects), plan


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-05 14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("2024-03-05T14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("05-03-2024 14:22", datetime(2024, 3, 5, 14, 22)),
    ("2024/03/05 14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("2024-03-05", datetime(2024, 3, 5)),
    ("not a date", None),
    ("2024-13-45 10:00:00", None),
])
def test_parse_timestamp_tries_each_format(spark, text, expected):
    got = spark.range(1).select(parse_timestamp(F.lit(text), FORMATS).alias("t")).first().t
    assert got == expected


def test_clean_text_reads_placeholders_as_null(spark):
    df = spark.createDataFrame([(v,) for v in ["", " ", "NULL", "n/a", "None", " x "]], "v string")
    assert [r.c for r in df.select(clean_text(F.col("v")).alias("c")).collect()] == [None] * 5 + ["x"]


def test_customers_typed_validated_and_quarantined_with_reasons(spark):
    values = [
        customer(),                                                              # valid, never logged in
        customer(event_id="e2", customer_id="C2", email="no-at-sign.com", last_login_datetime="NULL"),
        customer(event_id="e3", customer_id=""),
        customer(event_id="e4", customer_id="C4", registration_datetime="not a date"),
        customer(event_id="e5", customer_id="C5", registration_datetime=" "),
        customer(event_id="e6", customer_id="C6", last_login_datetime="yesterday"),
        customer(event_id="e7", customer_id="C7", status="Deleted"),
        "{not json",
        customer(event_id="e9", customer_id="C9", last_login_datetime="05-03-2024 14:22"),
    ]
    parsed = transform_customers(transform_bronze(kafka_rows(spark, values)), timestamp_formats=FORMATS)
    valid, rejected = split_valid(parsed, "customers")
    assert valid.schema.fieldNames() == SILVER["customers"].fieldNames()
    got = {r.customer_id: r for r in valid.collect()}
    assert set(got) == {"C1", "C2", "C9"}
    c1 = got["C1"]
    assert (c1.email, c1.email_valid, c1.email_domain, c1.city, c1.status) == (
        "asha@example.com", True, "example.com", "Pune", "Active")
    assert c1.registration_datetime == datetime(2024, 1, 2, 10) and c1.last_login_datetime is None
    assert (got["C2"].email_valid, got["C2"].email_domain, got["C2"].last_login_datetime) == (False, None, None)
    assert got["C9"].last_login_datetime == datetime(2024, 3, 5, 14, 22)
    reasons = sorted((r.reason, r._kafka_offset) for r in rejected.collect())
    assert reasons == [
        ("invalid_json", 7), ("invalid_status", 6), ("missing_customer_id", 2),
        ("missing_registration_datetime", 4), ("unparseable_last_login_datetime", 5),
        ("unparseable_registration_datetime", 3),
    ]
    assert rejected.where("raw_value = '{not json'").count() == 1


def test_logins_validated(spark):
    login = {"event_id": "e", "login_id": "L1", "customer_id": "C1", "login_datetime": "2024-12-24 19:05:00",
             "city": "pune", "device": "IOS"}
    values = [login, {**login, "login_id": "L2", "customer_id": ""}, {**login, "login_id": "L3", "login_datetime": "x"},
              {**login, "login_id": ""}]
    parsed = transform_logins(transform_bronze(kafka_rows(spark, values, "c360.logins")), timestamp_formats=FORMATS)
    valid, rejected = split_valid(parsed, "logins")
    row = valid.first()
    assert (valid.count(), row.login_id, row.login_date, row.device, row.city) == (1, "L1", date(2024, 12, 24), "ios", "Pune")
    assert sorted(r.reason for r in rejected.collect()) == [
        "missing_customer_id", "missing_login_id", "unparseable_login_datetime"]


def test_latest_per_key_keeps_newest_and_first_per_key_keeps_first(spark):
    rows = [("C1", "old", "e1", T0, 0, 5), ("C1", "new", "e2", T0, 0, 9),
            ("C1", "older-but-late", "e0", datetime(2024, 1, 1), 0, 12), ("C2", "only", "e3", T0, 1, 3)]
    df = spark.createDataFrame(rows, "id string, v string, event_id string, _kafka_timestamp timestamp, "
                                     "_kafka_partition int, _kafka_offset long")
    assert {r.id: r.v for r in latest_per_key(df, "id").collect()} == {"C1": "new", "C2": "only"}
    assert {r.id: r.v for r in first_per_key(df, "id").collect()} == {"C1": "older-but-late", "C2": "only"}


def test_latest_per_key_picks_what_one_row_at_a_time_would_leave_wherever_batches_are_cut(spark):
    # A repeat of the current version changes nothing: of A, A' (same event id) the first stays. A, B, A'': A''
    # replaces B, so it is kept, and marked to replace even a table row holding A.
    rows = [("C1", "A", "e1", 1), ("C1", "A-again", "e1", 2),
            ("C2", "A", "e1", 1), ("C2", "B", "e2", 2), ("C2", "A-resent", "e1", 3), ("C2", "A-resent-twice", "e1", 4),
            ("C3", "A", "e1", 7)]
    df = spark.createDataFrame([(k, v, e, T0, 0, o) for k, v, e, o in rows],
                               "id string, v string, event_id string, _kafka_timestamp timestamp, "
                               "_kafka_partition int, _kafka_offset long")
    got = {r.id: (r.v, r._replaces_in_batch) for r in latest_per_key(df, "id").collect()}
    assert got == {"C1": ("A", False), "C2": ("A-resent", True), "C3": ("A", False)}


ACT_CUSTOMERS = "customer_id string, customer_name string, city string, status string, " \
                "registration_datetime timestamp, last_login_datetime timestamp"
ACT_LOGINS = "customer_id string, login_datetime timestamp"


def test_customer_activity_rules_by_hand(spark):
    as_of = date(2025, 1, 31)
    reg = datetime(2024, 12, 1, 9, 30)
    customers = spark.createDataFrame([
        ("A", "a", "Pune", "Active", reg, datetime(2025, 1, 2, 10)),    # 29 days -> Active
        ("B", "b", "Pune", "Active", reg, datetime(2025, 1, 1, 10)),    # 30 days -> At Risk
        ("C", "c", "Pune", "Inactive", reg, datetime(2024, 11, 3, 10)),  # 89 days -> At Risk (login before reg: dirt)
        ("D", "d", "Pune", "Active", reg, datetime(2024, 11, 2, 10)),   # 90 days -> Churned
        ("E", "e", "Pune", "Blocked", reg, None),                       # never logged in
        ("F", "f", "Pune", "Active", reg, None),                        # record says never, events say otherwise
    ], ACT_CUSTOMERS)
    logins = spark.createDataFrame([
        ("A", datetime(2025, 1, 2, 10)), ("A", datetime(2024, 12, 20, 18, 0)), ("A", datetime(2024, 12, 21, 17, 59)),
        ("F", datetime(2025, 1, 30, 23, 15)),
    ], ACT_LOGINS)
    params = ActivityParams(as_of=as_of)
    out = transform_customer_activity(customers, login_summary(logins, params), params=params)
    got = {r.customer_id: r for r in out.collect()}
    assert {k: r.churn_status for k, r in got.items()} == {
        "A": "Active", "B": "At Risk", "C": "At Risk", "D": "Churned", "E": "Never Logged In", "F": "Active"}
    assert {k: r.days_since_last_login for k, r in got.items()} == {
        "A": 29, "B": 30, "C": 89, "D": 90, "E": None, "F": 1}
    a = got["A"]
    assert (a.login_count, a.evening_login_count, a.logs_in_evenings) == (3, 1, True)  # 18:00 counts, 17:59 not
    assert (a.registration_date, a.registration_hour, a.registration_year) == (date(2024, 12, 1), 9, 2024)
    assert a.days_registration_to_last_login == 32
    e = got["E"]
    assert (e.never_logged_in, e.last_login_label, e.login_count, e.logs_in_evenings) == (
        True, "Never Logged In", 0, False)
    assert got["F"].last_login_label == "2025-01-30 23:15:00" and not got["F"].never_logged_in
    assert [r.customer_id for r in sorted(got.values(), key=lambda r: r.last_login_rank)] == ["F", "A", "B", "C", "D", "E"]


def test_customer_activity_thresholds_come_from_params(spark):
    customers = spark.createDataFrame([("A", "a", "Pune", "Active", T0, datetime(2025, 1, 1))], ACT_CUSTOMERS)
    logins = spark.createDataFrame([], ACT_LOGINS)
    params = ActivityParams(as_of=date(2025, 1, 11), at_risk_days=7, churned_days=10, never_label="—")
    expected = spark.createDataFrame([("A", "Churned")], "customer_id string, churn_status string")
    assertDataFrameEqual(transform_customer_activity(customers, login_summary(logins, params), params=params)
                         .select("customer_id", "churn_status"), expected)
