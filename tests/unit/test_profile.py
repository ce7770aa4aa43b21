"""``c360 profile``: its inference on hand-made files, and its proposals for the real exports equal the mappings
written by hand in examples/."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import config
from lakehouse.errors import C360Error
from lakehouse.mappings import mapping_for
from producers.profile import profile, profile_file
from tests.unit.test_cli_errors import run_cli

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "real-data"
DEFAULTS = config.load(environ={}).stream.timestamp_formats


def _kinds(p):
    return {c.name: (c.kind, c.patterns) for c in p.columns}


def test_a_cp1252_semicolon_file_with_float_ids_and_ambiguous_dates(tmp_path):
    f = tmp_path / "export.csv"
    f.write_bytes("Invoice;Customer ID;Invoice Date;Amount;Paid\r\n"
                  "A1;13085.0;05/01/2024;12.5;Oui\r\nA2;13086.0;06/02/2024;3;Non\r\n"
                  "A3;13087;07/03/2024;1e3;Oui\r\nA4;;08/04/2024;-2;Non\r\n"
                  "A5;13089.0;09/05/2024;0;Oui\r\nA6;13090.0;10/06/2024;1;Non\r\n"
                  "A7;13091.0;11/07/2024;1;Oui\r\nA8;13092.0;12/08/2024;1;Non\u00e9\r\n".encode("cp1252"))
    p = profile_file(f, defaults=DEFAULTS)
    assert (p.encoding, p.format, p.delimiter, p.rows) == ("cp1252", "csv", ";", 8)
    kinds = _kinds(p)
    assert kinds["Customer ID"] == ("id_float", [])  # 13085.0: an id a spreadsheet wrote as a float
    assert kinds["Amount"] == ("number", []) and kinds["Paid"] == ("text", [])
    assert kinds["Invoice Date"] == ("timestamp", ["d/M/yyyy", "M/d/yyyy"])
    # day and month both <= 12 in every row: a question with both patterns, and no format proposed
    assert any("Invoice Date: every sampled value (e.g. '05/01/2024') reads as two different days" in q and
               "'d/M/yyyy' (day first) or 'M/d/yyyy' (month first)" in q for q in p.questions)
    assert p.timestamp_formats == []


def test_a_byte_order_mark_a_day_past_12_and_lines_of_an_order(tmp_path):
    f = tmp_path / "lines.csv"
    f.write_bytes(b"\xef\xbb\xbfOrder ID,Customer ID,Order Date,Product ID,Quantity,Sales\n"
                  b"O1,C1,03/01/19,P1,2,10.5\nO1,C1,03/01/19,P2,1,3\nO2,C2,13/01/19,P1,1,5.25\n")
    p = profile_file(f, defaults=DEFAULTS)
    assert (p.encoding, p.source, p.repeating, p.timestamp_formats) == ("utf-8-sig", "order_lines", ["Order ID"],
                                                                        ["d/M/yy"])
    assert p.mapping == {"order_id": "Order ID", "customer_id": "Customer ID", "product_id": "Product ID",
                         "quantity": "Quantity", "line_amount": "Sales", "order_datetime": "Order Date"}
    assert any("no line id column: c360 numbers each order's lines" in q for q in p.questions)


def test_json_lines_whose_times_a_default_format_reads_need_no_format(tmp_path):
    f = tmp_path / "logins.jsonl"
    f.write_text('{"login_id": "L1", "customer_id": "C1", "login_datetime": "2024-01-01 10:00:00"}\n'
                 '{"login_id": "L2", "customer_id": "C2", "login_datetime": "2024-01-31 23:59:59", "device": "ios"}\n')
    p = profile_file(f, defaults=DEFAULTS)
    assert (p.format, p.source, p.mapping, p.timestamp_formats, p.questions) == ("jsonl", "logins", {}, [], [])


def test_the_proposals_for_the_real_exports_are_the_mappings_written_by_hand(tmp_path):
    out = tmp_path / "proposed.toml"
    profile([str(REAL / "superstore_orders.csv"), str(REAL / "customer360insights_sessions.csv")], out=out,
            defaults=DEFAULTS)
    proposed = config.load(out, environ={})
    for source, example in (("order_lines", "superstore_orders.toml"),
                            ("customer_insights", "customer360insights_sessions.toml")):
        by_hand = config.load(ROOT / "examples" / example, environ={})
        assert mapping_for(proposed.sources, source) == mapping_for(by_hand.sources, source), source


def test_the_cdnow_history_is_read_as_lines_of_a_customer_s_day(tmp_path):
    """Whitespace-separated, compact dates, no purchase id, and a customer's day repeating: order lines."""
    import importlib.util

    data = Path(next(iter(importlib.util.find_spec("lifetimes").submodule_search_locations))) / "datasets"
    out = tmp_path / "cdnow.toml"
    [p] = profile([str(data / "CDNOW_master.txt")], out=out, defaults=DEFAULTS)
    assert (p.delimiter, p.source, _kinds(p)["date"]) == ("whitespace", "order_lines", ("timestamp", ["yyyyMMdd"]))
    by_hand = config.load(ROOT / "examples" / "cdnow_purchases.toml", environ={})
    assert mapping_for(config.load(out, environ={}).sources, "order_lines") == mapping_for(by_hand.sources,
                                                                                           "order_lines")


def test_the_cli_prints_the_mapping_and_what_to_decide_and_refuses_a_missing_file(tmp_path):
    proc = run_cli("profile", str(REAL / "customer360insights_sessions.csv"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-3:] == ["[sources.customer_insights]",
                                             'file = "customer360insights_sessions.csv"',
                                             'id_from = ["CustomerID", "SessionStart"]']
    assert "to decide: customer360insights_sessions.csv: no session_id column" in proc.stderr
    missing = run_cli("profile", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and missing.stderr.strip() == f"c360: error: file not found: {tmp_path / 'nope.csv'}"


def test_two_files_for_one_source_are_refused_in_one_file(tmp_path):
    f = REAL / "superstore_orders.csv"
    with pytest.raises(C360Error, match="two files map onto order_lines"):
        profile([str(f), str(f)], out=tmp_path / "x.toml")
