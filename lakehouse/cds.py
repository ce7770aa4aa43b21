"""Class-data sharing for the Spark driver JVM: a start-up archive of the classes Spark, Delta and the Kafka
connector load, made once by ``c360 setup``.

A JVM that maps the archive skips reading, verifying and parsing those ~17,000 classes: a session and its first
Delta query took 11.2 s instead of 15.4 s on 2 cores. The archive belongs to one JDK build and one class
path, so its name carries a key of both (the JDK binary, pyspark's jars, c360's Spark jars); when either changes
``c360 setup`` makes a new one. A JVM that cannot use an archive (another JDK, another class path) starts without
it, silently; a file that is not a whole archive would crash it, so an archive is only put in place once a JVM
started with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# the JVM reports an archive it cannot use (another JDK build or class path) on stdout: it then runs without it
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
DYNAMIC_ARCHIVE_MAGIC = (0xF00BABA8).to_bytes(4, "little")  # JDK 17's dynamic archive header (little-endian x86/arm)


def _java() -> Path | None:
    home = os.environ.get("JAVA_HOME")  # what pyspark's spark-submit runs
    java = Path(home, "bin", "java") if home else shutil.which("java")
    return Path(java).resolve() if java and Path(java).exists() else None


def archive_path(state_dir: str | Path, jars: list[str]) -> Path | None:
    """Where the archive for this JDK and these jars lives (whether or not it exists); None without java."""
    from lakehouse.jars import pyspark_jar_dir

    java = _java()
    if java is None:
        return None
    # "class path": the jars are on the driver's class path since 2026-11-24 (spark.jars before): an archive made
    # for the old layout would not map, so the key changes and `c360 setup` makes a new one
    parts = [str(java), str(java.stat().st_size), str(java.stat().st_mtime_ns), "class path"]
    for jar in [*sorted(pyspark_jar_dir().glob("*.jar")), *map(Path, jars)]:
        parts += [str(jar), str(jar.stat().st_size)]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return Path(state_dir).resolve() / "jvm" / f"spark-{key}.jsa"


def java_options(archive: Path | None) -> str:
    """The driver JVM's options that map the archive, or nothing when there is none."""
    if archive is None or not archive.is_file():
        return ""
    return f"-XX:SharedArchiveFile={archive} {QUIET}"


WORKLOAD = [sys.executable, "-m", "lakehouse.cds_workload"]


def build(cfg, jars: list[str], workload: list[str] = WORKLOAD) -> Path | None:
    """Make the archive for this JDK and these jars unless it exists: run ``workload`` (given the path to write)
    in a JVM that writes the classes it loaded when it exits, check that a JVM starts with the result, then put it
    in place (and remove the archives of other keys). Returns the archive, or None when it could not be made
    (Spark then starts without one)."""
    target = archive_path(cfg.lake.state_dir, jars)
    if target is None:
        return None
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".spark-", suffix=".jsa.partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        env = dict(os.environ, C360_LAKE_STATE_DIR=str(Path(cfg.lake.state_dir).resolve()))
        proc = subprocess.run([*workload, str(tmp)], env=env,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not tmp.is_file():
            log.warning("no class-data sharing archive (Spark starts without it): the workload exited %s: %s",
                        proc.returncode, (proc.stderr.strip().splitlines() or ["no output"])[-1])
            return None
        with tmp.open("rb") as fh:
            magic = fh.read(4)
        # a JVM ignores a file that is not an archive, but one cut short (the workload's JVM died while writing
        # it) crashes it: only a file with the archive's magic number that a JVM starts with is put in place
        check = subprocess.run([str(_java()), f"-XX:SharedArchiveFile={tmp}", *QUIET.split(),
                                f"-XX:ErrorFile={tmp}.crash", "-XX:-CreateCoredumpOnCrash", "-version"],
                               capture_output=True, timeout=120)
        Path(f"{tmp}.crash").unlink(missing_ok=True)
        if magic != DYNAMIC_ARCHIVE_MAGIC or check.returncode != 0:
            log.warning("no class-data sharing archive (Spark starts without it): the workload's archive is %s",
                        "not one" if magic != DYNAMIC_ARCHIVE_MAGIC else "damaged (a JVM did not start with it)")
            return None
        tmp.rename(target)
        for old in target.parent.glob("spark-*.jsa"):
            if old != target:
                old.unlink(missing_ok=True)
        return target
    finally:
        tmp.unlink(missing_ok=True)
