"""The workload whose classes go into the class-data sharing archive (:mod:`lakehouse.cds`).

``python -m lakehouse.cds_workload ARCHIVE``: starts the driver JVM as c360 does, with the JVM told to write the
classes it loaded to ARCHIVE when it exits, runs a little of what every c360 command runs (a Delta table created,
appended to with a transaction id, MERGEd into and read; window functions, an aggregation, an Arrow transfer to
pandas; the Kafka source's planning, which needs no broker), then stops the JVM and waits until it has written the
archive. Kept small on purpose: the classes of Spark's core, SQL and Delta's commit path are most of the gain (a
workload that also streamed a micro-batch of three sources and ran OPTIMIZE and VACUUM took 63 s instead of 34 s
and gave no measurable extra). Everything it writes goes to a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def run(archive: Path) -> None:
    from delta.tables import DeltaTable
    from pyspark import SparkContext
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    from lakehouse import config
    from lakehouse.jars import ensure_jars
    from lakehouse.spark import spark_conf

    cfg = config.load(overrides={"spark": {"driver_memory": "1g"}})
    jars = [str(p) for p in ensure_jars(cfg.lake.state_dir, "spark")]
    builder = SparkSession.builder.appName("c360-cds")
    for key, value in spark_conf(cfg, jars, java_options=f"-XX:ArchiveClassesAtExit={archive}").items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="c360-cds-") as tmp:
        path = f"{tmp}/t"
        rows = spark.range(100).select(F.col("id").cast("string").alias("id"), (F.col("id") % 7).alias("g"),
                                       (F.col("id") * 1.5).cast("decimal(12,2)").alias("amount"))
        rows.write.format("delta").partitionBy("g").save(path)
        rows.write.format("delta").mode("append").option("txnAppId", "a").option("txnVersion", "1").save(path)
        (DeltaTable.forPath(spark, path).alias("t").merge(rows.alias("s"), "t.id = s.id")
         .whenMatchedUpdate(set={"amount": "s.amount"}).whenNotMatchedInsertAll().execute())
        df = spark.read.format("delta").load(path)
        ranked = df.select("*", F.percent_rank().over(Window.partitionBy("g").orderBy("amount")).alias("p"))
        ranked.groupBy("g").agg(F.sum("amount"), F.collect_set("p")).toPandas()
        spark.readStream.format("kafka").option("kafka.bootstrap.servers", "127.0.0.1:9").option(
            "subscribe", "c360").load()
        spark.stop()
    # the JVM writes the archive on its way out: close its stdin (it then exits) and wait for it
    proc = SparkContext._gateway.proc
    proc.stdin.close()
    proc.wait(timeout=600)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
