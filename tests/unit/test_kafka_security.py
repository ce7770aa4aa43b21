"""Kafka TLS/SASL settings: one configuration, spelled for librdkafka and for Spark's Java client; secrets only
from the environment, never in the configuration or its printout, redacted by Spark."""

from __future__ import annotations

import re

import pytest

from lakehouse import config
from lakehouse.errors import C360Error
from lakehouse.kafka_security import client_security, spark_security
from lakehouse.spark import spark_conf
from tests.unit.test_cli_errors import assert_one_line_error, run_cli

PASSWORD = 'pa"ss\\word'  # quotes and backslashes must survive the JAAS line


def _kafka(**values):
    return config.load(environ={}, overrides={"kafka": values}).kafka


def test_plaintext_by_default_adds_nothing_but_the_protocol():
    k = _kafka()
    assert client_security(k, {}) == {"security.protocol": "plaintext"}
    assert spark_security(k, {}) == {"kafka.security.protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_and_a_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    k = _kafka(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="etl",
               ssl_ca_location=str(ca))
    env = {"C360_KAFKA_SASL_PASSWORD": PASSWORD}
    assert client_security(k, env) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "etl",
        "sasl.password": PASSWORD, "ssl.endpoint.identification.algorithm": "https", "ssl.ca.location": str(ca)}
    assert spark_security(k, env) == {
        "kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                  'username="etl" password="pa\\"ss\\\\word";',
        "kafka.ssl.endpoint.identification.algorithm": "https",
        "kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": str(ca)}


def test_client_certificate_and_no_hostname_check(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("CERT")
    key.write_text("-----BEGIN PRIVATE KEY-----")
    k = _kafka(security_protocol="SSL", ssl_certificate_location=str(cert), ssl_key_location=str(key),
               ssl_check_hostname=False)
    env = {"C360_KAFKA_SSL_KEY_PASSWORD": "kp"}
    assert client_security(k, env) == {
        "security.protocol": "ssl", "ssl.endpoint.identification.algorithm": "none",
        "ssl.certificate.location": str(cert), "ssl.key.location": str(key), "ssl.key.password": "kp"}
    assert spark_security(k, env) == {
        "kafka.security.protocol": "SSL", "kafka.ssl.endpoint.identification.algorithm": "",
        "kafka.ssl.keystore.type": "PEM", "kafka.ssl.keystore.certificate.chain": "CERT",
        "kafka.ssl.keystore.key": "-----BEGIN PRIVATE KEY-----", "kafka.ssl.key.password": "kp"}


@pytest.mark.parametrize(("values", "env", "message"), [
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "etl"}, {}, "set the environment variable "
                                                                          "C360_KAFKA_SASL_PASSWORD"),
    ({"security_protocol": "SASL_SSL"}, {"C360_KAFKA_SASL_PASSWORD": "x"}, "set kafka.sasl_username"),
    ({"security_protocol": "SSL", "ssl_ca_location": "/nope/ca.pem"}, {}, "not a readable file"),
    ({"security_protocol": "SSL", "ssl_certificate_location": __file__}, {}, "needs both"),
])
def test_incomplete_settings_say_what_is_missing(values, env, message):
    k = _kafka(**values)
    for build in (client_security, spark_security):
        with pytest.raises(C360Error, match=re.escape(message)):
            build(k, env)


@pytest.mark.parametrize(("values", "message"), [
    ({"security_protocol": "TLS"}, "kafka.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ({"sasl_mechanism": "GSSAPI"}, "kafka.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    ({"sasl_password": "x"}, "secrets are read only from the environment (C360_KAFKA_SASL_PASSWORD)"),
])
def test_bad_or_secret_settings_are_refused(values, message):
    with pytest.raises(C360Error, match=re.escape(message)):
        config.load(environ={}, overrides={"kafka": values})


def test_a_password_in_a_config_file_is_refused_in_one_line(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[kafka]\nsasl_password = "hunter2"\n')
    proc = run_cli("config", "--config", str(f))
    assert_one_line_error(proc, 1, "kafka.sasl_password cannot be set in a config file")
    assert "hunter2" not in proc.stderr


def test_the_printed_configuration_never_holds_the_password():
    proc = run_cli("config", env={"C360_KAFKA_SASL_PASSWORD": "hunter2", "C360_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                  "C360_KAFKA_SASL_USERNAME": "etl"})
    assert proc.returncode == 0, proc.stderr
    assert "security_protocol" in proc.stdout and "SASL_SSL" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr


def test_spark_redacts_the_jaas_line_and_a_client_key():
    pattern = re.compile(spark_conf(config.load(environ={}), [])["spark.redaction.regex"])
    for key, value in (("kafka.sasl.jaas.config", "... required username=\"u\" password=\"p\";"),
                       ("kafka.ssl.keystore.key", "-----BEGIN PRIVATE KEY-----"),
                       ("kafka.ssl.key.password", "kp")):
        assert pattern.search(key) or pattern.search(value), key
    assert not pattern.search("kafka.bootstrap.servers") and not pattern.search("broker:9092")
