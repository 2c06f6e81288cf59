"""An IATI activity (as ``services.supply.iati.parse_activity`` reads it) → an offer filing (pure).

    filing, reason, warnings = map_activity(activity, merged_sector_map())

``filing`` is None when the activity is skipped, with ``reason`` in words; ``warnings`` are what
was read with doubt (an unknown region, a non-decimal value, percentages that do not add up…)
and stay on the offer. The rules, one by one, are in services/supply/README.md; the codes are
the IATI 2.03 codelists (tacoord/data/uncac_reference.json ``iati_codelists``).
"""
import re
from collections import Counter

from services.supply import money
from tacoord import reference
from tacoord.fields import ORG_ID
from tacoord.safety import is_digits

ANTI_CORRUPTION_SECTOR = "15113"   # OECD DAC "Anti-corruption organisations and institutions"
DAC_5 = "1"                        # SectorVocabulary 1, the default when @vocabulary is absent

# DAC purpose code → what the offer covers. 15113 is about anti-corruption bodies: UNCAC art. 6
# (preventive bodies) and art. 36 (specialized law-enforcement authorities); IATI says nothing
# about forms of assistance, so institutional support is read as capacity-building. Extend or
# override with the ``TACOORD_IATI_SECTOR_MAP`` setting / ``--map`` (same shape).
DEFAULT_SECTOR_MAP = {
    ANTI_CORRUPTION_SECTOR: {"articles": [6, 36], "chapters": [], "forms": ["CAPACITY_BUILDING"]},
}

# IATI Region codelist (vocabulary 1 = OECD DAC regions; every code of the 2.03 list) → UN
# regional groups. An approximation: DAC regions are geographic, the UN groups electoral (e.g. DAC
# "Europe, regional" is read as the Eastern European Group, where the DAC recipients in Europe sit,
# though Türkiye is in WEOG). "Developing countries, unspecified" (998) is the catch-all: global.
REGION_GROUPS = {
    "88": ["EASTERN_EUROPEAN"],    # States Ex-Yugoslavia unspecified
    "89": ["EASTERN_EUROPEAN"],    # Europe, regional
    "189": ["AFRICAN"],            # North of Sahara, regional
    "289": ["AFRICAN"],            # South of Sahara, regional
    "298": ["AFRICAN"],            # Africa, regional
    "380": ["GRULAC"],             # West Indies, regional
    "389": ["GRULAC"],             # North & Central America, regional
    "489": ["GRULAC"],             # South America, regional
    "498": ["GRULAC"],             # America, regional
    "589": ["ASIA_PACIFIC"],       # Middle East, regional
    "619": ["ASIA_PACIFIC"],       # Central Asia, regional
    "679": ["ASIA_PACIFIC"],       # South Asia, regional
    "689": ["ASIA_PACIFIC"],       # South & Central Asia, regional
    "789": ["ASIA_PACIFIC"],       # Far East Asia, regional
    "798": ["ASIA_PACIFIC"],       # Asia, regional
    "889": ["ASIA_PACIFIC"],       # Oceania, regional
    "998": [],                     # Developing countries, unspecified → global
}
GLOBAL_REGIONS = {"998"}
GLOBAL_SCOPE = "1"                 # ActivityScope 1 Global

# IATI ActivityStatus → offer status; 5 (cancelled) and 6 (suspended) offer nothing.
ACTIVITY_STATUS = {"1": "pipeline", "2": "active", "3": "closed", "4": "closed",
                   "5": "withdrawn", "6": "withdrawn"}
START_DATE_TYPES = ("2", "1")   # actual start preferred over planned
END_DATE_TYPES = ("4", "3")     # actual end preferred over planned
UNCAC_TAG_PREFIX = "UNCAC-"     # <tag vocabulary="99" code="UNCAC-46"/> names articles explicitly
BUDGET_TYPES = {"1": "original", "2": "revised"}
BUDGET_STATUSES = {"1": "indicative", "2": "committed"}
TRANSACTION_TYPES = {"1": "incoming_funds", "2": "outgoing_commitment", "3": "disbursement", "4": "expenditure"}
# A reporting-org/@ref that is not of the guidance's shape is still taken as given when it is one
# token of these characters (historical refs such as "41114", "US-USAGOV"); anything else is no id.
LOOSE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,119}$")
LINE_BREAK = re.compile(r"\s*[\r\n]+\s*")


# --- identifiers -----------------------------------------------------------------------------

