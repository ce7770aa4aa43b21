"""`c360 forget` end to end on a copy of the streamed and refreshed lake: a customer is erased from every bronze,
silver, stream and gold table, the exports and the dashboard, the request is audited, and with a zero retention
VACUUM leaves no data file that still holds them."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batch.forget import AUDIT_TABLE, _parallel, customer_rows, lake_tables
from c360 import cli
from lakehouse.tables import table_path

pytestmark = pytest.mark.integration


def _matches(spark, root: str, ids: list[str], tables: list[str] | None = None) -> dict[str, int]:
    """Rows of ``ids`` per table (of ``tables``, else every table c360 writes), through Delta (what readers see)."""
    def one(name):
        path = Path(table_path(root, name))
        if not (path / "_delta_log").is_dir():
            return name, None
        df = spark.read.format("delta").load(str(path))
        cond = customer_rows(name, df.columns, ids)
        return name, (df.where(cond).count() if cond is not None else None)

    return {name: n for name, n in _parallel(one, tables or lake_tables()) if n is not None}


def _files_holding(spark, root: str, ids: list[str], tables: list[str]) -> list[str]:
    """Of ``tables``, those with a data file on disk — referenced or not — that still holds a row of ``ids``."""
    def one(name):
        path = Path(table_path(root, name))
        files = [str(f) for f in path.rglob("*.parquet") if "_delta_log" not in f.parts]
        if not files:
            return None
        df = spark.read.parquet(*files)  # the raw files, partition columns aside
        cond = customer_rows(name, df.columns, ids)
        return name if cond is not None and df.where(cond).limit(1).count() else None

    return [n for n in _parallel(one, tables) if n]


def test_forget_erases_a_customer_everywhere_audits_it_and_vacuum_removes_the_files(gold, spark, tmp_path,
                                                                                     monkeypatch, capsys):
    cfg, exports = gold
    lake, out = tmp_path / "lake", tmp_path / "exports"
    shutil.copytree(cfg.lake.root, lake)
    shutil.copytree(exports, out)
    for key, value in (("GOLD_EXPORT_DIR", out), ("DASHBOARD_FILE", out / "dashboard.html")):
        monkeypatch.setenv(f"C360_{key}", str(value))
    # the customer with the highest balance (on the dashboard's top-10 table) who logged in and bought
    c360 = spark.read.format("delta").load(table_path(str(lake), "gold_customer_360"))
    top10 = c360.where("account_balance IS NOT NULL").orderBy(F.desc("account_balance"), "customer_id").limit(10)
    who = next(r.customer_id for r in top10.collect() if r.last_login_at is not None and r.order_count)
    before = _matches(spark, str(lake), [who])
    assert min(before[t] for t in ("gold_customer_360", "silver_customers", "silver_logins", "bronze_records",
                                   "silver_transactions", "gold_rfm_segments")) >= 1, before
    shown = re.compile(rf"{re.escape(who)}(?!\d)")  # e.g. in the top customers table (JSON-escaped HTML)
    assert shown.search((out / "dashboard.html").read_text())
    assert cli.main(["forget", who, "--lake", str(lake), "--reason", "ticket 42", "--retention-hours", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"erased {sum(before.values())} rows of 1 customer(s)" in printed

    held = [t for t, n in before.items() if n]  # (a table that held none still holds none: a delete adds nothing)
    assert _matches(spark, str(lake), [who], held) == dict.fromkeys(held, 0)
    assert _files_holding(spark, str(lake), [who], held) == []  # VACUUM (retention 0) removed the old files
    others = spark.read.format("delta").load(table_path(str(lake), "silver_customers")).count()
    assert others == spark.read.format("delta").load(table_path(cfg.lake.root, "silver_customers")).count() - 1

    for f in (out / "csv").rglob("*.csv"):  # exports: rewritten without them (other customers still there)
        with f.open() as fh:
            rows = list(csv.DictReader(fh))
        if rows and "customer_id" in rows[0]:
            assert who not in {r["customer_id"] for r in rows} and len(rows) > 1, f
    assert spark.read.parquet(str(out / "parquet" / "gold_customer_360")).where(F.col("customer_id") == who).count() == 0
    assert not shown.search((out / "dashboard.html").read_text())

    audit = spark.read.format("delta").load(table_path(str(lake), AUDIT_TABLE)).collect()
    assert len(audit) == 1
    (a,) = audit
    assert (a.customer_ids, a.reason, a.retention_hours) == ([who], "ticket 42", 0)
    assert {t: n for t, n in a.rows_erased.items() if n} == {t: n for t, n in before.items() if n}
    assert a.vacuumed_at is not None and a.vacuumed_at >= a.physically_gone_by
    assert any(p.endswith("gold_customer_360.csv") for p in a.exports_rewritten)


def test_dry_run_changes_nothing_and_vacuum_marks_the_requests_that_are_due(spark, cfg, capsys):
    silver = table_path(cfg.lake.root, "silver_logins")
    spark.createDataFrame([("L1", "C1"), ("L2", "C2"), ("L3", "C1")], "login_id string, customer_id string") \
        .write.format("delta").save(silver)
    lake = ["--lake", cfg.lake.root]
    assert cli.main(["forget", "C1", "--dry-run", *lake]) == 0
    assert "dry run: 2 rows of 1 customer(s) in 1 tables; nothing changed" in capsys.readouterr().out
    assert spark.read.format("delta").load(silver).count() == 3
    assert not Path(table_path(cfg.lake.root, AUDIT_TABLE)).exists()

    assert cli.main(["forget", "C1", *lake]) == 0  # the default retention (168 h): not physically gone yet
    assert {r.customer_id for r in spark.read.format("delta").load(silver).collect()} == {"C2"}
    audit = table_path(cfg.lake.root, AUDIT_TABLE)
    assert spark.read.format("delta").load(audit).first().vacuumed_at is None
    capsys.readouterr()
    assert cli.main(["forget", "--vacuum", *lake]) == 0
    assert "0 forget request(s) now physically gone" in capsys.readouterr().out  # its retention has not passed
    spark.sql(f"UPDATE delta.`{audit}` SET physically_gone_by = physically_gone_by - INTERVAL 169 HOURS")
    assert cli.main(["forget", "--vacuum", *lake]) == 0  # as if a week had passed
    assert "1 forget request(s) now physically gone" in capsys.readouterr().out
    assert spark.read.format("delta").load(audit).first().vacuumed_at is not None


def test_rows_a_delete_only_marked_deleted_are_purged_from_the_files(spark, cfg):
    """A table with deletion vectors (made outside c360, or a future default): the DELETE marks the rows, so forget
    rewrites the files without them (REORG ... PURGE) and VACUUM can remove the old ones."""
    silver = table_path(cfg.lake.root, "silver_logins")
    spark.createDataFrame([(f"L{i}", f"C{i % 3}") for i in range(30)], "login_id string, customer_id string") \
        .coalesce(1).write.format("delta").option("delta.enableDeletionVectors", "true").save(silver)
    assert cli.main(["forget", "C1", "--lake", cfg.lake.root, "--retention-hours", "0"]) == 0
    assert spark.read.format("delta").load(silver).where("customer_id = 'C1'").count() == 0
    assert spark.read.format("delta").load(silver).count() == 20
    assert _files_holding(spark, cfg.lake.root, ["C1"], ["silver_logins"]) == []
