"""Rolling login-gap anomalies per customer (seed 000, criteria 11 and 12).

A stateful stream over ``silver_logins`` (deduplicated, typed logins) with Spark's ``applyInPandasWithState``. Each
customer has a state of its own; the states are kept in ``STATE_BUCKETS`` state keys, a customer's bucket a hash of
its id, so that a micro-batch costs a Python call per bucket, not per customer (PySpark spends about a millisecond
on each call: per customer, a login stream of 1,000 logins/s took a core). Logins are buffered in the customer's
state until the event-time watermark passes them, then evaluated in event-time order: so a login arriving out of
order (within the watermark) gives exactly the result it would have given in order. For each evaluated login: the
gap to the customer's previous login, rolling statistics of the customer's gaps (an exponentially weighted mean and
deviation of log-gaps) and the rules

- ``burst``: at least ``burst_logins`` logins of the customer within the ``burst_window_s`` seconds ending at
  this login (bots, credential stuffing);
- ``short_gap``: at most ``short_gap_s`` seconds after the previous login (implausibly fast);
- ``reactivation``: at least ``reactivation_days`` days after the previous login (long inactivity, then a login).

A customer's state holds the pending logins, the timestamps inside the burst window, the last login and the gap
statistics; it expires ``state_ttl_days`` of event time after the last login, so the state cannot grow without
bound (a customer returning after longer than that is seen afresh: keep the TTL above ``reactivation_days``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.schemas import STREAM_LOGIN_ANOMALIES

RULES = ("burst", "short_gap", "reactivation")
EW_ALPHA = 0.2  # weight of the newest gap in the rolling statistics
HIGH_Z = 3.0  # a gap this many rolling deviations from the customer's usual gap escalates severity

ANOMALY_SCHEMA = STREAM_LOGIN_ANOMALIES

# The customers' states are grouped into this many state keys (a fixed part of the query's checkpoint, like its
# shuffle partitions: changing it needs a new login_anomalies checkpoint). A micro-batch makes at most a call per
# bucket (two when logins wait for the watermark); a bucket's state is rewritten whole when it is called, so at 1M
# customers a bucket holds about 4,000 (~300 KB of JSON).
STATE_BUCKETS = 256

# JSON {customer_id: [pending [[ts_ms, login_id], ...], burst window [ts_ms, ...], last_ms, n_gaps, ew_mean, ew_var]}
STATE_SCHEMA = StructType([StructField("customers", StringType())])


@dataclass(frozen=True)
class AnomalyRules:
    """The thresholds of the rules (config ``stream.*``; defaults as the generator's labels)."""

    burst_logins: int = 10
    burst_window_s: int = 300
    short_gap_s: int = 2
    reactivation_days: int = 90
    state_ttl_days: int = 730

    @classmethod
    def of(cls, stream) -> AnomalyRules:
        """The rules of a configuration's ``stream`` section."""
        return cls(stream.burst_logins, stream.burst_window_s, stream.short_gap_s, stream.reactivation_days,
                   stream.anomaly_state_ttl_days)


@dataclass
class CustomerState:
    """What is kept per customer between micro-batches."""

    pending: list[tuple[int, str]]
    window: list[int]
    last_ms: int | None = None
    n_gaps: int = 0
    ew_mean: float = 0.0
    ew_var: float = 0.0

    @classmethod
    def empty(cls) -> CustomerState:
        return cls([], [])

    @classmethod
    def from_row(cls, row: list) -> CustomerState:
        pending, window, last_ms, n, mean, var = row
        return cls([tuple(p) for p in pending], window, last_ms, n, mean, var)

    def add(self, ts_ms: int, login_id: str, watermark_ms: int) -> bool:
        """Buffer a login for evaluation; a login already buffered, or at/behind the watermark (its place in the
        order is already past: Spark drops such late rows too), is ignored."""
        if ts_ms <= watermark_ms or any(p[1] == login_id for p in self.pending):
            return False
        self.pending.append((ts_ms, login_id))
        return True

    def to_row(self) -> list:
        """The stored form (JSON-serializable)."""
        return [self.pending, self.window, self.last_ms, self.n_gaps, self.ew_mean, self.ew_var]


def evaluate(state: CustomerState, rules: AnomalyRules, watermark_ms: int) -> list[dict]:
    """Evaluate, in event-time order, the pending logins at or before the watermark; update ``state``.

    Returns one dict per (login, rule) that fired.
    """
    ready = sorted(p for p in state.pending if p[0] <= watermark_ms)
    if not ready:
        return []
    state.pending = [p for p in state.pending if p[0] > watermark_ms]
    window_ms = rules.burst_window_s * 1000
    out = []
    for ts, login_id in ready:
        gap_s = None if state.last_ms is None else (ts - state.last_ms) / 1000.0
        state.window = [t for t in state.window if t >= ts - window_ms] + [ts]
        in_window = len(state.window)
        z = None
        if gap_s is not None:
            x = math.log1p(max(gap_s, 0.0))
            if state.n_gaps >= 3 and state.ew_var > 0:
                z = (x - state.ew_mean) / math.sqrt(state.ew_var)
            if state.n_gaps == 0:
                state.ew_mean, state.ew_var = x, 0.0
            else:
                delta = x - state.ew_mean
                state.ew_mean += EW_ALPHA * delta
                state.ew_var = (1 - EW_ALPHA) * (state.ew_var + EW_ALPHA * delta * delta)
            state.n_gaps += 1
        fired = []
        if in_window >= rules.burst_logins:
            fired.append(("burst", "high"))
        if gap_s is not None and gap_s <= rules.short_gap_s:
            fired.append(("short_gap", "high" if z is not None and abs(z) >= HIGH_Z else "medium"))
        if gap_s is not None and gap_s >= rules.reactivation_days * 86400:
            fired.append(("reactivation", "high" if gap_s >= 2 * rules.reactivation_days * 86400 else "medium"))
        if fired:
            evidence = json.dumps({
                "gap_s": gap_s, "logins_in_window": in_window, "window_s": rules.burst_window_s,
                "prior_gaps": state.n_gaps - (gap_s is not None),
                "rolling_mean_gap_s": round(math.expm1(state.ew_mean), 3) if state.n_gaps else None,
                "rolling_std_log_gap": round(math.sqrt(state.ew_var), 4) if state.n_gaps else None,
                "z": None if z is None else round(z, 3),
            }, sort_keys=True)
            out += [{"login_id": login_id, "ts_ms": ts, "gap_s": gap_s, "rule": r, "severity": sev,
                     "evidence": evidence} for r, sev in fired]
        state.last_ms = ts
    return out


def _next_due(row: list, ttl_ms: int) -> int:
    """When a stored customer needs a call: its earliest pending login, else the expiry of its state."""
    pending, last_ms = row[0], row[2]
    return min(p[0] for p in pending) if pending else last_ms + ttl_ms


def evaluate_bucket(customers: dict[str, list], logins, rules: AnomalyRules, watermark_ms: int
                    ) -> tuple[list[dict], int | None]:
    """One call of a state bucket: buffer ``logins`` ((customer_id, ts_ms, login_id), ...), evaluate every customer
    whose pending logins the watermark passed, drop the expired ones. ``customers`` (the stored rows) is updated in
    place. Returns the fired rules (with their ``customer_id``) and the next event time the bucket needs a call at
    (None: it holds nobody)."""
    ttl_ms = rules.state_ttl_days * 86400 * 1000

    def expired(pending: list, last_ms: int | None) -> bool:  # nothing pending, no login within the TTL (or none)
        return not pending and (last_ms is None or last_ms + ttl_ms <= watermark_ms)

    touched: dict[str, CustomerState] = {}
    for customer, ts, login_id in logins:
        cs = touched.get(customer)
        if cs is None:
            row = customers.get(customer)
            cs = touched[customer] = CustomerState.from_row(row) if row else CustomerState.empty()
        cs.add(ts, login_id, watermark_ms)
    out: list[dict] = []
    for customer in list(customers.keys() | touched.keys()):
        cs = touched.get(customer)
        if cs is None:
            row = customers[customer]
            if not any(p[0] <= watermark_ms for p in row[0]):  # nothing to evaluate: left as stored, or expired
                if expired(row[0], row[2]):
                    del customers[customer]
                continue
            cs = CustomerState.from_row(row)
        out += [{"customer_id": customer, **f} for f in evaluate(cs, rules, watermark_ms)]
        if expired(cs.pending, cs.last_ms):
            customers.pop(customer, None)
        else:
            customers[customer] = cs.to_row()
    due = min((_next_due(row, ttl_ms) for row in customers.values()), default=None)
    return out, due


def _state_fn(rules: AnomalyRules):
    def fn(key: tuple, batches: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:  # noqa: ARG001
        customers = json.loads(state.get[0]) if state.exists else {}
        wm = state.getCurrentWatermarkMs()
        logins = []
        for pdf in batches:
            ts = pdf["login_datetime"].to_numpy(dtype="datetime64[ms]").astype("int64").tolist()
            logins += zip(pdf["customer_id"].tolist(), ts, pdf["login_id"].tolist(), strict=True)
        fired, due = evaluate_bucket(customers, logins, rules, wm)
        if due is None:
            state.remove()
        else:
            state.update((json.dumps(customers, separators=(",", ":")),))
            state.setTimeoutTimestamp(max(due, wm + 1))
        if fired:
            df = pd.DataFrame(fired)
            yield pd.DataFrame({
                "customer_id": df["customer_id"], "login_id": df["login_id"],
                "login_datetime": pd.to_datetime(df["ts_ms"], unit="ms"), "gap_s": df["gap_s"].astype("float64"),
                "rule": df["rule"], "severity": df["severity"], "evidence": df["evidence"],
            })

    return fn


def transform_login_anomalies(logins: DataFrame, *, rules: AnomalyRules, watermark: str) -> DataFrame:
    """Silver logins (a stream) -> one row per (login, rule fired): customer, login time, gap, rule, severity and
    evidence (JSON: the gap, logins in the burst window, the customer's rolling gap statistics and z-score)."""
    bucket = F.pmod(F.xxhash64("customer_id"), F.lit(STATE_BUCKETS)).cast("int").alias("state_bucket")
    return (logins.select(bucket, "customer_id", "login_id", "login_datetime")
            .withWatermark("login_datetime", watermark)
            .groupBy("state_bucket")
            .applyInPandasWithState(_state_fn(rules), ANOMALY_SCHEMA, STATE_SCHEMA, "append",
                                    GroupStateTimeout.EventTimeTimeout))


# What a login's arrival can decide at once: whether it (or a later login within the burst window) completes a
# burst, and whether it (or the login after it) is a short gap. Both look back at most ``burst_window_s`` seconds,
# so the logins around it tell. Reactivation needs the customer's whole history: it waits for the watermark.
ARRIVAL_RULES = ("burst", "short_gap")


def arrival_anomalies(logins: DataFrame, arrived: DataFrame, rules: AnomalyRules) -> DataFrame:
    """The burst and short-gap anomalies the logins of ``arrived`` (a batch's, already in ``logins``, silver) make
    visible now, rows as :data:`ANOMALY_SCHEMA`: for each customer of ``arrived``, every login from its earliest
    arrived one to the burst window past its latest, evaluated as :func:`evaluate` does in event-time order (ties
    by login id) over the logins silver holds, late ones included.

    A short gap's severity depends on the customer's rolling gap statistics, which only the in-order evaluation
    holds: here it is ``medium``, and the watermark's evaluation says ``high`` when the deviation is large (the
    alert is then updated). Evidence: the gap, the logins in the window and the window."""
    window_ms = rules.burst_window_s * 1000
    ms = F.unix_millis("login_datetime")
    span = arrived.groupBy("customer_id").agg(F.min(ms).alias("_lo"), F.max(ms).alias("_hi"))
    near = (logins.select("customer_id", "login_id", "login_datetime", ms.alias("_ms"))
            .join(F.broadcast(span), "customer_id")
            .where((F.col("_ms") >= F.col("_lo") - window_ms) & (F.col("_ms") <= F.col("_hi") + window_ms)))
    order = Window.partitionBy("customer_id").orderBy("_ms", "login_id")
    older = Window.partitionBy("customer_id").orderBy("_ms").rangeBetween(Window.unboundedPreceding,
                                                                          -window_ms - 1)
    # in the window: the logins up to this one (in order) less those older than the window
    in_window = F.row_number().over(order) - F.count(F.lit(1)).over(older)
    gap_s = (F.col("_ms") - F.lag("_ms").over(order)) / 1000.0
    scored = (near.select("customer_id", "login_id", "login_datetime", "_ms", "_lo", gap_s.alias("gap_s"),
                          in_window.alias("_in_window"))
              .where(F.col("_ms") >= F.col("_lo")))
    evidence = F.to_json(F.struct(F.col("gap_s"), F.col("_in_window").alias("logins_in_window"),
                                  F.lit(rules.burst_window_s).alias("window_s")))

    def rule(name: str, when, severity: str) -> DataFrame:
        return scored.where(when).select("customer_id", "login_id", "login_datetime", F.col("gap_s").cast("double"),
                                         F.lit(name).alias("rule"), F.lit(severity).alias("severity"),
                                         evidence.alias("evidence"))

    return rule("burst", F.col("_in_window") >= rules.burst_logins, "high").unionByName(
        rule("short_gap", F.col("gap_s") <= rules.short_gap_s, "medium"))
