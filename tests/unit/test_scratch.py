"""The driver's scratch folders (lakehouse.scratch): a folder per process, removed once its process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lakehouse import config, scratch
from lakehouse.spark import spark_conf

# claims a folder under argv[1], says which, and lives until its stdin closes (or it is killed)
CLAIMER = """
import sys
from pathlib import Path
from lakehouse import scratch
print(scratch.claim(Path(sys.argv[1])).name, flush=True)
sys.stdin.read()
"""


def _claimer(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    return proc, proc.stdout.readline().strip()


def _names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_the_folders_of_ended_processes_go_those_of_live_ones_and_anything_else_stay(tmp_path):
    root = tmp_path / "scratch"
    live, live_name = _claimer(root)
    killed, killed_name = _claimer(root)
    try:
        (root / killed_name / "spark-1" / "blockmgr-2").mkdir(parents=True)
        (root / killed_name / "spark-1" / "blockmgr-2" / "shuffle_0.data").write_bytes(b"x" * 1000)
        killed.kill()
        killed.wait()
        (root / "77-0123abcd").mkdir()  # a folder whose lock is gone: its process ended while it was being swept
        (root / "78-0123abcd.lock").touch()  # ...and a lock whose folder is gone
        (root / "notes.txt").write_text("not c360's")
        (root / "spark-3").mkdir()  # not named like a claimed folder: not c360's to remove
        assert _names(root) >= {live_name, killed_name, f"{live_name}.lock", f"{killed_name}.lock"}

        mine = scratch.claim(root)  # a start sweeps first
        assert mine.parent == root and mine.name.startswith(f"{os.getpid()}-") and mine.is_dir()
        assert _names(root) == {".lock", live_name, f"{live_name}.lock", mine.name, f"{mine.name}.lock",
                                "notes.txt", "spark-3"}
        assert scratch.sweep(root) == []  # this process's folder and the live one's are held

        live.stdin.close()  # a clean end: its lock goes with it
        live.wait()
        assert scratch.sweep(root) == [root / live_name]
        assert _names(root) == {".lock", mine.name, f"{mine.name}.lock", "notes.txt", "spark-3"}
    finally:
        for proc in (live, killed):
            proc.kill()
            proc.wait()


def test_a_root_that_does_not_exist_has_nothing_to_sweep_and_a_claim_makes_it(tmp_path):
    root = tmp_path / "a" / "b"
    assert scratch.sweep(root) == [] and not root.exists()
    assert scratch.claim(root).parent == root


def test_the_root_is_the_setting_or_the_state_folders_scratch(tmp_path):
    assert scratch.root_for("", str(tmp_path / "state")) == tmp_path / "state" / "scratch"
    assert scratch.root_for(str(tmp_path / "big-disk"), "ignored") == tmp_path / "big-disk"
    assert scratch.root_for("", ".c360") == Path.cwd() / ".c360" / "scratch"  # absolute: the JVM's cwd may differ


def test_the_driver_jvm_gets_the_folder_as_its_temporary_folder_and_the_users_options_come_after():
    cfg = config.load(environ={}, overrides={"spark": {"conf": {"spark.driver.extraJavaOptions": "-Dx=1"}}})
    options = spark_conf(cfg, [], temp_dir="/s/1-0123abcd")["spark.driver.extraJavaOptions"].split()
    assert options.index("-Djava.io.tmpdir=/s/1-0123abcd") < options.index("-Dx=1")
    assert "-Djava.io.tmpdir" not in spark_conf(cfg, [])["spark.driver.extraJavaOptions"]
    assert "spark.local.dir" not in spark_conf(cfg, [], temp_dir="/s/1-0123abcd")  # Spark's default follows it


def test_without_file_locks_windows_there_is_no_folder_and_nothing_is_swept(tmp_path, monkeypatch):
    root = tmp_path / "scratch"
    (root / "1-0123abcd").mkdir(parents=True)  # would be swept: no lock
    monkeypatch.setattr(scratch, "fcntl", None)
    assert scratch.claim(root) is None and scratch.sweep(root) == []
    assert _names(root) == {"1-0123abcd"}
