"""``c360 profile FILE...``: read a sample of a user's export and propose its source mapping.

What it decides from the sample (the first ``rows`` rows; a 100 MB file is never read whole): the encoding (a
byte-order mark, else UTF-8 when the sample decodes as UTF-8, else cp1252), the format (JSON lines or CSV) and
CSV delimiter (``csv.Sniffer``), each column's type (integer, integer-valued float such as ``13085.0``, number,
boolean, timestamp with the Spark pattern that reads every sampled value, text), candidate id columns (no repeat in
the sample), the grain (an order id repeating across rows: lines), and which c360 source the file most likely is
(its columns' names against each source's fields, with the usual export spellings). It writes the mapping as TOML
for the user to edit and says what it could not decide: a date order the sample cannot settle (every value reads
as two different days) is a question, never a guess; a required field without a column is named.

Hand-written rather than a profiling library's: what it must decide is c360's own vocabulary (its sources, fields
and Spark datetime patterns), and the libraries that profile data frames (ydata-profiling and the like) read the
whole file into pandas first.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.errors import C360Error
from lakehouse.infer import timestamp_patterns
from lakehouse.mappings import WHITESPACE
from lakehouse.schemas import SILVER_SPECS
from lakehouse.tables import SOURCES

SAMPLE_ROWS = 20_000
SAMPLE_BYTES = 8 << 20  # the most of a file read to profile it
_TRUE, _FALSE = {"true", "yes", "y", "t", "1"}, {"false", "no", "n", "f", "0"}
_NULLS = {"", "null", "none", "n/a", "na", "nan", "nat", "-"}
_INT = re.compile(r"^-?\d+$")
_FLOAT_INT = re.compile(r"^-?\d+\.0+$")
_COMPACT_DATE = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

# how exports commonly name c360's fields (normalised: lower case, letters and digits only)
ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "custid", "clientid", "customerno", "customernumber", "memberid", "userid"),
    "order_id": ("orderid", "invoiceno", "invoice", "invoiceid", "ordernumber", "orderno", "transactionid"),
    "transaction_id": ("orderid", "transactionid", "invoiceno", "invoice", "receiptid"),
    "line_id": ("rowid", "lineid", "lineno", "linenumber", "orderlineid", "itemno"),
    "product_id": ("productid", "sku", "stockcode", "itemid", "articleid", "productcode"),
    "product_name": ("productname", "description", "itemname", "item", "product", "title"),
    "quantity": ("quantity", "qty", "units", "unitssold", "numberofitems", "numberofunits", "cds"),
    "unit_price": ("unitprice", "price", "priceeach", "itemprice"),
    "line_amount": ("sales", "amount", "linetotal", "total", "revenue", "lineamount", "totalprice", "value"),
    "amount": ("amount", "sales", "total", "revenue", "totalamount", "value"),
    "total_amount": ("totalamount", "total", "amount", "sales", "ordertotal"),
    "order_datetime": ("orderdate", "invoicedate", "orderdatetime", "date", "ordertime", "purchasedate"),
    "transaction_datetime": ("datetime", "date", "transactiondate", "invoicedate", "orderdate"),
    "session_start": ("sessionstart", "sessionstarttime", "starttime", "visitstart"),
    "discount": ("discount", "discountrate"),
    "category": ("category", "productcategory", "department"),
    "campaign": ("campaign", "campaignschema", "campaignname", "utmcampaign", "source"),
    "payment_method": ("paymentmethod", "payment", "paymenttype", "paidby"),
    "email": ("email", "emailaddress", "mail"),
    "login_datetime": ("logindatetime", "logintime", "loginat", "timestamp"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class Column:
    name: str
    kind: str  # int, id_float, number, bool, timestamp, text, empty
    filled: int
    distinct: int
    patterns: list[str] = field(default_factory=list)
    ambiguous: bool = False
    example: str = ""
    values: list[str] = field(default_factory=list, repr=False)  # a timestamp column's sampled values


@dataclass
class Profile:
    """What ``c360 profile`` found in one file."""

    path: Path
    encoding: str
    format: str
    delimiter: str
    rows: int
    columns: list[Column]
    source: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # c360 field -> column
    id_columns: list[str] = field(default_factory=list)
    repeating: list[str] = field(default_factory=list)  # id-like columns whose values repeat (lines of them)
    timestamp_formats: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    id_from: list[str] = field(default_factory=list)
    compose: dict[str, list[str]] = field(default_factory=dict)

    def toml(self) -> str:
        """The proposed mapping as TOML, what was not decided as comments."""
        lines = [f"# proposed by c360 profile from {self.rows} sampled rows of {self.path.name}: check it, then use it "
                 "with --config", *[f"# TO DECIDE: {q}" for q in self.questions]]
        name = self.source or "FILL_IN_A_SOURCE"
        lines += ["", f"[sources.{name}]", f"file = {json.dumps(self.path.name)}"]
        if self.format != "csv":
            lines.append(f'format = "{self.format}"')
        if self.encoding not in ("utf-8", "utf-8-sig"):
            lines.append(f"encoding = {json.dumps(self.encoding)}")
        if self.format == "csv" and self.delimiter != ",":
            lines.append(f"delimiter = {json.dumps(self.delimiter)}")
        if self.id_from:
            lines.append(f"id_from = {json.dumps(self.id_from)}")
        if self.timestamp_formats:
            lines.append(f"timestamp_formats = {json.dumps(self.timestamp_formats)}")
        if self.mapping:
            lines += ["", f"[sources.{name}.columns]"]
            lines += [f"{target} = {json.dumps(col)}" for target, col in self.mapping.items()]
        if self.compose:
            lines += ["", f"[sources.{name}.compose]"]
            lines += [f"{target} = {json.dumps(cols)}" for target, cols in self.compose.items()]
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        kinds = ", ".join(f"{c.name} ({c.kind}{' ' + '/'.join(c.patterns) if c.patterns else ''})"
                          for c in self.columns)
        grain = (f"lines of {', '.join(self.repeating)} (ids repeat across rows)" if self.repeating
                 else "one row per id")
        return (f"{self.path.name}: {self.format}, {self.encoding}"
                + (f", delimiter {self.delimiter!r}" if self.format == "csv" else "")
                + f"; {self.rows} rows sampled; likely source: {self.source or 'undecided'}; grain: {grain}; "
                f"id columns: {', '.join(self.id_columns) or 'none'}; columns: {kinds}")


def _encoding(head: bytes, truncated: bool) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not truncated or exc.start < len(head) - 4:  # not just a character cut at the sample's end
            return "cp1252"
    return "utf-8"


def _column(name: str, values: list[str]) -> Column:
    filled = [v.strip() for v in values if v]
    filled = [v for v in filled if v.lower() not in _NULLS]
    if not filled:
        return Column(name, "empty", 0, 0)
    unique = list(dict.fromkeys(filled))  # every check reads each value once
    distinct, example = len(unique), unique[0]
    low = {v.lower() for v in unique}
    ints = all(_INT.match(v) for v in unique)
    if ints and all(_COMPACT_DATE.match(v) for v in unique):  # 19970101: a date, not a number
        return Column(name, "timestamp", len(filled), distinct, ["yyyyMMdd"], False, example, unique)
    if low <= _TRUE | _FALSE and not ints:
        return Column(name, "bool", len(filled), distinct, example=example)
    if ints:
        return Column(name, "int", len(filled), distinct, example=example)
    if all(_INT.match(v) or _FLOAT_INT.match(v) for v in unique):
        return Column(name, "id_float", len(filled), distinct, example=example)
    if all(_NUMBER.match(v) for v in unique):
        return Column(name, "number", len(filled), distinct, example=example)
    patterns, ambiguous = timestamp_patterns(unique)
    if patterns:
        return Column(name, "timestamp", len(filled), distinct, patterns, ambiguous, example, unique)
    return Column(name, "text", len(filled), distinct, example=example)


def _read_sample(path: Path, rows: int) -> tuple[str, str, str, list[str], list[list[str]]]:
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if not head.strip():
        raise C360Error(f"{path}: the file is empty")
    encoding = _encoding(head, len(head) == SAMPLE_BYTES)
    text = head.decode(encoding, errors="replace")
    if len(head) == SAMPLE_BYTES:  # the sample ends mid-file: drop the last, likely cut, line
        text = text[: text.rfind("\n") + 1] or text
    if text.lstrip().startswith("{"):
        records = []
        for line in itertools.islice((ln for ln in text.splitlines() if ln.strip()), rows):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                records.append(obj)
        header = list(dict.fromkeys(k for r in records for k in r))
        return encoding, "jsonl", ",", header, [["" if r.get(h) is None else str(r.get(h)) for h in header]
                                                 for r in records]
    try:
        delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    if len(header) == 1:  # one column: fields separated by runs of spaces (fixed-width, scientific exports)?
        head_lines = [ln.split() for ln in itertools.islice(io.StringIO(text), 100) if ln.strip()]
        if len(head_lines[0]) > 1 and all(len(r) == len(head_lines[0]) for r in head_lines):
            lines = (ln.split() for ln in io.StringIO(text) if ln.strip())
            header = next(lines)
            return encoding, "csv", WHITESPACE, header, [r for r in itertools.islice(lines, rows)
                                                         if len(r) == len(header)]
    body = [r for r in itertools.islice(reader, rows) if len(r) == len(header)]
    return encoding, "csv", delimiter, header, body


_PATTERN_PARTS = [("yyyy", r"\d{4}"), ("MM", r"\d{2}"), ("dd", r"\d{2}"), ("HH", r"\d{2}"), ("mm", r"\d{2}"),
                  ("ss", r"\d{2}"), ("XXX", r"(Z|[+-]\d{2}:\d{2})"), ("'T'", "T")]


def _pattern_regex(pattern: str) -> re.Pattern:
    """A fixed-width Spark pattern (the defaults' kind) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        for token, rx in _PATTERN_PARTS:
            if pattern.startswith(token, i):
                out, i = out + rx, i + len(token)
                break
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _defaults_read(values: list[str], defaults: tuple[str, ...]) -> bool:
    """True when one of the default formats reads every value (the mapping need not add one)."""
    return any(all(rx.fullmatch(v) for v in values) for rx in map(_pattern_regex, defaults))


def _score(source: str, names: set[str]) -> float:
    """How well a file's column names match a source's fields: the fields found, weighed by the share of the
    source's required fields among them (a file that has many of a source's fields but not its key still ranks)."""
    spec = SILVER_SPECS[source]
    found = {f.name for f in spec.fields if _match(f.name, f.raw, names)}
    required = [f.name for f in spec.fields if f.required]
    share = sum(n in found for n in required) / len(required) if required else 0
    return len(found) * (0.5 + share / 2) if share >= 0.5 else 0.0


def _match(field_name: str, raw: str, names: set[str]) -> str | None:
    """The normalised column name that is this field: its own names first, then the usual export spellings."""
    candidates = (_norm(field_name), _norm(raw), *ALIASES.get(field_name, ()))
    for candidate in candidates:
        if candidate in names:
            return candidate
    for candidate in candidates[2:]:  # an alias ending a longer name: dollarvalue, totalsales
        found = sorted(n for n in names if len(candidate) >= 3 and n.endswith(candidate))
        if found:
            return found[0]
    close = difflib.get_close_matches(_norm(field_name), list(names), n=1, cutoff=0.9)
    return close[0] if close else None


def profile_file(path: str | Path, *, rows: int = SAMPLE_ROWS, source: str | None = None,
                 defaults: tuple[str, ...] = ()) -> Profile:
    """Profile one file and propose its mapping (``source``: map it onto this source rather than the likeliest;
    ``defaults``: stream.timestamp_formats, which need no mapping)."""
    path = Path(path)
    if not path.is_file():
        raise C360Error(f"file not found: {path}")
    if source is not None and source not in SOURCES:
        raise C360Error(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    encoding, fmt, delimiter, header, body = _read_sample(path, rows)
    if not header:
        raise C360Error(f"{path}: no header row or JSON object found in its first {SAMPLE_BYTES >> 20} MB")
    columns = [_column(h, [r[i] for r in body]) for i, h in enumerate(header)]
    prof = Profile(path, encoding, fmt, delimiter, len(body), columns)
    by_norm = {_norm(c.name): c for c in columns}
    idlike = [c for c in columns if c.kind in ("int", "id_float", "text") and _norm(c.name).endswith(("id", "no"))
              or _norm(c.name) in {a for v in ALIASES.values() for a in v if a.endswith(("id", "no"))}]
    prof.id_columns = [c.name for c in columns if c.filled == len(body) and c.distinct == len(body) and len(body) > 1
                       and c.kind in ("int", "id_float", "text")]
    prof.repeating = [c.name for c in idlike if c.filled and c.distinct < c.filled
                      and _norm(c.name) in ALIASES["order_id"]]
    names = set(by_norm)
    if source is None:
        ranked = sorted(SOURCES, key=lambda s: -_score(s, names))
        if prof.repeating and _score("order_lines", names) > 0:
            ranked.insert(0, "order_lines")  # an order id that repeats: lines, whatever else matches
        source = ranked[0] if _score(ranked[0], names) >= 2 else None
        if source is None:
            prof.questions.append("which c360 source this file is: none of their fields match its columns well; "
                                  "replace FILL_IN_A_SOURCE (docs/input-contract.md lists them)")
    prof.source = source
    if source is None:
        return prof
    _map_fields(prof, source, names, by_norm, columns, body, header)
    if prof.id_from and source != "order_lines" and "order_lines" in SOURCES and _score("order_lines", names):
        positions = [header.index(c) for c in prof.id_from]
        keys = [tuple(r[i] for i in positions) for r in body]
        if len(set(keys)) < len(keys):  # not an id: rows sharing it are lines of one purchase
            prof.questions = [q for q in prof.questions if "(id_from)" not in q]
            prof.source, prof.mapping, composed = "order_lines", {}, prof.id_from
            prof.id_from = []
            _map_fields(prof, "order_lines", names, by_norm, columns, body, header)
            prof.compose = {"order_id": composed}
            prof.questions = [q for q in prof.questions if "order_id (required)" not in q]
            prof.questions.append(f"no id column, and {', '.join(composed)} repeat across rows: the proposal reads "
                                  f"the file as order lines, an order per {', '.join(composed)} (compose.order_id)")
    for c in columns:
        if c.kind != "timestamp":
            continue
        if c.ambiguous:
            prof.questions.append(f"{c.name}: every sampled value (e.g. {c.example!r}) reads as two different days; "
                                  f"say which: {c.patterns[0]!r} (day first) or {c.patterns[1]!r} (month first) in "
                                  "timestamp_formats")
        elif c.patterns[0] not in prof.timestamp_formats and not _defaults_read(c.values, defaults):
            prof.timestamp_formats.append(c.patterns[0])
    if prof.repeating and source != "order_lines":
        prof.questions.append(f"{', '.join(prof.repeating)} repeats across rows: the file holds lines; "
                              "map it to [sources.order_lines] rather than one row per id")
    return prof


def _map_fields(prof: Profile, source: str, names: set[str], by_norm: dict[str, Column], columns: list[Column],
                body: list[list[str]], header: list[str]) -> None:
    """The source's fields mapped to the file's columns, and its id (a column, numbered lines, or composed)."""
    spec = SILVER_SPECS[source]
    used: set[str] = set()
    for f in spec.fields:
        found = _match(f.name, f.raw, names - used)
        if found is None:
            if f.required and f.name != spec.id:  # the id: below
                prof.questions.append(f"the column holding {f.name} (required): none found; add "
                                      f"{f.name} = \"<column>\" under [sources.{source}.columns]")
            continue
        used.add(found)
        if by_norm[found].name != f.raw:
            prof.mapping[f.name] = by_norm[found].name
    if spec.id in prof.mapping or _norm(SOURCES[source].id_column) in names:
        return
    if source == "order_lines":
        prof.questions.append("no line id column: c360 numbers each order's lines in file order "
                              "(<order>#1, #2...), which holds while the export keeps its row order")
        return
    times = [c.name for c in columns if c.kind == "timestamp"]
    customer = prof.mapping.get("customer_id") or SOURCES[source].key_column
    prof.id_from = [customer, *times[:1]] if customer in header else []
    prof.questions.append(
        f"no {spec.id} column: the proposal composes one from {', '.join(prof.id_from)} (id_from); check "
        "that they identify a record" if prof.id_from else
        f"the column holding {spec.id} (required): none found; map it under [sources.{source}.columns] or "
        f"compose it with id_from")


def profile(paths: list[str], *, rows: int = SAMPLE_ROWS, source: str | None = None,
            out: str | Path | None = None, defaults: tuple[str, ...] = ()) -> list[Profile]:
    """Profile each file; with ``out``, write the proposed mappings (one TOML file) there."""
    profiles = [profile_file(p, rows=rows, source=source, defaults=defaults) for p in paths]
    if out is not None:
        chosen = [p.source for p in profiles if p.source]
        twice = [s for s, n in Counter(chosen).items() if n > 1]
        if twice:
            raise C360Error(f"two files map onto {twice[0]}: profile them one at a time (--out per file), or name "
                            "another source with --source")
        Path(out).write_text("\n".join(p.toml() for p in profiles))
    return profiles
