"""Links into the workspace (the web pages the gateway serves): one place for their paths.

    link(base, "match", "m-1")          -> "http://127.0.0.1:8080/#/matches/m-1"
    event_link(base, event)             -> the page of the item an event is about, or None

The base URL is a setting (``TACOORD_WORKSPACE_URL``, default the local gateway's
``http://127.0.0.1:8080/``); a page is a hash route, so following a link needs nothing of the
server but the workspace itself.
"""
from urllib.parse import quote

WORKSPACE_URL_KEY = "TACOORD_WORKSPACE_URL"
DEFAULT_WORKSPACE_URL = "http://127.0.0.1:8080/"

# The workspace's page of each kind of item.
PATHS = {
    "need": "#/needs/{}",
    "offer": "#/offers/{}",
    "expert": "#/experts/{}",
    "match": "#/matches/{}",
    "alert": "#/alerts/{}",
    "request": "#/requests/{}",
}

# Which item an event is about: the first of these payload fields it carries (a match step names
# its need and offer too, but is about the match; a duplication or gap is an alert's page).
SUBJECT_FIELDS = (("match_id", "match"), ("alert_id", "alert"), ("duplication_id", "alert"), ("gap_id", "alert"),
                  ("request_id", "request"), ("offer_id", "offer"), ("expert_id", "expert"), ("need_id", "need"))


def link(base, kind, item_id):
    """The workspace page of one item (``kind``: a key of :data:`PATHS`)."""
    root = (base or DEFAULT_WORKSPACE_URL).rstrip("/") + "/"
    return root + PATHS[kind].format(quote(str(item_id), safe=""))


def event_link(base, event):
    """The page of the item an event is about (:data:`SUBJECT_FIELDS`), or None."""
    data = (event or {}).get("data") or {}
    for field, kind in SUBJECT_FIELDS:
        if isinstance(data.get(field), str) and data[field]:
            return link(base, kind, data[field])
    return None
