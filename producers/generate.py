"""Synthetic, realistically dirty source files (``c360 generate``).

One consistent customer universe: nobody logs in before registering, and each customer's
``last_login_datetime`` is the latest of their login events (or empty when they never logged in).
Values come from pools built once with Faker and are sampled vectorised with numpy, so the output is
byte-identical for a given ``seed`` and fast at scale.

Dirt is injected at ``dirty_rate`` and labelled in ``<out>/_labels/`` (kept apart from the data) so that
downstream quality can be measured against ground truth:
timestamps in other formats, empty and placeholder last logins, invalid emails, exact duplicate rows and
events, rows with an unparseable registration time or no customer id, logins with no customer id.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.errors import C360Error

log = logging.getLogger(__name__)

CITY_WEIGHTS = {  # city -> (share of customers, evening peak hour of its logins)
    "Mumbai": (0.16, 21), "Delhi": (0.14, 20), "Bengaluru": (0.13, 22), "Hyderabad": (0.10, 21),
    "Chennai": (0.09, 19), "Kolkata": (0.08, 20), "Pune": (0.08, 22), "Ahmedabad": (0.06, 19),
    "Jaipur": (0.05, 20), "Lucknow": (0.04, 19), "Kochi": (0.04, 21), "Indore": (0.03, 20),
}
STATUSES = (("Active", 0.80), ("Inactive", 0.15), ("Blocked", 0.05))
DEVICES = (("web", 0.45), ("android", 0.35), ("ios", 0.20))
CANONICAL_TS = "%Y-%m-%d %H:%M:%S"
DIRTY_TS_FORMATS = ("%d-%m-%Y %H:%M", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
NULL_PLACEHOLDERS = ("", "NULL", "N/A", " ")
CUSTOMER_COLUMNS = ["customer_id", "customer_name", "email", "phone", "city",
                    "registration_datetime", "last_login_datetime", "status"]
LOGIN_COLUMNS = ["login_id", "customer_id", "login_datetime", "city", "device"]


@dataclass(frozen=True)
class GenerateParams:
    """What to generate.

    Attributes:
        scale: number of customers; login events are proportional (``logins_per_customer`` on average).
        seed: the random seed; the same seed gives byte-identical files.
        dirty_rate: the share of records given each kind of dirt.
        start, end: the registration and activity period (``YYYY-MM-DD``).
        never_logged_in_rate: the share of customers with no login at all (seed 000, criterion 4).
    """

    scale: int = 1000
    seed: int = 42
    dirty_rate: float = 0.02
    start: str = "2023-01-01"
    end: str = "2024-12-31"
    logins_per_customer: float = 8.0
    never_logged_in_rate: float = 0.12

    def check(self) -> None:
        if self.scale < 1:
            raise C360Error("--scale must be at least 1 customer")
        if not 0 <= self.dirty_rate <= 0.5:
            raise C360Error("--dirty-rate must be between 0 and 0.5")
        try:
            start, end = pd.Timestamp(self.start), pd.Timestamp(self.end)
        except ValueError:
            raise C360Error(f"bad --start/--end date: use YYYY-MM-DD (got {self.start!r}, {self.end!r})") from None
        if end - start < pd.Timedelta(days=60):
            raise C360Error("--end must be at least 60 days after --start")


@dataclass
class GenerateSummary:
    """What was written: rows per file, and the ground truth the labels hold."""

    out_dir: str
    rows: dict[str, int] = field(default_factory=dict)
    truth: dict[str, int] = field(default_factory=dict)


def _pools(rng: np.random.Generator, seed: int, size: int) -> dict[str, np.ndarray]:
    """Faker-made value pools, sampled by index later (per-row Faker calls are far too slow at scale)."""
    from faker import Faker

    fake = Faker("en_IN")
    fake.seed_instance(seed)
    first = np.array(sorted({fake.first_name() for _ in range(size)}))
    last = np.array(sorted({fake.last_name() for _ in range(size)}))
    domains = np.array(["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "rediffmail.com", "icloud.com"])
    return {"first": first, "last": last, "domains": domains}


def _timestamps(rng: np.random.Generator, base: pd.DatetimeIndex | np.ndarray, hours: np.ndarray) -> pd.Series:
    """Dates at the given hours with random minutes and seconds."""
    days = pd.to_datetime(base).normalize()
    offset = hours * 3600 + rng.integers(0, 3600, size=len(hours))
    return pd.Series(days + pd.to_timedelta(offset, unit="s"))


def _login_hours(rng: np.random.Generator, peaks: np.ndarray) -> np.ndarray:
    """Hour-of-day of logins: an evening peak that differs by city, over a daytime background."""
    evening = np.clip(np.rint(rng.normal(peaks, 1.6)), 0, 23)
    daytime = rng.integers(7, 24, size=len(peaks))
    return np.where(rng.random(len(peaks)) < 0.55, evening, daytime).astype(np.int64)


def _format(ts: pd.Series, rng: np.random.Generator, dirty_rate: float) -> tuple[pd.Series, np.ndarray]:
    """Timestamps as strings: the canonical format, and other formats for a ``dirty_rate`` share."""
    out = ts.dt.strftime(CANONICAL_TS).to_numpy(dtype=object)
    dirty = rng.random(len(ts)) < dirty_rate
    idx = np.flatnonzero(dirty)
    fmts = rng.integers(0, len(DIRTY_TS_FORMATS), size=len(idx))
    for k, fmt in enumerate(DIRTY_TS_FORMATS):
        sel = idx[fmts == k]
        if len(sel):
            out[sel] = ts.iloc[sel].dt.strftime(fmt).to_numpy(dtype=object)
    return pd.Series(out), dirty


def generate(out_dir: str | Path, params: GenerateParams) -> GenerateSummary:
    """Write ``customers.csv`` and ``logins.csv`` (and ``_labels/``) into ``out_dir``, replacing what was there."""
    params.check()
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise C360Error(f"--out {out} exists and is not a directory")
        shutil.rmtree(out)
    (out / "_labels").mkdir(parents=True)
    rng = np.random.default_rng(params.seed)
    n, rate = params.scale, params.dirty_rate
    pools = _pools(rng, params.seed, size=min(max(n // 4, 200), 3000))

    # --- customers ---------------------------------------------------------------------------------------
    ids = np.array([f"C{i:07d}" for i in range(1, n + 1)], dtype=object)
    first = rng.choice(pools["first"], n)
    last = rng.choice(pools["last"], n)
    names = np.char.add(np.char.add(first.astype(str), " "), last.astype(str)).astype(object)
    local = np.char.lower(np.char.add(np.char.add(first.astype(str), "."), last.astype(str)))
    local = np.char.add(np.char.replace(local, " ", ""), rng.integers(1, 999, n).astype(str))
    emails = np.char.add(np.char.add(local, "@"), rng.choice(pools["domains"], n)).astype(object)
    phones = np.array([f"+91 {a} {b:05d}" for a, b in zip(rng.integers(70000, 99999, n),
                                                          rng.integers(0, 99999, n), strict=True)], dtype=object)
    city_names = np.array(list(CITY_WEIGHTS))
    city_p = np.array([w for w, _ in CITY_WEIGHTS.values()])
    city_idx = rng.choice(len(city_names), n, p=city_p / city_p.sum())
    cities = city_names[city_idx]
    statuses = rng.choice([s for s, _ in STATUSES], n, p=[p for _, p in STATUSES])

    start, end = pd.Timestamp(params.start), pd.Timestamp(params.end)
    span_days = (end - start).days
    reg_day = start + pd.to_timedelta(rng.integers(0, span_days - 30, n), unit="D")
    reg_hour = np.clip(np.rint(rng.normal(14, 4.5, n)), 0, 23).astype(np.int64)
    registered = _timestamps(rng, reg_day, reg_hour)

    # --- logins: a long-tailed count per customer, all after registration ---------------------------------
    never = rng.random(n) < params.never_logged_in_rate
    counts = np.where(never, 0, 1 + rng.geometric(1 / params.logins_per_customer, n) - 1)
    owner = np.repeat(np.arange(n), counts)
    m = len(owner)
    reg_s = registered.to_numpy().astype("datetime64[s]").astype(np.int64)[owner]
    end_s = np.int64((end + pd.Timedelta(days=1)).timestamp())
    day = reg_s // 86400 + 1 + (rng.random(m) * ((end_s - reg_s) // 86400 - 1)).astype(np.int64)
    hours = _login_hours(rng, np.array([p for _, p in CITY_WEIGHTS.values()])[city_idx[owner]])
    login_ts = pd.Series(pd.to_datetime(day * 86400 + hours * 3600 + rng.integers(0, 3600, m), unit="s"))
    order = np.lexsort((login_ts.to_numpy(), owner))
    owner, login_ts = owner[order], login_ts.iloc[order].reset_index(drop=True)
    last_login = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    if m:
        last_idx = np.r_[np.flatnonzero(np.diff(owner)), m - 1]
        last_login.iloc[owner[last_idx]] = login_ts.iloc[last_idx].to_numpy()

    # --- dirt on customers -----------------------------------------------------------------------------------
    reg_text, reg_dirty = _format(registered, rng, rate)
    last_text, last_dirty = _format(last_login.fillna(pd.Timestamp(0)), rng, rate)
    last_text = last_text.where(last_login.notna().to_numpy(), None).to_numpy(dtype=object)
    never_idx = np.flatnonzero(never)
    last_text[never_idx] = rng.choice(np.array(NULL_PLACEHOLDERS, dtype=object), len(never_idx),
                                      p=[0.7, 0.1, 0.1, 0.1])
    bad_email = rng.random(n) < rate
    if bad_email.any():
        emails[bad_email] = np.char.replace(emails[bad_email].astype(str), "@", "").astype(object)
    bad_reg = rng.random(n) < rate / 2
    reg_text = reg_text.to_numpy(dtype=object)
    reg_text[bad_reg] = "not a date"
    no_id = (rng.random(n) < rate / 2) & ~bad_reg
    customers = pd.DataFrame({
        "customer_id": np.where(no_id, "", ids), "customer_name": names, "email": emails, "phone": phones,
        "city": cities, "registration_datetime": reg_text, "last_login_datetime": last_text, "status": statuses,
    }, columns=CUSTOMER_COLUMNS)
    dup = rng.random(n) < rate
    customers = pd.concat([customers, customers[dup]]).sort_index(kind="stable").reset_index(drop=True)

    # --- logins and their dirt ---------------------------------------------------------------------------------
    login_text, _ = _format(login_ts, rng, rate)
    logins = pd.DataFrame({
        "login_id": np.array([f"L{i:09d}" for i in range(1, m + 1)], dtype=object),
        "customer_id": ids[owner] if m else np.array([], dtype=object),
        "login_datetime": login_text.to_numpy(dtype=object),
        "city": cities[owner] if m else np.array([], dtype=object),
        "device": rng.choice([d for d, _ in DEVICES], m, p=[p for _, p in DEVICES]),
    }, columns=LOGIN_COLUMNS)
    login_no_id = rng.random(m) < rate / 2
    logins.loc[login_no_id, "customer_id"] = ""
    login_dup = rng.random(m) < rate
    logins = pd.concat([logins, logins[login_dup]]).sort_index(kind="stable").reset_index(drop=True)

    customers.to_csv(out / "customers.csv", index=False)
    logins.to_csv(out / "logins.csv", index=False)

    valid_customers = ~(bad_reg | no_id)
    truth = {
        "customer_rows": len(customers),
        "customer_duplicate_rows": int(dup.sum()),
        "customers_valid": int(valid_customers.sum()),
        "customers_bad_registration": int(bad_reg.sum()),
        "customers_missing_id": int(no_id.sum()),
        "customers_invalid_email": int((bad_email & valid_customers).sum()),
        "customers_never_logged_in": int((never & valid_customers).sum()),
        "login_rows": len(logins),
        "login_duplicate_rows": int(login_dup.sum()),
        "logins_valid": int((~login_no_id).sum()),
        "logins_missing_customer_id": int(login_no_id.sum()),
        "dirty_timestamps": int(reg_dirty.sum() + last_dirty.sum()),
    }
    labels = pd.concat([
        pd.DataFrame({"file": "customers.csv", "record_id": ids[bad_reg], "kind": "bad_registration_datetime"}),
        pd.DataFrame({"file": "customers.csv", "record_id": ids[no_id], "kind": "missing_customer_id"}),
        pd.DataFrame({"file": "customers.csv", "record_id": ids[bad_email], "kind": "invalid_email"}),
        pd.DataFrame({"file": "customers.csv", "record_id": ids[dup], "kind": "duplicate_row"}),
        pd.DataFrame({"file": "logins.csv", "record_id": logins.loc[logins.customer_id == "", "login_id"],
                      "kind": "missing_customer_id"}),
    ])
    labels.to_csv(out / "_labels" / "dirty_records.csv", index=False)
    summary = GenerateSummary(str(out), {"customers.csv": len(customers), "logins.csv": len(logins)}, truth)
    (out / "_labels" / "summary.json").write_text(json.dumps(
        {"params": asdict(params), "generated_at": datetime.now().isoformat(timespec="seconds"), **asdict(summary)},
        indent=2))
    log.info("generated %s", summary.rows)
    return summary
