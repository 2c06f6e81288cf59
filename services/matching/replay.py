"""Replay: running a history of events through matching's rules, without I/O.

- :func:`model_from_events`: the model alone, from the consumed events (for
  tests and benchmarks);
- :class:`StoreReplay`: the documents the service would have *stored*, from
  the audit log's events, matching's own included. The operator's restore
  (:mod:`services.matching.restore`) writes them to an empty store.
"""
from copy import deepcopy

from services.matching import alerts
from services.matching.domain import Matcher
from services.matching.lifecycle import HELD, STEP_EVENTS, step_changes
from services.matching.scoring import OPEN_NEED

CONSUMED_FAMILIES = ("need", "offer", "expert", "workshop")   # the events that change the model
VIEW_KINDS = ("needs", "offers", "experts", "workshops")
REPLAYED = ("need.*", "offer.*", "expert.*", "workshop.*", "checklist_assistance.*",
            "match.*", "gap.*", "duplication.*", "alert.*")   # what a replay reads (topic patterns)
ALERT_STEPS = ("alert.acknowledged", "alert.resolved")
OWN_ALERTS = {"gap.detected": ("gap", "gap_id"), "duplication.detected": ("duplication", "duplication_id")}


def model_from_events(events, settings=None):
    """The model after a list of events (e.g. the audit log, in order).

    Only need.*, offer.*, expert.* and workshop.* events, people's steps on
    matches (``match.accepted`` …) and on alerts (``alert.*``) change it;
    others are skipped. The result equals the live model after the same
    events (ids are deterministic); nothing is emitted, the caller may store it.
    """
    model = Matcher(settings)
    for event in events:
        kind = event.get("type", "")
        if kind.split(".", 1)[0] in CONSUMED_FAMILIES or kind in STEP_EVENTS or kind in ALERT_STEPS:
            model.apply(event)
    return model


class StoreReplay:
    """What the matching service *stores*, replayed from its event history (no I/O).

    Feed events in order with :meth:`apply`. Consumed events go through
    :meth:`Matcher.apply`, and each outcome's documents are kept exactly as the
    service writes them (views replaced, matches/alerts/proposals merged), so
    :attr:`views` and :attr:`docs` are the collections a store restored from them
    holds; nothing is emitted. The service's own events restore what a replay of
    consumed events cannot: gaps (found by a timer, not by an event), and any
    duplication or workshop proposal the replay does not reproduce, so that a
    restarted service never emits them again. People's steps on matches
    (``match.accepted`` …) and on alerts (``alert.*``) are stored as the HTTP
    routes stored them, from the event alone (:func:`lifecycle.step_changes`;
    :func:`alerts.step_from_event`, applied forward only), then consumed like
    the service consumes them. The other ``match.*`` events are only compared
    (:meth:`differences`): the matches the live service held against the
    replayed ones (they differ only if the audit log's order of events differs
    from the order matching consumed them in).
    """

    def __init__(self, settings=None):
        self.model = Matcher(settings)
        self.views = {kind: {} for kind in VIEW_KINDS}
        self.docs = {"matches": {}, "alerts": {}, "proposals": {}}
        self.live_active = set()     # match ids the live service held (proposed, not retracted, withdrawn…)
        self.events = 0
        self.applied = 0

    def apply(self, event):
        self.events += 1
        kind = event.get("type", "")
        family = kind.split(".", 1)[0]
        if kind in OWN_ALERTS:
            alert, key = OWN_ALERTS[kind]
            alert_id = event["data"][key]
            if alert_id not in self.docs["alerts"]:
                self.docs["alerts"][alert_id] = {**deepcopy(event["data"]), "alert": alert,
                                                 "detected_at": event["occurred_at"], "status": "open"}
                self.model.alert_book.add(alert_id, self.docs["alerts"][alert_id])
            self.model.alerts.add(alert_id)
        elif kind in ALERT_STEPS:
            alert_id, changes = alerts.step_from_event(event["data"])
            stored = self.docs["alerts"].get(alert_id)
            if stored is not None and alerts.moves_forward(stored, changes):
                stored.update(deepcopy(changes))
            self._keep(self.model.apply(event))
        elif kind == "workshop.participants_proposed":
            request_id = event["data"]["request_id"]
            self.docs["proposals"].setdefault(request_id, deepcopy(event["data"]))
            self.model.proposals.add(request_id)
        elif kind in STEP_EVENTS:
            data = event["data"]
            stored = self.docs["matches"].get(data["match_id"])
            if stored is not None:
                stored.update(step_changes(stored, data))    # what the route stored
            (self.live_active.add if data["status"] in HELD else self.live_active.discard)(data["match_id"])
            self._keep(self.model.apply(event))
            self.applied += 1
        elif kind == "match.proposed":
            self.live_active.add(event["data"]["match_id"])
        elif kind in ("match.retracted", "match.withdrawn"):
            self.live_active.discard(event["data"]["match_id"])
        elif family in CONSUMED_FAMILIES:
            self._keep(self.model.apply(event))
            self.applied += 1
        return self

    def _keep(self, outcome):
        for (kind, entity_id), document in outcome.entities.items():
            self.views[kind][entity_id] = deepcopy(document)
        for (collection, doc_id), (document, _) in outcome.docs.items():
            stored = self.docs[collection].setdefault(doc_id, {})
            if collection == "alerts":
                alerts.merged(stored, deepcopy(document))   # a status once stored is the steps' to change
            else:
                stored.update(deepcopy(document))
        for alert_id, changes, _ in outcome.steps:  # guarded, as the service writes them
            stored = self.docs["alerts"].get(alert_id)
            if stored is not None and alerts.status_of(stored) in alerts.UNRESOLVED:
                stored.update(deepcopy(changes))

    def differences(self):
        """Match ids active live but not replayed (``only_live``), and replayed but not active live
        (``only_rebuilt``, the name operators see in the summary); both sorted."""
        replayed = set(self.model.matches)
        return {"only_live": sorted(self.live_active - replayed), "only_rebuilt": sorted(replayed - self.live_active)}

    def summary(self):
        matches = self.docs["matches"].values()
        return {"events_read": self.events, "events_applied": self.applied,
                **{kind: len(self.views[kind]) for kind in VIEW_KINDS},
                "open_needs": sum(1 for n in self.model.needs.values() if n["status"] in OPEN_NEED),
                "matches": len(self.docs["matches"]),
                "active_matches": sum(1 for m in matches if m.get("status") in HELD),
                "alerts": len(self.docs["alerts"]), "proposals": len(self.docs["proposals"])}
