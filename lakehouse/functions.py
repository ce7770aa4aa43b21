"""Column functions that give the same answer on every engine c360 runs (:mod:`lakehouse.engine`).

``F.round`` of a double is not one function: Spark rounds the double's shortest decimal form half up (0.05625 ->
0.0563), DataFusion (the embedded engine) rounds the binary value (0.05624999... -> 0.0562). A gold table must not
depend on the engine that built it, so c360 rounds with :func:`round_half_up`, which is plain IEEE arithmetic that
both engines do alike.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def round_half_up(col: Column | str, scale: int) -> Column:
    """``col`` (a double) rounded to ``scale`` decimals, halves away from zero, as a double: the value is scaled
    (``x * 10^scale``, which lands on ``.5`` exactly where the decimal form is a half), then rounded and scaled back;
    null stays null. Same result on Spark and the embedded engine, and Spark's ``round`` result for all but the
    rare value whose scaled product falls on the other side of a half than its decimal form (1.005 -> 1.0, Spark's
    ``round``: 1.01)."""
    c = F.col(col) if isinstance(col, str) else col
    factor = F.lit(float(10 ** scale))
    return F.signum(c) * F.floor(F.abs(c) * factor + F.lit(0.5)).cast("double") / factor


def days_between(end: Column | str, start: Column | str) -> Column:
    """Days from ``start`` to ``end`` (dates, or times taken at their date), as an int: Spark's ``datediff`` is an
    int, the embedded engine's a long, and a gold column keeps one type whichever engine wrote it."""
    return F.datediff(end, start).cast("int")
