"""What happens to one match: proposed, re-scored, retracted or withdrawn by the rules, moved by people (pure).

:class:`Commitments` is the :class:`~services.matching.read_model.ReadModel`
with the operations on a single match that the rules
(:class:`services.matching.domain.Matcher`) build on: each changes the model
and records in the :class:`~services.matching.domain.Outcome` the fields to
store, the stored statuses the write may apply to
(:mod:`services.matching.match_writes`) and the event it emits. A match a
person has agreed to stays when its pair changes, and is withdrawn (not
dropped) when its need or supply is withdrawn; proposals use no capacity,
commitments do, so a commitment coming or going re-scores the offer's other
matches. The lifecycle itself is :mod:`services.matching.lifecycle`.
"""
from services.matching.lifecycle import (COMMITTED, HELD, MATCH_FIELDS, REFUSED, RETRACTABLE, SUPERSEDABLE,
                                         WITHDRAWABLE, step_changes)
from services.matching.match_writes import NO_DOCUMENT
from services.matching.read_model import ReadModel, match_id
from services.matching.scoring import MATCHABLE_EXPERT, MATCHABLE_OFFER, OPEN_NEED

PROPOSABLE_FROM = frozenset({NO_DOCUMENT, "retracted", "withdrawn"})  # stored statuses a proposal may replace
RESCORED = ("score", "priority", "forms")   # a change of one of them is a match.rescored


def pair_of(match):
    """What names a match in the events about it."""
    key = "offer_id" if match.get("offer_id") else "expert_id"
    return {"match_id": match["match_id"], "need_id": match["need_id"], key: match[key]}


def about(match):
    """Who and where, for the consumers that tell the two sides (notify)."""
    return {k: match.get(k) for k in ("provider", "state", "regional_group", "article")}


def worst_proposal(matches):
    """The lowest-scored match still only proposed (None: every one is taken further: none is superseded)."""
    proposals = [m for m in matches if m["status"] in SUPERSEDABLE]
    return min(proposals, key=lambda m: (m["score"], m["match_id"])) if proposals else None


