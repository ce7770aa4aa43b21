import json

import pytest

from lakehouse.errors import C360Error
from lakehouse.tables import SOURCES
from producers.replay import Reject, event_id, read_rows, to_record

HEADER = ["customer_id", "customer_name", "email", "phone", "city", "registration_datetime",
          "last_login_datetime", "status"]
ROW = ["C0000001", "Asha Rao", "asha@x.com", "+91 1", "Pune", "2024-01-02 10:00:00", "", "Active"]


def test_row_to_record_key_value_headers():
    rec = to_record(SOURCES["customers"], "c360.customers", "customers.csv", 2, HEADER, ROW)
    assert rec.topic == "c360.customers"
    assert rec.key == b"C0000001"
    value = json.loads(rec.value)
    assert value["customer_id"] == "C0000001" and value["last_login_datetime"] == ""
    assert value["event_id"] == event_id("customers", ROW)
    assert rec.headers == [("source_file", b"customers.csv"), ("source_line", b"2")]


def test_event_id_is_stable_and_content_based():
    assert event_id("customers", ROW) == event_id("customers", list(ROW))
    assert event_id("customers", ROW) != event_id("customers", [*ROW[:-1], "Blocked"])
    assert event_id("customers", ROW) != event_id("logins", ROW)
    # field boundaries matter: ["ab", "c"] is not ["a", "bc"]
    assert event_id("s", ["ab", "c"]) != event_id("s", ["a", "bc"])


def test_blank_customer_id_gives_no_key():
    rec = to_record(SOURCES["customers"], "t", "customers.csv", 3, HEADER, ["  ", *ROW[1:]])
    assert rec.key is None


def test_unreadable_rows_are_rejected_with_reason(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_text(",".join(HEADER) + "\n" + ",".join(ROW) + "\nC2,too,few\n" + ",".join(ROW) + ",extra\n")
    items = list(read_rows(f, SOURCES["customers"], "t"))
    assert [type(i).__name__ for i in items] == ["Record", "Reject", "Reject"]
    assert items[1] == Reject("customers.csv", 3, "expected 8 fields, found 3", "C2,too,few")
    assert items[2].line == 4 and "found 9" in items[2].reason


def test_header_without_key_column_is_a_clear_error(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_text("id,name\n1,x\n")
    with pytest.raises(C360Error, match="header lacks column"):
        list(read_rows(f, SOURCES["customers"], "t"))