def clean_identifier(raw, what):
    """``(value, warning, reason)``: an identifier as published, trimmed; a line break inside (a
    wrapped line) is joined and reported; any other inner whitespace makes it no identifier."""
    if raw is None or not raw.strip():
        return None, None, f"no {what}"
    text = raw.strip()
    joined = LINE_BREAK.sub("", text)
    if any(ch.isspace() for ch in joined):
        return None, None, f"{what} {text!r} contains whitespace; an IATI identifier has none"
    warning = f"{what} {text!r} had a line break inside; read as {joined!r}" if joined != text else None
    return joined, warning, None


def org_ref_warning(ref):
    """A warning when a reporting-org ref is not of the IATI organisation identifier shape."""
    if ORG_ID.match(ref):
        return None
    return (f"reporting-org/@ref {ref!r} is not of the {{agency}}-{{number}} shape of the IATI organisation "
            "identifier guidance (e.g. GB-GOV-1, XM-DAC-41114): imported as given")


# --- sectors and the anti-corruption share ---------------------------------------------------------

def _percentages(sectors, vocabulary, warnings):
    """{code: percentage} of one vocabulary's sectors, adding up to 100 (warned when they do not)."""
    values, missing = {}, False
    for sector in sectors:
        text = sector.get("percentage")
        number = money.xs_decimal(text) if text is not None else None
        if text is not None and number is None:
            warnings.append(f"sector {sector['code']} percentage {text!r} is not a decimal number")
        if number is None or number < 0:
            missing = True
        values[sector["code"]] = values.get(sector["code"], 0.0) + (number or 0.0)
    total = sum(values.values())
    if len(values) == 1:
        if not missing and abs(total - 100) > 0.01:
            warnings.append(f"sector vocabulary {vocabulary}: the one sector has percentage {total:g}; read as 100")
        return {code: 100.0 for code in values}
    if missing or total <= 0:
        warnings.append(f"sector vocabulary {vocabulary}: percentages missing; the {len(values)} sectors are "
                        "counted as equal shares")
        return {code: 100.0 / len(values) for code in values}
    if abs(total - 100) > 0.01:
        warnings.append(f"sector vocabulary {vocabulary}: percentages add up to {total:g}, not 100; each is "
                        f"read as its part of {total:g}")
    return {code: 100.0 * value / total for code, value in values.items()}


def by_vocabulary(sectors):
    groups = {}
    for sector in sectors:
        if sector.get("code"):
            groups.setdefault(sector.get("vocabulary") or DAC_5, []).append(sector)
    return groups


def sector_share(sectors, sector_map, warnings):
    """``(share 0–1, mapped DAC codes)`` of sectors reported together (an activity's): the
    percentage of the DAC 5-digit sectors the map knows. Each vocabulary adds up to 100 on its own;
    vocabularies are never added together."""
    share, mapped = 0.0, []
    for vocabulary, group in sorted(by_vocabulary(sectors).items()):
        percentages = _percentages(group, vocabulary, warnings)
        if vocabulary != DAC_5:
            continue
        for code, percentage in percentages.items():
            if code in sector_map:
                mapped.append(code)
                share += percentage / 100
    return round(min(share, 1.0), 4), mapped


def transaction_share(transaction, sector_map):
    """The share of one transaction that reports its own sectors: the part of its DAC 5-digit
    sectors the map knows (a transaction's sectors carry no percentage)."""
    codes = [s["code"] for s in by_vocabulary(transaction.get("sectors") or []).get(DAC_5, [])]
    if not codes:
        return 0.0, []
    mapped = [code for code in codes if code in sector_map]
    return round(len(mapped) / len(codes), 4), mapped


def coverage(codes, sector_map):
    covered = {"articles": set(), "chapters": set(), "forms": set()}
    for code in codes:
        for key in covered:
            covered[key].update(sector_map[code].get(key, ()))
    return covered


def _sector_codes(sectors):
    return ", ".join(f"{s['code']} (vocabulary {s.get('vocabulary') or DAC_5})" for s in sectors if s.get("code"))


