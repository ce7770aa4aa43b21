"""Silver: typed, validated, deduplicated records; every rejected record quarantined with a reason.

The transforms here are pure (DataFrame in, DataFrame out) and shared by the stream and the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType, StructField, StructType

from lakehouse import json_values
from lakehouse.config import UNKNOWN_FIELD_RULES
from lakehouse.mappings import DEFAULT_PARSE, ParseOptions
from lakehouse.schemas import DECIMAL, RAW_FIELDS, SILVER, SILVER_SPECS, TIERS, Field

NULL_TOKENS = ("", "null", "none", "n/a", "na", "nan", "nat", "-")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
RESCUED = "_rescued_data"
UNLISTED = "_unlisted"  # the open enums of a record whose value is outside their list (kept, counted)


def clean_text(col: Column) -> Column:
    """Trimmed text, with blanks and placeholders (``NULL``, ``N/A``...) read as null (seed 000: missing logins)."""
    trimmed = F.trim(col)
    return F.when(F.lower(trimmed).isin(*NULL_TOKENS) | trimmed.isNull(), F.lit(None)).otherwise(trimmed)


def parse_timestamp(col: Column, formats: Sequence[str]) -> Column:
    """The first of ``formats`` that parses the string, or null (seed 000, criterion 1)."""
    return F.coalesce(*[F.try_to_timestamp(col, F.lit(fmt)) for fmt in formats])


def _lineage() -> list[Column]:
    return [
        F.col("topic").alias("_kafka_topic"), F.col("partition").alias("_kafka_partition"),
        F.col("offset").alias("_kafka_offset"), F.col("kafka_timestamp").alias("_kafka_timestamp"),
        F.col("_source_file"), F.col("_source_line"),
    ]


JSON = "_json"  # the record's value as both engines read it (lakehouse.json_values.lenient)


def _json_column(source: str) -> Column:
    schema = StructType([StructField(f, StringType()) for f in RAW_FIELDS[source]])
    return json_values.parse_object(F.col(JSON), schema)


def _reason(*rules: tuple[Column, str | Column]) -> Column:
    """The reason of the first rule that fails, or null when all hold. One flat ``coalesce`` rather than nested
    ``CASE WHEN``s: the nesting of dozens of rules outgrew Spark Connect's message depth (the embedded engine's
    way in), and the embedded engine's optimizer did not finish on it next to the typed columns."""
    return F.coalesce(*[F.when(failed, F.lit(reason) if isinstance(reason, str) else reason)
                        for failed, reason in rules], F.lit(None).cast("string"))


def _contract_fields(source: str) -> Column:
    return F.array(*[F.lit(k) for k in RAW_FIELDS[source]])


def unknown_fields(value: Column, source: str) -> Column:
    """The fields of a JSON object the contract does not name, sorted (empty: none; null: not an object)."""
    known = _contract_fields(source)
    # filter, not array_except: the embedded engine refuses array_except of a nullable and a non-null array
    return F.array_sort(F.filter(json_values.object_keys(value), lambda k: ~F.array_contains(known, k)))


def rescued_data(value: Column, source: str) -> Column:
    """The fields the contract does not name, as a JSON object of their values' text (schema evolution: a
    producer's new field is kept, never dropped and never written into a typed column)."""
    return json_values.without_keys(value, _contract_fields(source))


def type_changed(text: Column, value: Column, raw_name: str) -> Column:
    """True when the field arrived as a JSON object or array: a changed type (the contract's fields are scalars).

    Only values whose text starts like one are parsed again, so the common case costs nothing."""
    looks = F.ltrim(text).startswith("{") | F.ltrim(text).startswith("[")
    return F.coalesce(F.when(looks, json_values.is_container(value, raw_name)), F.lit(False))


def _not_json(value: Column) -> Column:
    return ~json_values.is_object(value)


_TRUE = ("true", "yes", "y", "1", "t")
_FALSE = ("false", "no", "n", "0", "f")


