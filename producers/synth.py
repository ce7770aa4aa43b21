"""Vectorised building blocks of the generator: ids, seasonal timestamps, text columns, fast line writers.

Everything works on whole numpy / Arrow arrays: per-row Python (or per-row Faker) would not reach millions of
rows a second. Files are written by building each line with Arrow's string kernels and writing the resulting
buffer as is; generated values never contain the delimiter, quotes or newlines, so no quoting is needed
(and a malformed row can be written on purpose).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400
CHUNK = 500_000  # rows turned into text at a time
# Other formats real exports use (all parse with lakehouse/defaults.toml stream.timestamp_formats); these keep
# the seconds, so a value means the same instant whatever its format.
DIRTY_FORMATS = ("%d-%m-%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
# ... and one that loses them, for fields where that is harmless (registration times).
LOSSY_FORMATS = (*DIRTY_FORMATS, "%d-%m-%Y %H:%M")


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. C0000042."""
    digits = pc.cast(pa.array(numbers, pa.int64()), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width, "0"), "")


def pick(values: Sequence[str] | np.ndarray, index: np.ndarray) -> pa.Array:
    """``values[index]`` as an Arrow string array (a dictionary decode, no per-row Python)."""
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()), pa.array(list(values), pa.string())).cast(
        pa.string())


def num(values: np.ndarray, decimals: int | None = None) -> pa.Array:
    """Numbers as text; ``decimals`` rounds to a fixed number of places (amounts)."""
    if decimals is None:
        return pc.cast(pa.array(values), pa.string())
    cents = np.round(np.asarray(values, dtype=np.float64) * 10**decimals).astype(np.int64)
    whole, frac = np.divmod(cents, 10**decimals)
    return pc.binary_join_element_wise(pc.cast(pa.array(whole), pa.string()), ".",
                                       pc.utf8_lpad(pc.cast(pa.array(frac), pa.string()), decimals, "0"), "")


