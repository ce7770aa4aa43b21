"""Delta Lake helpers: tables that exist before anyone reads them, idempotent writes, bounded retries.

foreachBatch is at-least-once: a batch may run again after a failure. Every write made in it is therefore
tagged with an application id and the batch id, so Delta skips a write it has already committed:
appends through the writer options ``txnAppId``/``txnVersion``, MERGE through the session confs
``spark.databricks.delta.write.txnAppId``/``txnVersion`` (MERGE ignores the writer options). Use one app id per
(query, table, operation): two writes sharing one in a batch would silently skip the second.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

log = logging.getLogger(__name__)
T = TypeVar("T")

_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def ensure_table(spark: SparkSession, path: str, schema: StructType, partition_by: list[str] | None = None,
                 properties: dict[str, str] | None = None) -> None:
    """Create an empty Delta table at ``path`` unless one is there; a table there that lacks columns of
    ``schema`` (made by an older c360) gains them, empty (``ALTER TABLE ADD COLUMNS``: metadata only)."""
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    try:
        table = retry(builder.execute, what=f"create {path}")
    except Exception as exc:  # noqa: BLE001 - py4j wraps the JVM's exceptions
        # a process killed while creating the table leaves a _delta_log without a commit, which Delta then
        # refuses to create a table over: that log holds nothing, so it goes and the creation is tried again
        if not is_missing_table(exc) or not _drop_uncommitted_log(spark, path):
            raise
        table = retry(builder.execute, what=f"create {path}")
    have = {f.name.lower() for f in table.toDF().schema.fields}
    missing = [f for f in schema.fields if f.name.lower() not in have]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        location = path.replace("`", "``")
        retry(lambda: spark.sql(f"ALTER TABLE delta.`{location}` ADD COLUMNS ({columns})"), what=f"alter {path}")
        log.info("added column(s) %s to %s", ", ".join(f.name for f in missing), path)


def _drop_uncommitted_log(spark: SparkSession, path: str) -> bool:
    """Delete ``<path>/_delta_log`` when it holds no commit or checkpoint (a creation that never committed);
    True when it did."""
    jvm = spark._jvm
    log_dir = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log_dir.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(log_dir):
        return False
    names = [st.getPath().getName() for st in fs.listStatus(log_dir)]
    if any(re.fullmatch(r"\d{20}\..*", n) or n == "_last_checkpoint" for n in names):
        return False
    fs.delete(log_dir, True)
    log.warning("removed the uncommitted transaction log of %s (a creation interrupted earlier): %s", path,
                ", ".join(names) or "empty")
    return True


def append_idempotent(df: DataFrame, path: str, *, app_id: str, version: int,
                      partition_by: list[str] | None = None, new: bool = False) -> None:
    """Append ``df`` once per (app_id, version): a repeat of the same version writes nothing.

    Every append is tagged ``app_id:version`` (its commit's ``userMetadata``), and a repeat is found by that tag
    among the table's last 100 commits (:func:`_committed`: their commit infos, one small Spark job, ~0.2 s).
    Only when those cannot tell (a table an older c360 appended to, untagged) does the append also carry Delta's
    transaction id (``txnAppId``), whose check costs a rebuild of the table's state (three small Spark jobs, most
    of a small append's time). ``new=True`` says the caller knows this version was never written (a streaming
    query's batches after the first of its run: Spark re-runs only the last batch of a crashed run, and only as
    the first batch of the next one), so the history is not even read."""
    tag = txn_tag(app_id, version)
    writer = df.write.format("delta").mode("append").option("userMetadata", tag)
    if not new:
        done = _committed(df.sparkSession, path, app_id, version)
        if done:
            log.info("%s: %s is already committed, skipped", path, tag)
            return
        if done is None:
            writer = writer.option("txnAppId", app_id).option("txnVersion", str(version))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    retry(lambda: writer.save(path), what=f"append to {path}")


def is_committed(spark: SparkSession, path: str, app_id: str, version: int) -> bool:
    """Whether a commit tagged ``(app_id, version)`` (:func:`idempotent_txn`, :func:`append_idempotent`) is among the
    table's last 100 commits."""
    return _committed(spark, path, app_id, version) is True


