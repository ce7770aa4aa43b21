"""The JVM jars c360 needs, fetched once from Maven Central with ``mvn`` and cached.

Three sets, each described by a pom under ``jvm/``: ``spark`` (Delta Lake and the Spark Kafka connector, added to
the session through ``spark.jars``), ``kafka`` (a real Apache Kafka broker for the embedded local mode) and ``comet``
(Apache DataFusion Comet, the native engine ``c360 gold`` can run on: ``gold.accelerator``; fetched only for it).
Spark's own Ivy resolver (``spark.jars.packages``) is deliberately not used: it ignores Maven's settings.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from lakehouse.errors import C360Error

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JVM_DIR = PROJECT_ROOT / "jvm"
JAR_SETS = ("spark", "kafka", "comet")
# the version is the first "-<digits>.<...>" part with no underscore (artifact ids may hold "-0-10_2.13")
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d+\.[^_]*\.jar$")


def artifact_id(jar_name: str) -> str:
    """The artifactId of a jar file named ``<artifactId>-<version>.jar``.

    >>> artifact_id("jackson-core-2.13.5.jar"), artifact_id("zstd-jni-1.5.7-3.jar")
    ('jackson-core', 'zstd-jni')
    """
    match = _VERSIONED_JAR.match(jar_name)
    return match.group("artifact") if match else jar_name.removesuffix(".jar")


def pyspark_jar_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def require_tool(name: str, what_for: str) -> str:
    """The path of a command-line tool, or a one-line error saying what to install."""
    path = shutil.which(name)
    if path is None:
        hint = {"java": "install a Java 17 JDK (e.g. apt-get install openjdk-17-jdk-headless)",
                "mvn": "install Apache Maven (e.g. apt-get install maven)"}.get(name, f"install {name}")
        raise C360Error(f"'{name}' not found on PATH; it is needed {what_for}: {hint}")
    return path


def jar_dir(state_dir: str | Path, which: str) -> Path:
    return Path(state_dir).resolve() / "jars" / which


def _fetch(which: str, target: Path) -> None:
    mvn = require_tool("mvn", "to fetch the JVM jars from Maven Central")
    require_tool("java", "to run Spark and the Kafka broker")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-U",
        "-gs", str(JVM_DIR / "maven-settings.xml"),
        "-f", str(JVM_DIR / which / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    log.info("fetching the %s jars with Maven into %s", which, target)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
        detail = errors[0] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise C360Error(f"mvn could not fetch the {which} jars (is Maven Central reachable?): {detail.strip()}")
    if which != "kafka":
        # Jars pyspark ships already (Jackson, Hadoop, Scala, log4j...) would clash: keep pyspark's.
        have = {artifact_id(j.name) for j in pyspark_jar_dir().glob("*.jar")}
        for jar in tmp.glob("*.jar"):
            if artifact_id(jar.name) in have:
                jar.unlink()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def ensure_jars(state_dir: str | Path, which: str) -> list[Path]:
    """The jars of one set, fetching them on first use (cached under ``<state_dir>/jars/<which>``).

    The cache is keyed by the pom's content: editing a pom fetches again.
    """
    if which not in JAR_SETS:
        raise ValueError(f"unknown jar set {which!r}")
    target = jar_dir(state_dir, which)
    stamp = target / ".pom"
    pom = (JVM_DIR / which / "pom.xml").read_text()
    if not (stamp.exists() and stamp.read_text() == pom):
        _fetch(which, target)
        stamp.write_text(pom)
    jars = sorted(target.glob("*.jar"))
    if not jars:
        raise C360Error(f"no jars in {target}; delete that folder and run `c360 setup` again")
    return jars
