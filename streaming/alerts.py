"""The alerts topic and its log: login anomalies sent as the login arrives, confirmed, updated or retracted at the
watermark.

Why: the in-order evaluation (:mod:`streaming.anomalies`) waits for the event-time watermark (45 minutes by
default) before it evaluates a login, so an alert raised there reached the security team most of an hour after
the bot's burst. A burst or a short gap is visible as soon as the login that completes it is in silver
(:func:`streaming.anomalies.arrival_anomalies`), so the ingest batch sends its alert then. The in-order
evaluation stays the truth of ``stream_login_anomalies``; when the watermark passes a login, what it found is
compared with what was sent:

- found, sent on arrival with the same severity: a ``confirmation`` (logged, not sent);
- found, sent with another severity (a short gap whose rolling statistics make it ``high``): an ``update``;
- found, not sent (``reactivation``, which needs the whole history, or a login the arrival did not see): an
  ``alert``, sent then;
- sent on arrival, not found (the login came later than the watermark, so the in-order evaluation skipped it): a
  ``retraction``.

Every record on the topic carries the ``alert_id`` of its login and rule (stable: a consumer keeps one alert per
id and applies its updates and retractions) and its ``kind``. The log, ``stream_alerts``, holds one row per
record sent and per confirmation; each stage reads it before sending, so an alert is sent once per login and
rule. A batch run again after a crash sends its records again (the topic is at-least-once, as before; the log
and the tables are exactly-once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime, timezone

from lakehouse.config import Config
from lakehouse.errors import C360Error
from lakehouse.lake_writes import OpenTables, append_once, target_schema
from lakehouse.tables import table_path

log = logging.getLogger(__name__)

ALERTS_TABLE = "stream_alerts"
ARRIVAL, WATERMARK = "arrival", "watermark"
SENT_KINDS = ("alert", "update", "retraction")


def alert_id(login_id: str, rule: str) -> str:
    """The id of a login's alert for a rule: the same however often and whenever it is sent."""
    return hashlib.sha256(f"{login_id}|{rule}".encode()).hexdigest()[:24]


def _with_ids(anomalies):
    import pyarrow as pa

    ids = [alert_id(lid, rule) for lid, rule in zip(anomalies["login_id"].to_pylist(),
                                                    anomalies["rule"].to_pylist(), strict=True)]
    return anomalies.append_column("alert_id", pa.array(ids, pa.string()))


def _logged(tables: OpenTables, path: str, *, other_than: str, ids=None):
    """The log's rows (those of ``ids`` only, when given) written by any batch but ``other_than`` (a batch run
    again after a crash decides as it did the first time)."""
    import pyarrow.compute as pc

    table = tables.get(path)
    filt = pc.field("origin") != other_than
    if ids is not None:
        filt = filt & pc.field("alert_id").isin(ids)
    return table.to_pyarrow_dataset().to_table(filter=filt)


def _rows(anomalies, kind: list[str], stage: str, origin: str, schema):
    import pyarrow as pa

    from lakehouse.lake_writes import conform

    now = datetime.now(timezone.utc)
    n = anomalies.num_rows
    data = anomalies.append_column("kind", pa.array(kind, pa.string()))
    for name, value, typ in (("stage", stage, pa.string()), ("origin", origin, pa.string()),
                             ("logged_at", now, pa.timestamp("us", "UTC"))):
        data = data.append_column(name, pa.array([value] * n, typ))
    return conform(data, schema)


def _log(tables: OpenTables, path: str, rows, app_id: str, batch_id: int) -> None:
    if rows.num_rows:
        append_once(tables, path, rows, app_id=app_id, version=batch_id)


def publish_on_arrival(cfg: Config, tables: OpenTables, found, *, query: str, batch_id: int) -> int:
    """Send the anomalies an ingest batch's logins made visible (``found``: :func:`arrival_anomalies`' rows, as
    Arrow) that no stage has sent yet, and log them; returns how many were sent."""
    import pyarrow.compute as pc

    if not found.num_rows:
        return 0
    path = table_path(cfg.lake.root, ALERTS_TABLE)
    origin = f"{query}:{batch_id}"
    found = _with_ids(found)
    known = _logged(tables, path, other_than=origin, ids=found["alert_id"])
    new = found.filter(pc.invert(pc.is_in(found["alert_id"], known["alert_id"])))
    if not new.num_rows:
        return 0
    rows = _rows(new, ["alert"] * new.num_rows, ARRIVAL, origin, target_schema(tables.get(path)))
    _log(tables, path, rows, f"{query}:alerts", batch_id)
    send(cfg, rows)
    return rows.num_rows


