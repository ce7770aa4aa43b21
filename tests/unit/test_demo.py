from c360.demo import demo_config
from lakehouse import config


def test_demo_has_its_own_workspace_and_topics():
    cfg = demo_config(config.load(environ={"C360_LAKE_ROOT": "/data/my-lake", "C360_GOLD_EXPORT_DIR": "/bi"}))
    assert (cfg.lake.root, cfg.lake.checkpoint_root, cfg.lake.data_dir, cfg.gold.export_dir) == (
        "demo/lake", "demo/checkpoints", "demo/data", "demo/exports")
    assert cfg.kafka.topic("logins") == "demo.logins"


def test_on_an_external_cluster_each_demo_run_gets_topics_of_its_own():
    cfg = demo_config(config.load(environ={"C360_KAFKA_BOOTSTRAP": "kafka.example:9092"}))
    assert cfg.kafka.topic_prefix.startswith("c360-demo-") and cfg.kafka.topic_prefix != "demo."


def test_the_demo_driver_compiles_with_c1_only_and_your_own_jvm_options_come_after():
    from lakehouse.spark import QUICK_JIT, spark_conf

    cfg = demo_config(config.load(environ={}))
    assert cfg.spark.settings == {"spark.driver.extraJavaOptions": QUICK_JIT}
    assert spark_conf(cfg, []).get("spark.driver.extraJavaOptions", "").endswith(QUICK_JIT)
    own = '{"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=4", "spark.executor.memory": "2g"}'
    cfg = demo_config(config.load(environ={"C360_SPARK_CONF": own}))
    assert cfg.spark.settings == {"spark.driver.extraJavaOptions": f"{QUICK_JIT} -XX:TieredStopAtLevel=4",
                                  "spark.executor.memory": "2g"}