def read_sectors(activity, sector_map, warnings):
    """``(share, mapped codes, per-transaction shares or None, reason)``: sectors of the activity, or
    of each transaction when the activity reports none (the standard allows one or the other)."""
    sectors = [s for s in activity.get("sectors", []) if s.get("code")]
    in_transactions = [t for t in activity.get("transactions", []) if t.get("sectors")]
    if sectors:
        if in_transactions:
            warnings.append("sectors are reported on the activity and on transactions (the standard allows one): "
                            "the activity's are read")
        share, mapped = sector_share(sectors, sector_map, warnings)
        if not mapped:
            return None, [], None, (f"no anti-corruption sector (15113 or a mapped DAC 5-digit code); sectors: "
                                    f"{_sector_codes(sectors)}")
        return share, mapped, None, None
    shares, mapped = [], []
    for transaction in activity.get("transactions", []):
        part, codes = transaction_share(transaction, sector_map)
        shares.append(part)
        mapped.extend(codes)
    if not mapped:
        codes = _sector_codes(s for t in in_transactions for s in t["sectors"]) or "none"
        return None, [], None, f"no anti-corruption sector (15113 or a mapped code) on the activity or its transactions; sectors: {codes}"
    return None, sorted(set(mapped)), shares, None


def weighted_share(transactions):
    """The share of an activity whose transactions carry their own: value-weighted over the
    transactions in its most used currency (no exchange rate is assumed here)."""
    if not transactions:
        return 0.0
    currency = Counter(t["currency"] for t in transactions).most_common(1)[0][0]
    same = [t for t in transactions if t["currency"] == currency]
    total = sum(abs(t["value"]) for t in same)
    if total == 0:
        return round(sum(t["share"] for t in same) / len(same), 4)
    return round(sum(abs(t["value"]) * t["share"] for t in same) / total, 4)


# --- geography ---------------------------------------------------------------------------------

def _states(codes, what):
    """ISO3 codes of recipient-country codes; (states, reason of a bad code)."""
    states = []
    for country in codes:
        code = (country.get("code") or "").upper()
        iso3 = reference.iso3_from_iso2(code)
        if iso3 is None:
            return None, f"unknown {what} code {country.get('code')!r} (ISO 3166-1 alpha-2 expected)"
        states.append(iso3)
    return states, None


def _regions(regions, warnings):
    """(UN groups, catch-all seen, unknown seen) of recipient regions."""
    groups, catch_all, unknown = [], False, False
    for region in regions:
        code, vocabulary = region.get("code"), region.get("vocabulary") or "1"
        if vocabulary == "1" and code in REGION_GROUPS:
            groups.extend(REGION_GROUPS[code])
            catch_all = catch_all or code in GLOBAL_REGIONS
            continue
        unknown = True
        warnings.append(f"recipient-region {code!r} (vocabulary {vocabulary}) is not a code of the IATI Region "
                        "codelist (OECD DAC) that tacoord maps to a UN regional group")
    return groups, catch_all, unknown


def read_scope(activity, warnings, transaction_shares=None):
    """``(level, states, groups, reason)`` from the recipients of the activity, or of its
    transactions when the activity names none (only its anti-corruption ones when the transactions
    carry the sectors). Recipient countries decide the level whatever ``activity-scope`` says;
    regions only: known → regional, the catch-all or unknown → global."""
    countries, regions = activity.get("countries", []), activity.get("regions", [])
    transactions = activity.get("transactions", [])
    if transaction_shares is not None:
        transactions = [t for t, share in zip(transactions, transaction_shares) if share > 0]
    if not countries and not regions:
        countries = [t["country"] for t in transactions if t.get("country") and t["country"].get("code")]
        regions = [t["region"] for t in transactions if t.get("region") and t["region"].get("code")]
    elif any(t.get("country") or t.get("region") for t in transactions):
        warnings.append("recipients are reported on the activity and on transactions (the standard allows one): "
                        "the activity's are read")
    states, reason = _states(countries, "recipient-country")
    if reason:
        return None, [], [], reason
    groups, catch_all, unknown = _regions(regions, warnings)
    scope_code = activity.get("scope_code")
    if states:
        if scope_code == GLOBAL_SCOPE:
            warnings.append("activity-scope 1 (global) describes the activity; its recipient countries "
                            "set the offer's scope")
        if catch_all:
            warnings.append("region 998 (developing countries, unspecified) beside recipient countries: "
                            "the countries set the offer's scope")
        level = "regional" if groups or len(set(states)) > 1 else "bilateral"
        return level, sorted(set(states)), sorted(set(groups)), None
    if groups:
        return "regional", [], sorted(set(groups)), None
    if catch_all or unknown or scope_code == GLOBAL_SCOPE:
        if unknown and not catch_all:
            warnings.append("no recipient the UN regional groups can hold: imported as a global offer")
        return "global", [], [], None
    return None, [], [], "no recipient-country or recipient-region, and activity-scope is not global (1)"


# --- money -------------------------------------------------------------------------------------