def publish_at_watermark(cfg: Config, tables: OpenTables, final, *, query: str, batch_id: int,
                         watermark_ms: int | None) -> dict[str, int]:
    """Compare the in-order evaluation's anomalies of a batch (``final``, as Arrow) with what was sent on arrival;
    send the alerts, updates and retractions that follow (module docstring), log them and the confirmations.
    ``watermark_ms``: the batch's watermark (every login at or before it has been evaluated; None: unknown, no
    retraction yet). Returns the count of each kind."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path = table_path(cfg.lake.root, ALERTS_TABLE)
    origin = f"{query}:{batch_id}"
    final = _with_ids(final)
    logged = _logged(tables, path, other_than=origin)
    settled = set(logged.filter(pc.equal(logged["stage"], WATERMARK))["alert_id"].to_pylist())
    early = logged.filter(pc.equal(logged["stage"], ARRIVAL))
    early_severity = dict(zip(early["alert_id"].to_pylist(), early["severity"].to_pylist(), strict=True))
    kinds, keep = [], []
    for i, (aid, severity) in enumerate(zip(final["alert_id"].to_pylist(), final["severity"].to_pylist(),
                                            strict=True)):
        if aid in settled:  # already settled by an earlier batch (a rebuilt checkpoint evaluates again)
            continue
        sent = early_severity.get(aid)
        kinds.append("alert" if sent is None else "confirmation" if sent == severity else "update")
        keep.append(i)
    schema = target_schema(tables.get(path))
    parts = [_rows(final.take(pa.array(keep, pa.int64())), kinds, WATERMARK, origin, schema)]
    if watermark_ms is not None:
        found = set(final["alert_id"].to_pylist())
        ms = pc.cast(early["login_datetime"], pa.int64()) if early.num_rows else None
        if ms is not None:  # microseconds
            gone = early.filter(pc.and_(pc.less_equal(ms, watermark_ms * 1000), pc.invert(pc.is_in(
                early["alert_id"], pa.array(sorted(settled | found), pa.string())))))
            parts.append(_rows(gone.select([f.name for f in final.schema if f.name != "alert_id"] + ["alert_id"]),
                               ["retraction"] * gone.num_rows, WATERMARK, origin, schema))
    rows = pa.concat_tables(parts)
    _log(tables, path, rows, f"{query}:alerts", batch_id)
    out = rows.filter(pc.is_in(rows["kind"], pa.array(SENT_KINDS)))
    send(cfg, out)
    counts = {k: 0 for k in (*SENT_KINDS, "confirmation")}
    for k in rows["kind"].to_pylist():
        counts[k] += 1
    return counts


# how long sending a batch's alerts may take (a broker restart or a leader election in between)
SEND_TIMEOUT_S = 120


_producers: dict[tuple, object] = {}
_producers_lock = threading.Lock()


def _producer(cfg: Config):
    """This process's alerts producer for ``cfg``'s broker (kept: a new client costs a connection a batch)."""
    from confluent_kafka import Producer

    from lakehouse.kafka_admin import client_config
    from lakehouse.kafka_security import client_security

    settings = client_config(cfg.kafka.bootstrap_servers, client_security(cfg.kafka),
                             **{"acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                "message.timeout.ms": SEND_TIMEOUT_S * 1000})
    key = tuple(sorted((k, str(v)) for k, v in settings.items()))
    with _producers_lock:
        if key not in _producers:
            _producers[key] = Producer(settings)
        return _producers[key]


def send(cfg: Config, rows) -> None:
    """Send log rows to the alerts topic (key: the customer; value: JSON with the alert's id, kind, stage and
    evidence), waiting until the broker has them all."""
    if not rows.num_rows:
        return
    with _send_lock:  # one sender at a time: a flush serves every delivery report, so each sees only its own
        _send(cfg, rows)


_send_lock = threading.Lock()


def _send(cfg: Config, rows) -> None:
    errors: list[str] = []
    producer = _producer(cfg)
    topic = cfg.kafka.topic(cfg.stream.alerts_topic)
    for r in rows.to_pylist():
        value = {"alert_id": r["alert_id"], "kind": r["kind"], "stage": r["stage"], "customer_id": r["customer_id"],
                 "login_id": r["login_id"], "login_datetime": r["login_datetime"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "gap_s": r["gap_s"], "rule": r["rule"], "severity": r["severity"],
                 "evidence": json.loads(r["evidence"]) if r["evidence"] else None}
        producer.produce(topic, key=(r["customer_id"] or "").encode(), value=json.dumps(value).encode(),
                         on_delivery=lambda err, _msg: err is not None and errors.append(str(err)))
        producer.poll(0)
    left = producer.flush(SEND_TIMEOUT_S)
    if errors or left:
        raise C360Error(f"could not send {len(errors) or left} alerts to {topic} "
                        f"({errors[0] if errors else 'timed out'}): the batch runs again when the stream restarts")
