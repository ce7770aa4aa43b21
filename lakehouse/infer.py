"""Inferring how a user's values are written: timestamp patterns from sample values.

Used by the stream's data-quality report (a source whose times do not parse gets the pattern that would read them)
and meant for ``c360 profile``. Patterns are Spark datetime patterns (what ``stream.timestamp_formats`` and a source
mapping's ``timestamp_formats`` take). Single letters (``d``, ``M``, ``H``) read one or two digits, so one pattern
covers ``1/1/2019 2:42`` and ``12/31/2019 14:05`` alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DATE = re.compile(r"^(\d{1,4})([-/.])(\d{1,2})\2(\d{1,4})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(:\d{2})?(\.\d{1,9})?(\s*[AaPp][Mm])?$")


def _date_orders(a: str, b: str, c: str) -> list[tuple[str, str, str]] | None:
    """The (field, field, field) readings of a date's three numbers: y-M-d first when the first is a year."""
    if len(a) == 4:
        return [("yyyy", "M", "d")]
    if len(c) not in (2, 4):
        return None
    year = "yyyy" if len(c) == 4 else "yy"
    x, y = int(a), int(b)
    if x > 31 or y > 31 or min(x, y) < 1:
        return None
    if x > 12 and y > 12:
        return None
    orders = []
    if y <= 12:
        orders.append(("d", "M", year))
    if x <= 12:
        orders.append(("M", "d", year))
    return orders


def _time_pattern(text: str) -> str | None:
    m = _TIME.match(text.strip())
    if not m:
        return None
    _, _, seconds, fraction, ampm = m.groups()
    hour = "h" if ampm else "H"
    pattern = f"{hour}:mm" + (":ss" if seconds else "") + ("." + "S" * (len(fraction) - 1) if fraction else "")
    return pattern + (" a" if ampm else "")


_COMPACT = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")


def timestamp_candidates(text: str) -> list[str]:
    """The Spark patterns that read ``text`` (a date, or a date and a time), most likely first; two when the day
    and month can be swapped (``05/01/2024``); none when it is not a date this recognises. A compact date
    (``19970101``) is read year first, as ISO 8601's basic format writes it."""
    text = text.strip()
    if not text:
        return []
    if _COMPACT.match(text):
        return ["yyyyMMdd"]
    date_part, _, time_part = text.partition("T" if re.match(r"^\d{4}-\d{2}-\d{2}T", text) else " ")
    m = _DATE.match(date_part)
    if not m:
        return []
    a, sep, b, c = m.groups()
    orders = _date_orders(a, b, c)
    if not orders:
        return []
    time = ""
    if time_part:
        tp = _time_pattern(time_part)
        if tp is None:
            return []
        time = ("'T'" if "T" in text[len(date_part):len(date_part) + 1] else " ") + tp
    return [sep.join(order) + time for order in orders]


def timestamp_patterns(values: Iterable[str]) -> tuple[list[str], bool]:
    """The patterns that read every one of ``values`` and whether the day/month order is still open (every value
    reads as two different days: a question for the user, not a guess)."""
    common: list[str] | None = None
    for value in values:
        if not value or not value.strip():
            continue
        found = timestamp_candidates(value)
        common = found if common is None else [p for p in common if p in found]
        if not common:
            return [], False
    common = common or []
    return common, len(common) > 1