class Commitments(ReadModel):
    """The read model with the operations on one match (see the module's docstring)."""

    def _match(self, need, result, offer=None, expert=None):
        score, explanation, common = result
        match = {
            "match_id": match_id(need["need_id"], offer and offer["offer_id"], expert and expert["expert_id"]),
            "need_id": need["need_id"], "provider": offer["provider"] if offer else None,
            "state": need["state"], "regional_group": need["regional_group"], "article": need["article"],
            "chapter": need["chapter"], "forms": common, "priority": need["priority"],
            "level": offer["level"] if offer else "expert", "score": score, "explanation": explanation,
        }
        if offer:
            match["offer_id"] = offer["offer_id"]
        else:
            match["expert_id"] = expert["expert_id"]
        return match

    def _propose(self, out, match, now):
        if match["match_id"] in self.matches or match["match_id"] in self.refused:
            return
        stored = {**match, "status": "proposed", "proposed_at": now, "retracted_at": None, "withdrawn_at": None,
                  "reason": None, "steps": []}
        self._add_match(stored)
        out.match(stored, PROPOSABLE_FROM, "match.proposed", dict(match))

    def _retract(self, out, match, reason, now):
        """A proposed or accepted match that no longer fits (or was superseded) is retracted."""
        if match["match_id"] not in self.matches:
            return
        self._drop_match(match)
        changes = {"status": "retracted", "retracted_at": now, "reason": reason}
        out.match({"match_id": match["match_id"], **changes}, {match["status"]}, "match.retracted",
                  {**pair_of(match), "reason": reason})
        self._note_unmatched(out, match, now)

    def _withdraw(self, out, match, reason, now):
        """An agreed match, or one in delivery, whose need or supply was withdrawn: kept as ``withdrawn``."""
        self._drop_match(match)
        changes = {"status": "withdrawn", "withdrawn_at": now, "reason": reason}
        out.match({"match_id": match["match_id"], **changes}, {match["status"]}, "match.withdrawn",
                  {**pair_of(match), **about(match), "previous_status": match["status"], "reason": reason})
        self._note_unmatched(out, match, now)
        if match.get("offer_id"):
            self._rescore_offer(out, match["offer_id"], now)

    def _release(self, out, match, reason, hard, now):
        """A match whose pair no longer fits: proposals and accepted ones are retracted; commitments are
        withdrawn only when the need or the supply was withdrawn (``hard``), else they stand; delivered
        ones always stand."""
        if match["status"] in RETRACTABLE:
            self._retract(out, match, reason, now)
        elif match["status"] in WITHDRAWABLE and hard:
            self._withdraw(out, match, reason, now)

    def _rescore(self, out, match, result, need, now):
        """Store a match's new score, priority and forms: ``match.rescored`` when one of them changed
        (a new explanation alone is stored quietly)."""
        score, explanation, common = result
        changes = {"score": score, "priority": need["priority"], "forms": common, "explanation": explanation}
        if all(match.get(k) == v for k, v in changes.items()):
            return
        event = None
        if any(match.get(k) != changes[k] for k in RESCORED):
            event = ("match.rescored", {**pair_of(match), **about(match), "status": match["status"], "score": score,
                                        "priority": need["priority"], "forms": common,
                                        "previous_score": match["score"], "previous_priority": match["priority"]})
            changes["updated_at"] = now   # a change people see (GET /changes); a new explanation alone is not
        if changes["forms"] != match["forms"]:
            self._drop_match(match)
            match.update(changes)
            self._add_match(match)
        else:
            match.update(changes)
        out.match({"match_id": match["match_id"], **changes}, HELD, *(event or (None, None)))

    def _rescore_offer(self, out, offer_id, now):
        """The offer's capacity left changed (a commitment came or went): its other matches' scores follow."""
        offer = self.offers.get(offer_id)
        for mid in sorted(self.offer_matches.get(offer_id, ())):
            match = self.matches[mid]
            need = self.needs.get(match["need_id"])
            if offer is None or need is None or match["status"] == "delivered":
                continue
            result = self.score_offer(need, offer)
            if result is not None:
                self._rescore(out, match, result, need, now)

    def _note_unmatched(self, out, match, now):
        need = self.needs.get(match["need_id"])
        if need is not None and self._is_unmatched_p1(need):
            self.unmatched_p1.add(need["need_id"])
            if need.get("unmatched_since") != now:
                need["unmatched_since"] = now
                out.entity("needs", need)

    # -- people's steps ----------------------------------------------------------

    def _take_step(self, out, data, now):
        """A person moved a match (the step is stored already): hold it at its new status, use or free its
        offer's capacity, and settle a match whose pair went meanwhile. Returns the need to refill (or
        None): the rules (``domain.Matcher``) refill it and settle duplication.

        A step on a match the model had let go of (its retraction missed the stored document because
        the person was quicker, see :mod:`services.matching.match_writes`) holds it again from the
        event, then settles it like any other."""
        mid, status = data["match_id"], data["status"]
        out.stepped(mid, status)
        match = self.matches.get(mid)
        if status in REFUSED:
            self.refused.add(mid)
            if match is None:
                return None
            self._drop_match(match)
            self._note_unmatched(out, match, now)
            if match["status"] in COMMITTED and match.get("offer_id"):
                self._rescore_offer(out, match["offer_id"], now)
            need = self.needs.get(match["need_id"])
            return need if need is not None and need["status"] in OPEN_NEED else None
        if status not in HELD:
            return None
        held = match is not None
        match = match if held else self._held_from_step(data)
        if match is None or (match["status"] == status and (match.get("steps") or [{}])[-1].get("at") == data["at"]):
            return None  # a pair the model never knew, or a step it holds already (loaded from the store)
        before = match["status"]
        if held:
            self._drop_match(match)
        match.update(step_changes(match, data))
        self._add_match(match)
        if match.get("offer_id") and (before in COMMITTED) != (status in COMMITTED):
            self._rescore_offer(out, match["offer_id"], now)
        return self._settle(out, match, now)

    def _held_from_step(self, data):
        need = self.needs.get(data["need_id"])
        kind = "offer" if data.get("offer_id") else "expert"
        supply = (self.offers if kind == "offer" else self.experts).get(data.get(f"{kind}_id"))
        if need is None or supply is None:
            return None
        result = (self.score_offer if kind == "offer" else self.score_expert)(need, supply)
        if result is not None:
            match = self._match(need, result, **{kind: supply})
        else:
            match = {k: data[k] for k in MATCH_FIELDS if k in data}
            match["explanation"] = {"constraints_met": [], "score_parts": {}}
        return {**match, "status": data["previous_status"], "reason": None, "steps": []}

    def _settle(self, out, match, now):
        """Release a match whose need or supply went (or no longer fits); returns its need when it is
        open and lost the match (to be refilled), else None."""
        need = self.needs.get(match["need_id"])
        if match.get("offer_id"):
            supply, scorer, usable = self.offers.get(match["offer_id"]), self.score_offer, MATCHABLE_OFFER
            supply_status = supply and supply["status"]
        else:
            supply, scorer, usable = self.experts.get(match["expert_id"]), self.score_expert, MATCHABLE_EXPERT
            supply_status = supply and supply["vetting_status"]
        if need is None or need["status"] not in OPEN_NEED:
            status = need["status"] if need else "withdrawn"
            self._release(out, match, f"need {status}", status == "withdrawn", now)
            return None
        if supply_status not in usable:
            self._release(out, match, f"{'offer' if match.get('offer_id') else 'expert'} {supply_status}", True, now)
        elif scorer(need, supply) is None:
            self._release(out, match, "no longer eligible", False, now)
        return need if match["match_id"] not in self.matches else None
