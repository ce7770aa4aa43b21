"""`c360 gold --engine spark --accelerator auto` on this Linux machine: the refresh on Apache DataFusion Comet's native
engine inside Spark writes the same tables as on Spark's own (the session's `gold` fixture), through the CLI in a
process of its own (Comet is set up as the JVM starts). `auto` resolves to `comet` here (unit tests: elsewhere to
`none`), so this also runs `comet`'s path. (Without `--engine spark` a local refresh runs on the embedded engine, where
Comet, Spark's accelerator, has no part.)"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.gold_bench import differing_exports, export_csvs
from lakehouse.jars import jar_dir
from lakehouse.spark import COMET_MIN_GLIBC
from tests.conftest import STATE_DIR
from tests.integration.conftest import GOLD_AS_OF


def test_the_comet_refresh_writes_the_same_tables_as_spark(gold, tmp_path):
    cfg, exports = gold
    lake = tmp_path / "lake"
    for table in Path(cfg.lake.root).iterdir():  # the lake before gold (silver, ops counters): the refresh writes
        if not table.name.startswith("gold_"):    # its gold tables into a lake of its own
            shutil.copytree(table, lake / table.name)
    out = tmp_path / "exports"
    env = dict(os.environ, C360_LAKE_STATE_DIR=str(STATE_DIR), C360_SPARK_SHUFFLE_PARTITIONS="2",
               C360_GOLD_DRIVER_MEMORY="2g", C360_GOLD_ACCELERATOR_MEMORY="auto",
               C360_GOLD_EXPORT_PARQUET="false")  # the CSVs are compared: the Parquet copies would only cost time
    proc = subprocess.run([sys.executable, "-m", "c360", "gold", "--engine", "spark", "--accelerator", "auto", "--lake", str(lake),
                           "--as-of", GOLD_AS_OF, "--exports", str(out), "--no-dashboard"],
                          env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Comet with 1g off the heap" in log  # auto ran on Comet; its memory: half of the 2g heap, at least 1g
    assert "Comet native library version" in log  # Comet's own line: its engine was loaded and ran
    names = export_csvs(exports)
    assert len(names) == 18 and export_csvs(out) == names  # 15 tables + spend tiers in a folder per tier
    # every table's rows (the CSV exports: every column, numbers as numbers), in any order
    assert differing_exports(exports, out) == []

    # what `auto` requires of the machine (COMET_MIN_GLIBC) is the newest glibc symbol version Comet's bundled
    # libraries link against (objdump -T lists the same): a Comet upgrade that needs a newer glibc fails here
    jar, = jar_dir(str(STATE_DIR), "comet").glob("comet-spark-*.jar")
    with zipfile.ZipFile(jar) as z:
        libs = sorted(n for n in z.namelist() if n.endswith("/libcomet.so"))
        assert libs == ["org/apache/comet/linux/aarch64/libcomet.so", "org/apache/comet/linux/amd64/libcomet.so"]
        for lib in libs:
            versions = {tuple(map(int, v.split(b"."))) for v in re.findall(rb"GLIBC_(\d+(?:\.\d+)+)\x00", z.read(lib))}
            assert max(versions) == COMET_MIN_GLIBC, (lib, max(versions))
