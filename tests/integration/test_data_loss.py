"""Kafka lost records the stream had not read yet (retention, deleted records): the app stops loudly, skips
nothing, and the recovery docs/operations.md describes works — on a real broker, Spark and Delta."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from c360 import cli
from lakehouse.kafka_admin import client_config, ensure_topics
from tests.integration.test_pipeline import _args, _env, _table
from tests.unit.test_transforms import customer

pytestmark = pytest.mark.integration


def _produce(cfg, topic: str, ids) -> None:
    producer = Producer(client_config(cfg.kafka.bootstrap_servers, acks="all"))
    for i in ids:  # one partition, so the offsets are the ids
        producer.produce(topic, key=f"C{i}", value=json.dumps(customer(event_id=f"e{i}", customer_id=f"C{i}")),
                         partition=0)
    assert producer.flush(30) == 0


def _stream(cfg) -> int:
    return cli.main(["stream", "--available-now", "--sources", "customers", *_args(cfg)])


def _silver_ids(spark, cfg) -> set[str]:
    return {r.customer_id for r in _table(spark, cfg, "silver_customers").collect()}


def test_records_deleted_before_the_stream_read_them_stop_it_and_the_documented_recovery_works(
        spark, kafka_cfg, monkeypatch, capsys):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    topic = cfg.kafka.topic("customers")
    ensure_topics(cfg.kafka.bootstrap_servers, [topic], partitions=1, retention_hours=1, timeout_s=10)
    _produce(cfg, topic, range(10))
    assert _stream(cfg) == 0
    assert _silver_ids(spark, cfg) == {f"C{i}" for i in range(10)}

    _produce(cfg, topic, range(10, 20))  # offsets 10-19; then 10-14 go before the stream reads them
    admin = AdminClient(client_config(cfg.kafka.bootstrap_servers))  # kept referenced until its futures resolve
    (future,) = admin.delete_records([TopicPartition(topic, 0, 15)]).values()
    assert future.result(timeout=30).low_watermark == 15
    capsys.readouterr()
    assert _stream(cfg) == 1  # by default: stop, say so, skip nothing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Kafka no longer holds records" in err[0] and "docs/operations.md" in err[0], err
    assert _silver_ids(spark, cfg) == {f"C{i}" for i in range(10)}

    # the recovery in docs/operations.md: one run that skips the lost range on purpose, then send it again
    monkeypatch.setenv("C360_STREAM_FAIL_ON_DATA_LOSS", "false")
    assert _stream(cfg) == 0
    assert _silver_ids(spark, cfg) == {f"C{i}" for i in (*range(10), *range(15, 20))}
    monkeypatch.delenv("C360_STREAM_FAIL_ON_DATA_LOSS")
    _produce(cfg, topic, range(0, 20))  # everything again, e.g. `c360 replay` of the source files: dedup holds
    assert _stream(cfg) == 0
    silver = _table(spark, cfg, "silver_customers")
    assert _silver_ids(spark, cfg) == {f"C{i}" for i in range(20)} and silver.count() == 20
