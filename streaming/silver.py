"""Silver: typed, validated, deduplicated records; every rejected record quarantined with a reason.

The transforms here are pure (DataFrame in, DataFrame out) and shared by the stream and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.schemas import RAW_FIELDS, SILVER

NULL_TOKENS = ("", "null", "none", "n/a", "na", "nan", "nat", "-")
STATUSES = ("Active", "Inactive", "Blocked")  # seed 000: account status
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
CORRUPT = "_corrupt_record"


def clean_text(col: Column) -> Column:
    """Trimmed text, with blanks and placeholders (``NULL``, ``N/A``...) read as null (seed 000: missing logins)."""
    trimmed = F.trim(col)
    return F.when(F.lower(trimmed).isin(*NULL_TOKENS) | trimmed.isNull(), F.lit(None)).otherwise(trimmed)


def parse_timestamp(col: Column, formats: Sequence[str]) -> Column:
    """The first of ``formats`` that parses the string, or null (seed 000, criterion 1)."""
    return F.coalesce(*[F.try_to_timestamp(col, F.lit(fmt)) for fmt in formats])


def _lineage(df: DataFrame) -> list[Column]:
    return [
        F.col("topic").alias("_kafka_topic"), F.col("partition").alias("_kafka_partition"),
        F.col("offset").alias("_kafka_offset"), F.col("kafka_timestamp").alias("_kafka_timestamp"),
        F.col("_source_file"), F.col("_source_line"),
    ]


def parse_json(bronze: DataFrame, source: str) -> DataFrame:
    """Bronze rows with their JSON value parsed into ``raw.*`` (all text) and ``raw._corrupt_record``."""
    schema = StructType([StructField(f, StringType()) for f in RAW_FIELDS[source]] + [StructField(CORRUPT, StringType())])
    parsed = F.from_json(F.col("value"), schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    return bronze.withColumn("raw", parsed)


def _reason(*rules: tuple[Column, str]) -> Column:
    """The reason of the first rule that fails, or null when all hold."""
    expr = F.lit(None).cast("string")
    for failed, reason in reversed(rules):
        expr = F.when(failed, F.lit(reason)).otherwise(expr)
    return expr


def _not_json(value: Column) -> Column:
    return F.col("raw").isNull() | F.col(f"raw.{CORRUPT}").isNotNull() | value.isNull()


def transform_customers(bronze: DataFrame, *, timestamp_formats: Sequence[str]) -> DataFrame:
    """Bronze customer records -> typed silver rows plus ``_reject_reason`` (null for valid rows).

    Rules (seeds 000 and 002): string timestamps in any configured format become timestamps; a blank or
    placeholder last login means "never logged in" (null); status must be Active, Inactive or Blocked
    (case-insensitive); emails are lower-cased and validated, the domain extracted (an invalid email is kept,
    flagged ``email_valid = false``). Rejected: unparseable JSON, missing customer_id, missing or unparseable
    registration time, unparseable (non-blank) last login, unknown status.
    """
    df = parse_json(bronze, "customers")
    raw = {f: clean_text(F.col(f"raw.{f}")) for f in RAW_FIELDS["customers"]}
    registered = parse_timestamp(raw["registration_datetime"], timestamp_formats)
    last_login = parse_timestamp(raw["last_login_datetime"], timestamp_formats)
    status = F.initcap(raw["status"])
    email = F.lower(raw["email"])
    email_valid = F.coalesce(email.rlike(EMAIL_PATTERN), F.lit(False))
    reason = _reason(
        (_not_json(F.col("value")), "invalid_json"),
        (raw["customer_id"].isNull(), "missing_customer_id"),
        (raw["registration_datetime"].isNull(), "missing_registration_datetime"),
        (registered.isNull(), "unparseable_registration_datetime"),
        (raw["last_login_datetime"].isNotNull() & last_login.isNull(), "unparseable_last_login_datetime"),
        (~F.coalesce(status.isin(*STATUSES), F.lit(False)), "invalid_status"),
    )
    return df.select(
        raw["customer_id"].alias("customer_id"),
        raw["customer_name"].alias("customer_name"),
        email.alias("email"),
        email_valid.alias("email_valid"),
        F.when(email_valid, F.substring_index(email, "@", -1)).alias("email_domain"),
        raw["phone"].alias("phone"),
        F.initcap(raw["city"]).alias("city"),
        registered.alias("registration_datetime"),
        last_login.alias("last_login_datetime"),
        status.alias("status"),
        raw["event_id"].alias("event_id"),
        *_lineage(df),
        F.current_timestamp().alias("_updated_at"),
        reason.alias("_reject_reason"),
        "key", "value",
    )


def transform_logins(bronze: DataFrame, *, timestamp_formats: Sequence[str]) -> DataFrame:
    """Bronze login events -> typed silver rows plus ``_reject_reason`` (null for valid rows).

    Rules (seed 000, criteria 1 and 11-13 need every login): login_id and customer_id are required and the
    login time must parse. A login of a customer silver does not know (yet) is kept: customers and logins
    arrive on separate streams.
    """
    df = parse_json(bronze, "logins")
    raw = {f: clean_text(F.col(f"raw.{f}")) for f in RAW_FIELDS["logins"]}
    login_ts = parse_timestamp(raw["login_datetime"], timestamp_formats)
    reason = _reason(
        (_not_json(F.col("value")), "invalid_json"),
        (raw["login_id"].isNull(), "missing_login_id"),
        (raw["customer_id"].isNull(), "missing_customer_id"),
        (raw["login_datetime"].isNull(), "missing_login_datetime"),
        (login_ts.isNull(), "unparseable_login_datetime"),
    )
    return df.select(
        raw["login_id"].alias("login_id"),
        raw["customer_id"].alias("customer_id"),
        login_ts.alias("login_datetime"),
        F.to_date(login_ts).alias("login_date"),
        F.initcap(raw["city"]).alias("city"),
        F.lower(raw["device"]).alias("device"),
        raw["event_id"].alias("event_id"),
        *_lineage(df),
        F.current_timestamp().alias("_updated_at"),
        reason.alias("_reject_reason"),
        "key", "value",
    )


TRANSFORMS = {"customers": transform_customers, "logins": transform_logins}


def split_valid(parsed: DataFrame, source: str) -> tuple[DataFrame, DataFrame]:
    """(valid rows in the silver schema, rejected rows in the quarantine schema)."""
    valid = parsed.where(F.col("_reject_reason").isNull()).select(*SILVER[source].fieldNames())
    now = F.current_timestamp()
    rejected = parsed.where(F.col("_reject_reason").isNotNull()).select(
        F.lit(source).alias("source"),
        F.col("_reject_reason").alias("reason"),
        F.col("key").alias("raw_key"),
        F.col("value").alias("raw_value"),
        "_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_source_file", "_source_line",
        now.alias("_quarantined_at"),
        F.to_date(now).alias("_quarantine_date"),
    )
    return valid, rejected


def latest_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per key: the newest version, by Kafka timestamp then offset (records of one customer share a
    partition, so the offset orders them)."""
    w = Window.partitionBy(key).orderBy(F.col("_kafka_timestamp").desc(), F.col("_kafka_partition").desc(),
                                        F.col("_kafka_offset").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def first_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per key: the first seen (events are immutable: a repeat is a duplicate)."""
    w = Window.partitionBy(key).orderBy(F.col("_kafka_timestamp"), F.col("_kafka_partition"), F.col("_kafka_offset"))
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
