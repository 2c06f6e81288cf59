"""Bulk offer files (``POST /offers/import``): CSV or JSON rows, each checked into a filing.

Rows are read lazily, so a file is never held twice; ``filings`` yields per row either the
validated filing or the reason it is rejected, which the repository's ``import_offers`` files.
"""
import csv
import io

from marshmallow import ValidationError

from services.supply.schemas import OfferSchema
from tacoord.envelope import describe_errors
from tacoord.errors import Rejected
from tacoord.safety import is_digits, json_loads, reject_unsafe_keys
from tacoord.web import BadRequest

MAX_IMPORT_ROWS = 5000
LIST_COLUMNS = ("scope_states", "scope_groups", "articles", "chapters", "forms", "languages")
NUMBER_LIST_COLUMNS = ("articles", "chapters")
INT_COLUMNS = ("capacity",)


def _number(text):
    text = text.strip()
    return int(text) if is_digits(text) else text


def csv_rows(raw):
    """(line, row dict) per CSV data line; lists are ';'-separated, empty cells are left out."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("CSV must be UTF-8")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise BadRequest("CSV has no header line")
    for name in reader.fieldnames:
        reject_unsafe_keys({name.strip(): None})
    for row in reader:
        item = {}
        for key, value in row.items():
            if key is None:
                item["_extra"] = value   # more cells than header columns: the schema rejects it
                continue
            key, value = key.strip(), (value or "").strip()
            if value == "":
                continue
            if key in LIST_COLUMNS:
                parts = [p.strip() for p in value.split(";") if p.strip()]
                item[key] = [_number(p) for p in parts] if key in NUMBER_LIST_COLUMNS else parts
            elif key in INT_COLUMNS:
                item[key] = _number(value)
            else:
                item[key] = value
        yield reader.line_num, item


def json_rows(raw):
    """(item number from 1, item) per offer of a JSON array (or ``{"offers": [...]}``)."""
    try:
        payload = json_loads(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        raise BadRequest(f"request body is not valid JSON: {exc}")
    if isinstance(payload, dict) and isinstance(payload.get("offers"), list):
        payload = payload["offers"]
    if not isinstance(payload, list):
        raise BadRequest("a JSON import is an array of offers (or {\"offers\": [...]})")
    for index, item in enumerate(payload, start=1):
        yield index, item


def filings(rows, principal):
    """``(line, filed, None)`` or ``(line, None, reason)`` per row; a donor files only its own
    offers. More than ``MAX_IMPORT_ROWS`` rows stop the import."""
    for count, (line, row) in enumerate(rows, start=1):
        if count > MAX_IMPORT_ROWS:
            raise BadRequest(f"at most {MAX_IMPORT_ROWS} offers per import; split the file")
        try:
            if not isinstance(row, dict):
                raise Rejected("each item must be a JSON object")
            reject_unsafe_keys(row)
            filed = OfferSchema().load(row)
            if principal.role == "donor" and filed["provider"] != principal.subject:
                raise Rejected(f"provider {filed['provider']} is not your organisation ({principal.subject})",
                               "provider")
        except ValidationError as exc:
            yield line, None, "; ".join(describe_errors(exc.messages))
        except Rejected as exc:
            yield line, None, exc.reason
        else:
            yield line, filed, None
