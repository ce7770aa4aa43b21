"""The Spark session c360 starts loads its FAIR scheduler pools (jvm/fairscheduler.xml)."""

from __future__ import annotations

from streaming.app import INGEST_POOL


def test_the_session_has_the_ingest_pool_with_its_minimum_share(spark):
    pool = spark.sparkContext._jsc.sc().getPoolForName(INGEST_POOL)
    assert pool.isDefined(), "jvm/fairscheduler.xml was not loaded"
    assert pool.get().minShare() == 2 and pool.get().weight() == 4
