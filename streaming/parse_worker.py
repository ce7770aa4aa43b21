"""The stream's parse on the embedded engine (Sail), in a worker process of the ingest query.

Why (docs/performance.md, "Stream: the parse on the embedded engine"): on Spark every source of a micro-batch
cost 0.8-2.5 s of planning, optimizing and launching whatever its rows, so a batch of 17 sources took 10-14 s
even at 15,000 records. Sail plans and runs the same ``transform_source`` in tens of milliseconds a source.

A process runs either Spark's classic session or Spark Connect sessions (PySpark picks the implementation of its
functions for the whole process: :mod:`lakehouse.engine`), and the ingest query reads Kafka on Spark. So the parse
runs in a child process that holds a Sail session: the query writes each source's records of the batch to a
Parquet file in its scratch folder, the worker reads them and writes each source's rows
(:func:`streaming.embedded.source_rows`, the same code Spark would run) to Parquet files next to them, which the
query reads when the worker says they are done (the login views still answer as Arrow IPC over the pipe: a few
rows). The rows come back without the columns the query already holds (the raw key and value, the topic and the
source file; the query puts them back by partition and offset): measured on 100k clickstream records
(2026-12-07), the records in and out through Spark Connect's gRPC (``createDataFrame``, ``toArrow``) took 0.9 s
of the source's 2.2 s. Nothing is written to the lake there: the query's process commits everything, so a crash
of either process at any moment leaves no partial batch (the batch is simply parsed again, its files rewritten).

The child ends when the query closes it, or by itself when the query's process is gone (its end of the pipe
closes): it never outlives the stream.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lakehouse import scratch
from lakehouse.errors import C360Error, first_line

log = logging.getLogger(__name__)


def _ipc(tables: dict[str, pa.Table]) -> list[bytes]:
    """Each table as one Arrow IPC stream, its name in the schema's metadata."""
    out = []
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema.with_metadata({b"c360.name": name.encode()})) as writer:
            writer.write_table(table)
        out.append(sink.getvalue().to_pybytes())
    return out


def _read_ipc(data: bytes) -> tuple[str, pa.Table]:
    table = pa.ipc.open_stream(data).read_all()
    return table.schema.metadata[b"c360.name"].decode(), table.replace_schema_metadata(None)


@dataclass(frozen=True)
class _Failed:
    """A parse that raised in the worker: its message (the query's process raises it)."""

    message: str


# the columns of a source's rows that are its records' own, as the query's process has them (output -> input):
# the worker leaves them empty and the query puts them back (:func:`_put_back`)
PASSED = {"_raw_key": "key", "_raw_value": "value", "_kafka_topic": "topic", "_source_file": "_source_file"}
# what the parse reads of a record (streaming.bronze.transform_bronze's columns but the ingestion time)
_READ = ("key", "value", "topic", "partition", "offset", "kafka_timestamp", "_source_file", "_source_line")


def _parse_batch(spark, targets, inbox: str, threads: int) -> tuple[list[str], dict[str, float]]:
    """Each source's rows (:func:`streaming.embedded.source_rows` of its records, ``<inbox>/<source>.parquet``,
    listed biggest first) with the columns of :data:`PASSED` null, written to ``<inbox>/out/<source>`` (Parquet,
    uncompressed), and the seconds each took. Written by the engine rather than answered through Spark Connect:
    a 85k-record clickstream's rows (19 MB) took 1.07 s as ``toArrow`` against 0.89 s written and read back, and
    they skip the pipe to the query's process too (docs/performance.md)."""
    from pyspark.sql import functions as F

    from streaming.embedded import source_rows

    seconds: dict[str, float] = {}

    def parse(target) -> str:
        started = time.perf_counter()
        rows = source_rows(target, spark.read.parquet(f"{inbox}/{target.source.name}.parquet"))
        (rows.withColumns({c: F.lit(None).cast("string") for c in PASSED})
         .write.mode("overwrite").option("compression", "none").parquet(f"{inbox}/out/{target.source.name}"))
        seconds[target.source.name] = round(time.perf_counter() - started, 2)
        return target.source.name

    # on as many threads as cores: a query runs on one core (its input is one small file), and the engine runs
    # concurrent queries side by side
    with ThreadPoolExecutor(threads, thread_name_prefix="c360-parse") as pool:
        return list(pool.map(parse, targets)), seconds


