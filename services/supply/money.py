"""Money on offers (pure): budgets, planned disbursements and transactions, as IATI and FTS carry
them, and the anti-corruption share that attributes them.

An offer's money lines each have a ``value`` in a ``currency`` (ISO 4217) on a ``value_date``.
``share`` says how much of the offer is anti-corruption work (the sector share of its IATI
activity; 1 for an offer filed directly): wherever its money is counted, a line counts for
``value × share`` (a transaction that reports its own sectors carries its own ``share``).

    totals(offer)   # {"GBP": {"budget": …, "planned": …, "committed": …, "disbursed": …, "incoming": …}}
"""
import re
from collections import defaultdict
from decimal import Decimal

# xs:decimal: an optional sign, digits with an optional decimal point; no exponent, no thousands
# separators, no currency sign (real files have "1,500,000", "1.5E6", "£200", "n/a").
XS_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
CURRENCY = re.compile(r"^[A-Z]{3}$")

BUDGET_TYPES = ("original", "revised")
BUDGET_STATUSES = ("indicative", "committed")
TRANSACTION_TYPES = ("incoming_funds", "outgoing_commitment", "disbursement", "expenditure")
COMMITTED = ("outgoing_commitment",)
DISBURSED = ("disbursement", "expenditure")
KINDS = ("budget", "planned", "committed", "disbursed", "incoming")


def xs_decimal(text):
    """The number an ``xs:decimal`` text states, or None when it is not one."""
    text = (text or "").strip()
    if not XS_DECIMAL.match(text):
        return None
    return float(Decimal(text))


def rounded(value):
    return round(value + 0.0, 2)


def line_share(line, share):
    own = line.get("share")
    return share if own is None else own


def latest_budgets(budgets):
    """One budget per period: a revised budget replaces the original of the same period."""
    chosen = {}
    for budget in budgets:
        key = (budget.get("period_start"), budget.get("period_end"), budget.get("currency"))
        if key not in chosen or budget.get("type") == "revised":
            chosen[key] = budget
    return list(chosen.values())


def totals(offer, attributed=True):
    """Per currency, the offer's budget (latest revision per period), planned disbursements, and
    committed (outgoing commitments), disbursed (disbursements and expenditure) and incoming
    amounts; ``attributed``: each line × its anti-corruption share."""
    share = offer.get("anti_corruption_share")
    share = 1.0 if share is None or not attributed else share
    sums = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))

    def add(kind, line):
        part = line_share(line, share) if attributed else 1.0
        sums[line["currency"]][kind] += line["value"] * part

    for budget in latest_budgets(offer.get("budget") or ()):
        add("budget", budget)
    for planned in offer.get("planned_disbursements") or ():
        add("planned", planned)
    for transaction in offer.get("transactions") or ():
        if transaction["type"] in COMMITTED:
            add("committed", transaction)
        elif transaction["type"] in DISBURSED:
            add("disbursed", transaction)
        elif transaction["type"] == "incoming_funds":
            add("incoming", transaction)
    return {currency: {kind: rounded(value) for kind, value in amounts.items()}
            for currency, amounts in sorted(sums.items())}


def with_currency(lines, currency):
    """Lines with the offer's ``currency`` filled in where a line names none."""
    return [{**line, "currency": line.get("currency") or currency} for line in lines or ()]
