"""The needs-vs-supply matrix over the read model, its cells and its reference labels (pure).

:func:`matrix` counts, per row (article or chapter) × column (State or
regional group), the open needs, the offers reaching the cell and the
matches that stand, and the needs at each level a match reached (with a
proposal, agreed — "met" — and delivered); a cell has a coverage (the level
its needs reached), a ``duplicated`` flag, and a status (``duplicated`` or
the coverage); :func:`matrix_cell` is one of them with what is behind its
counts, :func:`matrix_csv` the table as CSV, and :func:`matrix_reference`
the labels and filter choices the page shows.
"""
import csv
import io
from collections import defaultdict

from services.matching.lifecycle import need_level
from services.matching.read_model import match_combos
from services.matching.scoring import (LEVELS, MATCHABLE_OFFER, OPEN_NEED, REGIONAL_GROUPS, chapter_of, group_of,
                                       offer_articles, offer_groups)
from tacoord import reference

ROWS = ("article", "chapter")
COLS = ("state", "regional_group")


def _row_of(article, rows):
    return article if rows == "article" else chapter_of(article)


def _need_in(need, filters):
    return all(need.get(key) == value for key, value in filters.items())


def matrix(model, rows="article", cols="state", level=None, filters=None):
    """Needs vs supply: one cell per (row, col) with counts and a status.

    Needs: open needs. Matches: the matches that stand, proposed to delivered
    (offers of ``level`` when given; experts only without a level). Levels,
    each within the one before: ``proposed_needs`` (with a match at any of
    those statuses), ``agreed_needs`` (with one agreed, in delivery or
    delivered: the needs that are *met*), ``delivered_needs``. ``filters`` may name an
    ``article``, ``chapter``, ``state``, ``regional_group``, a ``priority``
    (needs of that priority only) and a ``form``
    (then only needs, offers and matches with that form of assistance, and
    duplication on that form); ``status`` keeps the cells of that coverage, or the
    duplicated ones. Offers: matchable offers (of
    ``level``) reaching the cell: for State columns an offer counts where
    its scope names the State, and a regional or global offer counts in the
    cells that have needs; for group columns, where its scope reaches the
    group. Coverage (:func:`coverage`), the level the cell's needs reached:
    ``unmet`` (no proposal), ``proposed`` (proposals, nothing agreed),
    ``partly_met`` (some needs met), ``met`` (every need met), ``delivered``
    (every need delivered), ``no_need`` (supply only). ``duplicated``: two or
    more providers with a match that stands on one State × article × form in
    the cell (:meth:`ReadModel.matched_providers`), whatever the coverage.
    Status: ``duplicated`` when the cell is, else its coverage. A ``status``
    filter keeps the cells of that coverage, or the duplicated ones.
    """
    filters = dict(filters or {})
    form = filters.get("form")
    cells = {}

    def cell(row, col):
        if (row, col) not in cells:
            cells[(row, col)] = {"row": row, "col": col, "needs": set(), "offers": set(), "matches": set(),
                                 "proposed_needs": set(), "agreed_needs": set(), "delivered_needs": set(),
                                 "duplicated": False}
        return cells[(row, col)]

    def col_of(state, group):
        return state if cols == "state" else group

    need_filters = {k: v for k, v in filters.items()
                    if k in ("article", "chapter", "state", "regional_group", "priority")}
    for need in model.needs.values():
        if need["status"] not in OPEN_NEED or not _need_in(need, need_filters):
            continue
        if form and form not in need["forms"]:
            continue
        c = cell(_row_of(need["article"], rows), col_of(need["state"], need["regional_group"]))
        c["needs"].add(need["need_id"])
        statuses = []
        for mid, match in model.need_matches.get(need["need_id"], {}).items():
            if level and match["level"] != level:
                continue
            if form and form not in match["forms"]:
                continue
            c["matches"].add(mid)
            statuses.append(match["status"])
            if match.get("offer_id"):
                combos = [combo for combo in match_combos(match) if not form or combo[2] == form]
                if any(len(model.matched_providers(combo, level)) >= 2 for combo in combos):
                    c["duplicated"] = True
        reached = need_level(statuses)
        for name, levels in LEVELS_COUNTED.items():
            if reached in levels:
                c[name].add(need["need_id"])
    need_cols_by_row = defaultdict(set)
    for (row, col) in cells:
        need_cols_by_row[row].add(col)

    for offer in model.offers.values():
        if offer["status"] not in MATCHABLE_OFFER or (level and offer["level"] != level):
            continue
        if form and form not in offer["forms"]:
            continue
        is_global = not offer["scope_states"] and not offer["scope_groups"]
        for article in offer_articles(offer):
            chapter = chapter_of(article)
            if "article" in filters and article != filters["article"]:
                continue
            if "chapter" in filters and chapter != filters["chapter"]:
                continue
            row = _row_of(article, rows)
            if cols == "regional_group":
                for group in offer_groups(offer):
                    if filters.get("regional_group", group) != group:
                        continue
                    if "state" in filters and (group_of(filters["state"]) != group
                                               or not _reaches_state(offer, filters["state"])):
                        continue
                    cell(row, group)["offers"].add(offer["offer_id"])
                continue
            for state in offer["scope_states"]:
                if _state_passes(state, filters):
                    cell(row, state)["offers"].add(offer["offer_id"])
            for state in need_cols_by_row.get(row, ()):
                if state in offer["scope_states"]:
                    continue
                if is_global or group_of(state) in offer["scope_groups"]:
                    cells[(row, state)]["offers"].add(offer["offer_id"])

    result = []
    for key in sorted(cells, key=lambda k: (k[0] if k[0] is not None else -1, str(k[1]))):
        c = cells[key]
        levels = {name: len(c[name]) for name in LEVEL_COUNTS}
        cover = coverage(len(c["needs"]), **levels)
        duplicated = c["duplicated"] and bool(c["needs"])
        wanted = filters.get("status")
        if wanted and wanted != cover and not (wanted == "duplicated" and duplicated):
            continue
        result.append({"row": c["row"], "col": c["col"], "needs": len(c["needs"]), "offers": len(c["offers"]),
                       "matches": len(c["matches"]), **levels,
                       "status": "duplicated" if duplicated else cover, "coverage": cover, "duplicated": duplicated,
                       "_ids": {"needs": sorted(c["needs"]), "offers": sorted(c["offers"]),
                                "matches": sorted(c["matches"])}})
    return result


