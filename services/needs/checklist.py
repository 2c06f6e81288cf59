"""Self-assessment checklist exports: CSV or JSON, one file for many States (no I/O).

    for item in parse(text, "csv"):          # or "json"
        if isinstance(item, RowError): ...   # item.line, item.reason
        else: ...                            # item.line, item.need (a validated filing)

CSV: a header line, then one need per line. Columns (any order, names
case-insensitive; only ``state``, ``article``, ``forms`` and ``priority`` are
required)::

    state,article,paragraph,forms,other_text,priority,description,checklist_round,languages,external_ref
    KEN,9,1,LEGAL_ADVICE;CAPACITY_BUILDING,,1,Procurement reform,2026-1,en;sw,

``forms`` and ``languages`` are semicolon-separated. Empty cells are absent
values. Line numbers count the header as line 1.

JSON: an array of objects with the same names, typed as in ``POST /needs``
(``forms`` and ``languages`` are arrays, ``article`` and ``priority``
numbers). The ``line`` of an error is the item's position, from 1.

A file-level problem (unknown column, not an array, not UTF-8) raises
``ChecklistError``; a bad row is a ``RowError`` and the other rows go on.
"""
import csv
import io
import json
from dataclasses import dataclass

from marshmallow import ValidationError

from services.needs.schemas import NeedSchema
from tacoord.envelope import describe_errors
from tacoord.errors import Rejected
from tacoord.safety import is_digits, json_loads, reject_unsafe_keys

COLUMNS = ("state", "article", "paragraph", "forms", "other_text", "priority", "description",
           "checklist_round", "languages", "external_ref")
REQUIRED = ("state", "article", "forms", "priority")
INTEGERS = ("article", "priority")
LISTS = ("forms", "languages")
MAX_ROWS = 50_000
FORMATS = ("csv", "json")

_SCHEMA = NeedSchema()


class ChecklistError(Rejected):
    """The file as a whole cannot be read."""


@dataclass(frozen=True)
class Row:
    line: int
    need: dict


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def as_dict(self):
        return {"line": self.line, "reason": self.reason}


def format_of(filename=None, content_type=None):
    """``csv`` or ``json`` from a file name or a Content-Type; None if neither."""
    if content_type:
        kind = content_type.split(";")[0].strip().lower()
        if kind in ("text/csv", "application/csv"):
            return "csv"
        if kind == "application/json":
            return "json"
    if filename:
        for fmt in FORMATS:
            if str(filename).lower().endswith("." + fmt):
                return fmt
    return None


def decode(raw):
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChecklistError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")


def parse(text, fmt):
    """Yield a ``Row`` or a ``RowError`` per need in the file."""
    text = decode(text).lstrip("\ufeff")
    if fmt == "csv":
        return _parse_csv(text)
    if fmt == "json":
        return _parse_json(text)
    raise ChecklistError(f"unknown format {fmt!r}; use csv or json")


def parse_all(text, fmt):
    """``(rows, errors)`` as two lists."""
    rows, errors = [], []
    for item in parse(text, fmt):
        (errors if isinstance(item, RowError) else rows).append(item)
    return rows, errors


def validate_row(line, raw):
    """A ``Row`` or a ``RowError`` for one typed row (a dict)."""
    try:
        reject_unsafe_keys(raw, path="row")
        return Row(line, _SCHEMA.load(raw))
    except ValidationError as exc:
        return RowError(line, "; ".join(describe_errors(exc.messages)))


def own_rows(rows, state):
    """``(own, foreign)``: the rows for ``state``, and a RowError for each row of another State (a
    State imports its own needs only)."""
    own = [r for r in rows if r.need["state"] == state]
    foreign = [RowError(r.line, f"state: state:{state} imports only its own needs; this row is for "
                                f"{r.need['state']}") for r in rows if r.need["state"] != state]
    return own, foreign


# --- CSV -------------------------------------------------------------------------


def _header(fieldnames):
    if not fieldnames:
        raise ChecklistError("the CSV file is empty; the first line must name the columns: "
                             + ",".join(COLUMNS))
    names = [(name or "").strip().lower() for name in fieldnames]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ChecklistError(f"unknown column(s) {', '.join(repr(n) for n in unknown)}; "
                             f"columns are: {', '.join(COLUMNS)}", "header")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise ChecklistError(f"missing column(s): {', '.join(missing)}", "header")
    if len(set(names)) != len(names):
        raise ChecklistError("a column is named twice", "header")
    return names


def _typed(cells):
    """CSV cells (strings) to the types of ``NeedSchema``; a ValueError names the field."""
    row = {}
    for name, value in cells.items():
        value = (value or "").strip()
        if not value:
            continue
        if name in INTEGERS:
            if not is_digits(value.removeprefix("-")):
                raise ValidationError({name: [f"must be a whole number, got {value!r}"]})
            row[name] = int(value)
        elif name in LISTS:
            items = [v.strip() for v in value.split(";") if v.strip()]
            row[name] = [v.upper() for v in items] if name == "forms" else [v.lower() for v in items]
        else:
            row[name] = value
    return row


def _parse_csv(text):
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        names = _header(next(reader, None))
    except csv.Error as exc:
        raise ChecklistError(f"line 1: {exc}")
    count = 0
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(start, f"not valid CSV: {exc}")
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        count += 1
        if count > MAX_ROWS:
            yield RowError(start, f"too many rows; the limit is {MAX_ROWS} per file")
            return
        if len(cells) != len(names):
            yield RowError(start, f"expected {len(names)} cells, found {len(cells)}")
            continue
        try:
            raw = _typed(dict(zip(names, cells)))
        except ValidationError as exc:
            yield RowError(start, "; ".join(describe_errors(exc.messages)))
            continue
        yield validate_row(start, raw)


# --- JSON ------------------------------------------------------------------------


def _parse_json(text):
    try:
        items = json_loads(text)
    except ValueError as exc:
        raise ChecklistError(f"the file is not valid JSON: {exc}")
    if not isinstance(items, list):
        raise ChecklistError("a JSON checklist must be an array of needs")
    if len(items) > MAX_ROWS:
        raise ChecklistError(f"too many rows ({len(items)}); the limit is {MAX_ROWS} per file")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            yield RowError(number, "each item must be a JSON object")
            continue
        yield validate_row(number, item)


# --- writing (exports, tests, demo data) ------------------------------------------


def to_csv(needs):
    """CSV text of needs (dicts with the column names)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for need in needs:
        row = []
        for name in COLUMNS:
            value = need.get(name)
            if name in LISTS:
                value = ";".join(value or [])
            row.append("" if value is None else value)
        writer.writerow(row)
    return out.getvalue()


def to_json(needs):
    return json.dumps([{k: v for k, v in need.items() if k in COLUMNS} for need in needs], separators=(",", ":"))
