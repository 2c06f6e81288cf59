"""Matching's rules: what an event or the passing of time does to the read model (pure: no I/O).

:class:`Matcher` is the read model, with the operations on one match
(:class:`~services.matching.commitments.Commitments`), and the rules the
service calls:

- ``Matcher.apply(event)`` updates the model from a ``need.*``, ``offer.*``,
  ``expert.*`` or ``workshop.*`` event: it (re)matches needs against
  offers and experts, re-scores the matches that stay, retracts or
  withdraws what no longer holds, detects duplication and answers workshop
  requests; from a person's step on a match (``match.accepted`` …, see
  :mod:`services.matching.lifecycle`) it learns the match's new status;
- ``Matcher.sweep(now)`` finds the gaps that are due.

Both return an :class:`Outcome`: the documents to store and the events to
emit (``match.proposed``, ``match.retracted``, ``match.withdrawn``,
``match.rescored``, ``duplication.detected``, ``gap.detected``,
``workshop.participants_proposed``); the service stores it, then publishes.
Each write of a match names the stored statuses it may apply to
(:mod:`services.matching.match_writes`), so it never overwrites a step a
person took meanwhile. Candidates are visited in a fixed order and ids are
hashes of what they name, so replaying the same events builds the same
model (:mod:`services.matching.replay`).
"""
from datetime import timedelta

from services.matching.alert_rules import settle_duplications, settle_gaps, touched_needs
from services.matching.commitments import Commitments, worst_proposal
from services.matching.lifecycle import STEP_EVENTS, SUPERSEDABLE
from services.matching.match_writes import Stepped, Write
from services.matching.payloads import (normalize_expert, normalize_need, normalize_offer, normalize_workshop,
                                        parse_time)
from services.matching.read_model import match_combos, match_id, stable_id
from services.matching.scoring import (MATCHABLE_EXPERT, MATCHABLE_OFFER, OPEN_NEED, expert_groups, offer_articles,
                                       offer_groups)
from tacoord import reference


