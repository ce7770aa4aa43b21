"""The gold refresh reads one pinned silver snapshot: writes that land after it starts are not seen."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from batch.gold import SilverSnapshot, _schema_of
from lakehouse.tables import table_path

pytestmark = pytest.mark.integration


def test_a_snapshot_ignores_writes_after_it_was_taken(spark, cfg):
    path = table_path(cfg.lake.root, "silver_logins")
    schema = _schema_of("silver_logins")
    one = spark.createDataFrame([("L1", "C1")], "login_id string, customer_id string")
    one.select([(one[f.name] if f.name in one.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                for f in schema.fields]).write.format("delta").save(path)
    snap = SilverSnapshot(spark, cfg.lake.root, ["silver_logins", "silver_orders"])
    spark.read.format("delta").load(path).write.format("delta").mode("append").save(path)  # the stream writes on
    assert spark.read.format("delta").load(path).count() == 2
    assert snap.read("silver_logins").count() == 1  # pinned at the version of the start
    assert snap.missing == ["silver_orders"] and snap.read("silver_orders").count() == 0  # not written yet: empty
    assert snap.read("silver_orders").schema == _schema_of("silver_orders")
