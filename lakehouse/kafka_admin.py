"""Kafka administration for c360: is the broker there, and the topics c360 writes to."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from lakehouse.errors import C360Error

log = logging.getLogger(__name__)


def unreachable_hint(bootstrap: str, embedded: bool) -> str:
    if embedded:
        return f"no Kafka broker answers at {bootstrap}: start the local one with `c360 kafka start`"
    return (f"no Kafka broker answers at {bootstrap}: check C360_KAFKA_BOOTSTRAP (or kafka.bootstrap in the "
            f"config file), or unset it to use the local broker")


def admin_client(bootstrap: str, timeout_s: float, embedded: bool = False):
    """A connected KafkaAdminClient, or a one-line error within ``timeout_s`` when no broker answers."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        left_ms = max(500, int((deadline - time.monotonic()) * 1000))
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=left_ms,
                                    request_timeout_ms=max(left_ms, 5000), reconnect_backoff_max_ms=1000)
        except KafkaConfigurationError:
            raise
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.5)
    log.debug("admin connection failed: %r", last)
    raise C360Error(unreachable_hint(bootstrap, embedded))


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    partitions: int,
    retention_hours: int,
    timeout_s: float,
    embedded: bool = False,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    Replication is 1 on a single-broker cluster and up to 3 on larger ones.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = admin_client(bootstrap, timeout_s, embedded)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        brokers = len(admin.describe_cluster().get("brokers", [])) or 1
        replication = min(3, brokers)
        new = [
            NewTopic(t, num_partitions=partitions, replication_factor=replication,
                     topic_configs={"retention.ms": str(retention_hours * 3600 * 1000)})
            for t in wanted
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # created by someone else meanwhile
            admin.create_topics(new)
        log.info("created topics %s (%d partitions, replication %d)", ", ".join(wanted), partitions, replication)
        return wanted
    finally:
        admin.close()