def _read_rows(path: Path) -> pa.Table:
    """A source's rows as the worker wrote them, with the Arrow types both engines' ``toArrow`` give: a list's
    values are called ``element`` there, and ``item`` as pyarrow reads them from Parquet (the Delta writes and the
    engines' parity test see the difference)."""
    import pyarrow.parquet as pq

    def as_arrow(t: pa.DataType) -> pa.DataType:
        if pa.types.is_list(t):
            return pa.list_(pa.field("element", as_arrow(t.value_type), t.value_field.nullable))
        if pa.types.is_struct(t):
            return pa.struct([f.with_type(as_arrow(f.type)) for f in t])
        return t

    table = pq.read_table(path)
    return table.cast(pa.schema([f.with_type(as_arrow(f.type)) for f in table.schema]))


def _put_back(rows: pa.Table, records: pa.Table) -> pa.Table:
    """``rows`` (a source's, from :func:`_parse_batch`) with the columns of :data:`PASSED` taken from its
    ``records``, matched by Kafka partition and offset (one record each)."""
    import numpy as np

    mine = pa.table({"p": rows["_kafka_partition"], "o": rows["_kafka_offset"], "i": np.arange(rows.num_rows)})
    theirs = pa.table({"p": records["partition"], "o": records["offset"], "j": np.arange(records.num_rows)})
    pairs = mine.join(theirs, ["p", "o"]).sort_by("i")
    if pairs.num_rows != rows.num_rows:
        raise RuntimeError(f"the parse returned {rows.num_rows} rows that match {pairs.num_rows} of its records")
    taken = records.take(pairs["j"])
    for out, column in PASSED.items():
        i = rows.schema.get_field_index(out)
        rows = rows.set_column(i, pa.field(out, taken[column].type), taken[column])
    return rows


