"""Kafka clients for c360 (confluent-kafka, i.e. librdkafka): is the broker there, and the topics c360 writes.

librdkafka's own log lines go through Python logging (logger ``librdkafka``), so a refused connection is not
printed to the terminal: c360 reports what matters in one line itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping

from lakehouse.errors import C360Error

log = logging.getLogger(__name__)
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def client_config(bootstrap: str, security: Mapping[str, str] | None = None, **extra) -> dict:
    """The settings every c360 Kafka client shares; ``security``: :func:`lakehouse.kafka_security.client_security`."""
    return {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG, "client.id": "c360", **(security or {}), **extra}


def security_hint(error) -> str | None:
    """A one-line message when a librdkafka error says the broker refused c360's TLS or SASL settings."""
    from confluent_kafka import KafkaError

    code = error.code()
    text = re.sub(r"\s*\(after \d+ms in state \w+\)$", "", error.str())
    if code == KafkaError._AUTHENTICATION or "SASL" in text or "Authentication" in text:
        return (f"Kafka refused c360's credentials ({text.split(': ', 1)[-1]}): check kafka.sasl_username, "
                f"kafka.sasl_mechanism and the environment variable C360_KAFKA_SASL_PASSWORD")
    if code == KafkaError._SSL or "SSL handshake" in text or "certificate" in text:
        return (f"the TLS connection to Kafka failed ({text.split(': ', 1)[-1]}): check kafka.security_protocol "
                f"and kafka.ssl_ca_location")
    return None


def unreachable_hint(bootstrap: str, embedded: bool) -> str:
    if embedded:
        return f"no Kafka broker answers at {bootstrap}: start the local one with `c360 kafka start`"
    return (f"no Kafka broker answers at {bootstrap}: check C360_KAFKA_BOOTSTRAP (or kafka.bootstrap in the "
            f"config file), or unset it to use the local broker")


def cluster_metadata(bootstrap: str, timeout_s: float, embedded: bool = False,
                     security: Mapping[str, str] | None = None):
    """(admin client, cluster metadata), or a one-line error within ``timeout_s`` when no broker answers or the
    broker refuses c360's TLS/SASL settings."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    refused: list[str] = []

    def on_error(error) -> None:
        hint = security_hint(error)
        if hint:
            refused.append(hint)

    admin = AdminClient(client_config(bootstrap, security, error_cb=on_error))
    try:
        return admin, admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        log.debug("metadata request failed: %s", exc)
        admin.poll(0)  # serve the errors librdkafka queued meanwhile (a refused login shows up only there)
        hint = security_hint(exc.args[0]) if exc.args else None
        raise C360Error(hint or (refused[-1] if refused else unreachable_hint(bootstrap, embedded))) from None


def broker_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True once a broker answers a metadata request."""
    try:
        cluster_metadata(bootstrap, timeout_s)
        return True
    except C360Error:
        return False


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int:
    _, md = cluster_metadata(bootstrap, timeout_s)
    return len(md.topics[topic].partitions) if topic in md.topics else 0


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    partitions: int,
    retention_hours: int,
    timeout_s: float,
    embedded: bool = False,
    security: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    Replication is 1 on a single-broker cluster and up to 3 on larger ones.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin, md = cluster_metadata(bootstrap, timeout_s, embedded, security)
    wanted = [t for t in dict.fromkeys(topics) if t not in md.topics]
    if not wanted:
        return []
    replication = min(3, len(md.brokers) or 1)
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=replication,
                  config={"retention.ms": str(retention_hours * 3600 * 1000)}) for t in wanted],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created by someone else meanwhile: fine
                raise C360Error(f"could not create topic {topic}: {exc.args[0].str()}") from None
    log.info("created topics %s (%d partitions, replication %d)", ", ".join(wanted), partitions, replication)
    return wanted


def delete_topics(bootstrap: str, prefix: str, timeout_s: float, security: Mapping[str, str] | None = None
                  ) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (the demo's own topics); returns their names."""
    from confluent_kafka import KafkaException

    admin, md = cluster_metadata(bootstrap, timeout_s, security=security)
    doomed = sorted(t for t in md.topics if t.startswith(prefix))
    if not doomed:
        return []
    for topic, future in admin.delete_topics(doomed, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            raise C360Error(f"could not delete topic {topic}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s  # deletion completes asynchronously: wait before reusing the names
    while time.monotonic() < deadline and set(doomed) & set(admin.list_topics(timeout=timeout_s).topics):
        time.sleep(0.2)
    return doomed
