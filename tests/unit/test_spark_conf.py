import os
from pathlib import Path

import pytest

from lakehouse import config
from lakehouse.spark import spark_conf


def test_session_settings_follow_the_configuration():
    cfg = config.load(environ={"C360_SPARK_SHUFFLE_PARTITIONS": "8", "C360_SPARK_DRIVER_MEMORY": "6g"})
    conf = spark_conf(cfg, ["/j/a.jar", "/j/b.jar"])
    # local master: the jars go on the driver's class path where they are (no copy per session into /tmp)
    assert conf["spark.driver.extraClassPath"] == os.pathsep.join(["/j/a.jar", "/j/b.jar"])
    assert "spark.jars" not in conf
    assert conf["spark.driver.memory"] == "6g"
    assert conf["spark.sql.shuffle.partitions"] == conf["spark.databricks.delta.snapshotPartitions"] == "8"
    assert conf["spark.sql.sources.parallelPartitionDiscovery.parallelism"] == "8"  # VACUUM: not 10,000 tasks
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1" and conf["spark.ui.enabled"] == "false"
    assert "spark.jars.packages" not in conf
    assert int(conf["spark.sql.codegen.cache.maxEntries"]) >= 1000  # a batch of every source: ~700 classes, not 100


def test_the_catalogs_warehouse_folder_is_in_the_state_folder_not_the_working_directory():
    conf = spark_conf(config.load(environ={"C360_LAKE_STATE_DIR": "/srv/c360"}), [])
    assert conf["spark.sql.warehouse.dir"] == "/srv/c360/spark-warehouse"


def test_a_cluster_master_is_not_pinned_to_localhost_and_gets_the_jars_shipped():
    conf = spark_conf(config.load(environ={"C360_SPARK_MASTER": "spark://m:7077"}), ["/j/a.jar", "/j/b.jar"])
    assert conf["spark.master"] == "spark://m:7077" and "spark.driver.bindAddress" not in conf
    assert conf["spark.jars"] == "/j/a.jar,/j/b.jar" and "spark.driver.extraClassPath" not in conf


@pytest.mark.parametrize(("master", "class_path"), [
    ("local[*]", ["/j/delta.jar", "/j/comet.jar"]),  # every jar once, Comet's too
    ("spark://m:7077", ["/j/comet.jar"]),  # the others are shipped with spark.jars
])
def test_comet_settings_keep_the_drivers_class_path(master, class_path):
    from lakehouse.spark import comet_conf

    conf = spark_conf(config.load(environ={"C360_SPARK_MASTER": master}), ["/j/delta.jar", "/j/comet.jar"],
                      accelerator=comet_conf(["/j/comet.jar"], "2g"))
    assert conf["spark.driver.extraClassPath"].split(os.pathsep) == class_path
    assert conf["spark.plugins"] == "org.apache.spark.CometPlugin" and conf["spark.sql.extensions"]


def test_the_ingest_pool_comes_first_in_the_fair_scheduler():
    import xml.etree.ElementTree as ET

    from streaming.app import INGEST_POOL
    from streaming.outputs import ANOMALY_QUERY, CITY_HOUR_QUERY

    conf = spark_conf(config.load(environ={}), [])
    assert conf["spark.scheduler.mode"] == "FAIR"
    pools = {p.get("name"): p for p in ET.parse(conf["spark.scheduler.allocation.file"]).getroot().iter("pool")}
    ingest = pools[INGEST_POOL]
    assert int(ingest.findtext("minShare")) >= 2 and int(ingest.findtext("weight")) > 1
    for query in (ANOMALY_QUERY, CITY_HOUR_QUERY):  # listed (else Spark warns on their first job), and behind
        assert int(pools[query].findtext("minShare")) == 0 and int(pools[query].findtext("weight")) == 1


def test_comet_settings_load_its_plugin_and_shuffle_with_the_memory_off_the_heap():
    from lakehouse.spark import COMET_SHUFFLE_MANAGER, comet_conf

    conf = comet_conf(["/s/jars/comet/comet-spark-spark4.1_2.13-1.2.0.jar"], "3g")
    assert conf["spark.plugins"] == "org.apache.spark.CometPlugin"
    assert conf["spark.shuffle.manager"] == COMET_SHUFFLE_MANAGER and conf["spark.comet.shuffle.enabled"] == "true"
    assert conf["spark.driver.extraClassPath"] == "/s/jars/comet/comet-spark-spark4.1_2.13-1.2.0.jar"
    assert conf["spark.executor.extraClassPath"] == "comet-spark-spark4.1_2.13-1.2.0.jar"
    assert conf["spark.memory.offHeap.enabled"] == "true" and conf["spark.memory.offHeap.size"] == "3g"
    assert conf["spark.comet.convert.parquet.enabled"] == "true"  # Delta's scans feed Comet's operators


@pytest.mark.parametrize(("heap", "off_heap"), [("11g", "5g"), ("4g", "2g"), ("2g", "1g"), ("1g", "1g"),
                                                ("4096m", "2g"), ("16G", "8g"), ("3g", "1g"),
                                                ("8192", "4g")])
def test_comet_memory_is_half_the_heap_and_at_least_1g(heap, off_heap):
    from lakehouse.spark import auto_off_heap

    assert auto_off_heap(heap) == off_heap


GLIBC = ("glibc", "2.36")


