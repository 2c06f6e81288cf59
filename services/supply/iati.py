"""IATI 2.03 activity XML → offers.

    python -m services.supply.iati FILE.xml [--dry-run] [--map MAP.json] [--actor operator:cli]

Parsing is pure (bytes in, dicts out) and uses defusedxml, which refuses DTDs,
entity declarations and external references (no XML bombs, no XXE). The
translation of an activity into an offer is ``domain.offer_from_activity``;
storing it is ``SupplyRepository.import_iati`` (``dependencies``) — the CLI and
``POST /offers/import/iati`` share both. Without ``--dry-run`` the CLI writes
to the supply database and publishes through the outbox with the repository a
worker gets (``tacoord.store.opened``; ``MONGO_URI``, ``AMQP_URI``,
``TACOORD_DB_PREFIX`` as for the services).
"""
import argparse
import json
import sys

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from marshmallow import ValidationError

from services.supply import domain
from services.supply.dependencies import SupplyStore
from services.supply.schemas import OfferSchema
from tacoord import config
from tacoord.envelope import describe_errors
from tacoord.store import opened

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SUPPORTED_MAJOR = "2"


class IatiError(ValueError):
    """The document as a whole cannot be read (not XML, not IATI 2.x, unsafe)."""


def _text(element):
    if element is None:
        return None
    narrative = element.find("narrative")
    text = (narrative.text if narrative is not None else element.text) or ""
    return text.strip() or None


def parse(xml_bytes):
    """``(meta, activities)`` from an ``iati-activities`` document; raises IatiError."""
    try:
        root = fromstring(xml_bytes, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise IatiError(f"unsafe XML refused ({type(exc).__name__}): DTDs, entities and external "
                        "references are not accepted")
    except ParseError as exc:
        raise IatiError(f"not well-formed XML: {exc}")
    if root.tag != "iati-activities":
        raise IatiError(f"root element is <{root.tag}>; an IATI activity file has <iati-activities>")
    version = root.get("version") or ""
    if version.split(".")[0] != SUPPORTED_MAJOR:
        raise IatiError(f"IATI version {version or '(missing)'} is not supported; expected 2.0x (2.03)")
    activities = [parse_activity(element, position)
                  for position, element in enumerate(root.findall("iati-activity"), start=1)]
    return {"version": version, "generated_datetime": root.get("generated-datetime")}, activities


def parse_activity(element, position):
    reporting = element.find("reporting-org")
    status = element.find("activity-status")
    scope = element.find("activity-scope")
    title = element.find("title")
    narrative = title.find("narrative") if title is not None else None
    language = (narrative.get(XML_LANG) if narrative is not None else None) or element.get(XML_LANG)
    dates = {}
    for date in element.findall("activity-date"):
        if date.get("type") and date.get("iso-date"):
            dates[date.get("type")] = date.get("iso-date")[:10]
    return {
        "position": position,
        "iati_identifier": (element.findtext("iati-identifier") or "").strip() or None,
        "reporting_org_ref": reporting.get("ref") if reporting is not None else None,
        "reporting_org_name": _text(reporting),
        "title": _text(title),
        "language": (language or "").lower()[:2] or None,
        "status_code": status.get("code") if status is not None else None,
        "scope_code": scope.get("code") if scope is not None else None,
        "dates": dates,
        "countries": [c.get("code") for c in element.findall("recipient-country")],
        "regions": [{"code": r.get("code"), "vocabulary": r.get("vocabulary")}
                    for r in element.findall("recipient-region")],
        "sectors": [{"code": s.get("code"), "vocabulary": s.get("vocabulary")}
                    for s in element.findall("sector")],
        "tags": [{"code": t.get("code"), "vocabulary": t.get("vocabulary")} for t in element.findall("tag")],
    }


def dry_run(xml_bytes, sector_map):
    """What an import would do, without storing: the per-activity report."""
    _, activities = parse(xml_bytes)
    results, seen = [], {}
    for activity in activities:
        result = {"position": activity["position"], "iati_identifier": activity["iati_identifier"]}
        filing, reason = domain.offer_from_activity(activity, sector_map)
        if filing is not None and activity["iati_identifier"] in seen:
            filing, reason = None, f"duplicate iati-identifier (activity {seen[activity['iati_identifier']]})"
        if filing is not None:
            try:
                OfferSchema().load(filing)
            except ValidationError as exc:
                filing, reason = None, "; ".join(describe_errors(exc.messages))
        seen.setdefault(activity["iati_identifier"], activity["position"])
        results.append({**result, "outcome": "would import" if filing else "skipped", "reason": reason})
    return domain.import_summary(results)


def load_map(path):
    extra = json.loads(open(path, encoding="utf-8").read()) if path else {}
    problems = domain.sector_map_problems(extra)
    if problems:
        raise SystemExit("sector map: " + "; ".join(f"{code}: {msg}" for code, msg in problems))
    return domain.merged_sector_map(extra)


def run_import(xml_bytes, sector_map, actor, amqp_uri=None, mongo_uri=None, db_prefix=None):
    """Import into the supply database, publishing through the outbox like the service."""
    _, activities = parse(xml_bytes)
    overrides = {config.AMQP_URI_KEY: amqp_uri, config.MONGO_URI_KEY: mongo_uri,
                 config.DB_NAME_KEY: config.db_name("supply", db_prefix) if db_prefix else None}
    container_config = config.service_config("supply", **{k: v for k, v in overrides.items() if v})
    with opened(SupplyStore, container_config) as repository:
        return repository.import_iati(activities, sector_map, actor)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m services.supply.iati", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="IATI 2.03 activity XML file")
    parser.add_argument("--dry-run", action="store_true", help="report what would be imported; store nothing")
    parser.add_argument("--map", help="JSON file: extra DAC sector code → {articles, chapters, forms}")
    parser.add_argument("--actor", default="operator:cli", help="who the events name as actor")
    parser.add_argument("--amqp-uri")
    parser.add_argument("--mongo-uri")
    parser.add_argument("--db-prefix")
    args = parser.parse_args(argv)
    try:
        with open(args.file, "rb") as handle:
            xml_bytes = handle.read()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    sector_map = load_map(args.map)
    try:
        if args.dry_run:
            report = dry_run(xml_bytes, sector_map)
        else:
            report = run_import(xml_bytes, sector_map, args.actor, args.amqp_uri, args.mongo_uri, args.db_prefix)
    except IatiError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    for result in report["results"]:
        line = f"  #{result['position']:<3} {result['iati_identifier'] or '(no identifier)':<40} {result['outcome']}"
        if result.get("offer_id"):
            line += f" → {result['offer_id']}"
        if result.get("reason"):
            line += f": {result['reason']}"
        print(line)
    print(f"{report['activities']} activities: {report['imported']} "
          f"{'would be imported' if args.dry_run else 'imported'}, {report['skipped']} skipped")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
