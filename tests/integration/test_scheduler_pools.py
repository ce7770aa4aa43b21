"""The Spark session c360 starts loads its FAIR scheduler pools (jvm/fairscheduler.xml), its static settings and
the environment of its Python workers."""

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


def test_python_workers_do_not_log_pysparks_own_pandas_concat_warning(spark):
    """applyInPandasWithState's serializer (PySpark's code) makes pandas warn in most batches; the workers ignore
    that warning from that module, and only from it."""
    import warnings

    from lakehouse.spark import PANDAS_STATE_SERIALIZER

    def shown(module: str) -> int:
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("concatenation with empty or all-NA entries", FutureWarning, "serializers.py", 1,
                                   module=module)
        return len(seen)

    rows = spark.sparkContext.parallelize([PANDAS_STATE_SERIALIZER, "streaming.anomalies"], 1).map(shown).collect()
    assert rows == [0, 1]