@pytest.mark.parametrize(("name", "system", "machine", "libc", "runs_on"), [
    ("auto", "Linux", "x86_64", GLIBC, "comet"), ("auto", "Linux", "aarch64", GLIBC, "comet"),
    ("auto", "Linux", "arm64", GLIBC, "comet"), ("auto", "Linux", "x86_64", ("glibc", "2.30"), "comet"),
    ("auto", "Linux", "x86_64", ("glibc", "2.28"), "none"),  # RHEL 8, Debian 10: Comet's library needs 2.30
    ("auto", "Linux", "aarch64", ("glibc", "2.26"), "none"),  # Amazon Linux 2
    ("auto", "Linux", "x86_64", ("", ""), "none"),  # musl (Alpine): not glibc, whatever platform.libc_ver() says
    ("auto", "Linux", "x86_64", ("libc", ""), "none"),
    ("auto", "Darwin", "arm64", ("", ""), "none"), ("auto", "Windows", "AMD64", ("", ""), "none"),
    ("auto", "Linux", "ppc64le", GLIBC, "none"),
    ("comet", "Linux", "x86_64", GLIBC, "comet"), ("none", "Linux", "x86_64", GLIBC, "none"),
    ("none", "Darwin", "arm64", ("", ""), "none"), ("none", "Linux", "x86_64", ("glibc", "2.17"), "none"),
])
def test_auto_runs_on_comet_only_where_its_native_library_can_load(name, system, machine, libc, runs_on):
    from lakehouse.spark import resolve_accelerator

    assert resolve_accelerator(name, system, machine, libc) == runs_on


def test_comet_where_it_cannot_run_is_refused_in_one_line():
    from lakehouse.errors import C360Error
    from lakehouse.spark import resolve_accelerator

    with pytest.raises(C360Error, match=r"^Comet's native library is built for Linux on x86_64 and aarch64 only, "
                                        r"not Darwin arm64: set gold.accelerator to auto .* or none$"):
        resolve_accelerator("comet", "Darwin", "arm64", ("", ""))
    with pytest.raises(C360Error, match=r"^Comet's native library needs glibc 2.30 or newer, and this Linux has glibc "
                                        r"2.28: set gold.accelerator to auto .* or none$"):
        resolve_accelerator("comet", "Linux", "x86_64", ("glibc", "2.28"))
    with pytest.raises(C360Error, match=r"^Comet's native library needs glibc 2.30 or newer, and this Linux has a C "
                                        r"library that is not glibc \(or not recognized\): set gold.accelerator"):
        resolve_accelerator("comet", "Linux", "aarch64", ("", ""))


def test_auto_goes_on_without_comet_when_its_jar_cannot_be_fetched_and_comet_fails(monkeypatch, caplog):
    from lakehouse import spark as s
    from lakehouse.errors import C360Error

    fetched = []

    def unreachable(state_dir, which):
        fetched.append(which)
        raise C360Error("mvn could not fetch the comet jars (is Maven Central reachable?): offline")

    monkeypatch.setattr(s, "comet_blocker", lambda *a: None)
    monkeypatch.setattr(s, "ensure_jars", unreachable)
    assert s._comet_jars("/state", "none") == [] and fetched == []
    with caplog.at_level("WARNING", logger="lakehouse.spark"):
        assert s._comet_jars("/state", "auto") == []
    assert fetched == ["comet"] and "Comet is not available (mvn could not fetch the comet jars" in caplog.text
    with pytest.raises(C360Error, match="mvn could not fetch the comet jars"):
        s._comet_jars("/state", "comet")
    monkeypatch.setattr(s, "ensure_jars", lambda state_dir, which: [Path(state_dir, "jars", which, "c.jar")])
    assert s._comet_jars("/state", "auto") == ["/state/jars/comet/c.jar"]
    monkeypatch.setattr(s, "comet_blocker", lambda *a: "Comet's native library needs glibc 2.30 or newer")
    with caplog.at_level("INFO", logger="lakehouse.spark"):
        assert s._comet_jars("/state", "auto") == []
    assert caplog.records[-1].getMessage() == ("gold.accelerator auto: Comet's native library needs glibc 2.30 or "
                                               "newer; Spark's own engine")


@pytest.mark.parametrize("master", ["local[*]", "spark://m:7077"])
def test_the_users_spark_settings_win_and_add_to_the_lists(master):
    from lakehouse.spark import comet_conf

    cfg = config.load(environ={"C360_SPARK_MASTER": master}, overrides={"spark": {"conf": {
        "spark.executor.memory": "8g", "spark.cleaner.periodicGC.interval": "5min",
        "spark.jars": "/opt/hadoop-aws.jar", "spark.driver.extraClassPath": "/opt/extra.jar",
        "spark.sql.extensions": "com.example.Ext", "spark.plugins": "com.example.Plugin",
        "spark.driver.extraJavaOptions": "-XX:+UseZGC -Dx=1"}}})
    conf = spark_conf(cfg, ["/j/delta.jar"], "-Xshare:auto", comet_conf(["/j/comet.jar"], "2g"))
    assert conf["spark.executor.memory"] == "8g" and conf["spark.cleaner.periodicGC.interval"] == "5min"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension,com.example.Ext"
    assert conf["spark.plugins"] == "org.apache.spark.CometPlugin,com.example.Plugin"
    assert conf["spark.driver.extraJavaOptions"].endswith("-Xshare:auto -XX:+UseZGC -Dx=1")
    assert conf["spark.driver.extraJavaOptions"].startswith("-Dlog4j2.configurationFile=")
    if master.startswith("local"):
        assert conf["spark.jars"] == "/opt/hadoop-aws.jar"
        assert conf["spark.driver.extraClassPath"].split(os.pathsep) == ["/j/delta.jar", "/j/comet.jar", "/opt/extra.jar"]
    else:
        assert conf["spark.jars"] == "/j/delta.jar,/opt/hadoop-aws.jar"
        assert conf["spark.driver.extraClassPath"].split(os.pathsep) == ["/j/comet.jar", "/opt/extra.jar"]
    assert spark_conf(config.load(environ={}), [])["spark.cleaner.periodicGC.interval"] == "1min"
