"""Schema drift in the producer's JSON, through `c360 stream` on a real broker, Spark and Delta: a new field is
kept in ``_rescued_data`` and counted (or quarantined, by configuration), a changed type is quarantined, and a
lake made before ``_rescued_data`` existed is upgraded in place."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from c360 import cli
from lakehouse import schemas
from lakehouse.delta import ensure_table
from lakehouse.kafka_admin import client_config, ensure_topics
from lakehouse.tables import OPS_BATCHES, table_path
from tests.integration.test_pipeline import _args, _env, _table
from tests.unit.test_transforms import customer

pytestmark = pytest.mark.integration


def _produce(cfg, records: list[dict]) -> None:
    topic = cfg.kafka.topic("customers")
    ensure_topics(cfg.kafka.bootstrap_servers, [topic], partitions=1, retention_hours=1, timeout_s=10)
    producer, errors = Producer(client_config(cfg.kafka.bootstrap_servers, acks="all")), []
    for r in records:
        producer.produce(topic, key=str(r["customer_id"]), value=json.dumps(r),
                         on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0 and errors == []


def _without(schema: StructType, *names: str) -> StructType:
    return StructType([f for f in schema.fields if f.name not in names])


def test_new_fields_are_rescued_changed_types_quarantined_and_an_older_lake_is_upgraded(
        spark, kafka_cfg, monkeypatch):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    # a lake written by a c360 that had neither _rescued_data nor rescued_rows and unlisted_rows
    silver_path = table_path(cfg.lake.root, "silver_customers")
    ensure_table(spark, silver_path, _without(schemas.SILVER["customers"], "_rescued_data"))
    ensure_table(spark, table_path(cfg.lake.root, OPS_BATCHES), _without(schemas.OPS_STREAM_BATCHES, "rescued_rows",
                                                                                 "unlisted_rows"))

    _produce(cfg, [
        customer(event_id="e1", customer_id="C1"),
        customer(event_id="e2", customer_id="C2", loyalty_tier="Gold", consent={"email": True}),
        customer(event_id="e3", customer_id="C3", city={"name": "Pune", "pin": 411001}),
    ])
    stream = ["stream", "--available-now", "--sources", "customers", *_args(cfg)]
    assert cli.main(stream) == 0

    silver = {r.customer_id: r for r in _table(spark, cfg, "silver_customers").collect()}
    assert set(silver) == {"C1", "C2"}
    assert silver["C1"]._rescued_data is None
    assert json.loads(silver["C2"]._rescued_data) == {"loyalty_tier": "Gold", "consent": '{"email":true}'}
    quarantine = _table(spark, cfg, "silver_quarantine").collect()
    assert [(q.reason, json.loads(q.raw_value)["customer_id"]) for q in quarantine] == [("type_changed_city", "C3")]
    ops = _table(spark, cfg, OPS_BATCHES).agg(*[F.sum(c).alias(c) for c in (
        "read_rows", "inserted_rows", "quarantined_rows", "rescued_rows", "unlisted_rows")]).first()
    assert (ops.read_rows, ops.inserted_rows, ops.quarantined_rows, ops.rescued_rows, ops.unlisted_rows) == (
        3, 2, 1, 1, 0)

    # stricter: new fields reject the record, with a reason naming the field
    monkeypatch.setenv("C360_STREAM_UNKNOWN_FIELDS", "quarantine")
    _produce(cfg, [customer(event_id="e4", customer_id="C4", loyalty_tier="Silver"),
                   customer(event_id="e5", customer_id="C5")])
    assert cli.main(stream) == 0
    assert {r.customer_id for r in _table(spark, cfg, "silver_customers").collect()} == {"C1", "C2", "C5"}
    reasons = {json.loads(q.raw_value)["customer_id"]: q.reason for q in _table(spark, cfg, "silver_quarantine").collect()}
    assert reasons == {"C3": "type_changed_city", "C4": "unknown_field_loyalty_tier"}