def _parse_field(f: Field, text: Column, timestamp_formats: Sequence[str], parse: ParseOptions = DEFAULT_PARSE
                 ) -> Column:
    """The typed value of one field (null when the text does not parse)."""
    if f.type in ("str",):
        if parse.integer_ids and f.name.endswith("_id"):  # 13085.0 -> 13085: an id a spreadsheet wrote as a float
            return F.regexp_replace(text, r"^(-?[0-9]+)[.]0+$", "$1")
        return text
    if f.type == "city":
        return F.initcap(text)
    if f.type == "email":
        return F.lower(text)
    if f.type in ("int", "long", "double"):
        return text.try_cast({"int": "int", "long": "bigint", "double": "double"}[f.type])
    if f.type == "dec":
        return text.try_cast(DECIMAL)
    if f.type == "ts":
        return parse_timestamp(text, timestamp_formats)
    if f.type == "date":
        return F.to_date(parse_timestamp(text, ("yyyy-MM-dd", *timestamp_formats)))
    if f.type == "bool":
        low = F.lower(text)
        return (F.when(low.isin(*_TRUE, *parse.true_values), F.lit(True))
                .when(low.isin(*_FALSE, *parse.false_values), F.lit(False)))
    if f.type == "enum":
        listed = _listed(f, text, parse)
        return listed if _closed(f, parse) else F.coalesce(listed, text)
    raise ValueError(f"unknown field type {f.type!r}")


def _closed(f: Field, parse: ParseOptions) -> bool:
    vocab = parse.vocabulary(f.name)
    return f.closed if vocab.closed is None else vocab.closed


def _listed(f: Field, text: Column, parse: ParseOptions) -> Column:
    """An enum's value in its canonical spelling when the text (cleaned) is one of its values (built-in or the
    mapping's) or a synonym of one, matched case-insensitively; null otherwise."""
    vocab = parse.vocabulary(f.name)
    values = (*f.values, *vocab.extra)
    canonical = {v.lower(): v for v in values}
    canonical |= {k.lower(): canonical[v.lower()] for k, v in vocab.synonyms}
    return F.try_element_at(F.create_map(*[F.lit(x) for kv in canonical.items() for x in kv]), F.lower(text))


def _checks(f: Field, text: Column, value: Column, parse: ParseOptions = DEFAULT_PARSE
            ) -> list[tuple[Column, str]]:
    """(failed, reason) rules of one field, in the order they are reported (after ``type_changed_<field>``)."""
    rules = []
    if f.required:
        rules.append((text.isNull(), f"missing_{f.name}"))
    if f.type in ("int", "long", "double", "dec", "ts", "date", "bool"):
        rules.append((text.isNotNull() & value.isNull(), f"unparseable_{f.name}"))
    elif f.type == "enum" and _closed(f, parse):
        rules.append((text.isNotNull() & value.isNull(), f"invalid_{f.name}"))
    if f.min is not None:
        rules.append((value < F.lit(f.min), f"negative_{f.name}" if f.min == 0 else f"out_of_range_{f.name}"))
    return rules


def _derived(table: str, c: dict[str, Column]) -> list[Column]:
    """Seed 002's silver enrichments (date parts, tier rank, resolution flags, age and income brackets)."""
    if table == "silver_transactions":
        ts = c["transaction_datetime"]
        return [F.year(ts).alias("transaction_year"), F.month(ts).alias("transaction_month"),
                F.hour(ts).alias("transaction_hour")]
    if table == "silver_order_lines":
        return [((c["quantity"] < 0) | (c["line_amount"] < 0)).alias("is_return")]
    if table == "silver_loyalty_accounts":
        rank = F.create_map(*[F.lit(x) for i, t in enumerate(TIERS, 1) for x in (t, i)])
        return [F.try_element_at(rank, c["tier_level"]).cast("int").alias("tier_rank")]
    if table == "silver_service_interactions":
        return [(c["resolution_status"] == "Resolved").alias("is_resolved"),
                (c["resolution_status"] == "Escalated").alias("is_escalated")]
    if table == "silver_customer_insights":
        age, income, price = c["age"], c["monthly_income"], c["price"]
        age_group = (F.when(age < 25, "18-24").when(age < 35, "25-34").when(age < 45, "35-44")
                     .when(age < 55, "45-54").when(age.isNotNull(), "55+"))
        bracket = (F.when(income < 25000, "Low").when(income < 75000, "Middle").when(income < 150000, "Upper Middle")
                   .when(income.isNotNull(), "High"))
        # null when the price is 0 or the margin does not fit decimal(9,4) (a cost > 100,000x the price): a
        # derived column must never fail the batch (a cast error would stop the stream on one record)
        margin = F.when(price > 0, ((price - c["cost"]) / price).try_cast(DecimalType(9, 4)))
        return [age_group.alias("age_group"), bracket.alias("income_bracket"), margin.alias("profit_margin")]
    return []


