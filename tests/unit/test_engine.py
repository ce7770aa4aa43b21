"""The engine setting (lakehouse/engine.py), the embedded engine's settings, the column functions both engines
compute alike (lakehouse/functions.py), and the export's file joining that works on either engine's output files
(lakehouse/lake.py)."""

from __future__ import annotations

from datetime import date

import pytest

from lakehouse import engine
from lakehouse.errors import C360Error
from lakehouse.functions import days_between, round_half_up
from lakehouse.lake import Files


def test_auto_is_spark_with_a_cluster_master_or_comet_and_embedded_with_comet_is_refused(cfg):
    assert engine.resolve(cfg.replace("spark", master="spark://host:7077")) == "spark"
    assert engine.resolve(cfg.replace("gold", accelerator="comet")) == "spark"
    assert engine.resolve(cfg.replace("batch", engine="spark")) == "spark"
    with pytest.raises(C360Error, match="batch.engine to spark"):
        engine.resolve(cfg.replace("batch", engine="embedded").replace("gold", accelerator="comet"))


def test_a_bad_engine_or_memory_setting_is_one_line(cfg):
    with pytest.raises(C360Error, match="batch.engine must be auto, embedded or spark"):
        cfg.replace("batch", engine="duckdb")
    with pytest.raises(C360Error, match="batch.embedded_memory must be auto or a size"):
        cfg.replace("batch", embedded_memory="lots")


def test_the_embedded_engines_memory_pool_and_spill_folder():
    assert engine.parse_size("8g") == 8 * 2**30 and engine.parse_size("512m") == 512 * 2**20
    assert engine.parse_size("1.5G") == 3 * 2**29 and engine.parse_size("4096") == 4096
    assert engine.sail_env(2**30, "/state/scratch/1-ab/embedded-spill") == {
        "SAIL_RUNTIME__MEMORY_POOL__TYPE": "fair", "SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE": "1073741824",
        "SAIL_RUNTIME__TEMPORARY_FILES__PATHS": '["/state/scratch/1-ab/embedded-spill"]'}
    assert engine.sail_env(None, "/s") == {"SAIL_RUNTIME__TEMPORARY_FILES__PATHS": '["/s"]'}  # auto: Sail's own pool


def test_an_embedded_engine_that_cannot_start_says_so_in_one_line(cfg, monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "_server", None)
    monkeypatch.setattr(engine, "_folder", [tmp_path])
    for key, value in {**engine.sail_env(2**30, str(tmp_path)), "RUST_LOG": "error"}.items():
        monkeypatch.setenv(key, value)  # (what the server start sets, undone after the test)
    bad = cfg.replace("spark", bind_address="256.0.0.1")  # not an address: the server cannot bind
    with pytest.raises(C360Error, match=r"the embedded engine \(Sail\) could not start: .*batch.engine = \"spark\""):
        engine._start_server(bad)


def test_halves_round_away_from_zero_and_days_are_ints(spark):
    df = spark.createDataFrame([(0.05625, -2.5, None), (0.1 + 0.2, 2.449999, 1.005)], "a double, b double, c double")
    out = df.select(round_half_up("a", 4).alias("a"), round_half_up("b", 0).alias("b"),
                    round_half_up("c", 2).alias("c")).collect()
    # 0.05625 -> 0.0563 (its decimal form's half; DataFusion's round says 0.0562); -2.5 -> -3; 0.1 + 0.2 -> 0.3;
    # 1.005 (1.00499999999999989...) -> 1.0: its scaled product 100.49999999999999 stays below the half (Spark's
    # round says 1.01: the documented exception)
    assert [tuple(r) for r in out] == [(0.0563, -3.0, None), (0.3, 2.0, 1.0)]
    days = spark.createDataFrame([(date(2025, 1, 15), date(2024, 12, 31))], "end date, start date") \
        .select(days_between("end", "start").alias("d"))
    assert days.schema["d"].dataType.simpleString() == "int" and days.first().d == 15


def test_the_data_files_of_spark_and_of_the_embedded_engine_are_joined_in_order(tmp_path):
    for folder, names in {"spark": ["part-00001-x.csv", "part-00000-x.csv", "_SUCCESS", ".part-00000-x.csv.crc"],
                          "sail": ["AbC_10.csv", "AbC_2.csv", "AbC_0.csv"]}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_text(f"{name}\n")
        files = Files(str(tmp_path))
        files.join_parts(str(tmp_path / folder), "h\n", str(tmp_path / "out" / f"{folder}.csv"))
    assert (tmp_path / "out" / "spark.csv").read_text() == "h\npart-00000-x.csv\npart-00001-x.csv\n"
    assert (tmp_path / "out" / "sail.csv").read_text() == "h\nAbC_0.csv\nAbC_2.csv\nAbC_10.csv\n"


def test_a_process_that_runs_spark_keeps_it_under_auto_and_refuses_embedded_in_one_line(spark, cfg):
    assert engine.resolve(cfg) == "spark" and engine.get_session(cfg) is spark  # (the test session's Spark)
    with pytest.raises(C360Error, match="this process already runs Spark: set batch.engine to auto or spark"):
        engine.get_session(cfg.replace("batch", engine="embedded"))
