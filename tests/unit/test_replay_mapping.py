import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lakehouse.errors import C360Error
from lakehouse.tables import SOURCES
from producers.replay import (
    PACE_S,
    InputFile,
    Layout,
    Positions,
    Record,
    Reject,
    _interleaved,
    _sleep_polling,
    event_id,
    json_to_record,
    parse_event_time,
    read_rows,
    to_record,
)

HEADER = list(SOURCES["customers"].columns)
ROW = ["C0000001", "Asha Rao", "asha@x.com", "+91 1", "Pune", "2024-01-02 10:00:00", "", "Active"]


def test_row_to_record_key_value_headers():
    rec = to_record(SOURCES["customers"], "c360.customers", "customers.csv", 2, HEADER, ROW)
    assert rec.topic == "c360.customers"
    assert rec.key == b"C0000001"
    value = json.loads(rec.value)
    assert value["customer_id"] == "C0000001" and value["last_login_datetime"] == ""
    assert value["event_id"] == event_id("customers", ROW)
    assert rec.headers == [("source_file", b"customers.csv"), ("source_line", b"2")]
    assert (rec.file, rec.line, rec.event_time) == ("customers.csv", 2, None)


def test_event_time_of_timed_sources():
    header = list(SOURCES["logins"].columns)
    rec = to_record(SOURCES["logins"], "t", "logins.csv", 5, header,
                    ["L1", "C1", "05-03-2024 14:22:10", "Pune", "web"], with_time=True)
    assert rec.event_time == datetime(2024, 3, 5, 14, 22, 10, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-05 14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("2024-03-05T14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("2024/03/05 14:22:10", datetime(2024, 3, 5, 14, 22, 10)),
    ("05-03-2024 14:22", datetime(2024, 3, 5, 14, 22)),
    ("not a date", None), ("", None), (None, None),
])
def test_parse_event_time(text, expected):
    got = parse_event_time(text)
    assert got == (expected.replace(tzinfo=timezone.utc).timestamp() if expected else None)


def test_event_id_is_stable_and_content_based():
    assert event_id("customers", ROW) == event_id("customers", list(ROW))
    assert event_id("customers", ROW) != event_id("customers", [*ROW[:-1], "Blocked"])
    assert event_id("customers", ROW) != event_id("logins", ROW)
    assert event_id("s", ["ab", "c"]) != event_id("s", ["a", "bc"])  # field boundaries matter


def test_blank_customer_id_gives_no_key():
    rec = to_record(SOURCES["customers"], "t", "customers.csv", 3, HEADER, ["  ", *ROW[1:]])
    assert rec.key is None


def test_json_lines_map_to_records_and_bad_lines_to_rejects():
    src = SOURCES["clickstream"]
    line = '{"click_id":"E1","customer_id":"C7","event_timestamp":"2024-12-24 19:00:00","event_type":"purchase"}'
    rec = json_to_record(src, "c360.clickstream", src.file, 4, line, with_time=True)
    assert isinstance(rec, Record) and rec.key == b"C7"
    value = json.loads(rec.value)
    assert value["event_type"] == "purchase" and value["event_id"] == event_id("clickstream", [line])
    assert rec.event_time == datetime(2024, 12, 24, 19, tzinfo=timezone.utc).timestamp()
    bad = json_to_record(src, "t", src.file, 9, '{"click_id":"E1","sess', False)
    assert isinstance(bad, Reject) and bad.line == 9 and bad.reason.startswith("invalid JSON")
    assert json_to_record(src, "t", src.file, 10, "[1, 2]").reason == "not a JSON object"


def test_unreadable_rows_are_rejected_with_reason(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_text(",".join(HEADER) + "\n" + ",".join(ROW) + "\nC2,too,few\n" + ",".join(ROW) + ",extra\n")
    items = list(read_rows(f, SOURCES["customers"], "t"))
    assert [type(i).__name__ for i in items] == ["Record", "Reject", "Reject"]
    assert items[1] == Reject("customers.csv", 3, "expected 8 fields, found 3", "C2,too,few")
    assert items[2].line == 4 and "found 9" in items[2].reason
    assert [type(i).__name__ for i in read_rows(f, SOURCES["customers"], "t", skip_to=3)] == ["Reject"]


def test_header_without_key_column_is_a_clear_error(tmp_path):
    f = tmp_path / "customers.csv"
    f.write_text("id,name\n1,x\n")
    with pytest.raises(C360Error, match=r"no column for customer_id \(customer_id\): map the file's column with "
                                        r"sources.customers.columns.customer_id"):
        list(read_rows(f, SOURCES["customers"], "t"))


def test_positions_advance_only_over_contiguous_acknowledgements(tmp_path):
    pos = Positions(tmp_path / "p.json", {"a.csv": 1})
    for line in (2, 3, 4, 5):
        pos.sent("a.csv", line)
    pos.finished("a.csv", 3)
    pos.finished("a.csv", 2)
    pos.finished("a.csv", 5)  # 4 is still in flight
    pos.advance()
    assert pos.done == {"a.csv": 3}
    pos.finished("a.csv", 4)
    pos.save(Path(tmp_path))
    assert Positions.load(tmp_path / "p.json", tmp_path).done == {"a.csv": 5}
    with pytest.raises(C360Error, match="nothing to resume"):
        Positions.load(tmp_path / "missing.json", tmp_path)


def test_a_pause_polls_the_producer_without_busy_waiting():
    """--rate pauses in steps of PACE_S, each a poll with a timeout of at least a millisecond (the client rounds
    its timeout down to whole milliseconds: shorter polls return at once, a busy loop of half a core at 5,000/s)."""
    import time

    class Producer:
        def __init__(self):
            self.timeouts = []

        def poll(self, timeout):  # returns early, as when it serves a delivery callback
            self.timeouts.append(timeout)
            time.sleep(timeout / 3)

    producer = Producer()
    started = time.monotonic()
    _sleep_polling(producer, PACE_S)
    assert time.monotonic() - started >= PACE_S
    assert producer.timeouts and min(producer.timeouts) >= 0.001 and len(producer.timeouts) <= 20


def test_interleave_sends_every_file_at_once_in_proportion_to_its_length(tmp_path):
    def write(name, rows):
        path = tmp_path / name
        path.write_text(",".join(HEADER) + "\n" + "".join(",".join([f"C{name[0]}{i}", *ROW[1:]]) + "\n"
                                                         for i in range(rows)))
        return path

    layout = Layout.of(SOURCES["customers"], None)
    files = [InputFile(SOURCES["customers"], write("a.csv", 10), "t.a", layout, "a.csv"),
             InputFile(SOURCES["customers"], write("b.csv", 100), "t.b", layout, "b.csv")]
    order = [r.topic for r in _interleaved(files, Positions(tmp_path / "pos.json", {}))]
    assert order.count("t.a") == 10 and order.count("t.b") == 100
    # a record of the short file about every 10 of the long one, from the start to the end
    gaps = [i for i, t in enumerate(order) if t == "t.a"]
    assert gaps[0] <= 20 and gaps[-1] >= 95 and max(b - a for a, b in zip(gaps, gaps[1:], strict=False)) <= 12
    resumed = [r.line for r in _interleaved(files, Positions(tmp_path / "pos.json", {"a.csv": 6}))
               if r.topic == "t.a"]
    assert resumed == [7, 8, 9, 10, 11]