def _committed(spark: SparkSession, path: str, app_id: str, version: int, depth: int = 100) -> bool | None:
    """Whether the append ``(app_id, version)`` is committed to the table at ``path``, as the tags of its last
    ``depth`` commits tell; None when they cannot tell.

    Appends of this c360 are all tagged and a run re-writes only its newest batch, so: the tag is there -> True;
    another batch of ``app_id`` is there (tagged, so written by this c360) -> False; the table's whole history is
    there and holds no untagged append (a new table) -> False; else an untagged append of an older c360 may be the
    one -> None (Delta's transaction id decides)."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, path).history(depth).select("version", "operation", "userMetadata").collect()
    tags = {r.userMetadata for r in rows}
    if txn_tag(app_id, version) in tags:
        return True
    mine = re.compile(re.escape(app_id) + r":\d+")
    if any(t and mine.fullmatch(t) for t in tags):
        return False
    if rows and min(r.version for r in rows) == 0 and not any(r.operation == "WRITE" and not r.userMetadata
                                                               for r in rows):
        return False
    return None


class QueryRun:
    """The foreachBatch function of one run of a streaming query (one ``start()``) that writes with
    :func:`append_idempotent`: it calls ``write(df, batch_id, new)``, ``new`` telling whether the batch can skip the
    check for an earlier commit. Only a run's first batch can be one a crashed run had partly written (Spark runs the
    last planned batch again, as the first batch of the next run); every later batch of the run is new. Make a new
    one for each start of the query."""

    def __init__(self, write: Callable[[DataFrame, int, bool], None]):
        self.write = write
        self._last_done: int | None = None

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        new = self._last_done is not None and batch_id > self._last_done
        self.write(df, batch_id, new)
        self._last_done = batch_id


USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@contextlib.contextmanager
def commit_metadata(spark: SparkSession, tag: str) -> Iterator[None]:
    """Within this block, Delta commits of ``spark`` carry ``tag`` as their ``userMetadata`` (DESCRIBE HISTORY)."""
    spark.conf.set(USER_METADATA, tag)
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA)


@contextlib.contextmanager
def idempotent_txn(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Within this block, Delta commits of ``spark`` (MERGE included) happen once per (app_id, version); each
    carries ``app_id:version`` as its ``userMetadata``, so that a run skipped as already committed can find its
    commit (:func:`committed_metrics`)."""
    spark.conf.set(_TXN_APP_ID, app_id)
    spark.conf.set(_TXN_VERSION, str(version))
    try:
        with commit_metadata(spark, txn_tag(app_id, version)):
            yield
    finally:
        spark.conf.unset(_TXN_APP_ID)
        spark.conf.unset(_TXN_VERSION)


def txn_tag(app_id: str, version: int) -> str:
    """The ``userMetadata`` of the commits :func:`idempotent_txn` makes."""
    return f"{app_id}:{version}"


def committed_metrics(table, tag: str, operation: str | None = None, depth: int = 100) -> dict:
    """The operation metrics of the newest commit of a ``DeltaTable`` tagged ``tag`` (:func:`commit_metadata`),
    of ``operation`` if given, among its last ``depth`` commits ({} if none)."""
    from pyspark.sql import functions as F

    mine = F.col("userMetadata") == tag
    if operation:
        mine &= F.col("operation") == operation
    rows = table.history(depth).where(mine).select("operationMetrics").collect()
    return dict(rows[0].operationMetrics or {}) if rows else {}


@contextlib.contextmanager
def short_vacuum_retention(spark: SparkSession, hours: int) -> Iterator[None]:
    """Within this block VACUUM may keep files for fewer hours than Delta's safe minimum (168): its check is off
    then, and only then."""
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    if hours >= 168:
        yield
        return
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        spark.conf.unset(key)


def is_missing_table(exc: BaseException) -> bool:
    """True when ``exc`` says the path holds no Delta table (yet)."""
    text = str(exc)
    return any(m in text for m in ("DELTA_MISSING_DELTA_TABLE", "is not a Delta table", "PATH_NOT_FOUND",
                                   "DELTA_TABLE_NOT_FOUND"))


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(name in text for name in (
        "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
        "MetadataChangedException", "ConcurrentTransactionException", "ProtocolChangedException",
        "DELTA_CONCURRENT",
    ))


def retry(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay_s: float = 0.5) -> T:
    """Run ``fn``, retrying Delta write conflicts with bounded, jittered exponential backoff.

    Safe because c360's writes are idempotent; any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - py4j wraps the JVM's exceptions
            if attempt == attempts or not _is_conflict(exc):
                raise
            delay = base_delay_s * 2 ** (attempt - 1) * (0.5 + random.random())
            log.warning("write conflict on %s (attempt %d/%d), retrying in %.1fs", what, attempt, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def insert_new(spark: SparkSession, df: DataFrame, path: str, keys: tuple[str, ...] | list[str]) -> None:
    """Insert the rows of ``df`` whose ``keys`` the Delta table at ``path`` does not hold yet: a rerun inserts
    nothing twice. SQL ``MERGE INTO``, which Spark and the embedded engine both run (Delta-Spark's
    ``DeltaTable.merge`` is the JVM's only); conflicts retried."""
    import uuid

    view = f"c360_new_rows_{uuid.uuid4().hex[:12]}"
    df.createOrReplaceTempView(view)
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    location = path.replace("`", "``")
    try:
        retry(lambda: spark.sql(f"MERGE INTO delta.`{location}` AS t USING {view} AS s ON {cond} "
                                "WHEN NOT MATCHED THEN INSERT *").collect(), what=f"merge into {path}")
    finally:
        spark.catalog.dropTempView(view)