def ts_text(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds as ``yyyy-MM-dd HH:mm:ss`` (Arrow's cast: far faster than strftime)."""
    return pc.cast(pa.array(np.asarray(seconds, dtype="datetime64[s]")), pa.string())


def date_text(seconds: np.ndarray) -> pa.Array:
    return pc.cast(pc.cast(pa.array(np.asarray(seconds, dtype="datetime64[s]")), pa.date32()), pa.string())


def dirt_codes(rng: np.random.Generator, size: int, rate: float, n_formats: int) -> np.ndarray:
    """Per row: -1 for the canonical timestamp format, else which other format (a ``rate`` share)."""
    codes = np.full(size, -1, np.int8)
    dirty = rng.random(size) < rate
    codes[dirty] = rng.integers(0, n_formats, int(dirty.sum()))
    return codes


def ts_text_coded(seconds: np.ndarray, codes: np.ndarray, formats: Sequence[str] = DIRTY_FORMATS) -> pa.Array:
    """Timestamps as text: canonical where ``codes`` is -1, else in ``formats[code]``."""
    text = ts_text(seconds)
    if not (codes >= 0).any():
        return text
    values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    stamps = pa.array(np.asarray(seconds, dtype="datetime64[s]"))
    for k, f in enumerate(formats):
        sel = codes == k
        if sel.any():
            values[sel] = pc.strftime(stamps.filter(pa.array(sel)), format=f).to_numpy(zero_copy_only=False)
    return pa.array(values, pa.string())


class Calendar:
    """Event days with weekly and yearly seasonality (weekends busier, a November build-up and a festive
    December peak), sampled by inverse CDF so each event can have its own [lower, upper) range."""

    def __init__(self, start_s: int, end_s: int):
        self.start_day = start_s // DAY
        days = np.arange(self.start_day, end_s // DAY + 1)
        dt = days.astype("datetime64[D]")
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        month = dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
        weight = 1.0 + 0.25 * (weekday >= 5)
        weight *= np.where(month == 12, 1.9, np.where(month == 11, 1.35, np.where(month == 1, 0.85, 1.0)))
        self.cdf = np.concatenate([[0.0], np.cumsum(weight)])
        self.n_days = len(days)

    def days(self, lo_s: np.ndarray, hi_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A seasonal day (epoch day number) in [day of lo_s, day of hi_s] for each pair."""
        lo = np.clip(np.asarray(lo_s, np.int64) // DAY - self.start_day, 0, self.n_days - 1)
        hi = np.clip(np.asarray(hi_s, np.int64) // DAY - self.start_day, lo, self.n_days - 1)
        u = self.cdf[lo] + rng.random(len(lo)) * (self.cdf[hi + 1] - self.cdf[lo])
        return np.clip(np.searchsorted(self.cdf, u, side="right") - 1, lo, hi) + self.start_day

    def times(self, lo_s: np.ndarray, hi_s: np.ndarray, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Seasonal instants within [lo_s, hi_s] at roughly the given hours of day."""
        t = self.days(lo_s, hi_s, rng) * DAY + hours * 3600 + rng.integers(0, 3600, len(hours))
        return np.clip(t, np.asarray(lo_s) + 1, np.maximum(np.asarray(hi_s), np.asarray(lo_s) + 1))


def hour_curve(rng: np.random.Generator, size: int, peak: float | np.ndarray, spread: float = 2.0,
               background: float = 0.45) -> np.ndarray:
    """Hours of day: a peak (per row, e.g. each city's evening peak) over a 07:00-23:59 background."""
    peaked = np.clip(np.rint(rng.normal(peak, spread, size)), 0, 23)
    flat = rng.integers(7, 24, size)
    return np.where(rng.random(size) < background, flat, peaked).astype(np.int64)


def geometric_counts(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    """Long-tailed counts (>= 1) with the given mean."""
    return rng.geometric(1.0 / max(mean, 1.0), size)


def repeat_index(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


class LineWriter:
    """Writes lines built from Arrow string columns: CSV (comma-joined) or JSON lines."""

    def __init__(self, path: Path, header: Sequence[str] | None, append: bool = False):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (append and path.exists())
        self._fh = path.open("ab" if not fresh else "wb")
        self.rows = 0
        if fresh and header is not None:
            self._fh.write((",".join(header) + "\n").encode())

    def write_csv(self, columns: Sequence[pa.Array]) -> None:
        line = pc.binary_join_element_wise(*columns, ",", null_handling="replace", null_replacement="")
        self._write(line)

    def write_rows(self, order: np.ndarray, make: Callable[[np.ndarray], list[pa.Array]],
                   malformed: np.ndarray | None = None) -> None:
        """Write rows ``order`` (indices into the caller's arrays) in chunks: ``make(idx)`` builds the text
        columns of those rows, so no whole-file text is ever held in memory. ``malformed`` (per output row)
        breaks those rows on purpose: an unquoted comma in the second column, one field too many."""
        for lo in range(0, len(order), CHUNK):
            idx = order[lo:lo + CHUNK]
            cols = make(idx)
            if malformed is not None and malformed[lo:lo + CHUNK].any():
                bad = pa.array(malformed[lo:lo + CHUNK])
                cols = list(cols)
                cols[1] = pc.if_else(bad, pc.binary_join_element_wise(cols[1], "Jr.", ", "), cols[1])
            self.write_csv(cols)

    def write_json_rows(self, order: np.ndarray, make: Callable[[np.ndarray], dict[str, pa.Array]],
                        quoted: set[str]) -> None:
        for lo in range(0, len(order), CHUNK):
            self.write_json(make(order[lo:lo + CHUNK]), quoted)

    def write_json(self, fields: dict[str, pa.Array], quoted: set[str]) -> None:
        """One JSON object per row; ``quoted`` fields are strings, the others numbers/booleans; nulls -> null."""
        parts: list[pa.Array | str] = []
        first = True
        for name, col in fields.items():
            prefix = ("{" if first else ",") + f'"{name}":'
            first = False
            value = pc.binary_join_element_wise('"', col, '"', "") if name in quoted else col
            parts += [prefix, pc.fill_null(value, "null")]
        parts.append("}")
        self._write(pc.binary_join_element_wise(*parts, ""))

    def write_raw_lines(self, lines: Sequence[str]) -> None:
        self._fh.write("".join(line + "\n" for line in lines).encode())
        self.rows += len(lines)

    def _write(self, line: pa.Array) -> None:
        line = pc.binary_join_element_wise(line, "\n", "")
        chunks = line.chunks if isinstance(line, pa.ChunkedArray) else [line]
        for ch in chunks:
            if len(ch) == 0:
                continue
            _, offsets, data = ch.buffers()[:3]
            width = np.int64 if pa.types.is_large_string(ch.type) else np.int32
            off = np.frombuffer(offsets, dtype=width, count=len(ch) + 1 + ch.offset)
            self._fh.write(memoryview(data)[off[ch.offset]:off[ch.offset + len(ch)]])
            self.rows += len(ch)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> LineWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
