"""Parsing self-assessment checklist exports (CSV and JSON) into validated rows or row errors."""
import json
import random

import pytest

from services.needs import checklist, demo
from services.needs.checklist import ChecklistError, Row, RowError

HEADER = "state,article,paragraph,forms,other_text,priority,description,checklist_round,languages\n"


def parse_csv(body):
    return list(checklist.parse(HEADER + body, "csv"))


def test_a_csv_row_becomes_a_typed_filing():
    [row] = parse_csv("ken,9,1,legal_advice; CAPACITY_BUILDING,,1,Procurement,2026-1,EN;sw\n")
    assert isinstance(row, Row) and row.line == 2
    assert row.need["state"] == "KEN" and row.need["article"] == 9 and row.need["priority"] == 1
    assert row.need["forms"] == ["LEGAL_ADVICE", "CAPACITY_BUILDING"]
    assert row.need["languages"] == ["en", "sw"]
    assert row.need["other_text"] is None and row.need["paragraph"] == "1"


@pytest.mark.parametrize("line, reason", [
    ("KEN,99,,LEGAL_ADVICE,,1,x,,", "article: UNCAC article must be between 5 and 62"),
    ("XXX,9,,LEGAL_ADVICE,,1,x,,", "state: unknown State 'XXX'"),
    ("KEN,nine,,LEGAL_ADVICE,,1,x,,", "article: must be a whole number, got 'nine'"),
    ("KEN,9²,,LEGAL_ADVICE,,1,x,,", "article: must be a whole number, got '9²'"),   # str.isdigit() takes it
    ("KEN,--9,,LEGAL_ADVICE,,1,x,,", "article: must be a whole number, got '--9'"),
    ("KEN,9,,LEGAL_ADVICE,,5,x,,", "priority:"),
    ("KEN,9,,TEA,,1,x,,", "forms.0: unknown form of assistance"),
    ("KEN,9,,OTHER,,1,x,,", "other_text: required when forms include OTHER"),
    ("KEN,9,,,,1,x,,", "forms: Missing data"),
    ("KEN,9,,LEGAL_ADVICE,,1", "expected 9 cells, found 6"),
    ("KEN,9,,LEGAL_ADVICE,,1,x,,english", "languages.0: use an ISO 639-1 code"),
])
def test_a_bad_csv_row_is_reported_with_its_line_and_reason(line, reason):
    items = parse_csv("KEN,9,,LEGAL_ADVICE,,1,fine,,\n\n" + line + "\n")
    assert isinstance(items[0], Row)
    error = items[1]
    assert isinstance(error, RowError) and error.line == 4, items
    assert reason in error.reason


def test_line_numbers_follow_quoted_cells_that_span_lines():
    items = parse_csv('KEN,9,,LEGAL_ADVICE,,1,"two\nlines",,\nXXX,9,,LEGAL_ADVICE,,1,x,,\n')
    assert items[1] == RowError(4, items[1].reason)


def test_an_unknown_csv_column_rejects_the_whole_file():
    with pytest.raises(ChecklistError, match=r"unknown column\(s\) '\$where'"):
        list(checklist.parse("state,article,forms,priority,$where\nKEN,9,LEGAL_ADVICE,1,x\n", "csv"))


def test_a_csv_file_without_a_required_column_is_refused():
    with pytest.raises(ChecklistError, match="missing column.*priority"):
        list(checklist.parse("state,article,forms\nKEN,9,LEGAL_ADVICE\n", "csv"))


def test_a_file_that_is_not_utf8_is_refused():
    with pytest.raises(ChecklistError, match="not UTF-8"):
        checklist.parse_all(HEADER.encode() + "KEN,9,,LEGAL_ADVICE,,1,Caf\u00e9,,\n".encode("latin-1"), "csv")


def test_json_items_are_validated_with_their_position_as_line():
    body = json.dumps([
        {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1},
        {"state": "KEN", "article": "9", "forms": ["LEGAL_ADVICE"], "priority": 1},
        {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "$where": "1"},
        "not an object",
    ])
    rows, errors = checklist.parse_all(body, "json")
    assert [r.line for r in rows] == [1]
    assert [(e.line, e.reason.split(":")[0]) for e in errors] == [(2, "article"), (3, "row.$where"), (4, "each item must be a JSON object")]
    assert "keys may not start with '$'" in errors[1].reason


def test_a_json_checklist_must_be_an_array():
    with pytest.raises(ChecklistError, match="array"):
        checklist.parse_all('{"state": "KEN"}', "json")


def test_the_format_follows_the_content_type_or_the_file_name():
    assert checklist.format_of(content_type="text/csv; charset=utf-8") == "csv"
    assert checklist.format_of(content_type="application/json") == "json"
    assert checklist.format_of(filename="x.JSON") == "json"
    assert checklist.format_of(content_type="text/plain") is None


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_generated_checklist_survives_a_round_trip(fmt):
    rows = demo.generate_checklist(random.Random(3), ["KEN", "FRA", "BRA"], other_share=0.5)
    text = checklist.to_csv(rows) if fmt == "csv" else checklist.to_json(rows)
    parsed, errors = checklist.parse_all(text, fmt)
    assert errors == []
    assert len(parsed) == len(rows) == 3 * 15
    for row, original in zip(parsed, rows):
        assert {k: row.need.get(k) for k in ("state", "article", "forms", "priority", "other_text")} == \
               {k: original.get(k) for k in ("state", "article", "forms", "priority", "other_text")}
