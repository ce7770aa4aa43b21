import dataclasses

import pytest

from lakehouse import config
from lakehouse.errors import C360Error


def test_defaults_load_and_embedded_bootstrap():
    cfg = config.load(environ={})
    assert cfg.kafka.embedded
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert cfg.kafka.topic("customers") == "c360.customers"
    assert cfg.spark.master == "local[*]"
    assert "yyyy-MM-dd HH:mm:ss" in cfg.stream.timestamp_formats


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {"C360_KAFKA_BOOTSTRAP": "broker:9092", "C360_KAFKA_PARTITIONS": "6", "C360_SPARK_MASTER": "spark://m:7077"}
    cfg = config.load(environ=env)
    assert (cfg.kafka.bootstrap_servers, cfg.kafka.partitions, cfg.spark.master) == ("broker:9092", 6, "spark://m:7077")
    assert not cfg.kafka.embedded
    cfg = config.load(environ=env, overrides={"kafka": {"bootstrap": "other:9093", "partitions": None}})
    assert (cfg.kafka.bootstrap_servers, cfg.kafka.partitions) == ("other:9093", 6)


def test_config_file_layer(tmp_path):
    f = tmp_path / "c360.toml"
    f.write_text('[lake]\nroot = "s3a://bucket/c360"\n[business]\nchurn_at_risk_days = 14\n')
    cfg = config.load(f, environ={"C360_BUSINESS_CHURN_CHURNED_DAYS": "60"})
    assert cfg.lake.root == "s3a://bucket/c360"
    assert (cfg.business.churn_at_risk_days, cfg.business.churn_churned_days) == (14, 60)


def test_list_values_from_environment():
    cfg = config.load(environ={"C360_STREAM_TIMESTAMP_FORMATS": "yyyy-MM-dd, dd/MM/yyyy"})
    assert cfg.stream.timestamp_formats == ("yyyy-MM-dd", "dd/MM/yyyy")


@pytest.mark.parametrize(("env", "message"), [
    ({"C360_KAFKA_PARTITIONS": "many"}, "kafka.partitions: 'many' is not a valid int"),
    ({"C360_SPARK_UI_ENABLED": "perhaps"}, "spark.ui_enabled"),
    ({"C360_KAFKA_PARTITIONS": "0"}, "kafka.partitions must be at least 1"),
    ({"C360_BUSINESS_CHURN_AT_RISK_DAYS": "120"}, "churn_at_risk_days must be positive and below"),
    ({"C360_BUSINESS_REPORT_MONTH": "2024-13"}, "business.report_month must be YYYY-MM"),
    ({"C360_BUSINESS_SPEND_TIER_SILVER_ABOVE": "3000"}, "spend_tier_gold_above must be above"),
    ({"C360_BUSINESS_CLV_GOLD_MIN": "100"}, "clv_platinum_min > clv_gold_min > clv_silver_min"),
    ({"C360_BUSINESS_CLV_TIME_UNIT": "M"}, "clv_time_unit must be D or W"),
    ({"C360_BUSINESS_ENGAGEMENT_WEIGHT_STATUS": "-1"}, "must not be negative and must not all be 0"),
    ({"C360_GOLD_MASK_PII": "maybe"}, "gold.mask_pii"),
    ({"C360_GOLD_ACCELERATOR": "gpu"}, "gold.accelerator must be none, comet or auto"),
    ({"C360_GOLD_ACCELERATOR_MEMORY": "lots"}, "gold.accelerator_memory must be auto or a size"),
    ({"C360_GOLD_ACCELERATOR_MEMORY": "0g"}, "gold.accelerator_memory must be auto or a size"),
    ({"C360_DASHBOARD_PORT": "70000"}, "dashboard.port must be a TCP port"),
    ({"C360_DASHBOARD_REFRESH_SECONDS": "0.1"}, "dashboard.refresh_seconds must be at least 0.5"),
    ({"C360_DASHBOARD_TOP_CUSTOMERS": "0"}, "dashboard.top_customers, latest_anomalies and cities must be at least 1"),
    ({"C360_DASHBOARD_MASK_PII": "sometimes"}, "dashboard.mask_pii"),
    ({"C360_STREAM_BROKER_OUTAGE_S": "5"}, "stream.broker_outage_s must be at least 10"),
    ({"C360_STREAM_PARALLEL_SOURCES": "0"}, "stream.parallel_sources must be at least 1"),
    ({"C360_STREAM_TRIGGER_INTERVAL": "5"}, "stream.trigger_interval must be a time like '5 seconds'"),
    ({"C360_STREAM_DERIVED_TRIGGER_INTERVAL": "1.5 minutes"}, "stream.derived_trigger_interval must be a time"),
    ({"C360_STREAM_ANOMALY_WATERMARK": "45 minuets"}, "stream.anomaly_watermark must be a time"),
])
def test_bad_values_give_one_line_errors(env, message):
    with pytest.raises(C360Error, match=message.replace("(", r"\(")) as info:
        config.load(environ=env)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["5 seconds", "1 second", "1 minute 30 seconds", "interval 2 hours", "45 MINUTES", "500 milliseconds"])
