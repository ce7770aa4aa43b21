"""The ingest query's embedded writer: the parse on the embedded engine, every Delta commit by delta-rs.

Why (docs/performance.md, "Stream: the embedded writer" and "Stream: the parse on the embedded engine"): with
Spark's writer each source of a batch paid a chain of 6-10 Spark jobs and 2-3 Delta commits (bronze append,
parse, counters, MERGE with Delta-Spark's state rebuild), about 3.5 s a source and 17 sources a batch, so a
record waited a minute for silver; parsed on Spark, a source still cost about a second of planning a batch. Here a
batch is one Spark job (the Kafka read), then:

1. the records come to the driver as Arrow, once;
2. the parse worker (:mod:`streaming.parse_worker`, Sail in a child process) runs each source present through
   :func:`source_rows`: the same ``transform_source`` as Spark's writer, and the row of each key that silver takes
   marked by the same rule (``mark_latest_per_key``, ``mark_first_per_key``);
3. delta-rs appends bronze (one multiplexed table), merges each silver table (several at once), appends the
   quarantine and the counters, every commit idempotent (:mod:`lakehouse.lake_writes`).

The tables are the ones Spark's writer makes (a parity test compares them), so a lake can switch writers
between runs. The batch must fit in the driver: ``stream.embedded_max_offsets_per_trigger`` bounds it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.lake_writes import OpenTables, append_once, merge_once
from lakehouse.schemas import SILVER
from lakehouse.tables import BRONZE_RECORDS, OPS_BATCHES, QUARANTINE
from streaming.silver import (
    PICKED,
    REPLACES,
    RESCUED,
    UNLISTED,
    mark_first_per_key,
    mark_latest_per_key,
    transform_source,
)

log = logging.getLogger(__name__)

def _unlisted_values(target) -> Column:
    """Per valid record, the (field, value) pairs of its open enums whose value is outside their list."""
    fields = [f for f in target.spec.fields if f.type == "enum"]
    pairs = [F.when(F.array_contains(F.col(UNLISTED), f.name),
                    F.struct(F.lit(f.name).alias("field"), F.col(f.name).cast("string").alias("value")))
             for f in fields]
    if not pairs:
        return F.lit(None).cast("array<struct<field:string,value:string>>")
    return F.when(F.col("_reject_reason").isNull() & F.col(UNLISTED).isNotNull(), F.array_compact(F.array(*pairs)))


# the columns a record's row has besides its silver row's: what bronze, quarantine and the counters need
# (underscored: a source's own fields may be called reason or key)
_EXTRA = ("_reason", "_raw_key", "_raw_value", "_rescued", "_unknown_fields", "_unlisted_values")


def source_rows(target, records: DataFrame) -> DataFrame:
    """One source's records (of its topic alone: no filter here, which cost the embedded engine 0.1 s of planning
    per source and batch), parsed by its transform: per record its silver row (meaningless for a rejected one),
    the columns of :data:`_EXTRA`, and ``_picked``: whether it is the row of its key that silver takes
    (``mark_latest_per_key`` for entities, with ``_replaces_in_batch``; ``mark_first_per_key`` for events; among
    the valid records only). One query gives all of it."""
    name = target.source.name
    parsed = transform_source(records, name,
                              timestamp_formats=target.timestamp_formats, unknown_fields_rule=target.unknown_fields,
                              parse=target.parse)
    is_valid = F.col("_reject_reason").isNull()
    rows = parsed.select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in SILVER[name].fields],
        F.col("_reject_reason").alias("_reason"), F.col("key").alias("_raw_key"),
        F.col("value").alias("_raw_value"),
        (is_valid & F.col(RESCUED).isNotNull()).alias("_rescued"), F.col("_unknown_fields"),
        _unlisted_values(target).alias("_unlisted_values"))
    valid = F.col("_reason").isNull()
    if target.source.kind != "event":
        return mark_latest_per_key(rows, target.spec.id, among=valid)
    return mark_first_per_key(rows, target.spec.id, among=valid)


def _merge_predicate(target, rows) -> str:
    """The merge condition: the key, the partition and constants, and the event-time range of the batch's rows
    (a record's event time never changes), so that delta-rs reads only the files that can hold a match."""
    import pyarrow.compute as pc

    spec = target.spec
    conds = [f"t.`{c}` = s.`{c}`" for c in [spec.id, *spec.partitions]]
    conds += [f"t.`{c}` = '{v}'" for c, v in spec.constants]
    if spec.event_time:
        lo, hi = pc.min(rows[spec.event_time]).as_py(), pc.max(rows[spec.event_time]).as_py()
        if lo is not None:
            conds.append(f"t.`{spec.event_time}` BETWEEN '{lo.isoformat()}' AND '{hi.isoformat()}'")
    return " AND ".join(conds)


# Order-safe upsert of entities (as Spark's writer): only a newer version (by Kafka timestamp, then offset)
# overwrites, and a re-sent identical record (same event id) is a duplicate unless another version came in between
# within this batch (latest_per_key)
NEWER = ("(s._kafka_timestamp > t._kafka_timestamp OR (s._kafka_timestamp = t._kafka_timestamp "
         f"AND s._kafka_offset > t._kafka_offset)) AND (s.event_id <> t.event_id OR s.{REPLACES})")

REASON_SAMPLES = 20


def _counts(rows) -> tuple[dict, dict, dict, list[str]]:
    """A source's counters (before the merge's), quarantine reasons (count, samples), unlisted values and the
    fields its records carried that the contract does not name, from its rows of :func:`source_rows`."""
    import pyarrow.compute as pc

    rejected = rows.filter(pc.is_valid(rows["_reason"]))
    valid = rows.filter(pc.is_null(rows["_reason"]))
    reasons: dict[str, tuple[int, list[str]]] = {}
    for reason, value in zip(rejected["_reason"].to_pylist(), rejected["_raw_value"].to_pylist(), strict=True):
        n, samples = reasons.get(reason, (0, []))
        if len(samples) < REASON_SAMPLES:
            samples.append(value)
        reasons[reason] = (n + 1, samples)
    unlisted: dict[str, dict[str, int]] = {}
    unlisted_rows = 0
    for pairs in valid["_unlisted_values"].to_pylist():
        if pairs:
            unlisted_rows += 1
            for p in pairs:
                field = unlisted.setdefault(p["field"], {})
                field[p["value"]] = field.get(p["value"], 0) + 1
    unknown = sorted({f for fs in rows["_unknown_fields"].to_pylist() if fs for f in fs})
    counts = {"read_rows": rows.num_rows, "quarantined_rows": rejected.num_rows,
              "rescued_rows": int(pc.sum(valid["_rescued"].cast("int64")).as_py() or 0),
              "unlisted_rows": unlisted_rows, "drifted": int(pc.count(rows["_unknown_fields"]).as_py())}
    return counts, reasons, unlisted, unknown


def write_batch(targets, batch, batch_id: int, *, tables: OpenTables, parse, workers: int = 2,
                clock=None, report=None, after_silver=None) -> dict[str, dict[str, int]]:
    """Write one micro-batch (``batch``: the Kafka records through ``transform_bronze``, as Arrow) to bronze,
    silver, quarantine and the counters with delta-rs; returns the counters per source (as Spark's writer).
    ``parse({target: its records})`` gives each source's rows of :func:`source_rows` and the seconds each took
    (:class:`streaming.parse_worker.ParseWorker`); ``clock`` times the steps; ``report(results, reasons,
    unlisted)`` gets the counters, quarantine reasons and unlisted values per source; ``after_silver(rows)`` runs
    once silver holds the batch, with each source's rows that silver took (:mod:`streaming.outputs`: the login
    views)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    query = targets[0].query
    by_name = {t.source.name: t for t in targets}
    tick = clock or (lambda step: None)
    topics = set(pc.unique(batch["topic"]).to_pylist())
    unknown = topics - {t.topic for t in targets}
    if unknown:  # cannot happen with `subscribe`; guards a misconfigured pattern (no record is dropped silently)
        raise ValueError(f"records from topics no source reads: {sorted(unknown)}")
    present = [t for t in targets if t.topic in topics]
    if not present:
        return {}
    parsed, seconds = parse({t: batch.filter(pc.equal(batch["topic"], t.topic)) for t in present})
    tick("parse")
    log.debug("%s batch %d: parse seconds per source %s", query, batch_id, seconds)
    records = pa.concat_tables([
        t.select(["_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_source_file",
                  "_source_line", *_EXTRA]).append_column("source", pa.array([name] * t.num_rows, pa.string()))
        for name, t in parsed.items()], promote_options="permissive").rename_columns(
        {"_reason": "reason", "_raw_key": "raw_key", "_raw_value": "raw_value"})
    rows = {name: t.filter(t[PICKED]).drop_columns([PICKED, *_EXTRA]) for name, t in parsed.items()}
    now = datetime.now(timezone.utc)

    bronze = pa.table({"source": records["source"], "key": records["raw_key"], "value": records["raw_value"],
                       "topic": records["_kafka_topic"], "partition": records["_kafka_partition"],
                       "offset": records["_kafka_offset"], "kafka_timestamp": records["_kafka_timestamp"],
                       "_source_file": records["_source_file"], "_source_line": records["_source_line"],
                       "_ingestion_timestamp": pa.array([now] * records.num_rows, pa.timestamp("us", "UTC")),
                       "_ingestion_date": pa.array([now.date()] * records.num_rows, pa.date32())})
    root = targets[0]
    append_once(tables, root.path(BRONZE_RECORDS), bronze, app_id=f"{query}:bronze", version=batch_id,
                partition_by=["source", "_ingestion_date"])
    tick("bronze")

    stats = {name: _counts(table) for name, table in parsed.items()}

    def merge(group: list) -> list[dict[str, int]]:
        out = []
        for t in group:
            name = t.source.name
            picked = rows[name]
            if picked.num_rows == 0:
                out.append({"inserted": 0, "updated": 0})
                continue
            out.append(merge_once(tables, t.silver, picked, predicate=_merge_predicate(t, picked),
                                  app_id=f"{t.query}:{name}:silver", version=batch_id,
                                  update_when=NEWER if t.source.kind != "event" else None))
        return out

    groups: dict[str, list] = {}
    for t in present:  # sources sharing a silver table merge one after the other (no conflicting commits)
        groups.setdefault(t.silver, []).append(t)
    if workers > 1 and len(groups) > 1:
        with ThreadPoolExecutor(min(workers, len(groups)), thread_name_prefix=f"c360-{query}") as pool:
            outs = list(pool.map(merge, groups.values()))
    else:
        outs = [merge(g) for g in groups.values()]
    merged = {t.source.name: r for g, out in zip(groups.values(), outs, strict=True) for t, r in zip(g, out,
                                                                                                        strict=True)}
    tick("silver")
    if after_silver is not None:
        after_silver(rows)
        tick("views")
    rejected = records.filter(pc.is_valid(records["reason"]))
    if rejected.num_rows:
        quarantine = pa.table({
            "source": rejected["source"], "reason": rejected["reason"], "raw_key": rejected["raw_key"],
            "raw_value": rejected["raw_value"],
            **{c: rejected[c] for c in ("_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp",
                                        "_source_file", "_source_line")},
            "_quarantined_at": pa.array([now] * rejected.num_rows, pa.timestamp("us", "UTC")),
            "_quarantine_date": pa.array([now.date()] * rejected.num_rows, pa.date32())})
        append_once(tables, root.path(QUARANTINE), quarantine, app_id=f"{query}:quarantine", version=batch_id,
                    partition_by=["_quarantine_date"])

    results: dict[str, dict[str, int]] = {}
    for t in present:
        name = t.source.name
        counts, reasons, unlisted, unknown = stats[name]
        if unknown:
            log.warning("%s batch %d: %d records carry fields the %s contract does not name: %s (%s)", query,
                        batch_id, counts["drifted"], name, ", ".join(unknown[:10]),
                        "kept in _rescued_data" if by_name[name].unknown_fields == "rescue" else "quarantined")
        inserted, updated = merged[name]["inserted"], merged[name]["updated"]
        results[name] = {"read_rows": counts["read_rows"], "quarantined_rows": counts["quarantined_rows"],
                         "duplicate_rows": counts["read_rows"] - counts["quarantined_rows"] - inserted - updated,
                         "inserted_rows": inserted, "updated_rows": updated, "rescued_rows": counts["rescued_rows"],
                         "unlisted_rows": counts["unlisted_rows"]}
        stats[name] = (reasons, unlisted)
    ops = pa.table({"query": [query] * len(results), "source": list(results), "batch_id": [batch_id] * len(results),
                    **{k: [c[k] for c in results.values()] for k in next(iter(results.values()))},
                    "processed_at": pa.array([now] * len(results), pa.timestamp("us", "UTC"))})
    append_once(tables, root.path(OPS_BATCHES), ops, app_id=f"{query}:ops", version=batch_id)
    tick("quarantine+ops")
    if report is not None:
        report(results, {n: s[0] for n, s in stats.items()}, {n: s[1] for n, s in stats.items()})
    return results

