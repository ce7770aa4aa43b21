"""Which engine runs c360's batch work, and the session it runs in.

c360's batch transforms (gold, the dashboard, exports, the CLV fit) are PySpark DataFrame code, and two engines run
that code unchanged:

- ``embedded``: Sail (PyPI ``pysail``), a Rust engine on Apache DataFusion that speaks Spark Connect. Its server
  starts inside this Python process in well under a second and the same DataFrame code reaches it through
  ``SparkSession.builder.remote(...)``. On one machine most of a small Spark run is the JVM's start and per-job
  overhead; Sail has neither (docs/performance.md, "Two engines").
- ``spark``: Apache Spark (:func:`lakehouse.spark.get_spark`), for clusters, and for the stream, which stays on
  Spark Structured Streaming.

``auto`` is embedded with a local master (``spark.master = local[*]``) and Spark with any other: a cluster.

One Python process runs one of the two: PySpark picks the Spark Connect or the classic implementation of its
functions (``F.col``...) for the whole process once a Connect session exists. So a process that already runs a
classic Spark session (the stream before ``c360 demo``'s gold, the test suite) keeps it for its batch work under
``auto`` (:func:`release_spark` lets it go first); asking for ``embedded`` there is an error.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

from lakehouse import scratch
from lakehouse.config import Config
from lakehouse.errors import C360Error

log = logging.getLogger(__name__)

_server = None  # the embedded engine's server of this process, started once
SESSION_TIMEOUT_S = 30 * 24 * 3600
_folder: list[Path | None] = []  # this process's scratch folder, claimed once


def resolve(cfg: Config) -> str:
    """``batch.engine`` as this process will run it: ``embedded`` or ``spark``."""
    name = cfg.batch.engine
    if name == "auto":
        # Comet asked for by name is Spark's accelerator: the refresh runs on Spark then
        if not cfg.spark.master.startswith("local") or cfg.gold.accelerator == "comet":
            return "spark"
        return "spark" if _classic_session() is not None else "embedded"
    if name == "embedded" and cfg.gold.accelerator == "comet":
        raise C360Error("gold.accelerator = \"comet\" accelerates Spark, and batch.engine is \"embedded\": set "
                        "batch.engine to spark (or auto), or gold.accelerator to none")
    return name


def stream_writer(cfg: Config) -> str:
    """``stream.writer`` as the stream will run it: ``embedded`` (delta-rs commits, a local master) or ``spark``."""
    if cfg.stream.writer == "auto":
        return "embedded" if cfg.spark.master.startswith("local") else "spark"
    return cfg.stream.writer


def _classic_session():
    """The classic (JVM) SparkSession this process runs, if any."""
    from pyspark.sql import SparkSession

    if os.environ.get("SPARK_CONNECT_MODE_ENABLED"):
        return None
    return SparkSession.getActiveSession()


def parse_size(text: str) -> int:
    """``4g``, ``512m``, ``2048k`` or a number of bytes, as bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        return int(float(value[:-1]) * units[value[-1]]) if value[-1:] in units else int(value)
    except ValueError:
        raise C360Error(f"batch.embedded_memory: {text!r} is not a size (e.g. 8g, 512m, or auto)") from None


def sail_env(memory_bytes: int | None, spill_dir: str) -> dict[str, str]:
    """The environment Sail's server starts with (it reads its settings from there: docs.lakesail.com,
    "Configuration"; pure, inspected by the tests): temporary (spill) files in ``spill_dir`` (checked by hand: a
    sort beyond the pool made its ``datafusion-*`` folders there) and, given ``memory_bytes``, a fair memory pool of
    that size (no single operator takes it all).

    None keeps Sail's own pool, unbounded: with a bounded one Sail 0.7.2 refused a refresh of the Superstore lines
    (``gold_product_performance``: an aggregation that reserved 44.1 GB for 1,862 products and failed, whatever the
    pool's size up to the machine's), so ``batch.embedded_memory = "auto"`` leaves the pool unbounded (the 1M
    refresh peaked at 2.1 GiB) and only a size set by the user bounds it."""
    env = {"SAIL_RUNTIME__TEMPORARY_FILES__PATHS": f'["{spill_dir}"]' if spill_dir else "[]"}
    if memory_bytes is not None:
        env |= {"SAIL_RUNTIME__MEMORY_POOL__TYPE": "fair", "SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE": str(memory_bytes)}
    return env


def scratch_folder(cfg: Config) -> Path | None:
    """This process's scratch folder for the embedded engine (:mod:`lakehouse.scratch`: removed once the process is
    gone, however it ends), or None where it cannot have one."""
    if not _folder:
        try:
            _folder.append(scratch.claim(scratch.root_for(cfg.spark.scratch_dir, cfg.lake.state_dir)))
        except OSError as exc:
            log.warning("no scratch folder of c360's own (%s): the system's temporary folder is used", exc)
            _folder.append(None)
    return _folder[0]


