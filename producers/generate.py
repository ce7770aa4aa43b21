"""Synthetic, realistically dirty source files for every seed source (``c360 generate``).

One consistent customer universe across all files: the same customer ids, cities and dates line up — nobody
logs in, browses or buys before registering, refunds follow their orders, carts precede purchases, loyalty
points follow purchases, and each customer's ``last_login_datetime`` is the latest of their login events.

Shapes: Faker names, emails, phones and cities (value pools built once with Faker, sampled with numpy);
long-tailed spend; weekly and yearly seasonality with a festive December peak; login hours with an evening peak
that differs by city; subscriptions started and cancelled; campaigns with different conversion and return rates;
support tickets with resolution states.

Dirt, at ``dirty_rate`` for each kind, labelled in ``_labels/`` (kept apart from the data): timestamps in other
formats, empty and placeholder last logins, invalid emails, duplicated rows and events, malformed rows, missing
and unknown customer ids, negative amounts, out-of-order and late events. Injected behaviour with ground truth:
bot-like login bursts and long-inactivity reactivations (``_labels/login_anomalies.csv``, the rules evaluated on
the clean login events).

Output is byte-identical for the same parameters; ``--append`` adds one new day of activity.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from lakehouse.errors import C360Error
from lakehouse.tables import SOURCES
from producers.synth import (
    DAY,
    DIRTY_FORMATS,
    LOSSY_FORMATS,
    Calendar,
    LineWriter,
    date_text,
    dirt_codes,
    geometric_counts,
    hour_curve,
    ids,
    num,
    pick,
    repeat_index,
    ts_text,
    ts_text_coded,
)

log = logging.getLogger(__name__)

LABELS = "_labels"
CITIES = {  # city -> (state, share of customers, evening peak hour of its logins)
    "Mumbai": ("Maharashtra", 0.16, 21), "Delhi": ("Delhi", 0.14, 20), "Bengaluru": ("Karnataka", 0.13, 22),
    "Hyderabad": ("Telangana", 0.10, 21), "Chennai": ("Tamil Nadu", 0.09, 19), "Kolkata": ("West Bengal", 0.08, 20),
    "Pune": ("Maharashtra", 0.08, 22), "Ahmedabad": ("Gujarat", 0.06, 19), "Jaipur": ("Rajasthan", 0.05, 20),
    "Lucknow": ("Uttar Pradesh", 0.04, 19), "Kochi": ("Kerala", 0.04, 21), "Indore": ("Madhya Pradesh", 0.03, 20),
}
STATUSES = (("Active", 0.80), ("Inactive", 0.15), ("Blocked", 0.05))
DEVICES = (("web", 0.45), ("android", 0.35), ("ios", 0.20))
NULL_PLACEHOLDERS = ("", "NULL", "N/A", " ")
GENDERS = ("Female", "Male", "Other")
PAYMENTS = ("UPI", "Credit Card", "Debit Card", "Net Banking", "Cash on Delivery", "Wallet")
STORE_PAYMENTS = ("Cash", "Credit Card", "Debit Card", "UPI")
# campaign -> (share of sessions, conversion rate, return rate): seed 002's tracked campaigns
CAMPAIGNS = {
    "Instagram-ads": (0.22, 0.09, 0.14), "Google-ads": (0.26, 0.13, 0.08), "Facebook-ads": (0.20, 0.07, 0.11),
    "Twitter-ads": (0.08, 0.05, 0.10), "Billboard-QR code": (0.06, 0.16, 0.05), "Direct": (0.18, 0.11, 0.07),
}
CATEGORIES = {  # category -> (price median, price spread, cost ratio)
    "Electronics": (9000, 0.9, 0.78), "Fashion": (1400, 0.6, 0.45), "Home & Kitchen": (2200, 0.7, 0.55),
    "Beauty": (700, 0.5, 0.40), "Grocery": (450, 0.5, 0.80), "Sports": (2500, 0.7, 0.55),
    "Books": (450, 0.4, 0.60), "Toys": (1100, 0.6, 0.50), "Subscription Box": (799, 0.2, 0.50),
}
ADJECTIVES = ("Classic", "Premium", "Smart", "Eco", "Ultra", "Compact", "Deluxe", "Essential", "Pro", "Lite")
NOUNS = {
    "Electronics": ("Headphones", "Smartwatch", "Speaker", "Tablet", "Camera", "Power Bank", "Monitor"),
    "Fashion": ("Kurta", "Sneakers", "Jacket", "Saree", "Jeans", "Handbag", "Sunglasses"),
    "Home & Kitchen": ("Mixer", "Cookware Set", "Lamp", "Bedsheet", "Air Fryer", "Water Bottle"),
    "Beauty": ("Face Serum", "Lipstick", "Shampoo", "Perfume", "Moisturiser"),
    "Grocery": ("Basmati Rice", "Green Tea", "Almonds", "Olive Oil", "Coffee Beans"),
    "Sports": ("Yoga Mat", "Cricket Bat", "Dumbbells", "Running Shoes", "Cycle Helmet"),
    "Books": ("Novel", "Cookbook", "Biography", "Comic", "Study Guide"),
    "Toys": ("Puzzle", "Building Blocks", "Board Game", "Plush Toy", "RC Car"),
    "Subscription Box": ("Snack Box", "Beauty Box", "Book Club", "Coffee Club", "Fitness Box"),
}
ORDER_STATUS = (("Delivered", 0.84), ("Shipped", 0.05), ("Placed", 0.03), ("Cancelled", 0.08))
RETURN_REASONS = ("Damaged", "Wrong item", "Size issue", "Not as described", "Changed mind")
SUPPORT_CHANNELS = (("Phone", 0.35), ("Email", 0.25), ("Chat", 0.40))
ISSUES = ("Billing", "Delivery", "Product Quality", "Returns", "Account", "Payment")
RESOLUTIONS = (("Resolved", 0.70), ("Pending", 0.10), ("Escalated", 0.10), ("Unresolved", 0.10))
DEPARTMENTS = ("Billing", "Technical", "Returns", "General")
SHIFTS = ("Morning", "Evening", "Night")
SHIPPING = ("Standard", "Express", "Free Shipping", "Store Pickup", "Next Day Air")


@dataclass(frozen=True)
class GenerateParams:
    """What to generate.

    Attributes:
        scale: number of customers; events are proportional (about 30 per customer with the defaults).
        seed: the random seed; the same parameters give byte-identical files.
        dirty_rate: the share of records given each kind of dirt (0 for clean data).
        start, end: the registration and activity period (``YYYY-MM-DD``).
        never_logged_in_rate: the share of customers with no login (seed 000, criterion 4).
        bot_rate, reactivation_rate: the share of customers given a login burst / a long inactivity.
        burst_logins, burst_window_s, short_gap_s, reactivation_days: the anomaly rules the labels apply
            (seed 000 criteria 11 and 12): at least ``burst_logins`` logins within ``burst_window_s`` seconds;
            a gap of at most ``short_gap_s`` seconds; a login after at least ``reactivation_days`` days without.
    """

    scale: int = 1000
    seed: int = 42
    dirty_rate: float = 0.02
    start: str = "2023-01-01"
    end: str = "2024-12-31"
    logins_per_customer: float = 8.0
    sessions_per_customer: float = 6.0
    instore_per_customer: float = 1.6
    never_logged_in_rate: float = 0.12
    bot_rate: float = 0.005
    reactivation_rate: float = 0.03
    burst_logins: int = 10
    burst_window_s: int = 300
    short_gap_s: int = 2
    reactivation_days: int = 90

    def check(self) -> None:
        if self.scale < 1:
            raise C360Error("--scale must be at least 1 customer")
        if not 0 <= self.dirty_rate <= 0.5:
            raise C360Error("--dirty-rate must be between 0 and 0.5")
        try:
            start, end = np.datetime64(self.start, "D"), np.datetime64(self.end, "D")
        except ValueError:
            raise C360Error(f"bad --start/--end date: use YYYY-MM-DD (got {self.start!r}, {self.end!r})") from None
        if end - start < np.timedelta64(60, "D"):
            raise C360Error("--end must be at least 60 days after --start")

    @property
    def start_s(self) -> int:
        return int(np.datetime64(self.start, "s").astype(np.int64))

    @property
    def end_s(self) -> int:
        """The first second after the activity period."""
        return int(np.datetime64(self.end, "s").astype(np.int64)) + DAY


@dataclass
class GenerateSummary:
    """What was written: rows per file, and ground-truth counts (the labels hold the details)."""

    out_dir: str
    rows: dict[str, int] = field(default_factory=dict)
    truth: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        timed = {s.file for s in SOURCES.values() if s.kind == "event" or s.time_column is not None}
        return sum(n for f, n in self.rows.items() if f in timed)



def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per component: adding one never shifts the others."""
    return np.random.default_rng([seed, *stream])


