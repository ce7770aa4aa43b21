"""Predicted customer lifetime value: the BG/NBD purchase model and the Gamma-Gamma spend model (seeds 002, 003).

Both are fitted by maximum likelihood (scipy) on the per-customer summary with the Fader-Hardie conventions
(the same as the ``lifetimes`` package's ``summary_data_from_transaction_data``):

- purchases on the same day count as one (their amounts are summed);
- ``frequency`` = number of purchase days - 1 (repeat purchases);
- ``recency`` = last purchase day - first purchase day, ``T`` = observation end - first purchase day, both in
  days, or in weeks of 7 days (``time_unit="W"``: days / 7, not whole periods);
- ``monetary`` = mean value of the repeat purchase days (0 for customers without a repeat purchase).

References: Fader, Hardie & Lee, "Counting your customers the easy way: an alternative to the Pareto/NBD model"
(Marketing Science, 2005) for BG/NBD; Fader, Hardie & Lee, "RFM and CLV: using iso-value curves for customer
base analysis" (JMR, 2005) and Fader & Hardie's note "The Gamma-Gamma model of monetary value" (2013).

Everything here is numpy / pandas / scipy, with no Spark: ``c360 clv fit`` uses it on any transaction file, and
the gold refresh on the summary it computes in Spark. Fits work on the distinct summary rows with weights (many
customers share a row), so a million customers fit in seconds.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from lakehouse.errors import C360Error

DAYS_PER_UNIT = {"D": 1.0, "W": 7.0}
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha), dropout probability ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma parameters: a transaction's value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float

    @property
    def mean_value(self) -> float:
        """The population's expected transaction value (the prior mean), finite when q > 1."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("nan")


# ---- the summary ------------------------------------------------------------------------------------------------


def summarize(transactions: pd.DataFrame, *, customer_col: str, date_col: str, amount_col: str,
              observation_end: pd.Timestamp | None = None, time_unit: str = "D") -> pd.DataFrame:
    """Transactions -> one row per customer: ``frequency``, ``recency``, ``T``, ``monetary`` (module docstring).

    ``date_col`` must hold datetimes; only their day counts. Transactions after ``observation_end`` (default:
    the last transaction day) are left out. Returns columns ``customer``, ``frequency``, ``recency``, ``T``,
    ``monetary``.
    """
    unit = _unit(time_unit)
    days = transactions[date_col].dt.normalize()
    end = days.max() if observation_end is None else pd.Timestamp(observation_end).normalize()
    per_day = (pd.DataFrame({"customer": transactions[customer_col].to_numpy(), "day": days.to_numpy(),
                             "amount": transactions[amount_col].to_numpy(dtype=float)})
               [days.to_numpy() <= end]
               .groupby(["customer", "day"], sort=True, as_index=False)["amount"].sum())
    g = per_day.groupby("customer", sort=True)
    first, last = g["day"].min(), g["day"].max()
    n_days, total = g["day"].size(), g["amount"].sum()
    first_amount = g["amount"].first()  # groups are sorted by day: the first day's total
    frequency = n_days - 1
    repeat_total = total - first_amount
    monetary = np.where(frequency > 0, repeat_total / frequency.clip(lower=1), 0.0)
    return pd.DataFrame({
        "customer": first.index.to_numpy(),
        "frequency": frequency.to_numpy(dtype=float),
        "recency": ((last - first).dt.days / unit).to_numpy(dtype=float),
        "T": ((end - first).dt.days / unit).to_numpy(dtype=float),
        "monetary": np.asarray(monetary, dtype=float),
    })


def _unit(time_unit: str) -> float:
    try:
        return DAYS_PER_UNIT[time_unit.upper()]
    except KeyError:
        raise C360Error(f"time unit must be D (days) or W (weeks), got {time_unit!r}") from None


def _distinct(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of the given columns, their counts, and each input row's index among them."""
    stacked = np.column_stack(columns)
    rows, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(float), inverse.reshape(-1)


# ---- BG/NBD -----------------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray,
                         T: np.ndarray) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, equation 6)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (math.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters (optimised in log space, on the distinct summary rows)."""
    (x, t_x, t), w, _ = _distinct(np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float))
    if w.sum() < 2:
        raise C360Error("the BG/NBD fit needs at least 2 customers")

    def nll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        value = -(w * bgnbd_log_likelihood(r, alpha, a, b, x, t_x, t)).sum()
        return value if np.isfinite(value) else 1e300

    start = np.log([1.0, max(float(np.average(t, weights=w)), 1e-3), 1.0, 1.0])
    res = _minimize(nll, start)
    r, alpha, a, b = (float(v) for v in np.exp(res.x))
    return BgNbd(r, alpha, a, b, float(-res.fun))


def expected_purchases(m: BgNbd, t: float | np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in the next ``t`` units | x, t_x, T] (Fader, Hardie & Lee 2005, equation 10)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    if abs(a - 1) < 1e-6:  # the closed form divides by a - 1 (its limit exists; step off the singular point)
        a = 1 + 1e-6
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body / _dropout_odds(m, x, t_x, T)


def p_alive(m: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(the customer is still active at T | x, t_x, T) (Fader, Hardie & Lee 2005, equation 11)."""
    return 1 / _dropout_odds(m, np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float))


