"""Publish the needs of a checklist CSV export as a partner system.

    python examples/publish_needs_csv.py amqp://acme:SECRET@127.0.0.1:5673/tacoord needs.csv

Columns: state, article, paragraph, forms (separated by ';'), other_text,
priority, description, checklist_round. Rows that fail validation are
reported with their line number and not sent.
"""
import csv
import sys

from marshmallow import ValidationError

import services
from tacoord.envelope import describe_errors
from tacoord.partner import PartnerClient

services.register_schemas()  # the client validates each need against the needs service's schema


def row_to_need(row):
    need = {"state": row["state"].strip(), "forms": [f.strip() for f in row["forms"].split(";") if f.strip()]}
    for key in ("article", "priority"):
        need[key] = int(row[key]) if row.get(key, "").strip().isdigit() else row.get(key)
    for key in ("paragraph", "other_text", "description", "checklist_round"):
        if row.get(key, "").strip():
            need[key] = row[key].strip()
    return need


def main(url, path):
    sent, refused = 0, 0
    with PartnerClient(url) as client, open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                client.publish("need.submitted", row_to_need(row))
                sent += 1
            except ValidationError as exc:
                refused += 1
                print(f"line {line}: " + "; ".join(describe_errors(exc.messages)), file=sys.stderr)
    print(f"sent {sent}, refused {refused}")
    return 0 if refused == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