LEVELS_COUNTED = {"proposed_needs": ("proposed", "met", "delivered"),   # each within the one before
                  "agreed_needs": ("met", "delivered"), "delivered_needs": ("delivered",)}
LEVEL_COUNTS = tuple(LEVELS_COUNTED)
COVERAGES = ("unmet", "proposed", "partly_met", "met", "delivered", "no_need")
STATUSES = COVERAGES + ("duplicated",)   # a cell's status: its coverage, or duplicated


def coverage(needs, proposed_needs, agreed_needs, delivered_needs):
    """The level a cell's open needs reached: "met" means agreed (or later), not proposed."""
    if not needs:
        return "no_need"
    if delivered_needs == needs:
        return "delivered"
    if agreed_needs == needs:
        return "met"
    if agreed_needs:
        return "partly_met"
    return "proposed" if proposed_needs else "unmet"


EMPTY_CELL = {"needs": 0, "offers": 0, "matches": 0, **{name: 0 for name in LEVEL_COUNTS}, "status": "empty",
              "coverage": "empty", "duplicated": False,
              "_ids": {"needs": [], "offers": [], "matches": []}}


def matrix_cell(model, rows, cols, row, col, level=None, filters=None):
    """One cell of :func:`matrix` with its needs, offers and matches (status ``empty`` when there is none)."""
    cells = matrix(model, rows, cols, level, filters)
    cell = next((c for c in cells if c["row"] == row and c["col"] == col), EMPTY_CELL)
    ids = cell["_ids"]
    return {"row": {rows: row}, "col": {cols: col}, "level": level,
            "status": cell["status"], "coverage": cell["coverage"], "duplicated": cell["duplicated"],
            "counts": {k: cell[k] for k in ("needs", "offers", "matches") + LEVEL_COUNTS},
            "needs": [model.needs[n] for n in ids["needs"]],
            "offers": [model.offers[o] for o in ids["offers"]],
            "matches": [model.matches[m] for m in ids["matches"]]}


def matrix_csv(cells, rows, cols, level=None):
    """The cells of :func:`matrix` as CSV text, one header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([rows, cols, "level", "needs", "offers", "matches", *LEVEL_COUNTS, "status", "coverage",
                     "duplicated"])
    for c in cells:
        writer.writerow([c["row"], c["col"], level or "all", c["needs"], c["offers"],
                         c["matches"], *(c[name] for name in LEVEL_COUNTS), c["status"], c["coverage"],
                         "yes" if c["duplicated"] else "no"])
    return buffer.getvalue()


def _reaches_state(offer, state):
    if not offer["scope_states"] and not offer["scope_groups"]:
        return True
    return state in offer["scope_states"] or group_of(state) in offer["scope_groups"]


def _state_passes(state, filters):
    if "state" in filters and filters["state"] != state:
        return False
    if "regional_group" in filters and group_of(state) != filters["regional_group"]:
        return False
    return True


MATRIX_STATUSES = (
    ("unmet", "Unmet", "open needs, none of them with a proposal"),
    ("proposed", "Proposed", "proposals for open needs, none agreed yet"),
    ("partly_met", "Partly met", "some open needs have an agreed match, some not"),
    ("met", "Met", "every open need has an agreed match (or one in delivery or delivered)"),
    ("delivered", "Delivered", "every open need's assistance was delivered"),
    ("duplicated", "Duplicated", "two or more providers have a match (proposed to delivered) on one State × article × "
                                 "form; shown with the coverage"),
    ("no_need", "Supply only", "offers reach the cell but no State has an open need there"),
)


def matrix_reference():
    """Labels and choices for the matrix's rows, columns and filters (UNCAC reference data)."""
    articles = reference.articles()
    chapters = reference.chapters()
    return {
        "chapters": [{"number": n, "roman": chapters[n]["roman"], "title": chapters[n]["title"]}
                     for n in sorted(chapters) if 2 <= n <= 6],
        "articles": [{"number": n, "title": articles[n]["title"], "chapter": articles[n]["chapter"]}
                     for n in sorted(articles) if n in reference.NEED_ARTICLES],
        "regional_groups": [{"id": g, "name": reference.regional_groups()[g]["official_name"]}
                            for g in REGIONAL_GROUPS if g in reference.regional_groups()],
        "states": sorted(({"iso3": iso3, "name": c["name"], "regional_group": c.get("regional_group")}
                          for iso3, c in reference.states().items() if iso3), key=lambda s: s["name"]),
        "levels": list(LEVELS),
        "forms": [{"id": f["id"], "label": f["label"]} for f in reference.assistance_forms().values()],
        "statuses": [{"id": i, "label": label, "description": text} for i, label, text in MATRIX_STATUSES],
    }
