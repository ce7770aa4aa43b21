"""The embedded broker manager against a real Kafka process."""

import pytest

from lakehouse.errors import C360Error
from lakehouse.kafka_admin import ensure_topics, topic_partitions
from lakehouse.kafka_local import LocalKafka, free_port, port_open
from tests.conftest import STATE_DIR

pytestmark = pytest.mark.integration


def test_session_broker_is_real_and_start_is_idempotent(kafka):
    status = kafka.status()
    assert status.running and status.pid
    assert kafka.start().pid == status.pid  # a second start leaves the running broker alone


def test_topics_are_created_once_with_the_configured_partitions(kafka):
    created = ensure_topics(kafka.bootstrap, ["it.a", "it.b"], partitions=3, retention_hours=1, timeout_s=10)
    assert created == ["it.a", "it.b"]
    assert ensure_topics(kafka.bootstrap, ["it.a"], partitions=3, retention_hours=1, timeout_s=10) == []
    assert topic_partitions(kafka.bootstrap, "it.a") == 3


def test_a_taken_port_is_a_clear_error(kafka, tmp_path):
    other = LocalKafka(STATE_DIR, "127.0.0.1", kafka.port, free_port(), home=tmp_path / "k2")
    with pytest.raises(C360Error, match=f"port {kafka.port} on 127.0.0.1 is already in use"):
        other.start()


def test_stop_and_status_of_a_separate_broker(tmp_path):
    broker = LocalKafka(STATE_DIR, "127.0.0.1", free_port(), free_port(), heap="256m", home=tmp_path / "k3")
    assert not broker.status().running
    assert broker.stop() is False
    broker.start()
    try:
        assert broker.status().running and port_open("127.0.0.1", broker.port)
    finally:
        assert broker.stop() is True
    assert not broker.status().running and not port_open("127.0.0.1", broker.port)
    assert (tmp_path / "k3" / "data" / "meta.properties").exists()  # formatted once, kept for the next start


def test_delete_topics_by_prefix_leaves_the_others(kafka):
    from lakehouse.kafka_admin import cluster_metadata, delete_topics

    ensure_topics(kafka.bootstrap, ["demo-x.a", "demo-x.b", "keep.a"], partitions=1, retention_hours=1, timeout_s=10)
    assert delete_topics(kafka.bootstrap, "demo-x.", timeout_s=20) == ["demo-x.a", "demo-x.b"]
    topics = set(cluster_metadata(kafka.bootstrap, 10)[1].topics)
    assert "keep.a" in topics and not {"demo-x.a", "demo-x.b"} & topics
    assert ensure_topics(kafka.bootstrap, ["demo-x.a"], partitions=1, retention_hours=1, timeout_s=10) == ["demo-x.a"]
