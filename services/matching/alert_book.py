"""What the read model knows of its alerts (pure): :class:`AlertBook`.

The rules (:mod:`services.matching.alert_rules`) look only at the alerts that can still change:
unresolved ones, which close themselves when their cause goes, and duplications that people
resolved, which keep the same offers from being reported again. Alerts resolved by matching and
gaps resolved by people are forgotten (their ids stay in ``ReadModel.alerts``, so none is
raised twice). The book learns of people's steps from matching's own ``alert.*`` events
(:meth:`AlertBook.learn`), never from the HTTP route that took them: see the README.
"""
from collections import defaultdict

from services.matching import alerts

KEPT_FIELDS = ("alert", "status", "kind", "state", "regional_group", "article", "form", "providers", "offer_ids",
               "need_id", "since", "duplication_id", "gap_id")


class AlertBook:
    """Alerts the rules still look at, indexed by State × article × form, by need, by article × group."""

    def __init__(self):
        self.items = {}                          # alert id -> the fields the rules read
        self.by_combo = defaultdict(set)         # (state, article, form) -> duplication alert ids
        self.by_need = defaultdict(set)          # need id -> unresolved unmatched_priority_need gap ids
        self.no_supply = defaultdict(set)        # (article, group) -> unresolved no_supply gap ids
        self.no_supply_since = defaultdict(set)  # (article, group) -> `since` of every no_supply gap raised

    def load(self, documents):
        """Stored alert documents (with their ``_id``)."""
        for document in documents:
            self.add(document["_id"], document)
        return self

    def add(self, alert_id, document):
        item = {k: document.get(k) for k in KEPT_FIELDS}
        item[alerts.ID_FIELD[item["alert"]]] = alert_id
        item["status"] = alerts.status_of(document)
        if item["alert"] == "gap" and item["kind"] == "no_supply":
            self.no_supply_since[(item["article"], item["regional_group"])].add(item["since"])
        automatic = bool((document.get("resolved") or {}).get("automatic"))
        if item["status"] == "resolved" and (item["alert"] == "gap" or automatic):
            return
        self.items[alert_id] = item
        index, key = self._index_of(item)
        index[key].add(alert_id)

    def _index_of(self, item):
        if item["alert"] == "duplication":
            return self.by_combo, (item["state"], item["article"], item["form"])
        if item["kind"] == "no_supply":
            return self.no_supply, (item["article"], item["regional_group"])
        return self.by_need, item["need_id"]

    def drop(self, alert_id):
        item = self.items.pop(alert_id, None)
        if item is None:
            return
        index, key = self._index_of(item)
        index[key].discard(alert_id)
        if not index[key]:
            del index[key]

    def learn(self, data):
        """A step someone took (the data of an ``alert.*`` event); only forward, so a late
        acknowledgement never reopens an alert matching has resolved meanwhile."""
        item = self.items.get(data["alert_id"])
        if item is None or alerts.RANK[data["status"]] <= alerts.RANK[item["status"]]:
            return
        if data["status"] == "resolved" and (item["alert"] == "gap" or data.get("automatic")):
            self.drop(data["alert_id"])
        else:
            item["status"] = data["status"]

    def unresolved(self, alert_ids):
        return [a for a in sorted(alert_ids) if self.items[a]["status"] in alerts.UNRESOLVED]

    def open_gap_of(self, need_id):
        """The unresolved gap alert of a need, if any (for the worklist)."""
        found = sorted(self.by_need.get(need_id, ()))
        return found[0] if found else None
