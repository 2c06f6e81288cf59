"""IATI activity XML (2.01–2.03) → offers: safe parsing, and each activity mapped and checked.

    meta, activities = parse(xml_bytes)                  # IatiError when the document is not IATI 2.0x
    for activity, filed, reason, warnings in checked(activities, sector_map): ...
    report = dry_run(xml_bytes, sector_map)              # what an import would do, offline

Parsing is pure (bytes in, dicts out) and uses defusedxml, which refuses DTDs, entity
declarations and external references (no XML bombs, no XXE). The translation of an activity
into an offer is ``iati_mapping.map_activity``; storing it is ``SupplyRepository.import_iati``
(``dependencies``). ``POST /offers/import/iati`` and ``tacoord import iati`` (``commands``) use
them.
"""
import json

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from marshmallow import ValidationError

from services.supply import iati_mapping
from services.supply.schemas import IatiOfferSchema
from tacoord.envelope import describe_errors

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# One schema for every activity: building one (and its nested money schemas) costs more than loading.
FILING = IatiOfferSchema()
SUPPORTED_VERSIONS = ("2.01", "2.02", "2.03")


class IatiError(ValueError):
    """The document as a whole cannot be read (not XML, not IATI 2.01–2.03, unsafe)."""


def _text(element):
    if element is None:
        return None
    narrative = element.find("narrative")
    text = (narrative.text if narrative is not None else element.text) or ""
    return text.strip() or None


def check_version(version):
    """The reason a document of this ``iati-activities/@version`` is refused, or None."""
    if not version:
        return "the <iati-activities> root has no version attribute; IATI activity files declare 2.01–2.03"
    if version.startswith("1."):
        return (f"IATI version {version} is not supported: 1.0x files are read no more; publish (or convert) "
                "them as 2.0x (2.01–2.03)")
    if version not in SUPPORTED_VERSIONS:
        return f"IATI version {version} is not supported; expected 2.01–2.03"
    return None


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
    version = (root.get("version") or "").strip()
    problem = check_version(version)
    if problem:
        raise IatiError(problem)
    activities = [parse_activity(element, position)
                  for position, element in enumerate(root.findall("iati-activity"), start=1)]
    return {"version": version, "generated_datetime": root.get("generated-datetime")}, activities


def _coded(element):
    return {"code": (element.get("code") or "").strip() or None, "vocabulary": element.get("vocabulary"),
            "percentage": element.get("percentage")}


def _value(holder):
    """A ``value`` child as raw text with its currency and value-date (checked by the mapping)."""
    value = holder.find("value")
    if value is None:
        return {"value": None, "currency": None, "value_date": None}
    return {"value": value.text, "currency": value.get("currency"), "value_date": value.get("value-date")}


def _period(holder):
    start, end = holder.find("period-start"), holder.find("period-end")
    return {"period_start": start.get("iso-date") if start is not None else None,
            "period_end": end.get("iso-date") if end is not None else None}


def parse_transaction(element):
    kind = element.find("transaction-type")
    date = element.find("transaction-date")
    country = element.find("recipient-country")
    region = element.find("recipient-region")
    return {"type": kind.get("code") if kind is not None else None,
            "date": date.get("iso-date") if date is not None else None,
            **_value(element),
            "sectors": [_coded(s) for s in element.findall("sector")],
            "country": _coded(country) if country is not None else None,
            "region": _coded(region) if region is not None else None}


def parse_activity(element, position):
    """One ``iati-activity`` as plain data, its texts as published (the mapping checks them)."""
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
    identifier, note, problem = iati_mapping.clean_identifier(element.findtext("iati-identifier"),
                                                              "iati-identifier")
    return {
        "position": position,
        "iati_identifier": identifier,
        "identifier_problem": problem,
        "notes": [note] if note else [],
        "last_updated": element.get("last-updated-datetime"),
        "default_currency": element.get("default-currency"),
        "reporting_org_ref": reporting.get("ref") if reporting is not None else None,
        "reporting_org_name": _text(reporting),
        "title": _text(title),
        "language": (language or "").lower()[:2] or None,
        "status_code": status.get("code") if status is not None else None,
        "scope_code": scope.get("code") if scope is not None else None,
        "dates": dates,
        "countries": [_coded(c) for c in element.findall("recipient-country")],
        "regions": [_coded(r) for r in element.findall("recipient-region")],
        "sectors": [_coded(s) for s in element.findall("sector")],
        "tags": [{"code": t.get("code"), "vocabulary": t.get("vocabulary")} for t in element.findall("tag")],
        "budgets": [{"type": b.get("type"), "status": b.get("status"), **_period(b), **_value(b)}
                    for b in element.findall("budget")],
        "planned_disbursements": [{"type": d.get("type"), **_period(d), **_value(d)}
                                  for d in element.findall("planned-disbursement")],
        "transactions": [parse_transaction(t) for t in element.findall("transaction")],
    }


def checked(activities, sector_map):
    """Per activity ``(activity, filed or None, reason, warnings)``: mapped onto an offer and
    checked by ``IatiOfferSchema``. An identifier the file has already had is a duplicate: only
    the first activity of an identifier is read."""
    seen = {}
    for activity in activities:
        identifier = activity["iati_identifier"]
        filing, reason, warnings = iati_mapping.map_activity(activity, sector_map)
        if identifier and identifier in seen:
            yield activity, None, (f"duplicate iati-identifier: activity {seen[identifier]} of this file has it "
                                   "(only the first is read)"), warnings
            continue
        if identifier:
            seen[identifier] = activity["position"]
        if filing is not None:
            try:
                filing = FILING.load(filing)
            except ValidationError as exc:
                filing, reason = None, "; ".join(describe_errors(exc.messages))
        yield activity, filing, reason, warnings


def dry_run(xml_bytes, sector_map, only_provider=None):
    """What an import would do, without storing (offline): the per-activity report. ``only_provider``:
    a donor's dry run, where another organisation's activities are skipped as its import skips them."""
    _, activities = parse(xml_bytes)
    entries = []
    for activity, filed, reason, warnings in checked(activities, sector_map):
        foreign = foreign_provider(activity, filed, only_provider)
        if foreign:
            filed, reason = None, foreign
        entries.append(iati_mapping.report_entry(activity, "would import" if filed else "skipped", filed, reason,
                                                 warnings))
    return iati_mapping.import_summary(entries)


def foreign_provider(activity, filed, only_provider):
    """The reason a donor may not import this activity (another organisation reports it), or None."""
    provider = filed["provider"] if filed is not None else activity.get("reporting_org_ref")
    if only_provider is None or not activity["iati_identifier"] or provider == only_provider:
        return None
    return (f"reporting-org {provider!r} is not your organisation ({only_provider}); a donor imports "
            "its own activities")


def load_map(text):
    """The sector map, the default extended by ``text`` (JSON); ValueError naming each problem."""
    extra = json.loads(text) if text else {}
    problems = iati_mapping.sector_map_problems(extra)
    if problems:
        raise ValueError("sector map: " + "; ".join(f"{code}: {msg}" for code, msg in problems))
    return iati_mapping.merged_sector_map(extra)