def transform_source(bronze: DataFrame, source: str, *, timestamp_formats: Sequence[str],
                     unknown_fields_rule: str = "rescue", parse: ParseOptions = DEFAULT_PARSE) -> DataFrame:
    """Bronze records of ``source`` -> typed silver rows plus ``_reject_reason`` (null for valid rows).

    Built from the source's spec (``lakehouse.schemas.SILVER_SPECS``, documented in docs/input-contract.md):
    string timestamps in any configured format become timestamps (seed 000, criterion 1), amounts decimals,
    enums are checked and written in their canonical spelling, emails lower-cased and validated with the domain
    extracted (seed 002; an invalid email is kept, flagged ``email_valid = false``), columns snake_case, online
    and in-store transactions share one schema with a ``channel`` (seed 002). Blank values and placeholders
    (``NULL``, ``N/A``...) are missing values (seed 000: missing logins). A record is rejected, with the reason of
    the first failed check, when it is not a JSON object, misses a required field, has a value that does not
    parse, a value outside a closed enum's list, or a negative amount. An open enum keeps a value outside its list
    as written and lists the field in ``_unlisted`` (counted). ``parse`` carries the source mapping's vocabularies,
    boolean spellings and id clean-up (lakehouse/mappings.py).

    Schema drift (docs/input-contract.md, "Schema evolution"): a field that arrives as a JSON object or array is
    a changed type and rejects the record (``type_changed_<field>``); numbers and booleans are read as their
    text. Fields the contract does not name are kept as a JSON object in ``_rescued_data`` (and counted) when
    ``unknown_fields_rule`` is ``rescue``, or reject the record (``unknown_field_<name>``) when it is
    ``quarantine``.

    The expressions are built once per source and Spark application (:func:`_source_columns`) and reused by
    every batch: building them takes thousands of calls into the JVM, about a second per source.
    """
    if unknown_fields_rule not in UNKNOWN_FIELD_RULES:
        raise ValueError(f"unknown_fields_rule must be one of {UNKNOWN_FIELD_RULES}, not {unknown_fields_rule!r}")
    raw, texts, values, out = _source_columns(source, tuple(timestamp_formats), unknown_fields_rule, parse)
    return (bronze.withColumn(JSON, json_values.lenient(F.col("value"))).withColumn("raw", raw)
            .withColumns(texts).withColumns(values).select(*out))


