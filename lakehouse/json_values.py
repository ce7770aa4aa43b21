"""JSON column functions that give the same answer on every engine c360 runs (:mod:`lakehouse.engine`).

The stream's parse (``streaming.silver.transform_source``) runs on Spark and on the embedded engine (Sail), and a
record must land in the same table with the same reason whichever parsed it. Spark's ``variant`` type, which the
parse used to tell a JSON object from a string and to list an object's fields, does not exist in Sail 0.7
("Unsupported type 'variant'"). The functions here use only what both engines do alike, checked by hand on both
(2026-12-07) and by the unit tests: ``json_object_keys``, ``from_json`` into ``map<string,string>`` and into a
struct of one typed field, ``to_json`` of a map, ``regexp_replace`` with a pattern Rust's regex crate reads (no
look-around).

What both engines read differently, and how it is evened out here:

- Bare ``NaN``/``Infinity`` (not JSON, but what Python's ``json.dumps`` and some exporters write): Spark's
  ``from_json`` reads them, Sail's and both engines' ``json_object_keys`` do not. :func:`lenient` quotes them
  first, in the records that fail the strict parse and hold one (nowhere else, so a string that merely contains
  ``, NaN,`` is never rewritten).
- Single-quoted strings (``{'a': 1}``, Python's ``str(dict)``): Spark's ``json_object_keys`` and ``from_json``
  read them, Sail does not. Both engines are held to JSON: :func:`is_object` checks a record holding a ``'``
  with Spark's strict parse, and :func:`parse_object` parses strictly.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StringType, StructField, StructType

STRICT = {"allowSingleQuotes": "false"}  # Spark's from_json option (Sail reads JSON strictly anyway)
_TEXT_MAP = MapType(StringType(), StringType())

# a bare non-number after `:`, `[` or `,` and before `,`, `]` or `}` (Jackson's allowNonNumericNumbers spellings)
_NON_NUMBER = r"([:\[,]\s*)(NaN|[+-]?Infinity|[+-]?INF)(\s*[,\]}])"


def lenient(value: Column) -> Column:
    """``value`` (JSON text) with bare ``NaN``/``Infinity`` tokens quoted as strings, where the strict parse fails
    and one is present; every other value unchanged."""
    quoted = value
    for _ in range(2):  # twice: `[NaN,NaN]` shares the comma between two matches
        quoted = F.regexp_replace(quoted, _NON_NUMBER, '$1"$2"$3')
    # the substring test first, nested, so that neither engine parses every record for this
    return F.when(value.rlike("NaN|Inf|INF"), F.when(object_keys(value).isNull(), quoted).otherwise(value)
                  ).otherwise(value)


def object_keys(value: Column) -> Column:
    """The keys of a JSON object, in their order; null when ``value`` is not a JSON object (or is not JSON)."""
    return F.json_object_keys(value)


def is_object(value: Column) -> Column:
    """Whether ``value`` is a JSON object (strict JSON: no single-quoted strings); false for null."""
    strict = F.from_json(value, _TEXT_MAP, STRICT).isNotNull()  # only where a quote could be one: a parse more
    return F.coalesce(object_keys(value).isNotNull() & F.coalesce(F.when(value.contains("'"), strict), F.lit(True)),
                      F.lit(False))


def parse_object(value: Column, schema: StructType) -> Column:
    """``value`` (a JSON object) parsed into ``schema`` strictly (every field null when it is not JSON)."""
    return F.from_json(value, schema, STRICT)


def is_container(value: Column, field: str) -> Column:
    """Whether ``field`` of the JSON object ``value`` is an object or an array (not a string, number or boolean:
    both engines read a nested object into a ``string`` field as its JSON text, so the text alone cannot tell
    ``{"a": {"b": 1}}`` from ``{"a": "{\\"b\\": 1}"}``). Null when the field is absent or null."""
    as_map = parse_object(value, StructType([StructField(field, _TEXT_MAP)]))[field]
    as_array = parse_object(value, StructType([StructField(field, ArrayType(StringType()))]))[field]
    return as_map.isNotNull() | as_array.isNotNull()


def without_keys(value: Column, keys: Column) -> Column:
    """The JSON object ``value`` without the fields named in ``keys`` (an array of strings), as JSON text. Each
    kept field's value is kept as its text (a string unquoted, a number, boolean, object or array as its JSON), a
    JSON string: the engines share no type that holds any JSON value."""
    fields = F.from_json(value, _TEXT_MAP, STRICT)
    return F.to_json(F.map_filter(fields, lambda k, _: ~F.array_contains(keys, k)))
