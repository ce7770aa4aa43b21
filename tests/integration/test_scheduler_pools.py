"""The Spark session c360 starts loads its FAIR scheduler pools (jvm/fairscheduler.xml) and its static settings."""

from __future__ import annotations

from streaming.app import INGEST_POOL


def test_the_session_has_the_ingest_pool_with_its_minimum_share(spark):
    pool = spark.sparkContext._jsc.sc().getPoolForName(INGEST_POOL)
    assert pool.isDefined(), "jvm/fairscheduler.xml was not loaded"
    assert pool.get().minShare() == 2 and pool.get().weight() == 4


def test_the_session_caches_the_compiled_code_of_a_whole_micro_batch(spark):
    # a static setting: ignored, with only a warning, if it were set once the session had started
    from lakehouse.spark import CODEGEN_CACHE_ENTRIES

    assert spark.conf.get("spark.sql.codegen.cache.maxEntries") == str(CODEGEN_CACHE_ENTRIES)
