"""Source mappings: checked with one-line errors, layered like the rest of the configuration, printed back as TOML;
the replay producer reads a user's file by them (encoding, byte-order mark, delimiter, renamed columns, a composed
id) and the stream parses by them (timestamp formats, booleans, vocabularies, integer-valued float ids)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from lakehouse import config
from lakehouse.errors import C360Error
from lakehouse.infer import timestamp_candidates, timestamp_patterns
from lakehouse.mappings import ParseOptions, Vocabulary, mapping_for
from lakehouse.quality import RunQuality, fix_for
from lakehouse.tables import SOURCES
from producers.replay import Layout, Record, Reject, read_rows
from streaming.silver import UNLISTED, transform_source
from tests.unit.test_silver_sources import FORMATS, transform_bronze_rows


def _load(tmp_path, text: str, name: str = "c.toml"):
    f = tmp_path / name
    f.write_text(text)
    return config.load(f, environ={})


SESSIONS = """
[sources.customer_insights]
file = "sessions/*.csv"
encoding = "cp1252"
delimiter = ";"
id_from = ["CustomerID", "SessionStart"]
timestamp_formats = ["M/d/yyyy H:mm"]
true_values = ["Oui"]
[sources.customer_insights.columns]
campaign = "Campaign Name"
customer_id = "Customer ID"
[sources.customer_insights.vocabularies.payment_method]
values = ["PayPal"]
synonyms = { "COD" = "Cash on Delivery", "pp" = "PayPal" }
closed = true
"""


def test_a_mapping_is_read_with_its_defaults_left_alone(tmp_path):
    cfg = _load(tmp_path, SESSIONS)
    m = mapping_for(cfg.sources, "customer_insights")
    assert (m.file, m.encoding, m.delimiter, m.id_from) == ("sessions/*.csv", "cp1252", ";", ("CustomerID", "SessionStart"))
    assert m.columns == (("campaign", "Campaign Name"), ("customer_id", "Customer ID"))
    # the mapping's formats come first, the defaults after them (adding one format does not restate the others)
    assert m.formats(cfg.stream.timestamp_formats) == ("M/d/yyyy H:mm", *cfg.stream.timestamp_formats)
    assert m.parse == ParseOptions(
        (("payment_method", Vocabulary(("PayPal",), (("COD", "Cash on Delivery"), ("pp", "PayPal")), True)),),
        ("oui",), (), True)
    assert mapping_for(cfg.sources, "orders").file is None  # an unmapped source keeps its built-in mapping


def test_layers_merge_a_mapping_key_by_key_and_config_prints_toml_that_loads_back(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(SESSIONS)
    top = tmp_path / "top.toml"
    top.write_text('[sources.customer_insights]\nreplace_timestamp_formats = true\n'
                   '[sources.customer_insights.columns]\ncampaign = "Campaign"\n')
    cfg = config.load(base, environ={})
    layered = config.load(overrides={"sources": {"customer_insights": {"replace_timestamp_formats": True,
                                                                        "columns": {"campaign": "Campaign"}}}},
                          base=cfg)
    m = mapping_for(layered.sources, "customer_insights")
    assert m.columns == (("campaign", "Campaign"), ("customer_id", "Customer ID"))  # one column changed, one kept
    assert m.formats(cfg.stream.timestamp_formats) == ("M/d/yyyy H:mm",)
    printed = tmp_path / "printed.toml"
    printed.write_text(config.as_toml(layered))
    assert config.load(printed, environ={}) == layered


@pytest.mark.parametrize(("text", "message"), [
    ("[sources.sessions]\nfile = 'x.csv'", "unknown source in [sources.sessions] (c360's sources: customers,"),
    ("[sources.orders]\nfiles = 'x.csv'", "unknown config key sources.orders.files (known: file,"),
    ("[sources.orders.columns]\norder_no = 'Order ID'", "bad config key sources.orders.columns.order_no: orders has"
                                                        " no field order_no (fields: order_id,"),
    ("[sources.orders]\nencoding = 'klingon'", "sources.orders.encoding: 'klingon' is not an encoding Python knows"),
    ("[sources.orders]\ndelimiter = ';;'", "sources.orders.delimiter: one character"),
    ("[sources.orders]\ntimestamp_formats = ['%d/%m/%Y']", "is an strftime format; c360 takes Spark's datetime"),
    ("[sources.orders]\ntimestamp_formats = ['dd/MM/yyyy T']", "uses 'T', not a Spark datetime pattern letter"),
    ("[sources.orders.vocabularies.product_name]\nclosed = true", "bad config key sources.orders.vocabularies."
                                                                  "product_name: orders's enumerated fields are"),
    ("[sources.orders.vocabularies.payment_method]\nsynonyms = { 'pp' = 'PayPal' }",
     "'pp' maps to 'PayPal', which is not one of payment_method's values (add it to "
     "sources.orders.vocabularies.payment_method.values)"),
    ("[sources.orders]\nreplace_timestamp_formats = true", "needs sources.orders.timestamp_formats"),
    ("[sources.orders.columns]\norder_id = 'A'\ncustomer_id = 'A'", "one column of the file is mapped twice"),
])
def test_a_mistake_in_a_mapping_is_one_line_naming_the_source_and_key(tmp_path, text, message):
    with pytest.raises(C360Error) as err:
        _load(tmp_path, text)
    assert message in str(err.value) and "\n" not in str(err.value)


# --- the producer follows the file side ------------------------------------------------------------------------------

def _layout(tmp_path, text: str, source: str) -> Layout:
    return Layout.of(SOURCES[source], mapping_for(_load(tmp_path, text).sources, source))


def test_a_cp1252_semicolon_file_with_renamed_columns_and_no_id_becomes_contract_records(tmp_path):
    f = tmp_path / "s.csv"
    f.write_bytes("SessionStart;Customer ID;FullName;Campaign Name\r\n"
                  "1/2/2019 20:35;13085.0;Ren\u00e9e M\u00fcller;\"Caf\u00e9; ads\"\r\n".encode("cp1252"))
    rows = list(read_rows(f, SOURCES["customer_insights"], "t", layout=_layout(tmp_path, SESSIONS, "customer_insights"),
                          name="s.csv"))
    assert len(rows) == 1 and isinstance(rows[0], Record)
    value = json.loads(rows[0].value)
    assert {k: v for k, v in value.items() if k != "event_id"} == {
        "SessionStart": "1/2/2019 20:35", "CustomerID": "13085.0", "FullName": "Ren\u00e9e M\u00fcller",
        "CampaignSchema": "Caf\u00e9; ads", "SessionID": "13085.0|1/2/2019 20:35"}
    assert (rows[0].key, rows[0].file, rows[0].line) == (b"13085.0", "s.csv", 2)


def test_a_byte_order_mark_is_dropped_and_a_latin1_byte_in_a_utf8_file_is_a_reject_naming_the_fix(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_bytes(b"\xef\xbb\xbfcustomer_id,customer_name\nC1,Ann\nC2,Ren\xe9e\n")
    rows = list(read_rows(f, SOURCES["customers"], "t"))
    assert json.loads(rows[0].value)["customer_id"] == "C1"  # not "\ufeffcustomer_id"
    assert isinstance(rows[1], Reject) and rows[1].line == 3
    assert "set sources.customers.encoding, e.g. cp1252" in rows[1].reason


def test_a_missing_id_column_names_the_mapping_keys_and_a_wrong_delimiter_is_suspected(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("SessionStart;CustomerID\n2019-01-01;1\n")
    with pytest.raises(C360Error) as err:
        list(read_rows(f, SOURCES["customer_insights"], "t"))
    text = str(err.value)
    assert "no column for customer_id (CustomerID): map the file's column with " \
           "sources.customer_insights.columns.customer_id" in text
    assert "is the file delimited by ';'? set sources.customer_insights.delimiter" in text


# --- the stream follows the value side -------------------------------------------------------------------------------

def _insight(**kw):
    base = {"event_id": "e", "SessionID": "S1", "SessionStart": "2019-01-01 02:42", "CustomerID": "1001",
            "PaymentMethod": "Credit Card", "OrderReturn": "FALSE"}
    return {**base, **kw}


def test_open_and_closed_vocabularies_synonyms_booleans_formats_and_float_ids(spark, tmp_path):
    m = mapping_for(_load(tmp_path, SESSIONS).sources, "customer_insights")
    records = [_insight(event_id="a", PaymentMethod="Venmo"),           # open by default: kept, unlisted
               _insight(event_id="b", PaymentMethod="cash on delivery"),  # listed: canonical spelling
               _insight(event_id="c", CustomerID="13085.0", OrderReturn="Oui", SessionStart="12/31/2019 14:05")]
    rows = transform_source(transform_bronze_rows(spark, "customer_insights", records), "customer_insights",
                            timestamp_formats=FORMATS).collect()
    assert [(r.payment_method, r[UNLISTED], r._reject_reason) for r in rows[:2]] == [
        ("Venmo", ["payment_method"], None), ("Cash on Delivery", None, None)]
    assert (rows[2].customer_id, rows[2]._reject_reason) == ("13085", "unparseable_session_start")
    mapped = transform_source(transform_bronze_rows(spark, "customer_insights", [
        *records, _insight(event_id="d", PaymentMethod="COD"), _insight(event_id="e", PaymentMethod="pp")]),
        "customer_insights", timestamp_formats=m.formats(FORMATS), parse=m.parse).collect()
    # the mapping closes payment_method: Venmo is now quarantined, COD and pp are mapped
    assert [(r.payment_method, r._reject_reason) for r in mapped] == [
        (None, "invalid_payment_method"), ("Cash on Delivery", None), ("Credit Card", None),
        ("Cash on Delivery", None), ("PayPal", None)]
    assert (mapped[2].order_return, mapped[2].session_start) == (True, datetime(2019, 12, 31, 14, 5))


# --- inference and the run's report ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "patterns"), [
    ("1/1/2019 2:42", ["d/M/yyyy H:mm", "M/d/yyyy H:mm"]),  # day and month both <= 12: a question
    ("12/31/2019 14:05:33", ["M/d/yyyy H:mm:ss"]),
    ("13/01/19", ["d/M/yy"]),
    ("2019-01-01T02:42:00", ["yyyy-M-d'T'H:mm:ss"]),
    ("1/1/2019 2:42 PM", ["d/M/yyyy h:mm a", "M/d/yyyy h:mm a"]),
    ("yesterday", []),
])
def test_timestamp_candidates(text, patterns):
    assert timestamp_candidates(text) == patterns


def test_timestamp_patterns_of_many_values_decide_day_and_month_or_ask():
    assert timestamp_patterns(["1/1/2019 2:42", "1/13/2019 20:35"]) == (["M/d/yyyy H:mm"], False)
    assert timestamp_patterns(["03/01/19", "04/01/19"]) == (["d/M/yy", "M/d/yy"], True)


def test_patterns_the_inference_proposes_parse_in_spark(spark):
    from pyspark.sql import functions as F

    values = ["1/13/2019 2:42", "12/31/2019 14:05:33", "13/01/19", "2019-01-01T02:42:00", "1/1/2019 2:42 PM"]
    rows = [(v, timestamp_candidates(v)[-1]) for v in values]
    got = spark.createDataFrame(rows, "v string, p string").select(F.expr("try_to_timestamp(v, p)")).collect()
    assert [r[0] for r in got] == [datetime(2019, 1, 13, 2, 42), datetime(2019, 12, 31, 14, 5, 33),
                                   datetime(2019, 1, 13), datetime(2019, 1, 1, 2, 42), datetime(2019, 1, 1, 14, 42)]


def test_the_report_names_counts_reasons_and_the_fix_and_fails_a_source_wholly_quarantined():
    quality = RunQuality()
    record = json.dumps({"SessionStart": "1/13/2019 2:42"})
    quality.add("customer_insights", {"read_rows": 3, "quarantined_rows": 3},
                {"unparseable_session_start": (3, [record])})
    quality.add("orders", {"read_rows": 10, "quarantined_rows": 1, "unlisted_rows": 2},
                {"negative_total_amount": (1, ["{}"])}, {"payment_method": {"Paypal": 2}})
    assert quality.lines() == [
        "customer_insights: 3 of 3 records quarantined (unparseable_session_start 3); fix: add 'M/d/yyyy H:mm' to "
        "sources.customer_insights.timestamp_formats (e.g. '1/13/2019 2:42'); every record is kept in "
        "silver_quarantine with its reason",
        "orders: 1 of 10 records quarantined (negative_total_amount 1); every record is kept in silver_quarantine "
        "with its reason",
        "orders: 2 records kept with values outside c360's lists (payment_method: 'Paypal'); map them with "
        "sources.orders.vocabularies.<field>.synonyms, or close a list with .closed = true"]
    assert quality.failing(1.0) == ["customer_insights"] and quality.failing(0.1) == ["customer_insights", "orders"]


def test_fixes_for_ambiguous_dates_closed_vocabularies_and_missing_columns():
    ambiguous = fix_for("orders", "unparseable_order_datetime", [json.dumps({"order_datetime": "03/01/19"})])
    assert ambiguous == ("order_datetime (e.g. '03/01/19') reads as two different days: say which with "
                         "sources.orders.timestamp_formats = ['d/M/yy'] (day first) or ['M/d/yy'] (month first)")
    assert fix_for("orders", "invalid_order_status", [json.dumps({"order_status": "Lost"})]) == (
        "map 'Lost' to one of order_status's values with sources.orders.vocabularies.order_status.synonyms, or "
        "keep such values: sources.orders.vocabularies.order_status.closed = false")
    assert fix_for("orders", "missing_customer_id", []) == (
        'if your file has customer_id under another name: sources.orders.columns.customer_id = "<its column>"')
    assert fix_for("orders", "negative_total_amount", []) is None