def _app_id() -> str:
    """The running Spark application (cached expressions are JVM objects: they must not outlive it)."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    return sc.applicationId if sc is not None else ""


def _per_application(build):
    """Memoize ``build`` per Spark application: its Column expressions are unresolved, so one set serves every
    batch and session of the application, and a new application (a restarted JVM) builds its own."""
    cached = functools.lru_cache(maxsize=256)(lambda app_id, *args: build(*args))

    @functools.wraps(build)
    def wrapper(*args):
        return cached(_app_id(), *args)

    wrapper.cache_info = cached.cache_info
    return wrapper


def _text(f: Field) -> str:
    return f"_text_{f.name}"


def _value(f: Field) -> str:
    return f"_value_{f.name}"


@_per_application
def _source_columns(source: str, timestamp_formats: tuple[str, ...], unknown_fields_rule: str,
                    parse: ParseOptions = DEFAULT_PARSE
                    ) -> tuple[Column, dict[str, Column], dict[str, Column], tuple[Column, ...]]:
    """The parsed JSON (``raw``), each field's cleaned text and typed value (columns of their own, two
    projections), and the output columns of :func:`transform_source`, which refer to those by name. Why the
    stages: a field's text is read by its value, its checks and its vocabulary test, and a timestamp's value by
    every format tried, so written inline each cleaned text appeared 5-15 times in the plan, and the embedded
    engine spent most of a small batch planning (docs/performance.md)."""
    spec = SILVER_SPECS[source]
    texts = {_text(f): clean_text(F.col(f"raw.{f.raw}")) for f in spec.fields}
    values = {_value(f): _parse_field(f, F.col(_text(f)), timestamp_formats, parse) for f in spec.fields}
    typed: dict[str, Column] = {f.name: F.col(_value(f)) for f in spec.fields}
    rules: list[tuple[Column, str | Column]] = [(_not_json(F.col(JSON)), "invalid_json")]
    extra = unknown_fields(F.col(JSON), source)
    if unknown_fields_rule == "quarantine":
        rules.append((F.coalesce(F.size(extra) > 0, F.lit(False)), F.concat(F.lit("unknown_field_"), extra[0])))
    out: list[Column] = []
    unlisted: list[Column] = []
    for f in spec.fields:
        sent = F.col(f"raw.{f.raw}")
        text, value = F.col(_text(f)), typed[f.name]
        rules.append((type_changed(sent, F.col(JSON), f.raw), f"type_changed_{f.name}"))
        rules += _checks(f, text, value, parse)
        if f.type == "enum" and not _closed(f, parse):
            unlisted.append(F.when(text.isNotNull() & _listed(f, text, parse).isNull(), F.lit(f.name)))
        out.append(value.alias(f.name))
        if f.type == "email":
            valid = F.coalesce(value.rlike(EMAIL_PATTERN), F.lit(False))
            out += [valid.alias("email_valid"), F.when(valid, F.substring_index(value, "@", -1)).alias("email_domain")]
    out += [F.lit(v).alias(c) for c, v in spec.constants]
    if spec.event_date:
        out.append(F.to_date(typed[spec.event_time]).alias(spec.event_date))
    if spec.table == "silver_transactions":  # in-store sales are completed at the till
        out[[i for i, f in enumerate(spec.fields) if f.name == "status"][0]] = F.coalesce(
            typed["status"], F.lit("Completed")).alias("status")
    out += _derived(spec.table, typed)
    return _json_column(source), texts, values, (
        *out,
        F.col("raw.event_id").alias("event_id"),
        *_lineage(),
        F.current_timestamp().alias("_updated_at"),
        F.when(F.size(extra) > 0, rescued_data(F.col(JSON), source)).alias(RESCUED),
        F.when(F.size(extra) > 0, extra).alias("_unknown_fields"),
        _names_or_null(unlisted).alias(UNLISTED),
        _reason(*rules).alias("_reject_reason"),
        F.col("key"), F.col("value"),
    )


def _names_or_null(names: list[Column]) -> Column:
    """The non-null names as an array, or null when there are none."""
    if not names:
        return F.lit(None).cast("array<string>")
    present = F.array_compact(F.array(*names))  # not filter(): a lambda keeps the projection out of codegen
    return F.when(F.size(present) > 0, present)


def transform_customers(bronze: DataFrame, *, timestamp_formats: Sequence[str]) -> DataFrame:
    """Seed 000 customer records (see :func:`transform_source`): status Active/Inactive/Blocked; a blank or
    placeholder last login means "never logged in" (null)."""
    return transform_source(bronze, "customers", timestamp_formats=timestamp_formats)


def transform_logins(bronze: DataFrame, *, timestamp_formats: Sequence[str]) -> DataFrame:
    """Seed 000 login events (criteria 1 and 11-13 need every login). A login of a customer silver does not
    know (yet) is kept: customers and logins arrive on separate streams."""
    return transform_source(bronze, "logins", timestamp_formats=timestamp_formats)


def split_valid(parsed: DataFrame, source: str) -> tuple[DataFrame, DataFrame]:
    """(valid rows in the silver schema, rejected rows in the quarantine schema)."""
    valid, rejected = _split_columns(source)
    return (parsed.where(F.col("_reject_reason").isNull()).select(*valid),
            parsed.where(F.col("_reject_reason").isNotNull()).select(*rejected))


@_per_application
def _split_columns(source: str) -> tuple[tuple[Column, ...], tuple[Column, ...]]:
    """The columns of :func:`split_valid`'s two outputs."""
    # cast to the schema's types, so that every source of a shared table writes the same columns
    valid = tuple(F.col(f.name).cast(f.dataType) for f in SILVER[source].fields)
    now = F.current_timestamp()
    rejected = (
        F.lit(source).alias("source"),
        F.col("_reject_reason").alias("reason"),
        F.col("key").alias("raw_key"),
        F.col("value").alias("raw_value"),
        *[F.col(c) for c in ("_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp",
                             "_source_file", "_source_line")],
        now.alias("_quarantined_at"),
        F.to_date(now).alias("_quarantine_date"),
    )
    return valid, rejected


