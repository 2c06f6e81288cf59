"""The query filters of ``GET /offers`` and ``GET /experts``: checked and typed, or a
rejection naming the filter. The matching itself is ``domain.offer_matches`` /
``experts.expert_matches``."""
from services.supply import domain, experts
from tacoord import reference
from tacoord.errors import Rejected
from tacoord.safety import is_digits

OFFER_FILTERS = ("provider", "state", "article", "chapter", "form", "level", "status")
EXPERT_FILTERS = ("article", "language", "region", "country", "form", "vetting_status")


def _number(filters, key):
    if key in filters:
        if not is_digits(filters[key]):
            raise Rejected(f"{key} must be a number", key)
        filters[key] = int(filters[key])


def check_offer_filters(filters):
    for key in ("article", "chapter"):
        _number(filters, key)
    if "article" in filters and filters["article"] not in reference.articles():
        raise Rejected("unknown UNCAC article (1–71)", "article")
    if "state" in filters:
        filters["state"] = filters["state"].upper()
        if not reference.is_known_state(filters["state"]):
            raise Rejected(f"unknown State {filters['state']!r}: use an ISO3 code such as 'KEN'", "state")
    if "level" in filters and filters["level"] not in domain.LEVELS:
        raise Rejected(f"level must be one of {', '.join(domain.LEVELS)}", "level")
    if "status" in filters and filters["status"] not in domain.OFFER_STATUSES:
        raise Rejected(f"status must be one of {', '.join(domain.OFFER_STATUSES)}", "status")
    if "form" in filters and filters["form"] not in reference.assistance_forms():
        raise Rejected("unknown form of assistance", "form")
    return filters


def check_expert_filters(filters):
    _number(filters, "article")
    if "language" in filters:
        filters["language"] = filters["language"].lower()
        if filters["language"] not in reference.language_codes():
            raise Rejected(f"unknown language {filters['language']!r}: use an ISO 639-1 two-letter code such as "
                           f"'en', 'fr', 'es', 'ar', 'ru' or 'zh'", "language")
    if "region" in filters and filters["region"] not in reference.regional_groups():
        raise Rejected(f"region must be one of {', '.join(sorted(reference.regional_groups()))}", "region")
    if "country" in filters:
        filters["country"] = filters["country"].upper()
        if not reference.is_known_state(filters["country"]):
            raise Rejected(f"unknown State {filters['country']!r}: use an ISO3 code such as 'KEN'", "country")
    if "vetting_status" in filters and filters["vetting_status"] not in experts.VETTING_STATUSES:
        raise Rejected(f"vetting_status must be one of {', '.join(experts.VETTING_STATUSES)}", "vetting_status")
    return filters