def _money_line(raw, what, default_currency, warnings):
    """The value, currency and value-date of a money element, or None (warned) when it cannot count."""
    value = money.xs_decimal(raw.get("value"))
    if value is None:
        warnings.append(f"{what}: value {(raw.get('value') or '').strip()!r} is not an xs:decimal; not counted")
        return None
    currency = (raw.get("currency") or default_currency or "").strip().upper()
    if not money.CURRENCY.match(currency):
        warnings.append(f"{what}: no currency (value/@currency or the activity's default-currency); not counted")
        return None
    return {"value": value, "currency": currency, "value_date": _date(raw.get("value_date"))}


def _date(text):
    return (text or "").strip()[:10] or None


def read_money(activity, transaction_shares, sector_map, warnings):
    """Budgets, planned disbursements and transactions (incoming funds, commitments,
    disbursements, expenditure) of an activity as offer money lines."""
    currency = activity.get("default_currency")
    budgets, planned, transactions = [], [], []
    for index, raw in enumerate(activity.get("budgets", []), start=1):
        line = _money_line(raw, f"budget {index}", currency, warnings)
        if line is None:
            continue
        budgets.append({"type": BUDGET_TYPES.get(raw.get("type") or "1", "original"),
                        "status": BUDGET_STATUSES.get(raw.get("status") or "1", "indicative"),
                        "period_start": _date(raw.get("period_start")), "period_end": _date(raw.get("period_end")),
                        **line})
    for index, raw in enumerate(activity.get("planned_disbursements", []), start=1):
        line = _money_line(raw, f"planned-disbursement {index}", currency, warnings)
        if line is not None:
            planned.append({"period_start": _date(raw.get("period_start")),
                            "period_end": _date(raw.get("period_end")), **line})
    for index, raw in enumerate(activity.get("transactions", []), start=1):
        kind = TRANSACTION_TYPES.get(raw.get("type") or "")
        if kind is None:
            continue   # interest, repayments, equity, guarantees, pledges: not assistance money
        line = _money_line(raw, f"transaction {index}", currency, warnings)
        if line is None:
            continue
        transaction = {"type": kind, "date": _date(raw.get("date")), **line}
        if transaction_shares is not None:
            transaction["share"] = transaction_shares[index - 1]
        if raw.get("country") and raw["country"].get("code"):
            states, problem = _states([raw["country"]], f"transaction {index} recipient-country")
            if states:
                transaction["state"] = states[0]
            else:
                warnings.append(problem)
        transactions.append(transaction)
    return budgets, planned, transactions


# --- the activity as a whole -----------------------------------------------------------------------

def uncac_tags(activity):
    """(articles named by ``UNCAC-n`` tags, reason of a bad one)."""
    tagged = set()
    for tag in activity.get("tags", []):
        code = tag.get("code") or ""
        if tag.get("vocabulary") == "99" and code.upper().startswith(UNCAC_TAG_PREFIX):
            number = code[len(UNCAC_TAG_PREFIX):]
            if not is_digits(number):
                return None, f"tag {code!r} does not name an UNCAC article number"
            tagged.add(int(number))
    return tagged, None


def is_cancelled(activity):
    return ACTIVITY_STATUS.get(activity.get("status_code") or "") == "withdrawn"