def _login_views(spark, rules, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """What a batch's new logins (``tables["arrived"]``, in silver already) change: the counts of their city x hour
    windows (:func:`streaming.city_hour.recount_windows`) and the anomalies they make visible
    (:func:`streaming.anomalies.arrival_anomalies`), from silver's logins around them (``tables["silver"]``)."""
    from streaming.anomalies import arrival_anomalies
    from streaming.city_hour import recount_windows

    logins, batch = spark.createDataFrame(tables["silver"]), spark.createDataFrame(tables["arrived"])
    return {"city_hour": recount_windows(logins, batch).toArrow(),
            "anomalies": arrival_anomalies(logins, batch, rules).toArrow()}


def _serve(conn, cfg, folder) -> None:
    """The worker's loop. A job in: ``("parse", (targets, inbox))`` (the records of each source in ``inbox``),
    answered by the seconds of each and its parsed rows; or ``("views", rules)`` then the batch's logins and
    silver's around them, answered by :func:`_login_views`' tables. A ``None`` message ends it."""
    from lakehouse import engine

    threads = max(1, min(4, os.cpu_count() or 1))
    engine.use_scratch_folder(folder)
    cfg = cfg.replace("batch", engine="embedded")
    session = [engine.get_session(cfg, "c360-stream-parse")]

    def run(job: tuple, views: dict[str, pa.Table]) -> tuple[list[str], dict[str, float], dict[str, pa.Table]]:
        kind, meta = job
        if kind == "parse":  # the rows in files (_parse_batch), only their names through the pipe
            return *_parse_batch(session[0], *meta, threads), {}
        out = _login_views(session[0], meta, views)
        return list(out), {}, out

    conn.send(True)  # ready
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the query's process is gone
            return
        if job is None:
            return
        try:
            views = dict(_read_ipc(conn.recv_bytes()) for _ in range(2)) if job[0] == "views" else {}
            try:
                names, seconds, out = run(job, views)
            except Exception as e:
                if not engine.session_ended(e):
                    raise
                # the engine ended the session (idle past its timeout): the job did nothing, and runs once more on
                # a new one rather than failing the batch
                log.warning("the embedded engine ended the parse worker's session (%s): the job runs on a new one",
                            first_line(e))
                session[0] = engine.get_session(cfg, "c360-stream-parse", new=True)
                names, seconds, out = run(job, views)
        except Exception as e:  # noqa: BLE001 - sent to the query's process, which raises it
            conn.send(_Failed(f"{type(e).__name__}: {e}"))
            continue
        conn.send((names, seconds))
        for data in _ipc(out):
            conn.send_bytes(data)


class ParseWorker:
    """The stream's parse on the embedded engine, in a child process (:func:`shared`: one per process, started on
    the first batch and kept)."""

    def __init__(self, cfg):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no Spark JVM, no classic session
        self._conn, child = context.Pipe()
        parent = scratch.current()  # the worker's spill files in the query process's scratch folder, gone with it
        folder = parent / "parse-worker" if parent is not None else None
        self._process = context.Process(target=_serve, args=(child, cfg, folder), name="c360-stream-parse",
                                        daemon=True)
        self._process.start()
        child.close()
        self._inbox = Path(folder or tempfile.mkdtemp(prefix="c360-parse-")) / "inbox"
        self._own_inbox = folder is None
        try:
            self._conn.recv()
        except EOFError:
            raise C360Error("the stream's parse worker (the embedded engine) did not start: see the log above, "
                            "or set stream.writer = \"spark\"") from None

    def parse(self, records: dict) -> tuple[dict[str, pa.Table], dict[str, float]]:
        """Each source's records (``{target: the batch's rows of its topic}``) -> its rows from
        :func:`streaming.embedded.source_rows`, and the seconds each took."""
        import pyarrow.parquet as pq

        self._inbox.mkdir(parents=True, exist_ok=True)
        for target, rows in records.items():  # uncompressed: written and read once, at memory speed
            pq.write_table(rows.select(_READ), self._inbox / f"{target.source.name}.parquet", compression="none")
        order = sorted(records, key=lambda t: -records[t].num_rows)  # the biggest first
        names, seconds = self._call(("parse", (order, str(self._inbox))), {})
        by_name = {t.source.name: rows for t, rows in records.items()}
        return {name: _put_back(_read_rows(self._inbox / "out" / name), by_name[name]) for name in names}, seconds

    def login_views(self, rules, arrived: pa.Table, silver: pa.Table) -> dict[str, pa.Table]:
        """:func:`_login_views` of a batch's logins (``arrived``) and silver's logins around them."""
        return self._ask(("views", rules), {"arrived": arrived, "silver": silver})[0]

    def _ask(self, job: tuple, tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], dict[str, float]]:
        """A job whose answer's tables come through the pipe."""
        names, seconds = self._call(job, tables)
        try:
            return dict(_read_ipc(self._conn.recv_bytes()) for _ in names), seconds
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise self._stopped() from None

    def _call(self, job: tuple, tables: dict[str, pa.Table]) -> tuple[list[str], dict[str, float]]:
        """Send a job and its tables; the answer's names and seconds."""
        try:
            self._conn.send(job)
            for data in _ipc(tables):
                self._conn.send_bytes(data)
            answer = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise self._stopped() from None
        if isinstance(answer, _Failed):
            raise RuntimeError(f"the {job[0]} job on the embedded engine failed: {answer.message}")
        return answer

    def _stopped(self) -> C360Error:
        return C360Error(f"the stream's parse worker stopped (exit code {self._process.exitcode}): see the log "
                         "above; the batch runs again when the stream restarts")

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
        self._conn.close()
        if self._own_inbox:
            shutil.rmtree(self._inbox.parent, ignore_errors=True)


_shared: list[ParseWorker] = []
_lock = threading.Lock()


def shared(cfg=None) -> ParseWorker:
    """This process's parse worker, started on first use (with ``cfg``'s embedded-engine settings; the default
    configuration when None) and stopped at exit."""
    with _lock:
        if not _shared:
            if cfg is None:
                from lakehouse.config import load

                cfg = load()
            _shared.append(ParseWorker(cfg))
            atexit.register(close_shared)
        return _shared[0]


def close_shared() -> None:
    """Stop this process's parse worker, if it runs."""
    with _lock:
        while _shared:
            _shared.pop().close()
