"""Kafka security (TLS and SASL) settings, from one configuration to every client c360 runs.

The non-secret settings live in ``[kafka]`` (``security_protocol``, ``sasl_mechanism``, ``sasl_username``,
``ssl_*``). Secrets come only from the environment, never from a config file, a flag or a log line:
``C360_KAFKA_SASL_PASSWORD`` and ``C360_KAFKA_SSL_KEY_PASSWORD``. The same settings go to the librdkafka clients
(the replay producer, topic administration) and to Spark's Kafka source and sink (the Java client), spelled as
each expects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lakehouse.config import SASL_PASSWORD_ENV, SSL_KEY_PASSWORD_ENV, KafkaConfig
from lakehouse.errors import C360Error

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _uses_sasl(k: KafkaConfig) -> bool:
    return k.security_protocol.startswith("SASL_")


def _uses_ssl(k: KafkaConfig) -> bool:
    return k.security_protocol.endswith("SSL")


def _secret(environ: Mapping[str, str], name: str, why: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise C360Error(f"{why}: set the environment variable {name} (secrets are read only from the environment)")
    return value


def _file(path: str, key: str) -> str:
    if not Path(path).is_file():
        raise C360Error(f"kafka.{key} names {path}, which is not a readable file")
    return str(Path(path).resolve())


def _checked(k: KafkaConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(SASL password, SSL key password) after checking that the settings are complete."""
    password = key_password = None
    if _uses_sasl(k):
        if not k.sasl_username:
            raise C360Error(f"kafka.security_protocol is {k.security_protocol}: set kafka.sasl_username "
                            "(C360_KAFKA_SASL_USERNAME)")
        password = _secret(environ, SASL_PASSWORD_ENV, f"kafka.security_protocol is {k.security_protocol}")
    if _uses_ssl(k):
        for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if getattr(k, key):
                _file(getattr(k, key), key)
        if bool(k.ssl_certificate_location) != bool(k.ssl_key_location):
            raise C360Error("a client certificate needs both kafka.ssl_certificate_location and "
                            "kafka.ssl_key_location")
        key_password = environ.get(SSL_KEY_PASSWORD_ENV) or None
    return password, key_password


def client_security(k: KafkaConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka (confluent-kafka) settings: the producer and the admin client."""
    env = os.environ if environ is None else environ
    password, key_password = _checked(k, env)
    out = {"security.protocol": k.security_protocol.lower()}
    if _uses_sasl(k):
        out |= {"sasl.mechanism": k.sasl_mechanism, "sasl.username": k.sasl_username, "sasl.password": password}
    if _uses_ssl(k):
        out["ssl.endpoint.identification.algorithm"] = "https" if k.ssl_check_hostname else "none"
        if k.ssl_ca_location:
            out["ssl.ca.location"] = _file(k.ssl_ca_location, "ssl_ca_location")
        if k.ssl_certificate_location:
            out["ssl.certificate.location"] = _file(k.ssl_certificate_location, "ssl_certificate_location")
            out["ssl.key.location"] = _file(k.ssl_key_location, "ssl_key_location")
            if key_password:
                out["ssl.key.password"] = key_password
    return out


def jaas_quote(text: str) -> str:
    """A JAAS option value: double-quoted, with quotes and backslashes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_security(k: KafkaConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Spark Kafka source/sink options (``kafka.``-prefixed Java client settings).

    The JAAS line holds the password: Spark redacts option values matching ``spark.redaction.regex`` (which
    matches ``password``) and the Java client prints it as ``[hidden]``."""
    env = os.environ if environ is None else environ
    password, key_password = _checked(k, env)
    out = {"kafka.security.protocol": k.security_protocol}
    if _uses_sasl(k):
        out["kafka.sasl.mechanism"] = k.sasl_mechanism
        out["kafka.sasl.jaas.config"] = (f"{_LOGIN_MODULES[k.sasl_mechanism]} required "
                                         f"username={jaas_quote(k.sasl_username)} "
                                         f"password={jaas_quote(password or '')};")
    if _uses_ssl(k):
        out["kafka.ssl.endpoint.identification.algorithm"] = "https" if k.ssl_check_hostname else ""
        if k.ssl_ca_location:  # PEM files, as librdkafka takes them (Kafka clients read PEM since 2.7)
            out["kafka.ssl.truststore.type"] = "PEM"
            out["kafka.ssl.truststore.location"] = _file(k.ssl_ca_location, "ssl_ca_location")
        if k.ssl_certificate_location:
            out["kafka.ssl.keystore.type"] = "PEM"
            out["kafka.ssl.keystore.certificate.chain"] = Path(k.ssl_certificate_location).read_text()
            out["kafka.ssl.keystore.key"] = Path(k.ssl_key_location).read_text()
            if key_password:
                out["kafka.ssl.key.password"] = key_password
    return out
