"""``c360 clv fit``: the CLV models fitted to any transaction file (no Spark, no lake)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from batch import clv_model
from lakehouse.errors import C360Error


def read_transactions(path: str, columns: list[str]) -> pd.DataFrame:
    """A CSV (or Parquet, by extension) with at least ``columns``; a clear error for anything else."""
    file = Path(path)
    if not file.is_file():
        raise C360Error(f"transactions file not found: {path}")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(file)
        else:
            df = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise C360Error(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise C360Error(f"{path} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))})")
    return df[columns]


def _bad(series: pd.Series, parsed: pd.Series, what: str, col: str) -> None:
    bad = parsed.isna() & series.notna()
    if bad.any():
        raise C360Error(f"{int(bad.sum())} value(s) of {col!r} are not {what} (first: {series[bad].iloc[0]!r})")


def fit_file(path: str, *, customer_col: str, date_col: str, amount_col: str, date_format: str | None = None,
             observation_end: date | None = None, time_unit: str = "D") -> dict:
    df = read_transactions(path, [customer_col, date_col, amount_col])
    df = df[df[customer_col].notna() & df[date_col].notna()]
    if df.empty:
        raise C360Error(f"{path} has no transactions with a customer and a date")
    raw_dates = df[date_col].astype(str)
    try:
        dates = pd.to_datetime(raw_dates, format=date_format or "mixed", errors="coerce")
    except ValueError as exc:
        raise C360Error(f"bad --date-format {date_format!r}: {exc}") from None
    _bad(raw_dates, dates, "dates" + (f" in format {date_format!r}" if date_format else ""), date_col)
    amounts = pd.to_numeric(df[amount_col], errors="coerce")
    _bad(df[amount_col], amounts, "numbers", amount_col)
    tx = pd.DataFrame({"customer": df[customer_col].astype(str), "date": dates, "amount": amounts.fillna(0.0)})
    end = pd.Timestamp(observation_end) if observation_end else None
    if end is not None and (tx["date"].dt.normalize() > end).all():
        raise C360Error(f"every transaction is after --observation-end {observation_end}")
    summary = clv_model.summarize(tx, customer_col="customer", date_col="date", amount_col="amount",
                                  observation_end=end, time_unit=time_unit)
    end_day = end if end is not None else tx["date"].max().normalize()
    return clv_model.fit_report(summary, observation_end=end_day.date().isoformat(), time_unit=time_unit)
