"""Money per State × article: what the offers commit and disburse against corruption (pure).

An offer's transactions (``offer.*`` events: ``transactions``, ``anti_corruption_share``) count
for ``value × share``: outgoing commitments as *committed*, disbursements and expenditure as
*disbursed*. Where the money goes:

- a transaction naming its own recipient (``state``) goes to that State;
- else the offer's money is split in equal parts over its scope: each named State and each named
  regional group (IATI's country percentages are not on the offer; equal parts are the stated
  rule); a group's part is *regional* money, a global offer's is *global* money: neither can be
  put on one State, so they are listed apart (``not_attributed``), never spread;
- every article an offer covers (its articles and its chapters' articles) counts its money in
  full: cells add up along States, not along articles (the State totals count each offer once).

Amounts are per currency; with an exchange-rate table (``ExchangeRates``: units of each currency
per one unit of the table's ``base``, per year) they are also given in the base currency, each
converted at the rate of its value-date's year; an amount whose currency or year the table lacks
stays unconverted and is listed, never guessed.
"""
from collections import defaultdict

from services.matching.scoring import chapter_of, group_of, offer_articles

COMMITTED = ("outgoing_commitment",)
DISBURSED = ("disbursement", "expenditure")
COUNTED_STATUSES = ("pipeline", "active", "closed")   # a withdrawn offer's money is no longer on offer
KINDS = ("committed", "disbursed")
GLOBAL = "*"


def flows(offer):
    """``(kind, currency, amount, year, state or None)`` of each commitment or disbursement."""
    share = offer.get("anti_corruption_share")
    share = 1.0 if share is None else share
    for line in offer.get("transactions") or ():
        kind = "committed" if line["type"] in COMMITTED else "disbursed" if line["type"] in DISBURSED else None
        part = share if line.get("share") is None else line["share"]
        if kind is None or not line["value"] or not part:
            continue
        year = (line.get("value_date") or line.get("date") or "")[:4] or None
        yield kind, line["currency"], line["value"] * part, year, line.get("state")


def places(offer, state=None):
    """``[(("S", iso3) | ("G", group) | ("*",), fraction)]``: where a line's money goes."""
    if state:
        return [(("S", state), 1.0)]
    spots = [("S", s) for s in offer.get("scope_states") or ()] + [("G", g) for g in offer.get("scope_groups") or ()]
    if not spots:
        return [((GLOBAL,), 1.0)]
    return [(spot, 1.0 / len(spots)) for spot in spots]


class Ledger:
    """Sums per key, per kind, per (currency, year), and the offers behind them."""

    def __init__(self):
        self.sums = defaultdict(lambda: defaultdict(float))   # key -> (kind, currency, year) -> amount
        self.offers = defaultdict(set)

    def add(self, key, kind, currency, year, amount, offer_id):
        self.sums[key][(kind, currency, year)] += amount
        self.offers[key].add(offer_id)

    def entry(self, key, rates=None):
        sums = self.sums[key]
        result = {kind: _by_currency(sums, kind) for kind in KINDS}
        result["offers"] = len(self.offers[key])
        if rates:
            result["reporting"] = in_reporting_currency(sums, rates)
        return result


def _by_currency(sums, kind):
    totals = defaultdict(float)
    for (k, currency, _), amount in sums.items():
        if k == kind:
            totals[currency] += amount
    return {currency: round(amount, 2) for currency, amount in sorted(totals.items())}


def convert(amount, currency, year, rates):
    """``amount`` in the table's base currency, or None when the table has no rate for it."""
    if currency == rates["base"]:
        return amount
    rate = (rates["rates"].get(year) or {}).get(currency) if year else None
    return amount / rate if rate else None


def in_reporting_currency(sums, rates):
    result = {"currency": rates["base"], "table": rates["source"], "years": set(), "unconverted": []}
    totals = dict.fromkeys(KINDS, 0.0)
    for (kind, currency, year), amount in sorted(sums.items(), key=lambda item: tuple(map(str, item[0]))):
        converted = convert(amount, currency, year, rates)
        if converted is None:
            result["unconverted"].append({"kind": kind, "currency": currency, "year": year,
                                          "amount": round(amount, 2)})
            continue
        totals[kind] += converted
        if currency != rates["base"]:
            result["years"].add(year)
    result.update({kind: round(value, 2) for kind, value in totals.items()})
    result["years"] = sorted(result["years"])
    return result


def _offer_passes(offer, level, form):
    if offer["status"] not in COUNTED_STATUSES:
        return False
    return (not level or offer["level"] == level) and (not form or form in offer["forms"])


def funding(offers, rows="article", cols="state", level=None, filters=None, rates=None):
    """Committed and disbursed amounts per row (article or chapter) × column (State or regional
    group), the money that is regional or global (``not_attributed``), and per column the totals
    that count each offer once (``totals``)."""
    filters = dict(filters or {})
    cells, apart, totals = Ledger(), Ledger(), Ledger()
    for offer in offers:
        if not _offer_passes(offer, level, filters.get("form")):
            continue
        row_keys = set()
        for article in offer_articles(offer):
            if filters.get("article", article) != article or filters.get("chapter", chapter_of(article)) != \
                    chapter_of(article):
                continue
            row_keys.add(article if rows == "article" else chapter_of(article))
        if not row_keys:
            continue
        for kind, currency, amount, year, state in flows(offer):
            for spot, fraction in places(offer, state):
                part = amount * fraction
                if spot[0] == "S":
                    col = spot[1] if cols == "state" else group_of(spot[1])
                    if not _col_passes(spot[1], filters):
                        continue
                    for row in row_keys:
                        cells.add((row, col), kind, currency, year, part, offer["offer_id"])
                    totals.add(col, kind, currency, year, part, offer["offer_id"])
                elif spot[0] == "G" and cols == "regional_group":
                    if filters.get("regional_group", spot[1]) != spot[1] or "state" in filters:
                        continue
                    for row in row_keys:
                        cells.add((row, spot[1]), kind, currency, year, part, offer["offer_id"])
                    totals.add(spot[1], kind, currency, year, part, offer["offer_id"])
                else:
                    if spot[0] == "G" and filters.get("regional_group", spot[1]) != spot[1]:
                        continue
                    scope = spot[1] if spot[0] == "G" else GLOBAL
                    for row in row_keys:
                        apart.add((row, scope), kind, currency, year, part, offer["offer_id"])
    return {
        "cells": [{"row": row, "col": col, **cells.entry((row, col), rates)}
                  for row, col in sorted(cells.sums, key=lambda k: (k[0], str(k[1])))],
        "not_attributed": [{"row": row, "scope": "global" if scope == GLOBAL else "regional_group",
                            "regional_group": None if scope == GLOBAL else scope, **apart.entry((row, scope), rates)}
                           for row, scope in sorted(apart.sums, key=lambda k: (k[0], str(k[1])))],
        "totals": [{"col": col, **totals.entry(col, rates)} for col in sorted(totals.sums, key=str)],
    }


def _col_passes(state, filters):
    if "state" in filters and filters["state"] != state:
        return False
    return "regional_group" not in filters or group_of(state) == filters["regional_group"]


def annotate(cells, found):
    """The matrix cells with the committed and disbursed amounts of ``funding``'s cells."""
    money = {(c["row"], c["col"]): c for c in found["cells"]}
    empty = {kind: {} for kind in KINDS}
    for cell in cells:
        amounts = money.get((cell["row"], cell["col"]), empty)
        cell["committed"], cell["disbursed"] = amounts["committed"], amounts["disbursed"]
        if "reporting" in amounts:
            cell["reporting"] = amounts["reporting"]
    return cells
