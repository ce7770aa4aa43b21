"""Engine-neutral lake helpers: what c360 asks of a Delta table's log and of the file system, on any engine.

The batch commands run on Spark or on the embedded engine (:mod:`lakehouse.engine`), and the embedded one has no
JVM: no ``DeltaTable.forPath``, no Hadoop file system. So a table's versions, history, existence and file
statistics are read here with delta-rs (the ``deltalake`` package, which reads the log itself: no query, no job,
milliseconds), tables are created with it, and files are moved with pyarrow's file systems (local, S3, GCS,
Azure, HDFS). What only Delta-Spark does stays on Spark and says so where it is used: the stream's idempotent
writes (transaction ids), ``VACUUM`` and ``REORG`` (``c360 forget``, the stream's maintenance).

Object stores: Spark's ``s3a://`` is ``s3://`` to delta-rs and pyarrow; both take credentials from the environment
(``AWS_ACCESS_KEY_ID``...), as Spark's connectors do.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

log = logging.getLogger(__name__)

_SCHEMES = {"s3a://": "s3://", "s3n://": "s3://"}


def uri(path: str) -> str:
    """``path`` as delta-rs and pyarrow name it (``s3a://b/k`` -> ``s3://b/k``)."""
    for spark_scheme, scheme in _SCHEMES.items():
        if path.startswith(spark_scheme):
            return scheme + path[len(spark_scheme):]
    return path


def open_table(path: str, version: int | None = None):
    """The ``deltalake.DeltaTable`` at ``path`` (at ``version``), or None when no Delta table is there."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri(path), version=version)
    except TableNotFoundError:
        return None


def version(path: str) -> int | None:
    """The current version of the Delta table at ``path`` (to read it consistently with ``versionAsOf``), or None
    when there is no table."""
    table = open_table(path)
    return None if table is None else int(table.version())


def last_commit(path: str) -> tuple[int, datetime] | None:
    """The table's current version and when it was committed (UTC), or None when there is no table."""
    table = open_table(path)
    if table is None:
        return None
    (entry,) = table.history(1)
    return int(table.version()), datetime.fromtimestamp(entry["timestamp"] / 1000, tz=timezone.utc).replace(
        tzinfo=None)


def file_stats_counts(path: str, version: int) -> tuple[int, dict[str, int | None]] | None:
    """Rows and nulls per column of a Delta table at ``version``, from the per-file statistics Delta keeps in its
    log (``numRecords``, ``nullCount``): no data file is read.

    None when there is no table, or the statistics cannot answer for the rows: a file without them (written with
    statistics off), or with a deletion vector (its counts include the rows it deletes). A column that some file
    has no null count for maps to None: Delta counts only the first ``delta.dataSkippingNumIndexedCols`` (32)
    columns and no maps or arrays, and files written before a column was added hold none for it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = open_table(path, version)
    if table is None:
        return None
    files = pa.table(table.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return 0, {}
    if pc.any(pc.is_null(files["num_records"])).as_py() or _has_deletion_vectors(table):
        return None
    prefix = "null_count."
    counts: dict[str, int | None] = {}
    for name in files.column_names:
        if not name.startswith(prefix) or not pa.types.is_integer(files[name].type):
            continue  # (a struct column's counts are nested: null_count.s.a)
        column = name[len(prefix):]
        if "." in column:
            continue
        counts[column] = None if files[name].null_count else int(pc.sum(files[name]).as_py() or 0)
    return int(pc.sum(files["num_records"]).as_py() or 0), counts


def _has_deletion_vectors(table) -> bool:
    """Whether a file of ``table`` (a ``deltalake.DeltaTable``) has rows deleted by a deletion vector (the add
    actions delta-rs lists do not say; only a table whose protocol allows them is asked)."""
    import pyarrow as pa

    if "deletionVectors" not in (table.protocol().reader_features or []):
        return False
    return pa.table(table.deletion_vectors()).num_rows > 0


def create_table(path: str, schema, partition_by: list[str] | None = None,
                 properties: dict[str, str] | None = None) -> bool:
    """Create an empty Delta table at ``path`` with ``schema`` (a Spark ``StructType``) unless one is there; a
    table there that lacks columns of ``schema`` gains them (metadata only). True when it created the table."""
    from deltalake import DeltaTable
    from deltalake.schema import Field, Schema
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema)
    table = open_table(path)
    if table is None:
        try:
            DeltaTable.create(uri(path), schema=arrow, partition_by=partition_by or None,
                              configuration=properties or None, mode="ignore")
            return True
        except Exception as exc:  # noqa: BLE001 - another writer made it first: that table is checked below
            table = open_table(path)
            if table is None:
                raise
            log.info("%s was created meanwhile (%s)", path, str(exc).splitlines()[0][:200])
    have = {f.name.lower() for f in table.schema().fields}
    missing = [f for f in Schema.from_arrow(arrow).fields if f.name.lower() not in have]
    if missing:
        table.alter.add_columns([Field(f.name, f.type, nullable=True) for f in missing])
        log.info("added column(s) %s to %s", ", ".join(f.name for f in missing), path)
    return False


# --- files --------------------------------------------------------------------------------------------------------

def filesystem(path: str):
    """pyarrow's file system for ``path`` and the path within it."""
    from pyarrow import fs

    target = uri(path)
    if "://" not in target:
        from pathlib import Path

        return fs.LocalFileSystem(), str(Path(target).absolute())
    return fs.FileSystem.from_uri(target)


class Files:
    """The files under one root (a local folder or an object store URI), through pyarrow's file systems: what the
    exports do with the files an engine wrote (list, join, rename, delete)."""

    def __init__(self, root: str):
        self.fs, base = filesystem(root)
        self._root, self._base = root.rstrip("/"), base.rstrip("/")

    def _p(self, path: str) -> str:
        """``path`` (under the root, as the caller names it) within the file system."""
        path = path.rstrip("/")
        if not path.startswith(self._root):
            raise ValueError(f"{path} is not under {self._root}")
        return self._base + path[len(self._root):]

    def exists(self, path: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self._p(path)).type != fs.FileType.NotFound

    def delete_tree(self, path: str) -> None:
        from pyarrow import fs

        info = self.fs.get_file_info(self._p(path))
        if info.type == fs.FileType.Directory:
            self.fs.delete_dir(info.path)
        elif info.type == fs.FileType.File:
            self.fs.delete_file(info.path)

    def children(self, folder: str, prefix: str) -> list[str]:
        """The names in ``folder`` that start with ``prefix``, sorted (none when it does not exist)."""
        from pyarrow import fs

        info = self.fs.get_file_info(fs.FileSelector(self._p(folder), allow_not_found=True))
        return sorted(i.base_name for i in info if i.base_name.startswith(prefix))

    def data_files(self, folder: str) -> list[str]:
        """The data files an engine wrote into ``folder``, in their order: Spark's ``part-00000-...``, Sail's
        ``<id>_0.csv``... (not Spark's ``_SUCCESS`` or ``.crc`` files)."""
        names = [n for n in self.children(folder, "") if not n.startswith(("_", ".")) and not n.endswith(".crc")]
        return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])

    def join_parts(self, folder: str, header: str, target: str) -> None:
        """``header`` and then the data files of an engine's output folder (:meth:`data_files`), in their order,
        as one file at ``target`` (replaced whole: assembled beside it, then renamed)."""
        dst = self._p(target)
        self.fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
        tmp = f"{self._p(folder)}.joined"
        with self.fs.open_output_stream(tmp) as out:
            out.write(header.encode("utf-8"))
            for name in self.data_files(folder):
                with self.fs.open_input_stream(f"{self._p(folder)}/{name}") as part:
                    while chunk := part.read(1 << 20):
                        out.write(chunk)
        self.delete_tree(target)
        self.fs.move(tmp, dst)