class Matcher(Commitments):
    """The read model and the rules that change it (``apply``, ``sweep``); what happens to one match is
    :class:`~services.matching.commitments.Commitments`."""

    def _rematch_need(self, out, need, now, reason="no longer eligible"):
        """Bring a need's matches to the best ones the indexes offer now, and re-score those that stay.

        Matches a person has taken further than ``proposed`` keep their place; proposals compete
        with the candidates for the places left."""
        current = dict(self.need_matches.get(need["need_id"], {}))
        if need["status"] not in OPEN_NEED:
            for match in current.values():
                self._release(out, match, f"need {need['status']}", need["status"] == "withdrawn", now)
            return
        for kind, limit in (("offer", self.settings.max_offer_matches_per_need),
                            ("expert", self.settings.max_expert_matches_per_need)):
            key = f"{kind}_id"
            mine = {m[key]: m for m in current.values() if m.get(key)}
            table = self.offers if kind == "offer" else self.experts
            scorer = self.score_offer if kind == "offer" else self.score_expert
            pool, results = {}, {}  # proposals and candidates: entity id -> score; results of the held
            for entity_id, match in mine.items():
                entity = table.get(entity_id)
                result = scorer(need, entity) if entity else None
                if result is None:
                    self._release(out, match, reason, entity is None, now)
                    continue
                results[entity_id] = result
                if match["status"] in SUPERSEDABLE:
                    pool[entity_id] = result[0]
            finder = self.offer_candidates if kind == "offer" else self.expert_candidates
            for score, entity_id in finder(need):
                if entity_id not in mine and match_id(need["need_id"], **{key: entity_id}) not in self.refused:
                    pool.setdefault(entity_id, score)
            engaged = sum(1 for m in mine.values()
                          if m["status"] not in SUPERSEDABLE and m["match_id"] in self.matches)
            ranked = sorted(pool.items(), key=lambda item: (-item[1], item[0]))[:max(0, limit - engaged)]
            keep = dict(ranked)
            for entity_id, match in mine.items():
                if entity_id in pool and entity_id not in keep:
                    self._retract(out, match, "superseded by a better match", now)
            for entity_id, result in results.items():
                if mine[entity_id]["match_id"] in self.matches:
                    self._rescore(out, mine[entity_id], result, need, now)
            for entity_id, _ in ranked:
                if entity_id not in mine:
                    entity = table[entity_id]
                    self._propose(out, self._match(need, scorer(need, entity), **{kind: entity}), now)
        if self._is_unmatched_p1(need):
            self.unmatched_p1.add(need["need_id"])

    def _offer_into_needs(self, out, offer, now):
        """A new or changed offer looks for open needs (best first, bounded)."""
        candidates = []
        forms = set(offer["forms"])
        for need_id in self.needs_for_offer(offer):  # geography and coverage hold by the index
            need = self.needs[need_id]
            mid = match_id(need_id, offer_id=offer["offer_id"])
            if forms.isdisjoint(need["forms"]) or mid in self.matches or mid in self.refused:
                continue
            candidates.append((-self.settings.need_weight(need), -self.quick_offer_score(need, offer), need_id))
        candidates.sort()
        limit = self.settings.max_offer_matches_per_need
        proposed = 0
        for _, _, need_id in candidates:
            if proposed >= self.settings.max_matches_per_offer_event:
                break
            need = self.needs[need_id]
            score = self.quick_offer_score(need, offer)  # capacity may have changed
            mine = [m for m in self.need_matches.get(need_id, {}).values() if m.get("offer_id")]
            if len(mine) >= limit:
                worst = worst_proposal(mine)
                if worst is None or score <= worst["score"]:
                    continue
                self._retract(out, worst, "superseded by a better match", now)
            self._propose(out, self._match(need, self.score_offer(need, offer), offer=offer), now)
            proposed += 1

    def _expert_into_needs(self, out, expert, now):
        limit = self.settings.max_expert_matches_per_need
        for need_id in self.needs_for_expert(expert):
            mid = match_id(need_id, expert_id=expert["expert_id"])
            if mid in self.matches or mid in self.refused:
                continue
            need = self.needs[need_id]
            result = self.score_expert(need, expert)
            if result is None:
                continue
            mine = [m for m in self.need_matches.get(need_id, {}).values() if m.get("expert_id")]
            if len(mine) >= limit:
                worst = worst_proposal(mine)
                if worst is None or result[0] <= worst["score"]:
                    continue
                self._retract(out, worst, "superseded by a better match", now)
            self._propose(out, self._match(need, result, expert=expert), now)

    # -- people's steps ----------------------------------------------------------

    def _apply_step(self, out, data, now):
        """A person's step on a match: the model follows it, refills the need it freed and settles the
        duplications on the need's State × article × forms (a match declined or cancelled may end one;
        a refill, or a match held again, may start one)."""
        combos = self._need_combos(data["need_id"])
        if data.get("offer_id") and data.get("forms"):
            combos |= match_combos(data)
        refill = self._take_step(out, data, now)
        if refill is not None:
            self._rematch_need(out, refill, now)
        self._check_duplications(out, combos | self._need_combos(data["need_id"]), now)

    # -- duplication -----------------------------------------------------------

    def _need_combos(self, need_id):
        """The State × article × forms the need's offer matches stand on."""
        return {c for m in self.need_matches.get(need_id, {}).values() if m.get("offer_id") for c in match_combos(m)}

    def _check_duplications(self, out, combos, now, cause=None):
        for combo in sorted(combos):
            settle_duplications(self, out, combo, now, cause)

    # -- applying events ---------------------------------------------------------

    def apply(self, event):
        """Apply one event; returns the :class:`Outcome` (documents to store, events to emit)."""
        out = Outcome()
        kind, now, data = event["type"], event["occurred_at"], event["data"]
        family = kind.split(".", 1)[0]
        if family == "need":
            need = normalize_need(data, event)
            if not _stale(self.needs.get(need["need_id"]), need):
                self._apply_need(out, need, now)
        elif family == "offer":
            offer = normalize_offer(data, event)
            if not _stale(self.offers.get(offer["offer_id"]), offer):
                self._apply_offer(out, offer, now)
        elif family == "expert":
            expert = normalize_expert(data, event)
            if not _stale(self.experts.get(expert["expert_id"]), expert):
                self._apply_expert(out, expert, now)
        elif kind in STEP_EVENTS:
            self._apply_step(out, data, now)
        elif kind == "workshop.participants_proposed":
            pass  # our own answer
        elif family == "workshop":
            self._apply_workshop(out, normalize_workshop(data, event), kind, now)
        elif family == "alert":
            self.alert_book.learn(data)  # a step taken over HTTP (or our own): the store has it already
        settle_gaps(self, out, now, touched_needs(self, out))
        return out

    def _apply_need(self, out, need, now):
        old = self.needs.get(need["need_id"])
        need["opened_at"] = old.get("opened_at") if old and old["status"] in OPEN_NEED else now
        need["unmatched_since"] = (old or {}).get("unmatched_since") or now
        if old and old["status"] not in OPEN_NEED and need["status"] in OPEN_NEED:
            need["unmatched_since"] = now  # reopened
        self._put_need(need)
        out.entity("needs", need)
        before = self._need_combos(need["need_id"])
        reason = "need withdrawn" if need["status"] == "withdrawn" else "need changed"
        self._rematch_need(out, need, now, reason=reason)
        self._check_duplications(out, before | self._need_combos(need["need_id"]), now)

    def _note_supply_loss(self, keys, now):
        for key in keys:
            if self.supply.get(key, 0) <= 0:
                self.supply_lost_at[key] = now

    def _apply_offer(self, out, offer, now):
        old_matches = [self.matches[mid] for mid in sorted(self.offer_matches.get(offer["offer_id"], ()))]
        old = self.offers.get(offer["offer_id"])
        self._put_offer(offer)
        if old is not None and old["status"] in MATCHABLE_OFFER:
            self._note_supply_loss([(a, g) for a in offer_articles(old) for g in offer_groups(old)], now)
        out.entity("offers", offer)
        combos = {c for m in old_matches for c in match_combos(m)}
        touched = []
        reason = (f"offer {offer['status']}" if offer["status"] not in MATCHABLE_OFFER
                  else "offer changed")
        for match in old_matches:
            need = self.needs.get(match["need_id"])
            result = self.score_offer(need, offer) if need is not None else None
            if result is None:
                self._release(out, match, reason, offer["status"] not in MATCHABLE_OFFER, now)
                touched.append(match["need_id"])
            elif match["match_id"] in self.matches:
                self._rescore(out, match, result, need, now)
        for need_id in sorted(set(touched)):  # refill what lost a match
            self._rematch_need(out, self.needs[need_id], now)
        if offer["status"] in MATCHABLE_OFFER:
            self._offer_into_needs(out, offer, now)
        combos |= {c for mid in self.offer_matches.get(offer["offer_id"], ())
                   for c in match_combos(self.matches[mid])}
        combos |= {c for m in out.proposed() if m.get("offer_id") for c in match_combos(m)}
        self._check_duplications(out, combos, now)

    def _apply_expert(self, out, expert, now):
        old_matches = [self.matches[mid] for mid in sorted(self.expert_matches.get(expert["expert_id"], ()))]
        old = self.experts.get(expert["expert_id"])
        self._put_expert(expert)
        if old is not None and old["vetting_status"] in MATCHABLE_EXPERT:
            self._note_supply_loss([(int(a), g) for a in old["expertise"] for g in expert_groups(old)], now)
        out.entity("experts", expert)
        reason = (f"expert {expert['vetting_status']}" if expert["vetting_status"] not in MATCHABLE_EXPERT
                  else "expert changed")
        touched = []
        for match in old_matches:
            need = self.needs.get(match["need_id"])
            result = self.score_expert(need, expert) if need is not None else None
            if result is None:
                self._release(out, match, reason, expert["vetting_status"] not in MATCHABLE_EXPERT, now)
                touched.append(match["need_id"])
            elif match["match_id"] in self.matches:
                self._rescore(out, match, result, need, now)
        for need_id in sorted(set(touched)):
            self._rematch_need(out, self.needs[need_id], now)
        if expert["vetting_status"] in MATCHABLE_EXPERT:
            self._expert_into_needs(out, expert, now)

    def _apply_workshop(self, out, workshop, kind, now):
        old = self.workshops.get(workshop["request_id"], {})
        self.workshops[workshop["request_id"]] = {**old, **workshop}
        out.entity("workshops", self.workshops[workshop["request_id"]])
        if (kind == "workshop.requested" and workshop["kind"] in ("regional_workshop", "national_workshop")
                and workshop["request_id"] not in self.proposals):
            self.proposals.add(workshop["request_id"])
            out.proposal(workshop["request_id"], self.propose_participants(workshop))

    # -- workshops ---------------------------------------------------------------

    def propose_participants(self, workshop):
        """States that completed a gap analysis, States about to, and donors whose offers reach them and
        cover the workshop's articles. A workshop of a network is for its members only; a regional one
        for its group; a national one for its State (donors: those reaching its group)."""
        group = workshop["regional_group"]
        if workshop["kind"] == "regional_workshop" and workshop.get("network_id"):
            candidates = set(workshop["network_states"]) | ({workshop["state"]} if workshop.get("state") else set())
            region_states = candidates
        elif workshop["kind"] == "regional_workshop" and group:
            candidates = region_states = set(reference.states_in_group(group))
        else:
            candidates = set(workshop["states"]) | ({workshop["state"]} if workshop.get("state") else set())
            region_states = set(reference.states_in_group(group)) if group else candidates
        starting = self._states_starting_a_self_assessment() | (set(workshop["states"]) & candidates)
        completed, upcoming = [], []
        for state in sorted(candidates):
            filed = [self.needs[n] for n in self.needs_by_state.get(state, ())]
            if any(n.get("checklist_round") for n in filed):
                completed.append(state)
            elif filed or state in starting:
                upcoming.append(state)
        articles = set(workshop["articles"])
        region_groups = {reference.regional_group_of(s) for s in region_states if reference.is_known_state(s)}
        donors = sorted({o["provider"] for o in self.offers.values()
                         if o["status"] in MATCHABLE_OFFER and _reaches(o, region_states, region_groups)
                         and (not articles or articles & offer_articles(o))})
        return {"request_id": workshop["request_id"], "regional_group": group,
                "states_completed": completed, "states_upcoming": upcoming, "donors": donors}

    def _states_starting_a_self_assessment(self):
        """States that asked for help completing the checklist (or accepted it when offered) and are still
        being helped."""
        return {w["state"] for w in self.workshops.values()
                if w.get("kind") == "checklist_assistance" and w.get("state")
                and w.get("status") not in ("declined", "cancelled", "held", "offered")}

    # -- gaps ------------------------------------------------------------------

    def sweep(self, now):
        """Gaps due at ``now`` (an aware datetime or ISO string), each emitted once."""
        out = Outcome()
        now_dt = parse_time(now) if isinstance(now, str) else now
        cutoff = now_dt - timedelta(seconds=self.settings.gap_after_seconds)
        stamp = now_dt.isoformat()
        for need_id in sorted(self.unmatched_p1):
            need = self.needs[need_id]
            if not self._is_unmatched_p1(need):
                continue
            since = need.get("unmatched_since") or need["created_at"]
            if parse_time(since) > cutoff:
                continue
            gap_id = stable_id("gap", "unmatched", need_id, since)
            if gap_id in self.alerts:
                continue
            self.alerts.add(gap_id)
            data = {"gap_id": gap_id, "kind": "unmatched_priority_need", "need_id": need_id,
                    "state": need["state"], "article": need["article"],
                    "regional_group": need["regional_group"], "since": since}
            out.alert(gap_id, "gap", "gap.detected", data, stamp, need.get("cause"))
            self.alert_book.add(gap_id, {**data, "alert": "gap"})
        for (article, group), need_ids in sorted(self.open_by_group.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if not need_ids or self.supply.get((article, group), 0) > 0 or self.alert_book.no_supply.get(
                    (article, group)):
                continue
            oldest = min((self.needs[n] for n in need_ids), key=lambda n: (n["opened_at"], n["need_id"]))
            since = max((oldest["opened_at"], self.supply_lost_at.get((article, group)) or oldest["opened_at"]),
                        key=parse_time)
            if parse_time(since) > cutoff or since in self.alert_book.no_supply_since.get((article, group), ()):
                continue
            gap_id = stable_id("gap", "no_supply", article, group)
            if gap_id in self.alerts:  # the article × group had a gap that was closed: this one is new
                gap_id = stable_id("gap", "no_supply", article, group, since)
                if gap_id in self.alerts:
                    continue
            self.alerts.add(gap_id)
            data = {"gap_id": gap_id, "kind": "no_supply", "need_id": None, "state": None,
                    "article": article, "regional_group": group, "since": since}
            out.alert(gap_id, "gap", "gap.detected", data, stamp, oldest.get("cause"))
            self.alert_book.add(gap_id, {**data, "alert": "gap"})
        return out


def _stale(old, new):
    """An event older than what the model holds (a late retry) changes nothing."""
    if not old or not old.get("updated_at") or not new.get("updated_at"):
        return False
    try:
        return parse_time(new["updated_at"]) < parse_time(old["updated_at"])
    except ValueError:
        return False


def _reaches(offer, region_states, region_groups):
    """Does the offer reach any of these States (named, through their regional groups, or unscoped)?"""
    if not offer["scope_states"] and not offer["scope_groups"]:
        return True
    return bool(region_states & set(offer["scope_states"])) or bool(region_groups & set(offer["scope_groups"]))


class Outcome:
    """What one event did: documents to store and the events each carries.

    ``docs`` holds every document with its fields merged and its events (for the replay and the
    tests); a match's writes are also kept in order with the stored statuses each may apply to,
    and the steps people took (``writes``: match id -> [Write | Stepped]), for the store."""

    def __init__(self):
        self.entities = {}   # (collection, id) -> document
        self.docs = {}       # (collection, id) -> [document fields, [(type, data, cause)]]
        self.writes = {}     # match_id -> [Write | Stepped] in order
        self.steps = []      # [(alert id, changes, (type, data, cause))]: stored only while the alert is unresolved

    def entity(self, kind, document):
        key_field = {"needs": "need_id", "offers": "offer_id", "experts": "expert_id",
                     "workshops": "request_id"}[kind]
        self.entities[(kind, document[key_field])] = document

    def _doc(self, collection, doc_id, document, event):
        slot = self.docs.setdefault((collection, doc_id), [{}, []])
        slot[0] = {**slot[0], **document}
        if event is not None:
            slot[1].append(event)

    def match(self, fields, allowed, event_type, data):
        """Set ``fields`` on the match ``fields["match_id"]`` if its stored status is in ``allowed``, emitting
        ``event_type`` (None: a quiet write)."""
        event = (event_type, data, None) if event_type else None
        self._doc("matches", fields["match_id"], fields, event)
        self.writes.setdefault(fields["match_id"], []).append(Write(fields, frozenset(allowed), event))

    def stepped(self, match_id, status):
        self.writes.setdefault(match_id, []).append(Stepped(status))

    def alert(self, alert_id, kind, event_type, data, now, cause=None):
        self._doc("alerts", alert_id, {**data, "alert": kind, "detected_at": now, "status": "open"},
                  (event_type, data, cause))

    def alert_step(self, alert_id, changes, event_type, data, cause=None):
        """Matching closes an alert: a guarded change (see :mod:`services.matching.alert_rules`)."""
        self.steps.append((alert_id, changes, (event_type, data, cause)))

    def proposal(self, request_id, data):
        self._doc("proposals", request_id, dict(data), ("workshop.participants_proposed", data, None))

    def events(self):
        return [event for _, events in self.docs.values() for event in events] + [e for _, _, e in self.steps]

    def proposed(self):
        return [doc for (collection, _), (doc, events) in self.docs.items()
                if collection == "matches" and doc.get("status") == "proposed"]

    def __bool__(self):
        return bool(self.entities or self.docs or self.writes or self.steps)
