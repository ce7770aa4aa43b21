"""Every table's schema, in one place. Silver schemas are the typed contract gold reads."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _schema(*fields: tuple[str, object], nullable: bool = True) -> StructType:
    return StructType([StructField(name, typ, nullable) for name, typ in fields])


# The lineage every silver row and quarantine row carries back to its Kafka record.
LINEAGE = (
    ("_kafka_topic", StringType()),
    ("_kafka_partition", IntegerType()),
    ("_kafka_offset", LongType()),
    ("_kafka_timestamp", TimestampType()),
    ("_source_file", StringType()),
    ("_source_line", IntegerType()),
)

BRONZE = _schema(
    ("key", StringType()),
    ("value", StringType()),
    ("topic", StringType()),
    ("partition", IntegerType()),
    ("offset", LongType()),
    ("kafka_timestamp", TimestampType()),
    ("_source_file", StringType()),
    ("_source_line", IntegerType()),
    ("_ingestion_timestamp", TimestampType()),
    ("_ingestion_date", DateType()),
)

QUARANTINE = _schema(
    ("source", StringType()),
    ("reason", StringType()),
    ("raw_key", StringType()),
    ("raw_value", StringType()),
    *LINEAGE,
    ("_quarantined_at", TimestampType()),
    ("_quarantine_date", DateType()),
)

# The fields each source's JSON value carries (all strings on the wire: the files are text).
RAW_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": ("event_id", "customer_id", "customer_name", "email", "phone", "city",
                  "registration_datetime", "last_login_datetime", "status"),
    "logins": ("event_id", "login_id", "customer_id", "login_datetime", "city", "device"),
}

SILVER: dict[str, StructType] = {
    "customers": _schema(
        ("customer_id", StringType()),
        ("customer_name", StringType()),
        ("email", StringType()),
        ("email_valid", BooleanType()),
        ("email_domain", StringType()),
        ("phone", StringType()),
        ("city", StringType()),
        ("registration_datetime", TimestampType()),
        ("last_login_datetime", TimestampType()),
        ("status", StringType()),
        ("event_id", StringType()),
        *LINEAGE,
        ("_updated_at", TimestampType()),
    ),
    "logins": _schema(
        ("login_id", StringType()),
        ("customer_id", StringType()),
        ("login_datetime", TimestampType()),
        ("login_date", DateType()),
        ("city", StringType()),
        ("device", StringType()),
        ("event_id", StringType()),
        *LINEAGE,
        ("_updated_at", TimestampType()),
    ),
}

SILVER_PARTITIONS: dict[str, list[str]] = {"customers": [], "logins": ["login_date"]}

OPS_STREAM_BATCHES = _schema(
    ("query", StringType()),
    ("source", StringType()),
    ("batch_id", LongType()),
    ("read_rows", LongType()),
    ("quarantined_rows", LongType()),
    ("duplicate_rows", LongType()),
    ("inserted_rows", LongType()),
    ("updated_rows", LongType()),
    ("processed_at", TimestampType()),
)