def test_intervals_spark_takes_are_accepted(text):
    assert config.load(environ={"C360_STREAM_TRIGGER_INTERVAL": text}).stream.trigger_interval == text


def test_unknown_keys_and_sections_are_refused(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[kafka]\nbootsrap = 'x'\n")
    with pytest.raises(C360Error, match="unknown config key kafka.bootsrap"):
        config.load(f, environ={})
    f.write_text("[kafak]\nbootstrap = 'x'\n")
    with pytest.raises(C360Error, match=r"unknown config section \[kafak\]"):
        config.load(f, environ={})
    with pytest.raises(C360Error, match="config file not found"):
        config.load(tmp_path / "missing.toml", environ={})


def test_config_is_frozen_and_replace_checks_values():
    cfg = config.load(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kafka.partitions = 9  # type: ignore[misc]
    assert cfg.replace("kafka", partitions="4").kafka.partitions == 4
    with pytest.raises(C360Error):
        cfg.replace("kafka", local_port=70000)


def test_the_broker_outage_limit_becomes_the_kafka_source_timeouts():
    from streaming.app import broker_wait_options

    default = broker_wait_options(config.load(environ={}).stream.broker_outage_s)
    assert (default["fetchOffset.numRetries"], default["kafka.default.api.timeout.ms"]) == ("3", "60000")  # 180 s
    assert default["kafka.request.timeout.ms"] == "30000" and default["kafkaConsumer.pollTimeoutMs"] == "180000"
    short = broker_wait_options(20)  # one attempt; the admin client refuses a request timeout above the api timeout
    assert (short["fetchOffset.numRetries"], short["kafka.default.api.timeout.ms"],
            short["kafka.request.timeout.ms"]) == ("1", "20000", "20000")
    assert broker_wait_options(150)["fetchOffset.numRetries"] == "3"
    assert broker_wait_options(150)["kafka.default.api.timeout.ms"] == "50000"


def test_spark_settings_from_every_layer_merge_key_by_key_and_the_later_wins(tmp_path):
    f = tmp_path / "c360.toml"
    # quoted keys, and unquoted dotted ones (which TOML nests), typed values as Spark takes them: text
    f.write_text('[spark.conf]\n"spark.executor.memory" = "8g"\nspark.executor.cores = 4\n'
                 '"spark.sql.adaptive.enabled" = false\n"spark.cores.max" = "16"\n')
    env = {"C360_SPARK_CONF": '{"spark.cores.max": 8, "spark.eventLog.enabled": true}'}
    cfg = config.load(f, environ=env, overrides={"spark": {"conf": {"spark.executor.memory": "12g"}}})
    assert cfg.spark.settings == {"spark.executor.memory": "12g", "spark.executor.cores": "4",
                                  "spark.sql.adaptive.enabled": "false", "spark.cores.max": "8",
                                  "spark.eventLog.enabled": "true"}
    assert cfg.replace("spark", master="spark://m:7077").spark.settings == cfg.spark.settings
    hash(cfg)  # the configuration stays frozen and hashable
    assert config.load(environ={}).spark.settings == {}


@pytest.mark.parametrize(("env", "message"), [
    ({"C360_SPARK_CONF": "executor memory 8g"}, "bad config value for spark.conf: expected a table of Spark settings"),
    ({"C360_SPARK_CONF": '["spark.executor.memory"]'}, "expected a table of Spark settings"),
    ({"C360_SPARK_CONF": '{"spark.executor.memory": [8]}'}, "spark.executor.memory = [8] is not a string, number"),
    ({"C360_SPARK_CONF": '{"executor.memory": "8g"}'}, "'executor.memory' is not a Spark setting"),
    ({"C360_SPARK_CONF": '{"spark.sql.shuffle.partitions": "64"}'}, "c360 sets spark.sql.shuffle.partitions itself: "
                                                                    "set spark.shuffle_partitions"),
    ({"C360_SPARK_CONF": '{"spark.driver.memory": "8g"}'}, "set spark.driver_memory or gold.driver_memory"),
    ({"C360_SPARK_CONF": '{"spark.sql.catalog.spark_catalog": "x"}'}, "c360's tables need Delta's catalog"),
    ({"C360_SPARK_CONF": '{"spark.driver.host": "10.0.0.5"}'}, "c360 sets spark.driver.host itself: set "
                                                               "spark.bind_address"),
    ({"C360_SPARK_CONF": '{"spark.hadoop.fs.s3a.access.key": "AKIA"}'}, "looks like a secret"),
    ({"C360_SPARK_CONF": '{"spark.ssl.keyPassword": "x"}'}, "looks like a secret"),
])
def test_bad_spark_settings_are_refused_in_one_line(env, message):
    with pytest.raises(C360Error, match="spark.conf") as err:
        config.load(environ=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_cluster_driver_may_set_its_own_host():
    cfg = config.load(environ={"C360_SPARK_MASTER": "k8s://https://api:6443",
                               "C360_SPARK_CONF": '{"spark.driver.host": "10.0.0.5"}'})
    assert cfg.spark.settings == {"spark.driver.host": "10.0.0.5"}
