"""``c360 clv fit``: the CLV models fitted to any transaction file (no Spark, no lake)."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import pandas as pd

from batch import clv_model
from lakehouse.errors import C360Error

SKIP_HINT = "--skip-bad-rows leaves such rows out, counted in the output"


def read_transactions(path: str, columns: list[str], *, skip_bad_rows: bool = False) -> tuple[pd.DataFrame, int]:
    """A CSV (or Parquet, by extension) with at least ``columns``, and how many of its lines were malformed (a
    wrong number of fields: skipped with ``skip_bad_rows``, an error otherwise); a clear error for anything else."""
    file = Path(path)
    if not file.is_file():
        raise C360Error(f"transactions file not found: {path}")
    malformed = 0
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(file)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                df = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""],
                                 on_bad_lines="warn" if skip_bad_rows else "error")
            # the C parser reports the lines it skipped in warnings, one "Skipping line N: ..." per line
            malformed = sum(str(w.message).count("Skipping line") for w in caught
                            if issubclass(w.category, pd.errors.ParserWarning))
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        first = str(exc).splitlines()[0]
        hint = f" ({SKIP_HINT})" if "Expected" in first and " fields in line " in first else ""  # a wrong field count
        raise C360Error(f"cannot read {path}: {first}{hint}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise C360Error(f"{path} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))})")
    return df[columns], malformed


def _bad(series: pd.Series, parsed: pd.Series, what: str, col: str, skip: bool) -> pd.Series:
    """Which values did not parse; an error unless ``skip`` (they are then left out and counted)."""
    bad = parsed.isna() & series.notna()
    if bad.any() and not skip:
        raise C360Error(f"{int(bad.sum())} value(s) of {col!r} are not {what} (first: {series[bad].iloc[0]!r}; "
                        f"{SKIP_HINT})")
    return bad


# a UTC offset or Z after a time of day: dropped, so a purchase keeps the day (and time) written on it
_OFFSET = r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}:?\d{2})$"


def parse_dates(raw: pd.Series, formats: list[str], col: str) -> pd.Series:
    """``raw`` as naive timestamps (NaT where unreadable), in local time as written (a UTC offset is dropped).

    ``formats`` (strftime) are tried in order, the first that reads a value wins. Without any, ISO 8601 first, then
    pandas' inference for the rest; a value inference reads differently day-first and month-first (05-01-2024) is
    refused, not guessed: a file's dates must not depend on which day of the month they fall on.
    """
    text = raw.str.strip().str.replace(_OFFSET, r"\1", regex=True)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    for fmt in formats or ["ISO8601"]:
        todo = out.isna()
        if not todo.any():
            return out
        try:
            out[todo] = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        except ValueError as exc:
            raise C360Error(f"bad --date-format {fmt!r}: {exc}") from None
    rest = out.isna()
    if formats or not rest.any():
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": the point of inference here
        month_first = pd.to_datetime(text[rest], format="mixed", errors="coerce")
        day_first = pd.to_datetime(text[rest], format="mixed", dayfirst=True, errors="coerce")
    ambiguous = month_first.notna() & day_first.notna() & (month_first != day_first)
    if ambiguous.any():
        raise C360Error(f"{int(ambiguous.sum())} date(s) in {col!r} read as different days day-first and month-first "
                        f"(first: {raw[rest][ambiguous].iloc[0]!r}): give their format with --date-format, e.g. "
                        "'%d-%m-%Y %H:%M:%S' (repeatable: tried in order)")
    out[rest] = month_first
    return out


def fit_file(path: str, *, customer_col: str, date_col: str, amount_col: str | None = None,
             quantity_col: str | None = None, price_col: str | None = None,
             date_formats: list[str] | None = None, observation_end: date | None = None, time_unit: str = "D",
             skip_bad_rows: bool = False) -> dict:
    """Fit both models to a transaction file: :func:`clv_model.fit_report`'s JSON, plus how many rows were read and
    why any were left out (none is dropped unsaid). The amount is ``amount_col``, or ``quantity_col`` x
    ``price_col`` (order lines: the lines of one day are one purchase of their summed amount)."""
    pair = quantity_col is not None and price_col is not None
    if bool(amount_col) == pair or (not pair and (quantity_col or price_col)):
        raise C360Error("give --amount-col, or --quantity-col with --price-col (amount = quantity x price)")
    amount_cols = [amount_col] if amount_col else [quantity_col, price_col]
    df, malformed = read_transactions(path, [customer_col, date_col, *amount_cols], skip_bad_rows=skip_bad_rows)
    read = len(df) + malformed
    complete = df[customer_col].notna() & df[date_col].notna()
    df = df[complete]
    if df.empty:
        raise C360Error(f"{path} has no transactions with a customer and a date")
    raw_dates = df[date_col].astype(str)
    dates = parse_dates(raw_dates, list(date_formats or []), date_col)
    what = f" in format {' or '.join(map(repr, date_formats))}" if date_formats else ""
    bad_date = _bad(raw_dates, dates, f"dates{what}", date_col, skip_bad_rows)
    bad_amount = pd.Series(False, index=df.index)
    amounts = pd.Series(1.0, index=df.index)
    for col in amount_cols:  # one amount, or a quantity and a price multiplied
        values = pd.to_numeric(df[col], errors="coerce")
        bad_amount |= _bad(df[col], values, "numbers", col, skip_bad_rows) & ~bad_date
        amounts = amounts * values
    if not amount_col:  # a blank quantity or price is a blank amount, like a blank amount column
        amounts = amounts.where(df[quantity_col].notna() & df[price_col].notna())
    keep = ~(bad_date | bad_amount)
    if not keep.any():
        raise C360Error(f"{path} has no transaction with a readable date and amount")
    tx = pd.DataFrame({"customer": df[customer_col].astype(str), "date": dates, "amount": amounts.fillna(0.0)})[keep]
    end = pd.Timestamp(observation_end) if observation_end else None
    if end is not None and (tx["date"].dt.normalize() > end).all():
        raise C360Error(f"every transaction is after --observation-end {observation_end}")
    summary = clv_model.summarize(tx, customer_col="customer", date_col="date", amount_col="amount",
                                  observation_end=end, time_unit=time_unit)
    end_day = end if end is not None else tx["date"].max().normalize()
    report = clv_model.fit_report(summary, observation_end=end_day.date().isoformat(), time_unit=time_unit)
    rows = {"read": read, "malformed": malformed, "no_customer_or_date": int((~complete).sum()),
            "bad_date": int(bad_date.sum()), "bad_amount": int(bad_amount.sum()), "used": int(keep.sum())}
    return {**report, "rows": rows}
