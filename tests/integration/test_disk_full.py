"""A full disk and a read-only lake: a clear one-line error, no corrupted table, and the next run succeeds.

The lake lives on a small tmpfs mounted for the test (root only: elsewhere the test is skipped and says why), so
the disk really fills up and really turns read-only, under Spark and Delta as they are."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from c360 import cli
from lakehouse.tables import table_path
from tests.integration.test_pipeline import _args, _bronze, _env, _table

pytestmark = pytest.mark.integration

SOURCES = ("customers", "orders")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a 16 MiB tmpfs needs root: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave_kib: int) -> Path:
    """Take all but ``leave_kib`` of the disk's free space."""
    import shutil

    balloon = disk / "balloon"
    free_kib = shutil.disk_usage(disk).free // 1024
    subprocess.run(["fallocate", "-l", f"{free_kib - leave_kib}k", str(balloon)], check=True)
    return balloon


def test_a_full_disk_stops_the_stream_in_one_line_and_the_next_run_completes_every_table(
        spark, kafka_cfg, small_disk, monkeypatch, capsys):
    cfg = kafka_cfg.replace("lake", root=str(small_disk / "lake"), checkpoint_root=str(small_disk / "checkpoints"))
    _env(monkeypatch, cfg)
    data = Path(cfg.lake.data_dir)
    assert cli.main(["generate", "--scale", "100", "--seed", "9", "--out", str(data)]) == 0
    stream = ["stream", "--available-now", "--sources", ",".join(SOURCES), *_args(cfg)]
    sent = 0
    for source in SOURCES:  # customers first, streamed while there is room: the tables and checkpoint exist...
        assert cli.main(["replay", "--input", str(data), "--sources", source, "--no-progress", *_args(cfg)]) == 0
        sent += int(capsys.readouterr().out.split("sent ")[1].split()[0])
        if source == "customers":
            assert cli.main(stream) == 0

    balloon = _fill(small_disk, leave_kib=16)  # ...then the disk fills up: the orders' batch does not fit
    assert cli.main(stream) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("c360: error: query ingest_customers_orders stopped: the disk is full (No space left "
                              "on device) while writing"), err[-3:]

    balloon.unlink()  # space again: the same command completes, from the checkpoint, and nothing is doubled
    assert cli.main(stream) == 0
    for name in SOURCES:
        bronze = _bronze(spark, cfg, name)
        assert bronze.count() == bronze.select("offset", "partition").distinct().count() > 0
    assert sum(_bronze(spark, cfg, n).count() for n in SOURCES) == sent
    ops = _table(spark, cfg, "ops_stream_batches").groupBy().sum("read_rows", "quarantined_rows").first()
    assert ops[0] == sent
    assert _table(spark, cfg, "silver_quarantine").count() == ops[1]
    orders = _table(spark, cfg, "silver_orders")
    assert orders.count() == orders.select("order_id").distinct().count() > 0

    # a read-only lake: refused before Spark starts, in one line, for every command that writes it
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    counts = {n: _table(spark, cfg, n).count() for n in ("silver_orders", "silver_customers")}
    for argv in (stream, ["gold", "--exports", str(small_disk / "exports"), *_args(cfg)],
                 ["forget", "C1", *_args(cfg)]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("c360: error: cannot write the ") and "(Read-only file system)" in err, err
        assert len(err.splitlines()) == 1
    assert {n: _table(spark, cfg, n).count() for n in counts} == counts
    assert Path(table_path(cfg.lake.root, "silver_orders"), "_delta_log").is_dir()