REPLACES = "_replaces_in_batch"


PICKED = "_picked"


def mark_latest_per_key(df: DataFrame, key: str, event_id: str = "event_id", among: Column | None = None
                        ) -> DataFrame:
    """``df`` with ``_picked``: whether the row is the one that applying the batch's rows one at a time, in Kafka
    order (timestamp, then offset: records of one customer share a partition), with the silver MERGE's rule would
    leave for its key. A row replaces the current one when its event id differs; a repeat of the current event id
    changes nothing. So the row picked is the first of the last run of equal event ids. Column
    ``_replaces_in_batch`` says whether another version came before it in this batch; if so, it replaces the
    table's row even when that row has the same event id (that version was replaced in between). The result then
    does not depend on where batches were cut. Only the rows where ``among`` holds (all when None) take part; the
    others are never picked. Flags rather than filters, so that one pass over a batch can carry every record and
    its pick (:mod:`streaming.embedded`)."""
    order = [F.col("_kafka_timestamp"), F.col("_kafka_partition"), F.col("_kafka_offset")]
    group = [F.col(key)] if among is None else [F.col(key), F.coalesce(among, F.lit(False))]
    w = Window.partitionBy(*group).orderBy(*order)
    has_prev = F.lag(F.lit(True)).over(w).isNotNull()
    same_as_prev = F.lag(event_id).over(w).eqNullSafe(F.col(event_id))
    kept = ~F.col(REPLACES) | ~same_as_prev  # not a repeat of the version just before it
    last_kept = F.max(F.when(F.col("_kept"), F.struct(*order))).over(Window.partitionBy(*group))
    picked = F.col("_kept") & (last_kept == F.struct(*order))
    if among is not None:
        picked = picked & F.coalesce(among, F.lit(False))
    return (df.withColumn(REPLACES, has_prev).withColumn("_kept", kept)
            .withColumn(PICKED, picked).drop("_kept"))


def mark_first_per_key(df: DataFrame, key: str, among: Column | None = None) -> DataFrame:
    """``df`` with ``_picked``: whether the row is its key's first seen (events are immutable: a repeat is a
    duplicate); only the rows where ``among`` holds take part."""
    group = [F.col(key)] if among is None else [F.col(key), F.coalesce(among, F.lit(False))]
    w = Window.partitionBy(*group).orderBy(F.col("_kafka_timestamp"), F.col("_kafka_partition"),
                                           F.col("_kafka_offset"))
    picked = F.row_number().over(w) == 1
    if among is not None:
        picked = picked & F.coalesce(among, F.lit(False))
    return df.withColumn(PICKED, picked)


def latest_per_key(df: DataFrame, key: str, event_id: str = "event_id") -> DataFrame:
    """One row per key: the row :func:`mark_latest_per_key` picks (with ``_replaces_in_batch``)."""
    return mark_latest_per_key(df, key, event_id).where(F.col(PICKED)).drop(PICKED)


def first_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per key: the first seen (:func:`mark_first_per_key`)."""
    return mark_first_per_key(df, key).where(F.col(PICKED)).drop(PICKED)
