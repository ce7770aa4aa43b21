"""The one SparkSession factory: Delta Lake and the Kafka connector, on any master.

Called by entry points and the test fixture only; nothing starts Spark at import time.
"""

from __future__ import annotations

import logging
import os
import platform
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from lakehouse import cds, scratch
from lakehouse.config import SECRET_PATTERN, Config
from lakehouse.errors import C360Error
from lakehouse.jars import JVM_DIR, ensure_jars, require_tool

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


CODEGEN_CACHE_ENTRIES = 2000
# JVM options for a short run on small data: C1 compiles only. Half of such a JVM's CPU went into the JIT compilers,
# most of it C2's optimizing compiles, which do not pay back in a few minutes (docs/performance.md, "JIT"); the bigger
# code cache is needed (C1's code is larger: without it the JVM ran out of code cache and died). `c360 demo` and
# the tests run so; the product's other runs keep the JVM's tiered compilation.
QUICK_JIT = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"
PANDAS_STATE_SERIALIZER = "pyspark.sql.pandas.serializers"
COMET_SHUFFLE_MANAGER = "org.apache.spark.sql.comet.execution.shuffle.CometShuffleManager"
# Comet's jar carries its native library for these only (org/apache/comet/linux/{amd64,aarch64}/libcomet.so)
COMET_MACHINES = {"x86_64", "amd64", "aarch64", "arm64"}
# ...linked against glibc: Comet 1.2.0's libraries need GLIBC_2.30 symbols (both; RHEL 8's and Debian 10's 2.28, Amazon
# Linux 2's 2.26 are older). Where the library cannot load Comet falls back to Spark by itself, but with a warning and
# a stack trace for every query. The Comet integration test checks this against the jar.
COMET_MIN_GLIBC = (2, 30)


