"""BI exports of the gold tables (seed 003): one CSV per table and Parquet, PII masked by default.

Layout under ``gold.export_dir``: ``csv/<table>.csv`` (one file, header row) and ``parquet/<table>/``; a table
written partitioned (``gold_spend_tiers``) is exported as one folder per partition value
(``csv/gold_spend_tiers/Gold/gold_spend_tiers.csv``...; seed 001). Emails become ``j***@example.com`` and phones
``******1234`` unless ``gold.mask_pii`` is false. Map and struct columns are written to CSV as JSON. Paths go
through Hadoop's file system API, so the export directory may be local or a URI like the lake.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


def mask_email(col: Column) -> Column:
    """``jane.doe@example.com`` -> ``j***@example.com``; text without an ``@`` -> ``***``."""
    return F.when(col.isNull(), col).when(col.contains("@"), F.regexp_replace(col, r"^(.)[^@]*@", "$1***@")) \
        .otherwise(F.lit("***"))


def mask_phone(col: Column) -> Column:
    """Every digit but the last four hidden: ``+91 98765 43210`` -> ``******3210``."""
    digits = F.regexp_replace(col, r"[^0-9]", "")
    return F.when(col.isNull(), col).otherwise(F.concat(F.lit("******"), F.substring(digits, -4, 4)))


PII = {"email": mask_email, "phone": mask_phone}


def masked(df: DataFrame) -> DataFrame:
    """``df`` with every PII column (``email``, ``phone``, ``*_email``, ``*_phone``) masked."""
    out = df
    for name in df.columns:
        for suffix, fn in PII.items():
            if name == suffix or name.endswith("_" + suffix):
                out = out.withColumn(name, fn(F.col(name)))
    return out


def _csv_ready(df: DataFrame) -> DataFrame:
    nested = (T.MapType, T.StructType, T.ArrayType)
    return df.select([F.to_json(F.col(f.name)).alias(f.name) if isinstance(f.dataType, nested) else F.col(f.name)
                      for f in df.schema.fields])


class _Fs:
    """Hadoop's FileSystem for a path (local or any URI Spark can write)."""

    def __init__(self, spark: SparkSession, path: str):
        self.jvm = spark._jvm
        self.root = self.jvm.org.apache.hadoop.fs.Path(path)
        self.fs = self.root.getFileSystem(spark._jsc.hadoopConfiguration())

    def path(self, text: str):
        return self.jvm.org.apache.hadoop.fs.Path(text)

    def delete_tree(self, text: str) -> None:
        self.fs.delete(self.path(text), True)

    def move_single_part(self, tmp_dir: str, target: str) -> None:
        """Move the one ``part-*`` file of a Spark output folder to ``target`` and drop the folder."""
        parts = [s.getPath() for s in self.fs.listStatus(self.path(tmp_dir)) if s.getPath().getName().startswith("part-")]
        dst = self.path(target)
        self.fs.mkdirs(dst.getParent())
        self.fs.delete(dst, False)
        if parts:
            self.fs.rename(parts[0], dst)
        self.delete_tree(tmp_dir)


def exported(spark: SparkSession, export_dir: str, name: str) -> bool:
    """True when ``export_dir`` holds an export of table ``name`` (CSV or Parquet)."""
    root = export_dir.rstrip("/")
    fs = _Fs(spark, root)
    return any(fs.fs.exists(fs.path(p)) for p in (f"{root}/csv/{name}.csv", f"{root}/csv/{name}",
                                                   f"{root}/parquet/{name}"))


def export_table(spark: SparkSession, df: DataFrame, name: str, export_dir: str, *, csv: bool = True,
                 parquet: bool = True, mask_pii: bool = True, partition_by: list[str] | None = None) -> list[str]:
    """Write the exports of one gold table; returns the paths written."""
    out = masked(df) if mask_pii else df
    root = export_dir.rstrip("/")
    written = []
    if parquet:
        target = f"{root}/parquet/{name}"
        writer = out.write.mode("overwrite")
        (writer.partitionBy(*partition_by) if partition_by else writer).parquet(target)
        written.append(target)
    if csv:
        fs = _Fs(spark, root)
        flat = _csv_ready(out)
        if partition_by:  # one folder per partition value (seed 001: Gold/, Silver/, Bronze/)
            (col,) = partition_by
            values = [r[0] for r in flat.select(col).distinct().collect()]
            fs.delete_tree(f"{root}/csv/{name}")
            for value in sorted(values, key=str):
                tmp, target = f"{root}/csv/.{name}-{value}.tmp", f"{root}/csv/{name}/{value}/{name}.csv"
                _write_csv(flat.where(F.col(col) == value).drop(col), tmp)
                fs.move_single_part(tmp, target)
                written.append(target)
        else:
            tmp, target = f"{root}/csv/.{name}.tmp", f"{root}/csv/{name}.csv"
            _write_csv(flat, tmp)
            fs.move_single_part(tmp, target)
            written.append(target)
    return written


def _write_csv(df: DataFrame, path: str) -> None:
    (df.coalesce(1).write.mode("overwrite").option("header", True)
     .option("timestampFormat", "yyyy-MM-dd HH:mm:ss").option("escape", "\"").option("emptyValue", "").csv(path))