def map_activity(activity, sector_map):
    """``(filing, None, warnings)`` or ``(None, reason, warnings)``; the filing still goes through
    the offer schema (``IatiOfferSchema``)."""
    warnings = list(activity.get("notes", ()))
    identifier = activity.get("iati_identifier")
    if not identifier:
        return None, activity.get("identifier_problem") or "no iati-identifier", warnings

    share, mapped, transaction_shares, reason = read_sectors(activity, sector_map, warnings)
    if reason:
        return None, reason, warnings
    covered = coverage(mapped, sector_map)
    tagged, reason = uncac_tags(activity)
    if reason:
        return None, reason, warnings
    if tagged:  # explicit article tags are more precise than the sector's default articles
        covered["articles"], covered["chapters"] = tagged, set()

    provider, note, reason = clean_identifier(activity.get("reporting_org_ref"), "reporting-org/@ref")
    if reason:
        return None, reason, warnings
    warnings.extend(w for w in (note, org_ref_warning(provider)) if w)
    if not LOOSE_REF.match(provider):
        return None, f"reporting-org/@ref {provider!r} is not an organisation identifier", warnings

    status = ACTIVITY_STATUS.get(activity.get("status_code") or "")
    if status is None:
        return None, f"activity-status {activity.get('status_code')!r} is not an IATI ActivityStatus code (1–6)", \
            warnings
    if status == "withdrawn":
        return None, f"activity-status {activity['status_code']} (cancelled/suspended): nothing to offer", warnings

    dates = activity.get("dates", {})
    start = next((dates[t] for t in START_DATE_TYPES if dates.get(t)), None)
    end = next((dates[t] for t in END_DATE_TYPES if dates.get(t)), None)
    if not start:
        return None, "needs an activity-date of type 1 or 2 (start)", warnings

    level, states, groups, reason = read_scope(activity, warnings, transaction_shares)
    if reason:
        return None, reason, warnings

    budgets, planned, transactions = read_money(activity, transaction_shares, sector_map, warnings)
    if share is None:
        share = weighted_share(transactions)
    currency = (activity.get("default_currency") or "").strip().upper()
    filing = {
        "provider": provider,
        "provider_name": activity.get("reporting_org_name") or "",
        "level": level,
        "scope_states": states,
        "scope_groups": groups,
        "articles": sorted(covered["articles"]),
        "chapters": sorted(covered["chapters"]),
        "forms": sorted(covered["forms"]),
        "capacity": 1,
        "period_start": start,
        "period_end": end,
        "languages": [activity["language"]] if activity.get("language") else [],
        "status": status,
        "iati_identifier": identifier,
        "anti_corruption_share": share,
        "currency": currency if money.CURRENCY.match(currency) else None,
        "budget": budgets,
        "planned_disbursements": planned,
        "transactions": transactions,
    }
    return filing, None, warnings


# --- the report ----------------------------------------------------------------------------------

def report_entry(activity, outcome, filing=None, reason=None, warnings=(), offer_id=None):
    """What an import (or dry run) did with one activity, as a person reads it."""
    entry = {"position": activity["position"], "iati_identifier": activity.get("iati_identifier"),
             "outcome": outcome}
    if offer_id:
        entry["offer_id"] = offer_id
    if reason:
        entry["reason"] = reason
    if filing is not None:
        entry.update({"level": filing["level"], "states": filing["scope_states"], "regions": filing["scope_groups"],
                      "articles": filing["articles"], "chapters": filing["chapters"], "forms": filing["forms"],
                      "period_start": filing["period_start"], "period_end": filing["period_end"],
                      "share": filing.get("anti_corruption_share"),
                      "amounts": money.totals(filing, attributed=False),
                      "anti_corruption_amounts": money.totals(filing)})
    entry["warnings"] = list(warnings)
    return entry


OUTCOMES = ("imported", "would import", "updated", "unchanged", "skipped")


def import_summary(results):
    """The report of an IATI import (or dry run) from its per-activity results."""
    counts = Counter(r["outcome"] for r in results)
    return {"activities": len(results), "imported": counts["imported"] + counts["would import"],
            "updated": counts["updated"], "unchanged": counts["unchanged"], "skipped": counts["skipped"],
            "results": results}


def reimport_outcome(stored, filed):
    """A filing of an activity already stored: ``("unchanged" | "updated", None)`` or ``("skipped",
    reason)`` when the file holds an older version than the one imported."""
    newer, older = filed.get("iati_last_updated"), stored.get("iati_last_updated")
    if newer and older and newer < older:
        return "skipped", (f"an older version of the activity (last-updated-datetime {newer}) than the one "
                           f"imported ({older}): kept")
    keys = set(filed) - {"iati_last_updated"}
    if all(stored.get(k) == filed[k] for k in keys):   # a withdrawn offer differs: a filing is never withdrawn
        return "unchanged", None
    return "updated", None


def merged_sector_map(extra=None):
    mapping = {code: dict(entry) for code, entry in DEFAULT_SECTOR_MAP.items()}
    for code, entry in (extra or {}).items():
        mapping[str(code)] = {"articles": list(entry.get("articles", [])),
                              "chapters": list(entry.get("chapters", [])),
                              "forms": list(entry.get("forms", []))}
    return mapping


def sector_map_problems(mapping):
    """Check a configured sector map; [(code, message)]."""
    problems = []
    forms = reference.assistance_forms()
    for code, entry in (mapping or {}).items():
        if not isinstance(entry, dict) or set(entry) - {"articles", "chapters", "forms"}:
            problems.append((code, "each entry is {articles: [...], chapters: [...], forms: [...]}"))
            continue
        if not entry.get("forms") or any(f not in forms for f in entry["forms"]):
            problems.append((code, "forms must be known form ids (at least one)"))
        if not entry.get("articles") and not entry.get("chapters"):
            problems.append((code, "name articles and/or chapters"))
    return problems