def use_scratch_folder(folder: Path | None) -> None:
    """Give this process ``folder`` as its scratch folder instead of claiming one (a child process of one that has
    a folder: its files go where the parent's go, and go with them)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    _folder[:] = [folder]


def _start_server(cfg: Config):
    global _server
    if _server is not None:
        return _server
    try:
        from pysail.spark import SparkConnectServer
    except ImportError as exc:
        raise C360Error(f"the embedded engine (pysail) is not installed ({exc}): run `make setup`, or set "
                        "batch.engine = \"spark\"") from None
    memory = cfg.batch.embedded_memory
    folder = scratch_folder(cfg)
    spill = str(folder / "embedded-spill") if folder else ""
    if spill:
        Path(spill).mkdir(parents=True, exist_ok=True)
    env = sail_env(None if memory == "auto" else parse_size(memory), spill)
    for key, value in env.items():
        os.environ.setdefault(key, value)  # a SAIL_* variable the user set wins
    # Sail logs every request at INFO and every no-op (persist, hints) at WARN on stderr; c360 says what matters
    os.environ.setdefault("RUST_LOG", "debug" if log.isEnabledFor(logging.DEBUG) else "error")
    # Sail ends a session idle for spark.session_timeout_secs (120 s by default): the stream's parse worker, idle
    # while no records come, then failed its next batch ("session ... is not running"); 30 days instead
    os.environ.setdefault("SAIL_SPARK__SESSION_TIMEOUT_SECS", str(SESSION_TIMEOUT_S))
    try:
        server = SparkConnectServer(cfg.spark.bind_address, 0)
        server.start(background=True)
    except Exception as exc:  # noqa: BLE001 - whatever the native server raises
        raise C360Error(f"the embedded engine (Sail) could not start: {str(exc).splitlines()[0][:300]}; set "
                        "batch.engine = \"spark\" to run on Spark instead") from None
    pool = os.environ.get("SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE", "")
    log.info("embedded engine (Sail) on %s:%s, memory pool %s, spill folder %s", *server.listening_address,
             f"{int(pool) / 2**30:.1f} GiB" if pool.isdigit() else "unbounded", spill or "the system's")
    _server = server
    return server


def get_session(cfg: Config, app_name: str = "c360", accelerator: str = "none", *, new: bool = False):
    """The session for batch work on :func:`resolve`'s engine: a Spark Connect session on the embedded engine, or
    :func:`lakehouse.spark.get_spark`'s (``accelerator``: Comet, Spark only). ``new``: a new Spark Connect session
    rather than the active one (which :func:`session_ended` says the engine ended)."""
    engine = resolve(cfg)
    if engine == "spark":
        from lakehouse.spark import get_spark

        return get_spark(cfg, app_name, accelerator=accelerator)
    if _classic_session() is not None:
        raise C360Error("batch.engine = \"embedded\", but this process already runs Spark: set batch.engine to "
                        "auto or spark")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and not new:
        return active
    # Spark Connect's client warns (a Python warning, on stderr) for every window over a whole table; c360's are
    # meant (RFM's quintiles rank every buyer), and c360's Spark log settings silence the same warning there
    warnings.filterwarnings("ignore", message="WARN WindowExpression: No Partition Defined", category=UserWarning)
    host, port = _start_server(cfg).listening_address
    builder = SparkSession.builder.remote(f"sc://{host}:{port}")
    spark = builder.create() if new else builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", cfg.spark.timezone)
    return spark


def session_ended(exc: BaseException) -> bool:
    """Whether ``exc`` is the embedded engine's answer to a request on a session it has ended (Sail: "session <id>
    is not running", after :data:`SESSION_TIMEOUT_S` idle, or a setting of the user's): the request did nothing, and
    runs again on a :func:`get_session` ``new=True``."""
    return bool(re.search(r"session \S+ is not running", str(exc)))


def is_embedded(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (the embedded engine's)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def read_table(spark, path: str, version: int | None = None):
    """The Delta table at ``path`` (at ``version``, else its current one) as a DataFrame of ``spark``.

    On Spark: Delta-Spark's reader. On the embedded engine: the Parquet files of that version, which delta-rs lists,
    read as Parquet with the table's schema, partition values added, whenever the table's protocol makes its files
    plain Parquet (reader version 1: no deletion vectors, no column mapping; c360's tables are). Sail 0.7.2's own
    Delta reader takes a column whose value is the same in every row of a file from the file's statistics in the
    log, and parses a double there one unit in the last place off (0.9353088190542783 reads 0.9353088190542784):
    found by the engines' parity test, in the CLV model row and its export. A table of a later protocol goes through
    Sail's reader."""
    if not is_embedded(spark):
        reader = spark.read.format("delta")
        return (reader.option("versionAsOf", version) if version is not None else reader).load(path)
    from lakehouse import lake

    table = lake.open_table(path, version)
    if table is None:
        raise C360Error(f"no Delta table at {path}")
    if table.protocol().min_reader_version > 1:
        return spark.read.format("delta").option("versionAsOf", table.version()).load(path)
    return _parquet_files(spark, table)


def _parquet_files(spark, table):
    """A plain-Parquet Delta table version read file by file: one read per partition, its values as columns."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = from_arrow_schema(pa.schema(table.schema().to_arrow()))
    parts = table.metadata().partition_columns
    files = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    uris = table.file_uris()  # the same files in the same order, as paths the engine opens (decoded, absolute)
    if not files:
        return spark.createDataFrame([], schema)
    data = type(schema)([f for f in schema.fields if f.name not in parts])
    groups: dict[tuple, list[str]] = {}
    for f, uri in zip(files, uris, strict=True):
        groups.setdefault(tuple(f.get(f"partition.{c}") for c in parts), []).append(uri)
    frames = []
    for values, paths in groups.items():
        df = spark.read.schema(data).parquet(*paths)
        if parts:
            df = df.withColumns({c: F.lit(v).cast(schema[c].dataType) for c, v in zip(parts, values, strict=True)})
        frames.append(df.select(*schema.fieldNames()))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out


def cached(df):
    """``df``, cached where the engine has a cache (Spark); as it is on the embedded engine, which has none and reads
    a table again quickly (:class:`Intermediates` is for results that are costly to compute)."""
    return df if is_embedded(df.sparkSession) else df.cache()


def release_spark() -> None:
    """Stop this process's classic Spark session and its JVM, if any, so that its next batch session can be the
    embedded engine's and the JVM's memory is given back (``c360 demo``: the stream, then gold)."""
    from pyspark import SparkContext

    session = _classic_session()
    if session is None:
        return
    session.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    try:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)  # the JVM PySpark launched (spark-submit), when it launched one
        if proc is not None:
            proc.stdin.close()  # the JVM's PythonGatewayServer exits when its stdin closes
            proc.wait(timeout=30)
    except Exception as exc:  # noqa: BLE001 - the session is stopped; a JVM that lingers costs memory, not results
        log.info("the stopped Spark session's JVM did not exit cleanly: %s", exc)
    SparkContext._gateway = None
    SparkContext._jvm = None


class Intermediates:
    """Results that several tables of one run read (a refresh's purchase and activity summaries...), computed once.

    Spark caches them (``cache()``: kept in memory, on disk beyond it, as the first job computes them). The
    embedded engine has no cache (Sail's ``persist()`` does nothing), so every table would compute them again from
    silver: there each is written once to Parquet in the process's scratch folder and read back from there."""

    def __init__(self, spark, cfg: Config):
        self.spark = spark
        self._cached: list = []
        self._folder: Path | None = None
        if is_embedded(spark):
            import tempfile

            base = scratch_folder(cfg)
            self._folder = Path(tempfile.mkdtemp(prefix="intermediates-", dir=base))

    def keep(self, df, name: str):
        """``df``, computed once: cached, or written to the scratch folder and read from there."""
        if self._folder is None:
            self._cached.append(df.cache())
            return df
        path = str(self._folder / name)
        df.write.mode("overwrite").parquet(path)
        # with its schema: Sail writes no file for no rows, and a folder without files has no schema to read
        return self.spark.read.schema(df.schema).parquet(path)

    def release(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
        if self._folder is not None:
            import shutil

            shutil.rmtree(self._folder, ignore_errors=True)


def run_below_stream(nice: int, pid: int | None = None) -> None:
    """Lower this process's (or process ``pid``'s) CPU priority by ``nice`` (``batch.nice``): batch work on the
    stream's machine then takes only the CPU the stream leaves, and the stream keeps its latency.

    On Linux the nice value belongs to each thread and a new thread (a JVM, Sail's or delta-rs' runtime threads)
    takes its creator's, so every thread the process already has is lowered and the ones it starts follow. Where
    the OS has no priorities (Windows) nothing changes.

    Linux's autogroup scheduling (on by default on most distributions) shares the CPU between sessions first and
    by nice only within one: a nice value does not reach a stream started in another session. A process that
    leads its own session (started by a scheduler, or with ``setsid``) therefore lowers its session's group as
    well; one started from a shell's session lowers only itself, which would otherwise lower the shell's other
    jobs too."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    me = pid or os.getpid()
    tasks = Path(f"/proc/{me}/task")
    ids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid or 0]
    for tid in ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError:  # a thread that ended meanwhile
            continue
    group = Path(f"/proc/{me}/autogroup")
    try:
        if os.getsid(me) == me and group.exists():
            group.write_text(str(min(19, nice)))
    except OSError:  # not allowed here: the threads' nice values still hold within the session
        log.debug("could not lower the session's scheduling group (%s)", group)