def spark_conf(cfg: Config, jars: list[str], java_options: str = "",
               accelerator: dict[str, str] | None = None, temp_dir: str = "") -> dict[str, str]:
    """The session settings c360 runs with (pure: easy to inspect and test); ``java_options`` go to the driver
    JVM (the class-data sharing archive, :mod:`lakehouse.cds`); ``accelerator``: :func:`comet_conf`'s settings;
    ``temp_dir``: the driver's temporary folder (:mod:`lakehouse.scratch`; Spark's local folder too unless
    ``spark.local.dir`` is set). The user's ``spark.conf`` comes last (:func:`with_settings`): it wins, and adds to
    the lists."""
    conf = {
        "spark.master": cfg.spark.master,
        # spark.driver.memory only takes effect before the JVM starts, so it goes in with the first session.
        "spark.driver.memory": cfg.spark.driver_memory,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        # Delta rebuilds a table's state (e.g. to check txnAppId on every idempotent write) with a shuffle into
        # 50 partitions by default: on a small machine that made each commit of a micro-batch cost seconds.
        "spark.databricks.delta.snapshotPartitions": str(cfg.spark.shuffle_partitions),
        # VACUUM lists a table's files in this many tasks (default 10,000): 31 s for a 2-file table on 2 cores, and
        # the stream's maintenance and `c360 forget` vacuum dozens of tables; 2.3 s with this
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(cfg.spark.shuffle_partitions),
        # Compiled code is cached by its source, 100 classes by default: fewer than one micro-batch of the 17 sources
        # needs (about 700), so every batch compiled about 1,050 classes again (28% of a warm batch's JVM samples).
        # A static setting: it must be there when the session starts.
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        "spark.sql.session.timeZone": cfg.spark.timezone,
        # Timestamps as Parquet INT64 microseconds marked UTC, as delta-rs writes them, not Spark's default INT96: a
        # table holding both (the stream's delta-rs MERGEs, then Spark's OPTIMIZE) failed to read on the embedded
        # engine ("Fail to merge schema field ... Timestamp(µs) does not equal Timestamp(µs, "UTC")"; the soak's
        # second gold run, 2026-12-07)
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # c360's tables are Delta tables at paths, never in the catalog; but a statement on a path (forget's REORG)
        # makes Spark create the catalog's warehouse folder, by default spark-warehouse/ in the working directory
        "spark.sql.warehouse.dir": str(Path(cfg.lake.state_dir).absolute() / "spark-warehouse"),
        "spark.ui.enabled": str(cfg.spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # the streaming app runs its queries at once in FAIR pools: the ingest query's pool comes first
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(JVM_DIR / "fairscheduler.xml"),
        # stateful queries (login anomalies, city x hour counts) keep state in RocksDB, off the JVM heap, and
        # checkpoint only its changes
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # each micro-batch is materialized with localCheckpoint(); its blocks go when the driver collects the
        # batch's objects: collect at least every minute rather than every 30
        "spark.cleaner.periodicGC.interval": "1min",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # PySpark's own state serializer pads a batch of applyInPandasWithState (the login anomalies) with all-NA
        # rows through pd.concat, and pandas 2 warns about that in most such batches: the app's log filled with it.
        # Silenced in the Python workers for that module only (their environment comes from spark.executorEnv).
        "spark.executorEnv.PYTHONWARNINGS": f"ignore::FutureWarning:{PANDAS_STATE_SERIALIZER}",
        # DataFrame <-> pandas through Arrow (the CLV model's summary and predictions: a row per customer)
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # option values that are secrets (Kafka's JAAS line with its password, a client key) never reach a log or
        # the UI: Spark redacts any key or value matching this (its default plus JAAS and PEM keys)
        "spark.redaction.regex": SECRET_PATTERN,
        "spark.driver.extraJavaOptions": " ".join(
            [f"-Dlog4j2.configurationFile={JVM_DIR / 'log4j2-spark.properties'}",
             *([f"-Djava.io.tmpdir={temp_dir}"] if temp_dir else []), *java_options.split()]),
    }
    if cfg.spark.master.startswith("local"):
        # The driver is the only JVM: the jars go on its class path as it starts, where they are. Through spark.jars
        # every session copied them (22 MB) into its temporary folder, which a killed JVM leaves behind.
        conf["spark.driver.extraClassPath"] = os.pathsep.join(jars)
        # Serve nothing beyond localhost unless configured otherwise.
        conf["spark.driver.bindAddress"] = cfg.spark.bind_address
        conf["spark.driver.host"] = cfg.spark.bind_address
    else:
        conf["spark.jars"] = ",".join(jars)  # shipped to the executors
    return with_settings(with_settings(conf, accelerator or {}), cfg.spark.settings)


def comet_conf(jars: list[str], off_heap: str) -> dict[str, str]:
    """The settings that put a session's SQL on Apache DataFusion Comet's native engine (``gold.accelerator``), added
    to :func:`spark_conf`'s; ``jars``: Comet's (also in ``spark.jars``). Comet plans what it supports as native
    (Rust, Arrow) operators and shuffles and leaves the rest to Spark; its memory is off the JVM heap."""
    return {
        "spark.plugins": "org.apache.spark.CometPlugin",
        # the plugin and the shuffle manager are loaded as the JVM starts, before spark.jars are
        "spark.driver.extraClassPath": os.pathsep.join(jars),
        "spark.executor.extraClassPath": os.pathsep.join(Path(j).name for j in jars),  # spark.jars' copy, a cluster's
        "spark.shuffle.manager": COMET_SHUFFLE_MANAGER,
        "spark.comet.shuffle.enabled": "true",
        # Delta reads its files with its own Parquet format, which Comet does not scan itself: Spark's vectorized
        # reader's batches go to Comet's operators as Arrow instead
        "spark.comet.convert.parquet.enabled": "true",
        "spark.memory.offHeap.enabled": "true",
        "spark.memory.offHeap.size": off_heap,
    }


# Settings that hold a list: merged rather than replaced (the separator Spark splits them on)
LIST_SETTINGS = {"spark.jars": ",", "spark.plugins": ",", "spark.sql.extensions": ",",
                 "spark.driver.extraClassPath": os.pathsep, "spark.executor.extraClassPath": os.pathsep}
# ...and JVM options, appended as they are (an option may hold a quoted space)
OPTION_SETTINGS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def with_settings(conf: dict[str, str], more: dict[str, str]) -> dict[str, str]:
    """``conf`` with ``more``'s settings: a list setting (:data:`LIST_SETTINGS`) holds both lists' entries (each
    once, ``conf``'s first), JVM options both, in that order; any other of ``more`` replaces ``conf``'s."""
    merged = {**conf, **more}
    for key in set(conf) & set(more):
        if key in LIST_SETTINGS:
            sep = LIST_SETTINGS[key]
            entries = [e.strip() for e in (*conf[key].split(sep), *more[key].split(sep))]
            merged[key] = sep.join(dict.fromkeys(e for e in entries if e))
        elif key in OPTION_SETTINGS:
            merged[key] = f"{conf[key]} {more[key]}".strip()
    return merged


def comet_blocker(system: str | None = None, machine: str | None = None,
                  libc: tuple[str, str] | None = None) -> str | None:
    """Why Comet's native library cannot load on this platform, or None where it can: it is built for Linux on
    x86_64 and aarch64, against glibc (``libc``: :func:`platform.libc_ver`'s answer; musl's is not recognized)."""
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    if system != "Linux" or machine.lower() not in COMET_MACHINES:
        return f"Comet's native library is built for Linux on x86_64 and aarch64 only, not {system} {machine}"
    name, version = platform.libc_ver() if libc is None else libc
    if name == "glibc" and tuple(map(int, re.findall(r"\d+", version))) >= COMET_MIN_GLIBC:
        return None
    found = f"{name} {version}".strip() if name else "a C library that is not glibc (or not recognized)"
    return (f"Comet's native library needs glibc {'.'.join(map(str, COMET_MIN_GLIBC))} or newer, and this Linux has "
            f"{found}")


def resolve_accelerator(name: str, system: str | None = None, machine: str | None = None,
                        libc: tuple[str, str] | None = None) -> str:
    """``gold.accelerator`` as the session will run it: ``auto`` is ``comet`` where Comet's native library can load
    (:func:`comet_blocker`), else ``none``; ``comet`` where it cannot is refused (a clear error: Comet itself would
    fall back to Spark with a warning and a stack trace for every query)."""
    if name not in ("auto", "comet"):
        return name
    blocker = comet_blocker(system, machine, libc)
    if blocker is None:
        return "comet"
    if name == "comet":
        raise C360Error(f"{blocker}: set gold.accelerator to auto (Comet where it runs, Spark's own engine "
                        "elsewhere) or none")
    return "none"


def _comet_jars(state_dir: str, accelerator: str) -> list[str]:
    """Comet's jars for a session with ``accelerator`` (none: no jars). ``auto`` goes on without Comet, with a warning,
    when they cannot be fetched (an accelerator it may use must not stop the refresh); ``comet`` fails."""
    resolved = resolve_accelerator(accelerator)
    if accelerator == "auto" and resolved == "none":
        log.info("gold.accelerator auto: %s; Spark's own engine", comet_blocker())
    if resolved != "comet":
        return []
    try:
        return [str(p) for p in ensure_jars(state_dir, "comet")]
    except C360Error as exc:
        if accelerator != "auto":
            raise
        log.warning("gold.accelerator auto: Comet is not available (%s); Spark's own engine", exc)
        return []


def machine_memory_bytes() -> int:
    """Physical memory, or the container's (cgroup v2) limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def auto_driver_memory(total_bytes: int | None = None) -> str:
    """Half the machine's memory, at least 2g and at most 16g (a local-mode driver is the whole of Spark)."""
    total = machine_memory_bytes() if total_bytes is None else total_bytes
    return f"{max(2, min(16, int(total / 2**30 / 2)))}g"


def auto_off_heap(driver_memory: str) -> str:
    """Comet's off-heap memory for ``gold.accelerator_memory = "auto"``: half the driver's heap, at least 1g (a full
    refresh at 1M customers peaked at 5.4 GiB of JVM RSS with an 11g heap and 6g off the heap, 5.7 GiB without
    Comet). ``driver_memory`` as Spark takes it: ``11g``, ``4096m``; a bare number is MiB."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    text = driver_memory.strip().lower().removesuffix("b")
    size = int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text) * 2**20
    return f"{max(1, size // 2**31)}g"


def get_spark(cfg: Config, app_name: str = "c360", accelerator: str = "none"):
    """The active SparkSession, or a new one configured for c360.

    Fetches the Delta and Kafka-connector jars on first use (``c360 setup`` does it ahead of time). ``accelerator``
    ``comet``: a new session runs on Apache DataFusion Comet (:func:`comet_conf`, its jar fetched on first use),
    with ``cfg.gold.accelerator_memory`` off the heap (auto: :func:`auto_off_heap` of the driver memory); ``auto``:
    on Comet where it can run (:func:`_comet_jars`); an active session is returned as it is.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_tool("java", "to run Spark")
    jars = [str(p) for p in ensure_jars(cfg.lake.state_dir, "spark")]
    comet = _comet_jars(cfg.lake.state_dir, accelerator)
    jars += comet
    os.environ.setdefault("PYSPARK_PYTHON", _python())
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pandas-on-Spark asks for it before the JVM starts
    if cfg.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", cfg.spark.bind_address)
    java_options = cds.java_options(cds.archive_path(cfg.lake.state_dir, jars)) if cfg.spark.class_data_sharing else ""
    try:
        folder = str(scratch.claim(scratch.root_for(cfg.spark.scratch_dir, cfg.lake.state_dir)) or "")
    except OSError as exc:
        folder = ""
        log.warning("no scratch folder of c360's own (%s): Spark uses the system's temporary folder, where a "
                    "killed run leaves its files", exc)
    builder = SparkSession.builder.appName(app_name)
    off_heap = cfg.gold.accelerator_memory
    if off_heap == "auto":
        off_heap = auto_off_heap(cfg.spark.driver_memory)
    conf = spark_conf(cfg, jars, java_options, comet_conf(comet, off_heap) if comet else None, folder)
    for key, value in conf.items():
        builder = builder.config(key, value)
    log.info("starting Spark (%s, driver memory %s%s)", cfg.spark.master, cfg.spark.driver_memory,
             f", Comet with {off_heap} off the heap" if comet else "")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def in_threads(fn: Callable[[T], R], items: list[T], workers: int = 4) -> list[R]:
    """``fn`` over ``items`` in a few threads, results in order: per table work that is mostly Delta log reading
    and job planning on the driver overlaps well, and Spark runs the jobs side by side (FAIR scheduler)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _python() -> str:
    import sys

    return sys.executable
