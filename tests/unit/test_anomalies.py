"""Login-gap rules (seed 000, criteria 11 and 12) on the per-customer state machine, without Spark."""

from __future__ import annotations

import json
import random

from streaming.anomalies import AnomalyRules, CustomerState, evaluate, evaluate_bucket

RULES = AnomalyRules(burst_logins=3, burst_window_s=60, short_gap_s=2, reactivation_days=90)
S = 1000  # ms per second
DAY = 86400 * S


def _run(batches, rules=RULES, lag_ms=0):
    """Feed logins batch by batch (as the stream would), the watermark trailing the latest time by ``lag_ms``;
    finally flush. Returns {(login_id, rule)} fired."""
    state, fired, latest, watermark = CustomerState.empty(), set(), 0, -1
    for batch in batches:
        for ts, login_id in batch:
            state.add(ts, login_id, watermark)
            latest = max(latest, ts)
        watermark = latest - lag_ms
        fired |= {(f["login_id"], f["rule"]) for f in evaluate(state, rules, watermark)}
        state = CustomerState.from_row(state.to_row())  # through the stored form, as between micro-batches
    fired |= {(f["login_id"], f["rule"]) for f in evaluate(state, rules, 2**62)}
    return fired


def test_burst_fires_from_the_nth_login_within_the_window():
    logins = [(0, "a"), (30 * S, "b"), (59 * S, "c"), (200 * S, "d")]
    fired = _run([logins])
    assert {f for f in fired if f[1] == "burst"} == {("c", "burst")}  # a, b, c within 60 s; d alone


def test_burst_window_boundary_is_inclusive():
    assert ("c", "burst") in _run([[(0, "a"), (30 * S, "b"), (60 * S, "c")]])
    assert ("c", "burst") not in _run([[(0, "a"), (30 * S, "b"), (60 * S + 1, "c")]])


def test_short_gap_at_the_threshold_and_not_above():
    fired = _run([[(0, "a"), (2 * S, "b"), (5 * S, "c")]])
    assert ("b", "short_gap") in fired and ("c", "short_gap") not in fired


def test_reactivation_after_the_threshold_days_only():
    fired = _run([[(0, "a"), (90 * DAY, "b"), (90 * DAY + 89 * DAY, "c"), (2 * 179 * DAY, "d")]])
    assert {f for f in fired if f[1] == "reactivation"} == {("b", "reactivation"), ("d", "reactivation")}


def test_the_first_login_has_no_gap_and_fires_nothing():
    state = CustomerState([(5 * S, "a")], [])
    assert evaluate(state, RULES, 10 * S) == [] and state.last_ms == 5 * S and state.n_gaps == 0


def test_logins_wait_for_the_watermark_before_being_evaluated():
    state = CustomerState([(0, "a"), (1 * S, "b")], [])
    assert evaluate(state, RULES, 0) == [] and state.pending == [(1 * S, "b")]
    fired = evaluate(state, RULES, 1 * S)
    assert [(f["login_id"], f["rule"]) for f in fired] == [("b", "short_gap")] and state.pending == []
    evidence = json.loads(fired[0]["evidence"])
    assert evidence["gap_s"] == 1.0 and evidence["logins_in_window"] == 2


def test_out_of_order_arrival_within_the_watermark_gives_the_in_order_result():
    rng = random.Random(7)
    t, logins = 0, []
    for i in range(300):
        t += rng.choice([1, 2, 5, 20, 400, 3 * DAY // S, 120 * DAY // S]) * S
        logins.append((t, f"L{i}"))
    in_order = _run([logins[i:i + 10] for i in range(0, len(logins), 10)], lag_ms=0)
    shuffled = []
    for i in range(0, len(logins), 10):  # each batch arrives shuffled, and late by up to one batch
        chunk = logins[i:i + 20]
        rng.shuffle(chunk)
        shuffled.append(chunk)
    lag = max(b[-1][0] for b in [logins[i:i + 20] for i in range(0, len(logins), 10)])  # never finalise early
    out_of_order = _run(shuffled, lag_ms=lag)
    assert in_order == out_of_order and len(in_order) > 20


def test_a_login_sent_twice_is_evaluated_once():
    assert _run([[(0, "a"), (1 * S, "b")], [(1 * S, "b")]], lag_ms=5 * S) == {("b", "short_gap")}


def test_a_login_behind_the_watermark_is_ignored():
    state = CustomerState.empty()
    assert state.add(10 * S, "a", 5 * S) and not state.add(10 * S, "a", 5 * S) and not state.add(5 * S, "b", 5 * S)


def test_state_keeps_only_the_burst_window():
    state = CustomerState([(i * 10 * S, f"L{i}") for i in range(100)], [])
    evaluate(state, RULES, 10**9)
    assert len(state.window) <= RULES.burst_logins + 5 and state.n_gaps == 99


def test_a_bucket_of_customers_gives_each_customer_its_own_result():
    """Customers sharing a state bucket (the stored JSON between micro-batches) fire exactly what each would
    alone, out-of-order arrival within the watermark included."""
    rng = random.Random(3)
    logins = {c: [(t * S, f"{c}-{i}") for i, t in enumerate(sorted(rng.sample(range(0, 600), 40)))]
              for c in ("c1", "c2", "c3")}
    arrivals = sorted(((ts + rng.randint(0, 20) * S, c, ts, lid) for c, rows in logins.items() for ts, lid in rows))
    batches = [arrivals[i:i + 17] for i in range(0, len(arrivals), 17)]
    stored, fired, watermark, latest = {}, set(), -1, 0
    for batch in batches:
        out, due = evaluate_bucket(stored, [(c, ts, lid) for _, c, ts, lid in batch], RULES, watermark)
        fired |= {(f["customer_id"], f["login_id"], f["rule"]) for f in out}
        latest = max([latest] + [ts for _, _, ts, _ in batch])
        watermark = latest - 30 * S
        stored = json.loads(json.dumps(stored))
        assert due == min(p[0] for row in stored.values() for p in row[0])
    out, _ = evaluate_bucket(stored, [], RULES, 10**12)
    fired |= {(f["customer_id"], f["login_id"], f["rule"]) for f in out}
    alone = {(c, lid, rule) for c, rows in logins.items()
             for lid, rule in _run([[(ts, lid)] for ts, lid in sorted(rows, key=lambda r: r[0])])}
    assert fired == alone and {f[2] for f in fired} >= {"burst", "short_gap"}


def test_a_bucket_drops_expired_customers_and_asks_for_its_next_call():
    rules = AnomalyRules(burst_logins=3, burst_window_s=60, short_gap_s=2, reactivation_days=1, state_ttl_days=2)
    stored = {}
    evaluate_bucket(stored, [("old", 0, "a"), ("new", 5 * DAY, "b"), ("new", 6 * DAY, "c")], rules, 1 * DAY)
    out, due = evaluate_bucket(stored, [], rules, 5 * DAY)  # "old": evaluated, then > 2 days without a login
    assert set(stored) == {"new"} and stored["new"][2] == 5 * DAY and due == 6 * DAY and out == []
    out, due = evaluate_bucket(stored, [], rules, 6 * DAY)
    assert [(f["customer_id"], f["rule"]) for f in out] == [("new", "reactivation")] and due == 8 * DAY
    assert evaluate_bucket(stored, [], rules, 8 * DAY) == ([], None) and stored == {}
