"""One code base, two engines: `c360 gold` on the embedded engine (Sail, in a process of its own) writes the same
gold tables, column types included, and the same exports as the shared lake's refresh on Spark.

The embedded run reads a copy of the shared lake (silver as Spark's refresh read it) and writes its gold tables
and exports there; both sides are then read with delta-rs, not with either engine, and compared whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from batch.export import csv_values
from batch.gold import PRODUCTS
from lakehouse import lake
from lakehouse.jars import PROJECT_ROOT
from lakehouse.tables import table_path
from tests.integration.conftest import GOLD_AS_OF

pytestmark = pytest.mark.integration


def _table(root: str, name: str) -> pa.Table:
    """The whole table, rows in one order (every column sorted on), read with delta-rs."""
    table = lake.open_table(table_path(root, name)).to_pyarrow_table()
    sortable = [c for c in table.column_names if not pa.types.is_nested(table.schema.field(c).type)]
    return table.sort_by([(c, "ascending") for c in sortable])


def _schema(root: str, name: str) -> list[tuple[str, str]]:
    """The Delta schema: (column, Delta type) per column, in order (nullability aside: see below)."""
    return [(f.name, str(f.type)) for f in lake.open_table(table_path(root, name)).schema().fields]


def _csv_rows(exports: Path) -> dict[str, list[list]]:
    return {str(p.relative_to(exports)): csv_values(p) for p in sorted((exports / "csv").rglob("*.csv"))}


def test_the_embedded_engine_writes_the_gold_tables_and_exports_spark_writes(gold, tmp_path):
    cfg, spark_exports = gold
    copy = tmp_path / "lake"
    shutil.copytree(cfg.lake.root, copy, ignore=shutil.ignore_patterns("gold_*"))  # silver, quarantine, ops: no gold
    exports = tmp_path / "exports"
    env = {**os.environ, "C360_LAKE_STATE_DIR": cfg.lake.state_dir}
    proc = subprocess.run([sys.executable, "-m", "c360", "gold", "--engine", "embedded", "--lake", str(copy),
                           "--as-of", GOLD_AS_OF, "--exports", str(exports), "--dashboard",
                           str(tmp_path / "dashboard.html")], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and (tmp_path / "dashboard.html").stat().st_size > 100_000

    for name in PRODUCTS:
        # written by the embedded run (the data-quality history: created, then merged into)
        assert lake.version(table_path(str(copy), name)) == (1 if name == "gold_data_quality" else 0), name
        assert _schema(str(copy), name) == _schema(cfg.lake.root, name), name
        ours, theirs = _table(str(copy), name), _table(cfg.lake.root, name)
        # the one documented difference: the embedded engine declares a column that cannot hold a null (a count, a
        # sum of non-null values) NOT NULL, where Spark writes every column nullable; the values are the same
        assert ours.num_rows > 0 and ours.cast(theirs.schema).equals(theirs), name
    ours, theirs = _csv_rows(exports), _csv_rows(spark_exports)
    assert len(ours) == 18 and ours == theirs  # 15 tables' CSVs and gold_spend_tiers' three tier folders