def _dropout_odds(m: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    odds = np.ones_like(x)
    rep = x > 0
    odds[rep] += m.a / (m.b + x[rep] - 1) * ((m.alpha + T[rep]) / (m.alpha + t_x[rep])) ** (m.r + x[rep])
    return odds


# ---- Gamma-Gamma ------------------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Each repeat customer's Gamma-Gamma log-likelihood of their mean transaction value (up to a constant)."""
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * math.log(v) + (px - 1) * np.log(mean)
            + px * np.log(x) - (px + q) * np.log(x * mean + v))


def fit_gamma_gamma(frequency: np.ndarray, monetary: np.ndarray) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters on the customers with repeat purchases of positive value."""
    frequency, monetary = np.asarray(frequency, float), np.asarray(monetary, float)
    keep = (frequency > 0) & (monetary > 0)
    if keep.sum() < 2:
        raise C360Error("the Gamma-Gamma fit needs at least 2 customers with repeat purchases")
    (x, mean), w, _ = _distinct(frequency[keep], monetary[keep])
    scale = float(np.average(mean, weights=w))  # fit on values near 1; v scales back

    def nll(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        value = -(w * gamma_gamma_log_likelihood(p, q, v, x, mean / scale)).sum()
        return value if np.isfinite(value) else 1e300

    res = _minimize(nll, np.log([1.0, 2.0, 1.0]))
    p, q, v = (float(val) for val in np.exp(res.x))
    ll = float((w * gamma_gamma_log_likelihood(p, q, v * scale, x, mean)).sum())
    return GammaGamma(p, q, v * scale, ll)


def expected_value(m: GammaGamma, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """E[value of a transaction | x, mean]: the Gamma-Gamma posterior mean, the population mean without repeats."""
    x, mean = np.asarray(frequency, float), np.asarray(monetary, float)
    out = np.full_like(x, m.mean_value)
    has = (x > 0) & (mean > 0)
    out[has] = m.p * (m.v + x[has] * mean[has]) / (m.p * x[has] + m.q - 1)
    return out


def _minimize(nll, start: np.ndarray):
    """L-BFGS-B in log space; Nelder-Mead from there when it stops without converging."""
    res = minimize(nll, start, method="L-BFGS-B", bounds=[(-12, 12)] * len(start),
                   options={"ftol": 1e-12, "gtol": 1e-7, "maxiter": 500})
    if res.success:
        return res
    polished = minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    return polished if polished.fun <= res.fun else res


# ---- CLV --------------------------------------------------------------------------------------------------------


def predicted_clv(bg: BgNbd, gg: GammaGamma, summary: pd.DataFrame, *, months: int = 36,
                  annual_discount: float = 0.10, time_unit: str = "D") -> pd.DataFrame:
    """Per summary row: ``p_alive``, ``expected_purchases`` over ``months`` and the discounted ``predicted_clv``.

    CLV = sum over months m of (expected purchases in month m) x (expected transaction value) / (1 + d)^m, with d
    the monthly rate equivalent to ``annual_discount``. Evaluated once per distinct (x, t_x, T) row.
    """
    unit = _unit(time_unit)
    (x, t_x, T), _, inverse = _distinct(summary["frequency"].to_numpy(float), summary["recency"].to_numpy(float),
                                        summary["T"].to_numpy(float))
    monthly = (1 + annual_discount) ** (1 / 12) - 1

    def horizon(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(expected purchases over ``months``, their discounted sum) for some of the distinct rows."""
        previous = np.zeros_like(x[rows])
        discounted = np.zeros_like(previous)
        for month in range(1, months + 1):
            cumulative = expected_purchases(bg, month * DAYS_PER_MONTH / unit, x[rows], t_x[rows], T[rows])
            discounted += (cumulative - previous) / (1 + monthly) ** month
            previous = cumulative
        return previous, discounted

    # the rows split over the cores: scipy's hyp2f1 (most of the time: 36 months of it per row) releases the GIL
    workers = max(1, min(os.cpu_count() or 1, len(x) // 10_000))
    bounds = np.linspace(0, len(x), workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(horizon, [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]))
    expected = np.concatenate([p[0] for p in parts]) if parts else np.zeros_like(x)
    discounted = np.concatenate([p[1] for p in parts]) if parts else np.zeros_like(x)
    value = expected_value(gg, summary["frequency"].to_numpy(float), summary["monetary"].to_numpy(float))
    return pd.DataFrame({
        "p_alive": p_alive(bg, x, t_x, T)[inverse],
        "expected_purchases": expected[inverse],
        "expected_value": value,
        "predicted_clv": discounted[inverse] * value,
    })


# ---- simulation (to validate the fit) ---------------------------------------------------------------------------


def _repeat_times(rng: np.random.Generator, lam: float, drop: float, horizon: float) -> list[float]:
    """One customer's repeat purchase times in (0, horizon]: Poisson(lam) purchases after the first at 0, each
    followed by a dropout with probability ``drop``."""
    times, t = [], 0.0
    while True:
        t += rng.exponential(1 / lam)
        if t > horizon:
            return times
        times.append(t)
        if rng.random() < drop:
            return times


def simulate(bg: BgNbd, gg: GammaGamma | None, customers: int, T: float | np.ndarray,
             seed: int = 0) -> pd.DataFrame:
    """Summaries drawn from the models: each customer buys at a Poisson rate lambda ~ Gamma(r, alpha) from time 0
    (the first purchase, not counted) until ``T``, and after each repeat purchase drops out with probability
    p ~ Beta(a, b); transaction values ~ Gamma(p, nu), nu ~ Gamma(q, v). Returns frequency, recency, T, monetary."""
    rng = np.random.default_rng(seed)
    T = np.broadcast_to(np.asarray(T, float), (customers,))
    lam = rng.gamma(bg.r, 1 / bg.alpha, customers)
    drop = rng.beta(bg.a, bg.b, customers)
    nu = rng.gamma(gg.q, 1 / gg.v, customers) if gg else None
    freq, rec, mon = np.zeros(customers), np.zeros(customers), np.zeros(customers)
    for i in range(customers):
        repeats = _repeat_times(rng, lam[i], drop[i], T[i])
        n = freq[i] = len(repeats)
        rec[i] = repeats[-1] if n else 0.0
        if gg and n:
            mon[i] = rng.gamma(gg.p, 1 / nu[i], n).mean()
    return pd.DataFrame({"frequency": freq, "recency": rec, "T": T.copy(), "monetary": mon})


def simulate_transactions(bg: BgNbd, gg: GammaGamma, customers: int, *, observation_end: str, max_age_days: int,
                          seed: int = 0) -> pd.DataFrame:
    """Transactions drawn from the models in days (the BG/NBD process of ``simulate``, whole days): customer i
    makes a first purchase ``age_i`` ~ U[30, max_age_days] days before ``observation_end``, then repeats.
    Returns ``customer``, ``date``, ``amount`` (one row per purchase; same-day purchases may repeat)."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(observation_end)
    lam = rng.gamma(bg.r, 1 / bg.alpha, customers)
    drop = rng.beta(bg.a, bg.b, customers)
    nu = rng.gamma(gg.q, 1 / gg.v, customers)
    age = rng.integers(30, max_age_days + 1, customers)
    who, when, amount = [], [], []
    for i in range(customers):
        times = [0.0, *_repeat_times(rng, lam[i], drop[i], age[i])]
        who += [f"C{i:06d}"] * len(times)
        when += [end - pd.Timedelta(days=int(age[i]) - int(x)) for x in times]
        amount += list(rng.gamma(gg.p, 1 / nu[i], len(times)).round(2))
    return pd.DataFrame({"customer": who, "date": when, "amount": amount})


# a parameter whose log reached this is at (or, after Nelder-Mead's polish, past) the fit's bound of e^±12
AT_BOUND_LOG = 11.9
# the mean dropout probability after a purchase, a / (a + b), below which the data shows no dropout
NO_DROPOUT = 1e-3


def fit_warnings(bg: BgNbd, gg: GammaGamma) -> list[str]:
    """What a fit that lands on a parameter bound (or a degenerate corner) means for its predictions."""
    out = []
    dropout = bg.a / (bg.a + bg.b)
    if dropout < NO_DROPOUT:
        out.append(f"BG/NBD: no dropout observed (a / (a + b) = {dropout:.1e}): P(alive) ~ 1 for everyone and the "
                   "predicted CLV assumes nobody leaves; estimating churn needs customers who stopped buying (a "
                   "longer history)")
    meaning = {"r": "purchase rates barely vary between customers", "alpha": "purchase rates barely vary between "
               "customers", "a": "the dropout rate is not identified", "b": "the dropout rate is not identified",
               "p": "spend per purchase is not identified", "q": "every customer's expected spend per purchase is "
               "~ the population mean", "v": "every customer's expected spend per purchase is ~ the population mean"}
    for model, params in (("BG/NBD", {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b}),
                          ("Gamma-Gamma", {"p": gg.p, "q": gg.q, "v": gg.v})):
        for name, value in params.items():
            if abs(math.log(value)) >= AT_BOUND_LOG:
                out.append(f"{model} parameter {name} = {value:.3g} reached the fit's bound (e^±12): the data cannot "
                           f"pin it down; {meaning[name]}")
    return out


def fit_report(summary: pd.DataFrame, *, observation_end: str, time_unit: str) -> dict:
    """``c360 clv fit``'s JSON: the parameters and log-likelihood of both models, the customer counts, and what a
    fit on a bound means (``warnings``, empty when none)."""
    bg = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    gg = fit_gamma_gamma(summary["frequency"], summary["monetary"])
    return {
        "customers": int(len(summary)),
        "repeat_customers": int((summary["frequency"] > 0).sum()),
        "observation_end": observation_end,
        "time_unit": time_unit.upper(),
        "bg_nbd": asdict(bg),
        "gamma_gamma": asdict(gg),
        "warnings": fit_warnings(bg, gg),
    }
