"""The stream's parse gives the same rows on both engines (one code base: the same ``transform_source`` runs on
Spark and, in the embedded writer's parse worker, on Sail). Each source's generated rows, the same rows made
dirty in every way the parse knows (values that do not parse, objects where a scalar belongs, unknown fields,
placeholders, bare NaN, text that is no JSON object), are parsed by Spark in this process and by the parse worker,
and the two results are compared whole, row by row and column by column."""

from __future__ import annotations

import csv
import json
import time

import pyarrow as pa
import pytest

from lakehouse import config
from lakehouse.tables import GENERATED, SOURCES
from streaming import parse_worker
from streaming.bronze import transform_bronze
from streaming.embedded import source_rows
from streaming.ingest import source_target
from tests.unit.test_transforms import kafka_rows


def _rows(generated, name: str, n: int = 8) -> list[dict]:
    source = SOURCES[name]
    path = generated / source.file
    if source.format == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()[:n]]
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))[:n]


def _dirty(rows: list[dict]) -> list[dict | str]:
    """The clean rows, each again with one field broken a different way, and records that are no JSON object."""
    first = rows[0]
    breaks = [lambda v: "not a value", lambda v: {"nested": v}, lambda v: [v], lambda v: "N/A", lambda v: "",
              lambda v: "-5", lambda v: "  " + str(v).upper() + " ", lambda v: None]
    out: list[dict | str] = []
    for i, field in enumerate(first):
        out.append({**first, "event_id": f"d{i}", field: breaks[i % len(breaks)](first[field])})
    out.append({**first, "event_id": "x1", "loyalty_tier": "Gold", "tags": ["vip", 2], "score": 1.5})
    out += ["not json", "[1, 2]", "", json.dumps({**first, "event_id": "x2"})[:-1] + ', "weird": NaN}',
            json.dumps({**first, "event_id": "x3"}).replace('"', "'")]
    return [*rows, *rows[:2], *out]  # two repeats: the pick of each key takes part too


def _loose(t: pa.DataType) -> str:
    return str(t).replace(" not null", "")


def _sorted(table: pa.Table) -> list[dict]:
    rows = table.drop_columns(["_updated_at"]).to_pylist()
    return sorted(rows, key=lambda r: r["_kafka_offset"])


@pytest.mark.parametrize("name", GENERATED)
def test_the_parse_worker_on_the_embedded_engine_gives_sparks_rows(spark, generated, name):
    cfg = config.load()
    target = source_target(cfg, name, "parity")
    records = [{"event_id": f"e{i}", **row} for i, row in enumerate(_rows(generated, name))]
    bronze = transform_bronze(kafka_rows(spark, _dirty(records), topic=target.topic))
    on_spark = source_rows(target, bronze).toArrow()
    embedded, _ = parse_worker.shared(cfg).parse({target: bronze.toArrow()})
    on_sail = embedded[name]
    assert on_sail.column_names == on_spark.column_names
    # the types alike but for the nullability of nested fields, which the Delta writes conform to the table's
    assert [_loose(f.type) for f in on_sail.schema] == [_loose(f.type) for f in on_spark.schema]
    differences = [(spark_row["_kafka_offset"], column, spark_row[column], sail_row[column])
                   for spark_row, sail_row in zip(_sorted(on_spark), _sorted(on_sail), strict=True)
                   for column in spark_row if spark_row[column] != sail_row[column]]
    assert differences == [], "\n".join(map(str, differences))  # (offset, column, Spark's value, the embedded engine's)
    # the dirty records did reach the checks (the comparison is not between two empty answers)
    reasons = {r["_reason"] for r in on_spark.to_pylist()}
    assert None in reasons and "invalid_json" in reasons and len(reasons) >= 4, reasons


def test_the_parse_worker_goes_on_after_the_engine_ends_its_idle_session(spark, generated, monkeypatch):
    """The embedded engine ends a session left idle past its timeout (Sail's default was 120 s: a stream with no
    records for two minutes then failed its next batch). The worker's next job runs on a new session, with the
    same rows. The timeout is 2 s here, in a worker of the test's own."""
    monkeypatch.setenv("SAIL_SPARK__SESSION_TIMEOUT_SECS", "2")
    cfg = config.load()
    target = source_target(cfg, "logins", "idle")
    records = [{"event_id": f"e{i}", **row} for i, row in enumerate(_rows(generated, "logins"))]
    bronze = transform_bronze(kafka_rows(spark, records, topic=target.topic))
    expected = _sorted(source_rows(target, bronze).toArrow())
    worker = parse_worker.ParseWorker(cfg)
    try:
        first, _ = worker.parse({target: bronze.toArrow()})
        time.sleep(5)  # idle past the timeout: the engine ends the session
        second, _ = worker.parse({target: bronze.toArrow()})
    finally:
        worker.close()
    assert len(expected) == len(records)
    assert _sorted(first["logins"]) == expected
    assert _sorted(second["logins"]) == expected