def _choice(rng: np.random.Generator, table, size: int) -> np.ndarray:
    names, weights = zip(*table, strict=True)
    p = np.array(weights, dtype=float)
    return rng.choice(len(names), size, p=p / p.sum())


def _width(n: int) -> int:
    return max(7, len(str(n)))


# --------------------------------------------------------------------------------------------------------------
# the customer universe (a pure function of seed, scale and dates: --append rebuilds it instead of storing it)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Universe:
    n: int
    ids: pa.Array
    name: pa.Array
    email: pa.Array
    phone: pa.Array
    city: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    reg: np.ndarray
    status: np.ndarray
    spend: np.ndarray
    online_share: np.ndarray
    never: np.ndarray
    bot: np.ndarray
    react: np.ndarray
    invalid_email: np.ndarray
    address: pa.Array

    def cust(self, idx: np.ndarray) -> pa.Array:
        """The customer ids of the given customer indices."""
        return self.ids.take(pa.array(idx))


def _name_pools(seed: int, size: int) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """First names by gender (female, male, any), last names and street names, made once with Faker."""
    from faker import Faker

    fake = Faker("en_IN")
    fake.seed_instance(seed)
    clean = lambda v: v.replace(",", "").replace('"', "").strip()  # noqa: E731
    pool = lambda make, k: np.array(sorted({clean(make()) for _ in range(k)}))  # noqa: E731
    first = (pool(fake.first_name_female, size), pool(fake.first_name_male, size), pool(fake.first_name, size))
    return first, pool(fake.last_name, size), pool(fake.street_name, max(50, size // 4))


def build_universe(p: GenerateParams) -> Universe:
    n = p.scale
    rng = _rng(p.seed, 1)
    firsts, last, streets = _name_pools(p.seed, min(max(n // 4, 300), 3000))
    gender = _choice(rng, ((g, w) for g, w in zip(GENDERS, (0.49, 0.49, 0.02), strict=True)), n)
    first_all = np.concatenate(firsts)
    offsets = np.cumsum([0, *(len(f) for f in firsts)])
    sizes = np.array([len(f) for f in firsts])
    fi = offsets[gender] + (rng.random(n) * sizes[gender]).astype(np.int64)
    fa, la = pick(first_all, fi), pick(last, rng.integers(0, len(last), n))
    name = pc.binary_join_element_wise(fa, la, " ")
    local = pc.utf8_lower(pc.binary_join_element_wise(fa, la, "."))
    local = pc.replace_substring(local, " ", "")
    local = pc.binary_join_element_wise(local, num(rng.integers(1, 999, n)), "")
    domains = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "rediffmail.com", "icloud.com")
    email = pc.binary_join_element_wise(local, pick(domains, rng.integers(0, len(domains), n)), "@")
    invalid_email = rng.random(n) < p.dirty_rate
    if invalid_email.any():
        email = pc.if_else(pa.array(invalid_email), pc.replace_substring(email, "@", ""), email)
    phone = pc.binary_join_element_wise("+91 ", num(rng.integers(70000, 99999, n)), " ",
                                        pc.utf8_lpad(num(rng.integers(0, 99999, n)), 5, "0"), "")
    city_p = np.array([v[1] for v in CITIES.values()])
    city = rng.choice(len(CITIES), n, p=city_p / city_p.sum())
    address = pc.binary_join_element_wise(num(rng.integers(1, 400, n)), pick(streets, rng.integers(0, len(streets), n)),
                                          " ")
    calendar = Calendar(p.start_s, p.end_s)
    reg_hi = np.full(n, p.end_s - 30 * DAY)
    reg = calendar.times(np.full(n, p.start_s), reg_hi, hour_curve(rng, n, 14.0, 4.0, 0.2), rng)
    return Universe(
        n=n, ids=ids("C", np.arange(1, n + 1), _width(n)), name=name, email=email, phone=phone, city=city,
        gender=gender,
        age=np.clip(rng.normal(36, 12, n), 18, 80).astype(np.int64), reg=reg,
        status=_choice(rng, STATUSES, n), spend=rng.lognormal(0.0, 0.8, n),
        online_share=rng.choice([0.95, 0.5, 0.1], n, p=[0.5, 0.3, 0.2]),
        never=rng.random(n) < p.never_logged_in_rate, bot=rng.random(n) < p.bot_rate,
        react=rng.random(n) < p.reactivation_rate, invalid_email=invalid_email, address=address,
    )


# --------------------------------------------------------------------------------------------------------------
# events, as numeric arrays (customer index, time, ...) before any text is made
# --------------------------------------------------------------------------------------------------------------
def _login_events(u: Universe, p: GenerateParams, lo: np.ndarray, hi: np.ndarray, counts: np.ndarray,
                  rng: np.random.Generator, calendar: Calendar, with_patterns: bool) -> tuple[np.ndarray, np.ndarray]:
    """(customer index, login time) of every login, with reactivation gaps and bot bursts injected."""
    counts = np.where(u.never, 0, counts)
    owner = repeat_index(counts)
    lo_l, hi_l = lo[owner].copy(), hi[owner].copy()
    if with_patterns:
        # long inactivity: the first half of the logins early, then nothing for >= reactivation_days
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        rank = np.arange(len(owner)) - starts[owner]
        gap = (p.reactivation_days + rng.integers(5, 90, u.n)) * DAY
        split = lo + ((hi - lo) * 0.35).astype(np.int64)
        react = u.react & (counts >= 2) & (split + gap < hi - 5 * DAY)
        first_half = rank < np.ceil(counts[owner] / 2)
        in_react = react[owner]
        hi_l = np.where(in_react & first_half, split[owner], hi_l)
        lo_l = np.where(in_react & ~first_half, (split + gap)[owner], lo_l)
    peaks = np.array([v[2] for v in CITIES.values()])[u.city[owner]]
    ts = calendar.times(lo_l, hi_l, hour_curve(rng, len(owner), peaks), rng)
    if with_patterns:
        # bots: a burst of logins a few seconds apart
        bots = np.flatnonzero(u.bot & ~u.never & (hi - lo > DAY))
        sizes = p.burst_logins + rng.integers(2, 25, len(bots))
        b_owner = np.repeat(bots, sizes)
        t0 = lo[bots] + (rng.random(len(bots)) * (hi[bots] - lo[bots] - 3600)).astype(np.int64)
        steps = rng.integers(1, 20, len(b_owner))
        csum = np.cumsum(steps)
        if len(bots):
            starts = np.r_[0, np.cumsum(sizes)[:-1]]
            csum = csum - np.repeat(csum[starts] - steps[starts], sizes)
        cum = csum
        owner = np.concatenate([owner, b_owner])
        ts = np.concatenate([ts, np.repeat(t0, sizes) + cum])
    order = np.lexsort((ts, owner))
    return owner[order], ts[order]


def label_login_anomalies(owner: np.ndarray, ts: np.ndarray, p: GenerateParams) -> dict[str, np.ndarray]:
    """The anomaly rules on clean login events sorted by (customer, time): a boolean mask per rule.

    burst: at least ``burst_logins`` logins of the customer in the ``burst_window_s`` seconds ending at this one;
    short_gap: at most ``short_gap_s`` seconds after the customer's previous login;
    reactivation: at least ``reactivation_days`` days after the customer's previous login.
    """
    if len(owner) == 0:
        return {r: np.zeros(0, bool) for r in ("burst", "short_gap", "reactivation")}
    key = owner.astype(np.int64) * (1 << 36) + ts
    left = np.searchsorted(key, key - p.burst_window_s, side="left")
    in_window = np.arange(len(key)) - left + 1
    same = np.r_[False, owner[1:] == owner[:-1]]
    gap = np.r_[0, np.diff(ts)]
    return {
        "burst": in_window >= p.burst_logins,
        "short_gap": same & (gap <= p.short_gap_s),
        "reactivation": same & (gap >= p.reactivation_days * DAY),
    }


@dataclass
class Catalog:
    category: np.ndarray
    price: np.ndarray
    cost: np.ndarray
    subscription: np.ndarray
    popularity: np.ndarray
    name: pa.Array
    ids: pa.Array


def build_catalog(p: GenerateParams) -> Catalog:
    rng = _rng(p.seed, 2)
    m = int(np.clip(p.scale // 200, 60, 5000))
    cats = list(CATEGORIES)
    category = rng.choice(len(cats), m, p=np.array([0.16, 0.2, 0.14, 0.1, 0.1, 0.09, 0.08, 0.07, 0.06]))
    med = np.array([CATEGORIES[c][0] for c in cats])[category]
    spread = np.array([CATEGORIES[c][1] for c in cats])[category]
    price = np.round(med * rng.lognormal(0, spread), -1) - 1
    price = np.maximum(price, 49)
    cost = np.round(price * np.array([CATEGORIES[c][2] for c in cats])[category] * rng.uniform(0.85, 1.1, m), 2)
    noun_idx = rng.integers(0, 7, m)
    names = [f"{ADJECTIVES[a]} {NOUNS[cats[c]][k % len(NOUNS[cats[c]])]}"
             for a, c, k in zip(rng.integers(0, len(ADJECTIVES), m), category, noun_idx, strict=True)]
    popularity = 1.0 / np.arange(1, m + 1) ** 0.8
    return Catalog(category, price, cost, np.array(cats)[category] == "Subscription Box",
                   popularity / popularity.sum(), pa.array(names), ids("P", np.arange(1, m + 1), 5))


# --------------------------------------------------------------------------------------------------------------
# dirt
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Dirt:
    """Labels of injected dirt: (file, record id, kind)."""

    files: list[str] = field(default_factory=list)
    records: list[pa.Array] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, file: str, record_ids: pa.Array, kind: str) -> None:
        if len(record_ids):
            self.files.append(file)
            self.records.append(record_ids)
            self.kinds.append(kind)

    def table(self) -> pa.Table:
        if not self.records:
            return pa.table({"file": pa.array([], pa.string()), "record_id": pa.array([], pa.string()),
                             "kind": pa.array([], pa.string())})
        return pa.table({
            "file": pa.concat_arrays([pa.array([f] * len(r)) for f, r in zip(self.files, self.records, strict=True)]),
            "record_id": pa.concat_arrays([r.cast(pa.string()) for r in self.records]),
            "kind": pa.concat_arrays([pa.array([k] * len(r)) for k, r in zip(self.kinds, self.records, strict=True)]),
        })


def event_order(ts: np.ndarray, rng: np.random.Generator, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The row order of an event file: by event time, with a ``rate`` share of events arriving late (1-30 minutes
    after their time: out of order in the file) and a ``rate`` share duplicated a little later.

    Returns (row order over the clean rows with duplicates repeated, late mask, duplicated mask)."""
    m = len(ts)
    late = rng.random(m) < rate
    dup = rng.random(m) < rate
    arrival = ts + np.where(late, rng.integers(60, 1800, m), 0)
    dup_idx = np.flatnonzero(dup)
    rows = np.concatenate([np.arange(m), dup_idx])
    when = np.concatenate([arrival, arrival[dup_idx] + rng.integers(0, 300, len(dup_idx))])
    return rows[np.argsort(when, kind="stable")], late, dup


class _Out:
    def __init__(self, root: Path, append: bool):
        self.root, self.append = root, append
        self.rows: dict[str, int] = {}

    def writer(self, source: str) -> LineWriter:
        s = SOURCES[source]
        return LineWriter(self.root / s.file, s.columns if s.format == "csv" else None, append=self.append)

    def write(self, source: str, order: np.ndarray, make, malformed: np.ndarray | None = None) -> None:
        w = self.writer(source)
        w.write_rows(order, make, malformed)
        self.done(source, w)

    def done(self, source: str, w: LineWriter) -> None:
        w.close()
        self.rows[SOURCES[source].file] = self.rows.get(SOURCES[source].file, 0) + w.rows


def generate(out_dir: str | Path, params: GenerateParams, *, append: bool = False) -> GenerateSummary:
    """Write every source file into ``out_dir`` (replacing what was there), or with ``append`` add one new day
    of activity to an earlier output of the same parameters."""
    params.check()
    out = Path(out_dir)
    state_file = out / LABELS / "summary.json"
    if append:
        return _append_day(out, params, state_file)
    if out.exists():
        if not out.is_dir():
            raise C360Error(f"--out {out} exists and is not a directory")
        shutil.rmtree(out)
    (out / LABELS).mkdir(parents=True)
    summary = _generate_period(out, params, day=0)
    return summary


def _generate_period(out: Path, p: GenerateParams, day: int) -> GenerateSummary:
    """Generate the full period (day 0) or one appended day (day >= 1, after ``end``)."""
    u = build_universe(p)
    cat = build_catalog(p)
    calendar = Calendar(p.start_s, p.end_s + max(day, 1) * DAY)
    rate = p.dirty_rate
    o = _Out(out, append=day > 0)
    dirt = Dirt()
    truth: dict[str, int] = {}
    n = u.n
    width = _width(n)
    cities, states = list(CITIES), [v[0] for v in CITIES.values()]
    if day == 0:
        lo, hi = u.reg + 60, np.full(n, p.end_s - 1)
        counts_for = lambda mean, r: geometric_counts(r, mean, n)  # noqa: E731
    else:
        day_lo = p.end_s + (day - 1) * DAY
        lo, hi = np.maximum(u.reg + 60, day_lo), np.full(n, day_lo + DAY - 1)
        span_days = (p.end_s - p.start_s) / DAY
        counts_for = lambda mean, r: r.poisson(mean / span_days * 2.0, n)  # noqa: E731
    period_end = int(hi.max())

    # ---- logins (seed 000), with anomalies and their ground truth ----------------------------------------------
    rng = _rng(p.seed, 10, day)
    l_owner, last_login = _write_logins(o, out, p, u, dirt, truth, day, rate, width, lo, hi, calendar,
                                        counts_for(p.logins_per_customer, rng), rng)

    # ---- customers (seed 000): on an appended day, the customers who logged in are exported again -------------
    rng = _rng(p.seed, 11, day)
    sel = np.arange(n) if day == 0 else np.unique(l_owner)
    ns_ = len(sel)
    has_login = last_login[sel] >= 0
    reg_codes = dirt_codes(rng, ns_, rate, len(LOSSY_FORMATS))
    last_codes = dirt_codes(rng, ns_, rate, len(DIRTY_FORMATS))
    placeholder = rng.choice(len(NULL_PLACEHOLDERS), ns_, p=[0.7, 0.1, 0.1, 0.1])
    bad_reg = rng.random(ns_) < rate / 2
    c_no_id = (rng.random(ns_) < rate / 2) & ~bad_reg
    c_dup = rng.random(ns_) < rate
    malformed = (rng.random(ns_) < rate / 4) & ~c_no_id & ~bad_reg
    rows = np.sort(np.concatenate([np.arange(ns_), np.flatnonzero(c_dup)]), kind="stable")

    def customer_rows(idx):
        who = sel[idx]
        reg_text = pc.if_else(pa.array(bad_reg[idx]), pa.scalar("not a date"),
                              ts_text_coded(u.reg[who], reg_codes[idx], LOSSY_FORMATS))
        last = pc.if_else(pa.array(has_login[idx]),
                          ts_text_coded(np.maximum(last_login[who], 0), last_codes[idx]),
                          pick(NULL_PLACEHOLDERS, placeholder[idx]))
        return [pc.if_else(pa.array(c_no_id[idx]), pa.scalar(""), u.cust(who)), u.name.take(pa.array(who)),
                u.email.take(pa.array(who)), u.phone.take(pa.array(who)), pick(cities, u.city[who]), reg_text, last,
                pick([s for s, _ in STATUSES], u.status[who])]

    o.write("customers", rows, customer_rows, malformed=malformed[rows])
    for mask, kind in ((bad_reg, "bad_registration_datetime"), (c_no_id, "missing_customer_id"),
                       (u.invalid_email[sel], "invalid_email"), (c_dup, "duplicate_row"), (malformed, "malformed_row")):
        dirt.add("customers.csv", u.cust(sel[mask]), kind)
    valid = ~(bad_reg | c_no_id | malformed)
    truth |= {
        "customer_rows": len(rows), "customer_duplicate_rows": int(c_dup.sum()),
        "customers_valid": int(valid.sum()), "customers_bad_registration": int(bad_reg.sum()),
        "customers_missing_id": int(c_no_id.sum()), "customers_malformed": int(malformed.sum()),
        "customers_malformed_rows": int(malformed[rows].sum()),
        "customers_invalid_email": int((u.invalid_email[sel] & valid).sum()),
        "customers_never_logged_in": int((~has_login & valid).sum()),
        "dirty_timestamps": int((reg_codes >= 0).sum() + (last_codes >= 0).sum()) + truth["login_dirty_timestamps"],
    }

    # ---- sessions -> clickstream, online orders (seed 001 orders_large + seed 002 OnlineTransactions) ----------
    rng = _rng(p.seed, 12, day)
    camp_names = list(CAMPAIGNS)
    camp = np.array(list(CAMPAIGNS.values()))
    s_counts = np.rint(counts_for(p.sessions_per_customer, rng) * u.online_share * np.clip(u.spend, 0.3, 4)).astype(
        np.int64)
    s_owner = repeat_index(s_counts)
    ns = len(s_owner)
    s_camp = rng.choice(len(camp), ns, p=camp[:, 0] / camp[:, 0].sum())
    s_start = calendar.times(lo[s_owner], hi[s_owner], hour_curve(rng, ns, 20.0, 3.0, 0.5), rng)
    converted = rng.random(ns) < camp[s_camp, 1] * 2.5  # per-session conversion, campaign-specific
    carted = converted | (rng.random(ns) < 0.45)
    s_product = rng.choice(len(cat.price), ns, p=cat.popularity)
    s_num = _counter(out, "session", day) + np.arange(1, ns + 1)

    # orders: one per converted session, placed minutes after the session starts
    oi = np.flatnonzero(converted)
    o_owner, o_product, o_camp = s_owner[oi], s_product[oi], s_camp[oi]
    no = len(oi)
    o_ts = np.maximum(np.minimum(s_start[oi] + rng.integers(120, 2400, no), hi[o_owner]), s_start[oi] + 60)
    qty = np.where(rng.random(no) < 0.8, 1, rng.integers(2, 5, no))
    unit = cat.price[o_product]
    total = unit * qty
    status = _choice(rng, ORDER_STATUS, no)
    returned = (status == 0) & (rng.random(no) < camp[o_camp, 2])
    status_names = np.array([s for s, _ in ORDER_STATUS] + ["Returned"])
    status = np.where(returned, len(ORDER_STATUS), status)
    sub = cat.subscription[o_product]
    cancel_at = np.minimum(o_ts + rng.integers(30, 300, no) * DAY, period_end)
    sub_cancel = sub & (rng.random(no) < 0.35) & (cancel_at > o_ts)
    o_num = _counter(out, "order", day) + np.arange(1, no + 1)
    pay = rng.integers(0, len(PAYMENTS), no)
    o_order, o_late, o_dup = event_order(o_ts, rng, rate)
    o_unknown = rng.random(no) < rate / 4
    o_fake = n + 1 + rng.integers(0, max(n, 10), no)
    negative = (rng.random(no) < rate / 4) & ~o_unknown
    o_codes = dirt_codes(rng, no, rate, len(DIRTY_FORMATS))
    o_malformed = (rng.random(no) < rate / 4) & ~o_unknown & ~negative

    def order_rows(idx):
        c = pc.if_else(pa.array(o_unknown[idx]), ids("C", o_fake[idx], width), u.cust(o_owner[idx]))
        tot = num(total[idx], 2)
        tot = pc.if_else(pa.array(negative[idx]), pc.binary_join_element_wise("-", tot, ""), tot)
        subs = pc.if_else(pa.array(sub[idx]), pc.if_else(pa.array(sub_cancel[idx]), pa.scalar("Cancelled"),
                                                          pa.scalar("Active")), pa.scalar(""))
        cancelled = pc.if_else(pa.array(sub_cancel[idx]), ts_text(cancel_at[idx]), pa.scalar(""))
        prod = pa.array(o_product[idx])
        return [ids("O", o_num[idx], 10), c, cat.ids.take(prod), cat.name.take(prod),
                pick(list(CATEGORIES), cat.category[o_product[idx]]), num(qty[idx]), num(unit[idx], 2), tot,
                ts_text_coded(o_ts[idx], o_codes[idx]), pick(status_names, status[idx]), pick(PAYMENTS, pay[idx]),
                pick(("false", "true"), sub[idx].astype(int)), subs, cancelled]

    o.write("orders", o_order, order_rows, malformed=o_malformed[o_order])
    for mask, kind in ((o_dup, "duplicate_row"), (o_late, "late_event"), (o_unknown, "unknown_customer_id"),
                       (negative, "negative_amount"), (o_malformed, "malformed_row")):
        dirt.add("orders_large.csv", ids("O", o_num[mask], 10), kind)
    truth |= {"orders": no, "orders_returned": int(returned.sum()), "orders_negative_amount": int(negative.sum()),
              "orders_malformed_rows": int(o_malformed[o_order].sum()), "orders_duplicate_rows": int(o_dup.sum()),
              "orders_unknown_customer": int(o_unknown.sum()),
              "subscriptions": int(sub.sum()), "subscriptions_cancelled": int(sub_cancel.sum())}

    # the same orders in seed 002's OnlineTransactions (another system's export: its own layout, clean)
    seed2_status = np.array(["Completed", "Shipped", "Processing", "Cancelled", "Returned"])
    o.write("online_transactions", np.argsort(o_ts, kind="stable"), lambda idx: [
        ids("O", o_num[idx], 10), u.cust(o_owner[idx]), cat.ids.take(pa.array(o_product[idx])), num(qty[idx]),
        num(total[idx], 2), ts_text(o_ts[idx]), pick(PAYMENTS, pay[idx]), pick(seed2_status, status[idx])])

    # refunds: returned orders, 2-20 days later, and a few partial refunds of delivered ones
    rng = _rng(p.seed, 13, day)
    partial = (status == 0) & (rng.random(no) < 0.01)
    r_idx = np.flatnonzero(returned | partial)
    r_ts = o_ts[r_idx] + rng.integers(2, 20, len(r_idx)) * DAY + rng.integers(0, DAY, len(r_idx))
    keep = r_ts <= period_end
    r_idx, r_ts = r_idx[keep], r_ts[keep]
    r_amount = np.where(returned[r_idx], total[r_idx], np.round(total[r_idx] * rng.uniform(0.1, 0.5, len(r_idx)), 2))
    r_num = _counter(out, "refund", day) + np.arange(1, len(r_idx) + 1)
    r_order, r_late, r_dup = event_order(r_ts, rng, rate)
    r_codes = dirt_codes(rng, len(r_idx), rate, len(DIRTY_FORMATS))
    r_reason = rng.integers(0, len(RETURN_REASONS), len(r_idx))
    o.write("refunds", r_order, lambda idx: [
        ids("R", r_num[idx], 10), ids("O", o_num[r_idx[idx]], 10), u.cust(o_owner[r_idx[idx]]),
        cat.ids.take(pa.array(o_product[r_idx[idx]])), num(r_amount[idx], 2), ts_text_coded(r_ts[idx], r_codes[idx]),
        pick(RETURN_REASONS, r_reason[idx])])
    dirt.add("refunds_large.csv", ids("R", r_num[r_dup], 10), "duplicate_row")
    truth |= {"refunds": len(r_idx)}

    # clickstream: page views, then add-to-cart, then (for converted sessions) the purchase at the order time
    truth |= _write_clickstream(o, out, p, u, cat, dirt, day, rate, width, hi, s_owner, s_start, s_camp, s_product,
                                s_num, carted, converted, oi, o_ts)

    # Customer360Insights (seed 002): one row per converted session, with demographics and campaign
    rng = _rng(p.seed, 15, day)
    credit = np.clip(rng.normal(690, 70, n), 300, 900).astype(np.int64)
    income = np.round(rng.lognormal(11.0, 0.5, n), -2)
    reason = rng.integers(0, len(RETURN_REASONS), no)

    def insight_rows(idx):
        who, prod = o_owner[idx], o_product[idx]
        return [ids("S", s_num[oi[idx]], 10), ts_text(s_start[oi[idx]]), u.cust(who), u.name.take(pa.array(who)),
                pick(GENDERS, u.gender[who]), num(u.age[who]), num(credit[who]), num(income[who], 2),
                pick(["India"], np.zeros(len(idx), int)), pick(states, u.city[who]), pick(cities, u.city[who]),
                pick(list(CATEGORIES), cat.category[prod]), cat.name.take(pa.array(prod)), num(cat.cost[prod], 2),
                num(unit[idx], 2), num(qty[idx]), pick(camp_names, o_camp[idx]), pick(PAYMENTS, pay[idx]),
                pick(("No", "Yes"), returned[idx].astype(int)),
                pc.if_else(pa.array(returned[idx]), pick(RETURN_REASONS, reason[idx]), pa.scalar(""))]

    o.write("customer_insights", np.argsort(s_start[oi], kind="stable"), insight_rows)

    # ---- in-store transactions (seed 002), in stores of the customer's city ----------------------------------
    rng = _rng(p.seed, 16, day)
    n_stores = int(np.clip(n // 5000, 12, 500))
    store_city = np.arange(n_stores) % len(CITIES)
    i_counts = np.rint(counts_for(p.instore_per_customer, rng) * (1.0 - u.online_share) * 2 *
                       np.clip(u.spend, 0.3, 4)).astype(np.int64)
    i_owner = repeat_index(i_counts)
    ni = len(i_owner)
    i_ts = calendar.times(lo[i_owner], hi[i_owner], hour_curve(rng, ni, 17.0, 3.0, 0.5), rng)
    i_product = rng.choice(len(cat.price), ni, p=cat.popularity)
    i_qty = np.where(rng.random(ni) < 0.75, 1, rng.integers(2, 4, ni))
    i_amount = cat.price[i_product] * i_qty
    per_city = np.bincount(store_city, minlength=len(CITIES))
    i_store = u.city[i_owner] + len(CITIES) * (rng.random(ni) * per_city[u.city[i_owner]]).astype(np.int64)
    i_num = _counter(out, "instore", day) + np.arange(1, ni + 1)
    i_order, i_late, i_dup = event_order(i_ts, rng, rate)
    i_codes = dirt_codes(rng, ni, rate, len(DIRTY_FORMATS))
    i_pay = rng.integers(0, len(STORE_PAYMENTS), ni)
    o.write("instore_transactions", i_order, lambda idx: [
        ids("T", i_num[idx], 10), u.cust(i_owner[idx]), ids("ST", i_store[idx] + 1, 4),
        cat.ids.take(pa.array(i_product[idx])), num(i_qty[idx]), num(i_amount[idx], 2),
        ts_text_coded(i_ts[idx], i_codes[idx]), pick(STORE_PAYMENTS, i_pay[idx])])
    dirt.add("360/InStoreTransactions.csv", ids("T", i_num[i_dup], 10), "duplicate_row")
    dirt.add("360/InStoreTransactions.csv", ids("T", i_num[i_late], 10), "late_event")
    truth |= {"instore_transactions": ni}

    # ---- loyalty (seed 002): points follow purchases ----------------------------------------------------------
    rng = _rng(p.seed, 17)
    enrolled = rng.random(n) < 0.7
    loyalty_join = np.minimum(u.reg + rng.integers(0, 60, n) * DAY, p.end_s - DAY)
    rng = _rng(p.seed, 17, day)
    delivered = (status == 0) | (status == 1)
    buyers = np.concatenate([o_owner[delivered], i_owner])
    amounts = np.concatenate([total[delivered], i_amount])
    times = np.concatenate([o_ts[delivered], i_ts])
    earn = enrolled[buyers] & (times >= loyalty_join[buyers])
    e_buyers, e_pts, e_times = buyers[earn], np.floor(amounts[earn] / 10).astype(np.int64), times[earn]
    earned = np.bincount(e_buyers, weights=e_pts, minlength=n)
    redeemers = np.flatnonzero(enrolled & (earned > 200) & (rng.random(n) < 0.3))
    red_pts = np.floor(earned[redeemers] * rng.uniform(0.1, 0.6, len(redeemers))).astype(np.int64)
    red_ts = calendar.times(np.maximum(loyalty_join[redeemers], lo[redeemers]), hi[redeemers],
                            hour_curve(rng, len(redeemers), 19.0), rng)
    lt_owner = np.concatenate([e_buyers, redeemers])
    lt_pts = np.concatenate([e_pts, -red_pts])
    lt_ts = np.concatenate([e_times + 60, red_ts])
    lt_reason = np.concatenate([np.zeros(len(e_buyers), np.int8), np.ones(len(redeemers), np.int8)])
    lt_num = _counter(out, "loyalty", day) + np.arange(1, len(lt_owner) + 1)
    o.write("loyalty_transactions", np.argsort(lt_ts, kind="stable"), lambda idx: [
        ids("LT", lt_num[idx], 10), ids("LY", lt_owner[idx] + 1, width), u.cust(lt_owner[idx]), ts_text(lt_ts[idx]),
        num(lt_pts[idx]), pick(("Purchase", "Redemption"), lt_reason[idx])])
    truth |= {"loyalty_transactions": len(lt_owner)}

    # ---- support tickets (seed 002) ---------------------------------------------------------------------------
    rng = _rng(p.seed, 18, day)
    n_agents = int(np.clip(n // 2000, 10, 1000))
    had_return = np.bincount(o_owner[returned], minlength=n) > 0
    t_owner = repeat_index(rng.poisson(np.where(had_return, 1.5, 0.4) * (1 if day == 0 else 0.01), n))
    nt = len(t_owner)
    t_ts = calendar.times(lo[t_owner], hi[t_owner], hour_curve(rng, nt, 13.0, 3.0, 0.4), rng)
    res = _choice(rng, RESOLUTIONS, nt)
    resolved = res == 0
    t_num = _counter(out, "ticket", day) + np.arange(1, nt + 1)
    t_agent = rng.integers(1, n_agents + 1, nt)
    t_channel = _choice(rng, SUPPORT_CHANNELS, nt)
    t_issue = np.where(had_return[t_owner] & (rng.random(nt) < 0.5), 3, rng.integers(0, len(ISSUES), nt))
    t_hours = np.round(rng.gamma(2.0, 12.0, nt), 1)
    t_score = np.where(resolved, rng.integers(3, 6, nt), rng.integers(1, 4, nt))
    o.write("service_interactions", np.argsort(t_ts, kind="stable"), lambda idx: [
        ids("I", t_num[idx], 9), u.cust(t_owner[idx]), ids("A", t_agent[idx], 4), ts_text(t_ts[idx]),
        pick([c for c, _ in SUPPORT_CHANNELS], t_channel[idx]), pick(ISSUES, t_issue[idx]),
        pick([r for r, _ in RESOLUTIONS], res[idx]),
        pc.if_else(pa.array(resolved[idx]), num(t_hours[idx]), pa.scalar("")), num(t_score[idx])])
    truth |= {"tickets": nt, "tickets_resolved": int(resolved.sum())}

    # ---- per-customer exports: accounts (seed 004), loyalty accounts, CRM customers, shopping behaviour -------
    rng = _rng(p.seed, 19, day)
    never_bought = np.iinfo(np.int64).max
    first_buy = np.full(n, never_bought)
    np.minimum.at(first_buy, o_owner, o_ts)
    np.minimum.at(first_buy, i_owner, i_ts)
    everyone = np.arange(n)
    if day == 0:
        redeemed = np.bincount(redeemers, weights=red_pts, minlength=n).astype(np.int64)
        earned_i = earned.astype(np.int64)
        balance_pts = earned_i - redeemed
        tier_names = np.array(["Bronze", "Silver", "Gold", "Platinum"])
        tier = np.searchsorted([500, 2000, 5000], earned, side="right")
        o.write("loyalty_accounts", np.flatnonzero(enrolled), lambda idx: [
            ids("LY", idx + 1, width), u.cust(idx), date_text(loyalty_join[idx]), num(earned_i[idx]), num(redeemed[idx]),
            num(balance_pts[idx]), pick(tier_names, tier[idx])])
        status_4 = np.where(tier >= 2, 0, np.where(tier == 1, 1, 2)).astype(np.int8)  # Gold / Silver / Bronze
        account_balance = np.round(rng.lognormal(7.0, 1.2, n), 2) * (rng.random(n) < 0.85)
        points = np.where(enrolled, balance_pts, 0)
        pq.write_table(pa.table({"loyalty_status": status_4, "first_buy": first_buy, "balance": account_balance,
                                 "points": points}), out / LABELS / "accounts_state.parquet")
        dob = u.reg - (u.age * 365.25 * DAY).astype(np.int64) - rng.integers(0, 365, n) * DAY
        o.write("crm_customers", everyone, lambda idx: [
            u.cust(idx), u.name.take(pa.array(idx)), u.email.take(pa.array(idx)), u.phone.take(pa.array(idx)),
            u.address.take(pa.array(idx)), pick(cities, u.city[idx]), pick(states, u.city[idx]),
            pick(["India"], np.zeros(len(idx), int)), date_text(dob[idx]), pick(GENDERS, u.gender[idx]),
            date_text(u.reg[idx])])
        _write_shopping_behaviour(o, u, cat, rng, o_owner, o_product, o_ts, total, i_owner, i_ts,
                                  first_buy < never_bought)
        _write_reference(o, p, cat, n_stores, store_city, n_agents)
        acc_rows = everyone
    else:
        # a new day: the accounts of customers active today are exported again (last login, first purchase moved)
        acc = pq.read_table(out / LABELS / "accounts_state.parquet")
        first_buy = np.minimum(first_buy, acc["first_buy"].to_numpy())
        status_4, account_balance, points = (acc[c].to_numpy() for c in ("loyalty_status", "balance", "points"))
        pq.write_table(acc.set_column(acc.schema.get_field_index("first_buy"), "first_buy", pa.array(first_buy)),
                       out / LABELS / "accounts_state.parquet")
        acc_rows = sel

    def account_rows(idx):
        bought = first_buy[idx] < never_bought
        logged = last_login[idx] >= 0
        return [u.cust(idx), u.name.take(pa.array(idx)), pick(("false", "true"), (u.status[idx] == 0).astype(int)),
                pick(("Gold", "Silver", "Bronze"), status_4[idx]), date_text(u.reg[idx]),
                pc.if_else(pa.array(bought), date_text(np.where(bought, first_buy[idx], 0)), pa.scalar("")),
                pc.if_else(pa.array(logged), ts_text(np.maximum(last_login[idx], 0)), pa.scalar("")),
                num(account_balance[idx], 2), num(points[idx])]

    o.write("accounts", acc_rows, account_rows)

    # ---- labels ------------------------------------------------------------------------------------------------
    labels_file = out / LABELS / "dirty_records.csv"
    table = dirt.table()
    if day > 0 and labels_file.exists():
        table = pa.concat_tables([pcsv.read_csv(labels_file, convert_options=pcsv.ConvertOptions(
            column_types={"file": pa.string(), "record_id": pa.string(), "kind": pa.string()})), table])
    pcsv.write_csv(table, labels_file)
    summary = GenerateSummary(str(out), o.rows, truth)
    _save_state(out, p, day, summary)
    log.info("generated %d rows in %d files", sum(o.rows.values()), len(o.rows))
    return summary


def _write_logins(o, out, p, u, dirt, truth, day, rate, width, lo, hi, calendar, counts, rng):
    """logins.csv and the anomaly labels; returns (owners of the clean logins, each customer's last login).
    Its own function so that its large arrays are freed when it returns."""
    n = u.n
    cities = list(CITIES)
    period_end = int(hi.max())

    l_owner, l_ts = _login_events(u, p, lo, hi, counts, rng, calendar, with_patterns=day == 0)
    login_base = _counter(out, "login", day)
    m = len(l_owner)
    _save_clean_logins(out, day, l_owner, l_ts, login_base + np.arange(1, m + 1))
    all_owner, all_ts, all_num = _load_clean_logins(out)
    _write_anomaly_labels(out, p, u, all_owner, all_ts, all_num, truth)
    last_login = np.full(n, -1, dtype=np.int64)
    if len(all_owner):
        ends = np.r_[np.flatnonzero(np.diff(all_owner)), len(all_owner) - 1]
        last_login[all_owner[ends]] = all_ts[ends]
    # dirt adds rows (the clean events above stay exactly the ground truth): logins of customers nobody knows
    # (owner -2) and logins without a customer id (owner -1); then late arrivals, duplicates, other formats
    k_unknown, k_no_id = int(rng.binomial(m, rate / 2)), int(rng.binomial(m, rate / 2))
    k = k_unknown + k_no_id
    owner = np.concatenate([l_owner, np.full(k_unknown, -2), np.full(k_no_id, -1)])
    ts = np.concatenate([l_ts, rng.integers(int(lo.min()), period_end, k)])
    fake_owner = n + 1 + rng.integers(0, max(n, 10), m + k)
    city_idx = np.where(owner >= 0, u.city[np.maximum(owner, 0)], rng.integers(0, len(CITIES), m + k))
    nums = login_base + np.arange(1, m + k + 1)
    codes = dirt_codes(rng, m + k, rate, len(DIRTY_FORMATS))
    device = _choice(rng, DEVICES, m + k)
    order, late, dup = event_order(ts, rng, rate)

    def login_rows(idx):
        known = u.ids.take(pa.array(np.maximum(owner[idx], 0)))
        c = pc.if_else(pa.array(owner[idx] >= 0), known,
                       pc.if_else(pa.array(owner[idx] == -2), ids("C", fake_owner[idx], width), pa.scalar("")))
        return [ids("L", nums[idx], 10), c, ts_text_coded(ts[idx], codes[idx]), pick(cities, city_idx[idx]),
                pick([d for d, _ in DEVICES], device[idx])]

    o.write("logins", order, login_rows)
    for mask, kind in ((dup, "duplicate_row"), (late, "late_event"), (owner == -2, "unknown_customer_id"),
                       (owner == -1, "missing_customer_id")):
        dirt.add("logins.csv", ids("L", nums[mask], 10), kind)
    truth |= {"login_rows": len(order), "login_duplicate_rows": int(dup.sum()), "logins_clean": m,
              "login_ids_used": m + k, "logins_valid": m + k_unknown, "logins_missing_customer_id": k_no_id,
              "logins_unknown_customer": k_unknown, "logins_late": int(late.sum()),
              "login_dirty_timestamps": int((codes >= 0).sum())}

    return l_owner, last_login


def _write_clickstream(o, out, p, u, cat, dirt, day, rate, width, hi, s_owner, s_start, s_camp, s_product, s_num,
                       carted, converted, oi, o_ts) -> dict[str, int]:
    """clickstream.json: per session, page views, then an add-to-cart, then (converted) the purchase at the
    order's time. Its own function so that its large index arrays are freed when it returns."""
    rng = _rng(p.seed, 14, day)
    n = u.n
    ns, no = len(s_owner), len(oi)
    camp_names = list(CAMPAIGNS)

    views = rng.integers(1, 4, ns)
    n_events = views + carted + converted
    e_session = repeat_index(n_events)
    ne = len(e_session)
    starts = np.r_[0, np.cumsum(n_events)[:-1]]
    step = np.arange(ne) - starts[e_session]
    kind = np.where(step < views[e_session], 0, np.where(step == views[e_session], 1, 2)).astype(np.int8)
    order_of_session = np.full(ns, -1)
    order_of_session[oi] = np.arange(no)
    e_conv = converted[e_session]
    e_order_ts = np.append(o_ts, 0)[order_of_session[e_session]]  # -1 (no order) picks the 0
    e_ts = s_start[e_session] + step * rng.integers(20, 180, ne)
    e_ts = np.where(kind == 2, e_order_ts, np.minimum(e_ts, np.where(e_conv, e_order_ts - 1, hi[s_owner[e_session]])))
    other = rng.choice(len(cat.price), ne, p=cat.popularity)
    e_product = np.where((kind == 0) & (step > 0), other, s_product[e_session])
    e_num = _counter(out, "click", day) + np.arange(1, ne + 1)
    e_unknown = rng.random(ne) < rate / 4
    e_fake = n + 1 + rng.integers(0, max(n, 10), ne)
    e_device = _choice(rng, DEVICES, ne)
    e_order, e_late, e_dup = event_order(e_ts, rng, rate)
    event_names = np.array(["page_view", "add_to_cart", "purchase"])

    def click_fields(idx):
        prod = cat.ids.take(pa.array(e_product[idx]))
        k_ = kind[idx]
        page = pc.if_else(pa.array(k_ == 0), pc.binary_join_element_wise("/product/", prod, ""),
                          pc.if_else(pa.array(k_ == 1), pa.scalar("/cart"), pa.scalar("/checkout/complete")))
        sess = e_session[idx]
        return {
            "click_id": ids("E", e_num[idx], 11), "session_id": ids("S", s_num[sess], 10),
            "customer_id": pc.if_else(pa.array(e_unknown[idx]), ids("C", e_fake[idx], width), u.cust(s_owner[sess])),
            "event_type": pick(event_names, k_), "product_id": prod, "page": page,
            "event_timestamp": ts_text(e_ts[idx]), "device": pick([d for d, _ in DEVICES], e_device[idx]),
            "campaign": pick(camp_names, s_camp[sess]),
        }

    w = o.writer("clickstream")
    w.write_json_rows(e_order, click_fields, quoted=set(click_fields(np.zeros(0, np.int64))))
    broken = np.flatnonzero(rng.random(ne) < rate / 10)
    if len(broken):  # truncated JSON lines, as a crashed exporter leaves them
        w.write_raw_lines([f'{{"click_id":"{c}","session_id":' for c in ids("E", e_num[broken], 11).to_pylist()])
    o.done("clickstream", w)
    for mask, kind_name in ((e_dup, "duplicate_row"), (e_late, "late_event"), (e_unknown, "unknown_customer_id")):
        dirt.add("clickstream.json", ids("E", e_num[mask], 11), kind_name)
    dirt.add("clickstream.json", ids("E", e_num[broken], 11), "malformed_row")
    return {"sessions": ns, "sessions_converted": int(converted.sum()),
            "abandoned_carts": int((carted & ~converted).sum()), "clicks": ne, "clicks_malformed": len(broken)}



def _write_shopping_behaviour(o: _Out, u: Universe, cat: Catalog, rng, o_owner, o_product, o_ts, total, i_owner,
                              i_ts, bought) -> None:
    n = u.n
    last_t = np.full(n, -1, np.int64)
    last_p = np.zeros(n, np.int64)
    last_amount = np.zeros(n)
    order = np.argsort(o_ts, kind="stable")
    last_t[o_owner[order]] = o_ts[order]
    last_p[o_owner[order]] = o_product[order]
    last_amount[o_owner[order]] = total[order]
    purchases = np.bincount(o_owner, minlength=n) + np.bincount(i_owner, minlength=n)
    span = np.maximum(last_t - u.reg, DAY) / DAY
    freq = np.where(purchases > 1, np.round(span / np.maximum(purchases - 1, 1)), 0).astype(np.int64)
    who = np.flatnonzero(bought & (last_t >= 0))
    idx = pa.array(who)
    age = u.age[who]
    groups = np.array(["18-24", "25-34", "35-44", "45-54", "55+"])
    w = o.writer("shopping_behaviour")
    w.write_csv([u.ids.take(idx), num(age), pick(groups, np.searchsorted([25, 35, 45, 55], age, side="right")),
                 pick(GENDERS, u.gender[who]), cat.name.take(pa.array(last_p[who])),
                 pick(list(CATEGORIES), cat.category[last_p[who]]), num(last_amount[who], 2),
                 pick(list(CITIES), u.city[who]), num(np.round(rng.uniform(2.5, 5.0, len(who)), 1)),
                 pick(("No", "Yes"), cat.subscription[last_p[who]].astype(int)),
                 pick(SHIPPING, rng.integers(0, len(SHIPPING), len(who))),
                 pick(("No", "Yes"), (rng.random(len(who)) < 0.4).astype(int)), num(freq[who])])
    o.done("shopping_behaviour", w)


def _write_reference(o: _Out, p: GenerateParams, cat: Catalog, n_stores: int, store_city: np.ndarray,
                     n_agents: int) -> None:
    rng = _rng(p.seed, 20)
    firsts, last, streets = _name_pools(p.seed + 1, 400)
    first = np.concatenate(firsts[:2])
    w = o.writer("products")
    w.write_csv([cat.ids, cat.name, pick(list(CATEGORIES), cat.category),
                 pick(("Acme", "Zenith", "Nova", "Orbit", "Lotus", "Vista"), rng.integers(0, 6, len(cat.price))),
                 num(cat.price, 2), num(cat.cost, 2), pick(("false", "true"), cat.subscription.astype(int))])
    o.done("products", w)
    manager = pc.binary_join_element_wise(pick(first, rng.integers(0, len(first), n_stores)),
                                          pick(last, rng.integers(0, len(last), n_stores)), " ")
    states = [v[0] for v in CITIES.values()]
    opened = p.start_s - rng.integers(100, 3000, n_stores) * DAY
    w = o.writer("stores")
    w.write_csv([ids("ST", np.arange(1, n_stores + 1), 4),
                 pc.binary_join_element_wise(num(rng.integers(1, 300, n_stores)),
                                             pick(streets, rng.integers(0, len(streets), n_stores)), " "),
                 pick(list(CITIES), store_city), pick(states, store_city), manager,
                 pick(("09:00-21:00", "10:00-22:00", "08:00-20:00"), rng.integers(0, 3, n_stores)), date_text(opened)])
    o.done("stores", w)
    w = o.writer("agents")
    w.write_csv([ids("A", np.arange(1, n_agents + 1), 4),
                 pc.binary_join_element_wise(pick(first, rng.integers(0, len(first), n_agents)),
                                             pick(last, rng.integers(0, len(last), n_agents)), " "),
                 pick(DEPARTMENTS, rng.integers(0, len(DEPARTMENTS), n_agents)),
                 pick(SHIFTS, rng.integers(0, len(SHIFTS), n_agents)),
                 date_text(p.start_s - rng.integers(30, 2000, n_agents) * DAY)])
    o.done("agents", w)


# --------------------------------------------------------------------------------------------------------------
# ground truth and state kept in _labels/
# --------------------------------------------------------------------------------------------------------------
def _save_clean_logins(out: Path, day: int, owner: np.ndarray, ts: np.ndarray, number: np.ndarray) -> None:
    folder = out / LABELS / "clean_logins"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"customer": owner.astype(np.int32), "ts": ts, "login": number}),
                   folder / f"day-{day:05d}.parquet")


def _load_clean_logins(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = pq.read_table(out / LABELS / "clean_logins")
    owner, ts, number = (t[c].to_numpy() for c in ("customer", "ts", "login"))
    order = np.lexsort((number, ts, owner))
    return owner[order].astype(np.int64), ts[order], number[order]


def _write_anomaly_labels(out: Path, p: GenerateParams, u: Universe, owner, ts, number, truth) -> None:
    rules = label_login_anomalies(owner, ts, p)
    parts = []
    for rule, mask in rules.items():
        idx = np.flatnonzero(mask)
        truth[f"anomalies_{rule}"] = len(idx)
        parts.append(pa.table({"login_id": ids("L", number[idx], 10), "customer_id": u.ids.take(pa.array(owner[idx])),
                               "login_datetime": ts_text(ts[idx]), "rule": pa.array([rule] * len(idx), pa.string())}))
    pcsv.write_csv(pa.concat_tables(parts), out / LABELS / "login_anomalies.csv")


def _counter(out: Path, what: str, day: int) -> int:
    """The last id number used for ``what`` before this day (ids continue across appended days)."""
    if day == 0:
        return 0
    state = json.loads((out / LABELS / "summary.json").read_text())
    return int(state["counters"].get(what, 0))


def _save_state(out: Path, p: GenerateParams, day: int, summary: GenerateSummary) -> None:
    path = out / LABELS / "summary.json"
    old = json.loads(path.read_text()) if day > 0 and path.exists() else {"counters": {}, "rows": {}}
    counters = dict(old["counters"])
    for what, key in (("login", "login_ids_used"), ("order", "orders"), ("refund", "refunds"), ("click", "clicks"),
                      ("session", "sessions"), ("instore", "instore_transactions"),
                      ("loyalty", "loyalty_transactions"), ("ticket", "tickets")):
        counters[what] = counters.get(what, 0) + summary.truth.get(key, 0)
    rows = {f: old["rows"].get(f, 0) + n for f, n in summary.rows.items()}
    path.write_text(json.dumps({"params": asdict(p), "days_appended": day, "counters": counters,
                                "rows": rows, "truth": summary.truth, "out_dir": summary.out_dir}, indent=2))


def _append_day(out: Path, p: GenerateParams, state_file: Path) -> GenerateSummary:
    if not state_file.exists():
        raise C360Error(f"--append needs an earlier `c360 generate` output in {out} (no {state_file})")
    state = json.loads(state_file.read_text())
    if state["params"] != asdict(p):
        changed = sorted(k for k, v in asdict(p).items() if state["params"].get(k) != v)
        raise C360Error(f"--append must use the parameters of the first run; these differ: {', '.join(changed)}")
    return _generate_period(out, p, day=int(state["days_appended"]) + 1)
