"""Notify's pure rules: who hears about what, signatures, webhook targets, outcomes."""
import pytest

from services.notify import domain, messages
from tacoord.envelope import new_event

KENYA_MATCH = new_event("match.proposed", {
    "match_id": "m1", "need_id": "KEN-9-x", "offer_id": "o1", "provider": "GB-GOV-1", "state": "KEN",
    "regional_group": "AFRICAN", "article": 9, "chapter": 2, "forms": ["LEGAL_ADVICE"], "priority": 1,
    "level": "bilateral", "score": 0.8, "explanation": {"constraints_met": [], "score_parts": {}}}, "matching")


def sub(kind, subject, **filter_):
    return {"subscription_id": "s", "kind": kind, "subject": subject, "status": "active", "filter": filter_}


def african_states():
    return domain.builtin_networks()["AFRICAN"]["states"]


def test_a_donor_hears_about_matches_naming_it_and_not_about_other_donors_matches():
    assert domain.subscription_matches(sub("donor", "GB-GOV-1"), KENYA_MATCH)
    assert not domain.subscription_matches(sub("donor", "US-GOV-1"), KENYA_MATCH)


def test_a_donor_hears_about_events_naming_no_provider_when_its_filter_allows():
    gap = new_event("gap.detected", {"gap_id": "g", "kind": "no_supply", "state": "UGA", "article": 15,
                                     "regional_group": "AFRICAN", "since": "2026-01-01"}, "matching")
    assert domain.subscription_matches(sub("donor", "US-GOV-1", articles=[15]), gap)
    assert not domain.subscription_matches(sub("donor", "US-GOV-1", articles=[9]), gap)
    assert not domain.subscription_matches(sub("donor", "US-GOV-1", types=["match.*"]), gap)


def test_a_duplication_reaches_every_donor_it_names():
    dup = new_event("duplication.detected", {"duplication_id": "d", "state": "KEN", "article": 9, "form": "LEGAL_ADVICE",
                                             "providers": ["GB-GOV-1", "US-GOV-1"], "offer_ids": []}, "matching")
    assert domain.subscription_matches(sub("donor", "US-GOV-1"), dup)
    assert not domain.subscription_matches(sub("donor", "FR-GOV-1"), dup)


def test_a_network_hears_about_events_concerning_any_of_its_states():
    assert domain.subscription_matches(sub("network", "AFRICAN"), KENYA_MATCH, african_states())
    assert not domain.subscription_matches(sub("network", "WEOG"), KENYA_MATCH,
                                           domain.builtin_networks()["WEOG"]["states"])
    assert domain.subscription_matches(sub("network", "EAST_AFRICA"), KENYA_MATCH, ["KEN", "UGA"])
    assert not domain.subscription_matches(sub("network", "WEST_AFRICA"), KENYA_MATCH, ["NGA", "GHA"])


def test_a_network_hears_about_workshops_listing_its_states_or_naming_it():
    workshop = new_event("workshop.requested", {"request_id": "r", "state": "NGA", "states": ["NGA", "GHA"],
                                                "regional_group": "AFRICAN"}, "requests")
    assert domain.subscription_matches(sub("network", "WEST_AFRICA"), workshop, ["GHA"])
    named = new_event("workshop.approved", {"request_id": "r", "network_id": "SAHEL"}, "requests")
    assert domain.subscription_matches(sub("network", "SAHEL"), named, [])


def test_a_group_scoped_offer_reaches_networks_with_states_in_that_group():
    offer = new_event("offer.published", {"offer_id": "o", "provider": "GB-GOV-1", "scope_states": [],
                                          "scope_groups": ["AFRICAN"], "articles": [9]}, "supply")
    assert domain.subscription_matches(sub("network", "EAST_AFRICA"), offer, ["KEN"])
    assert domain.subscription_matches(sub("state", "KEN"), offer)
    assert not domain.subscription_matches(sub("state", "FRA"), offer)


def test_a_state_hears_only_about_itself():
    assert domain.subscription_matches(sub("state", "KEN"), KENYA_MATCH)
    assert not domain.subscription_matches(sub("state", "UGA"), KENYA_MATCH)


@pytest.mark.parametrize("filter_,expected", [
    ({"types": ["match.proposed"]}, True), ({"types": ["match.*"]}, True), ({"types": ["*"]}, True),
    ({"types": ["gap.*"]}, False), ({"articles": [9, 10]}, True), ({"articles": [10]}, False),
    ({"chapters": [2]}, True), ({"chapters": [3]}, False), ({"forms": ["LEGAL_ADVICE"]}, True),
    ({"forms": ["CAPACITY_BUILDING"]}, False), ({"priority": 1}, True), ({"states": ["UGA"]}, False),
    ({"regional_groups": ["AFRICAN"]}, True), ({"regional_groups": ["WEOG"]}, False),
])
def test_each_filter_dimension_narrows_what_a_subscription_hears(filter_, expected):
    assert domain.subscription_matches(sub("network", "AFRICAN", **filter_), KENYA_MATCH,
                                       african_states()) is expected


def test_a_priority_filter_keeps_needs_of_that_priority_or_higher():
    low = new_event("need.submitted", {"need_id": "n", "state": "KEN", "article": 9, "priority": 3}, "needs")
    assert not domain.subscription_matches(sub("state", "KEN", priority=2), low)
    assert domain.subscription_matches(sub("state", "KEN", priority=3), low)


def test_an_inactive_subscription_hears_nothing():
    assert not domain.subscription_matches({**sub("donor", "GB-GOV-1"), "status": "unsubscribed"}, KENYA_MATCH)


# -- signatures ------------------------------------------------------------------

def test_a_signature_verifies_with_the_right_secret_within_the_replay_window():
    body = b'{"hello": "world"}'
    header = domain.signature_header("whsec_1", body, 1_000_000)
    assert domain.verify_signature("whsec_1", header, body, now=1_000_000 + 299)
    assert domain.verify_signature("whsec_1", header, body.decode(), now=1_000_000 - 299)


@pytest.mark.parametrize("secret,body,now", [
    ("whsec_2", b'{"hello": "world"}', 1_000_000),        # wrong secret
    ("whsec_1", b'{"hello": "World"}', 1_000_000),        # tampered body
    ("whsec_1", b'{"hello": "world"}', 1_000_000 + 301),  # replayed too late
    ("whsec_1", b'{"hello": "world"}', 1_000_000 - 301),  # from the future
])
def test_a_signature_fails_for_another_secret_body_or_an_old_timestamp(secret, body, now):
    header = domain.signature_header("whsec_1", b'{"hello": "world"}', 1_000_000)
    assert not domain.verify_signature(secret, header, body, now=now)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1000000"])
def test_a_malformed_signature_header_never_verifies(header):
    assert not domain.verify_signature("whsec_1", header, b"{}", now=1_000_000)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac
    expected = hmac.new(b"k", b"42.{}", hashlib.sha256).hexdigest()
    assert domain.signature_header("k", b"{}", 42) == f"t=42,v1={expected}"


# -- webhook targets ---------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.5", "169.254.169.254",
                                     "224.0.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "240.0.0.1",
                                     "::ffff:127.0.0.1", "100.64.0.1"])
def test_webhooks_may_not_reach_internal_addresses(address):
    assert domain.address_problem(address) is not None


def test_webhooks_may_reach_public_addresses_and_allowed_ranges():
    assert domain.address_problem("93.184.216.34") is None
    assert domain.address_problem("127.0.0.1", domain.parse_allow("127.0.0.0/8, 10.0.0.0/8")) is None
    assert domain.address_problem("10.9.9.9", domain.parse_allow("127.0.0.0/8")) is not None


@pytest.mark.parametrize("url", ["ftp://example.org/x", "not a url", "http://", "http://user:pw@example.org/",
                                 "javascript:alert(1)", "http://example.org:99999/"])
def test_a_webhook_url_must_be_plain_http_or_https(url):
    with pytest.raises(domain.UnsafeTarget):
        domain.webhook_host(url)


def test_a_host_resolving_to_any_forbidden_address_is_refused():
    with pytest.raises(domain.UnsafeTarget, match="private"):
        domain.check_addresses("evil.example", ["93.184.216.34", "10.0.0.1"])


# -- outcomes and messages -----------------------------------------------------------

@pytest.mark.parametrize("status,outcome", [(200, "ok"), (204, "ok"), (301, "permanent"), (400, "permanent"),
                                            (404, "permanent"), (410, "permanent"), (429, "retry"),
                                            (500, "retry"), (503, "retry")])
def test_server_errors_and_429_are_retried_other_client_errors_are_final(status, outcome):
    assert domain.http_outcome(status) == outcome


def test_an_email_has_plain_and_escaped_html_parts_with_the_unsubscribe_link():
    event = {**KENYA_MATCH, "data": {**KENYA_MATCH["data"], "provider": "<script>"}}
    subject, text, html = messages.render_email(sub("network", "AFRICAN"), [event], "http://x/unsubscribe/t")
    assert subject.startswith("[tacoord] match.proposed: KEN")
    assert "http://x/unsubscribe/t" in text and 'href="http://x/unsubscribe/t"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_digest_is_due_once_per_period():
    assert domain.digest_due(None, 100, 86400)
    assert not domain.digest_due(100, 100 + 86399, 86400)
    assert domain.digest_due(100, 100 + 86400, 86400)


def test_an_outcome_event_id_is_the_same_each_time_and_differs_by_notification_and_status():
    import uuid
    first = domain.outcome_event_id("sub-1:evt-1", "delivered")
    assert first == domain.outcome_event_id("sub-1:evt-1", "delivered")
    assert uuid.UUID(first).version == 5
    assert len({first, domain.outcome_event_id("sub-1:evt-1", "failed"),
                domain.outcome_event_id("sub-2:evt-1", "delivered")}) == 3


def test_routing_sends_each_event_to_the_subscriptions_it_passes_and_queues_digests():
    donor = {"subscription_id": "s1", "kind": "donor", "subject": "GB-GOV-1", "filter": {}, "digest": False, "status": "active"}
    state = {"subscription_id": "s2", "kind": "state", "subject": "KEN", "filter": {}, "digest": True, "status": "active"}
    uganda = {"subscription_id": "s3", "kind": "state", "subject": "UGA", "filter": {}, "digest": False, "status": "active"}
    kenya = KENYA_MATCH
    other = new_event("match.proposed", {**KENYA_MATCH["data"], "provider": "US-GOV-1", "match_id": "m2"}, "matching")

    immediate, digest = domain.route([kenya, other], [donor, state, uganda], {})

    assert [(s["subscription_id"], e["id"]) for s, e in immediate] == [("s1", kenya["id"])]
    assert [(s["subscription_id"], e["id"]) for s, e in digest] == [("s2", kenya["id"]), ("s2", other["id"])]


def test_a_pending_delivery_is_in_flight_until_its_lease_is_over():
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    claimed = {"created_at": (now - timedelta(hours=1)).isoformat(), "claimed_at": (now - timedelta(seconds=30)).isoformat()}
    assert not domain.lease_over(claimed, now, 60)  # claimed (or taken over) 30 s ago: in flight
    assert domain.lease_over(claimed, now, 30)
    assert domain.lease_over({"created_at": (now - timedelta(seconds=90)).isoformat()}, now, 60)  # stored before leases
    assert not domain.lease_over({"claimed_at": "2026-12-01T11:59:30"}, now, 60)  # naive: UTC
    assert domain.lease_over({"claimed_at": "not a time"}, now, 60)  # at least once rather than never


# -- who hears of the steps people take ---------------------------------------------

ALERT_STEP = {"alert_id": "dup-1", "alert": "duplication", "duplication_id": "dup-1", "gap_kind": None,
              "state": "KEN", "regional_group": "AFRICAN", "article": 9, "form": "LEGAL_ADVICE",
              "providers": ["GB-GOV-1", "DE-BMZ-1"], "need_id": None, "status": "acknowledged",
              "actor": "donor:GB-GOV-1", "at": "2026-11-02T09:30:00+00:00", "note": "talking to BMZ",
              "reason": "talking to BMZ"}


def step(event_type, by, **data):
    """A match step as services/matching's lifecycle emits it (the pair, the step, who took it)."""
    return new_event(event_type, {**KENYA_MATCH["data"], "status": "accepted", "previous_status": "proposed",
                                  "reason": None, "by": by, "at": "2026-11-02T10:00:00+00:00", **data}, "matching")


def test_an_alert_step_reaches_the_other_providers_it_names_and_the_state_not_whoever_took_it():
    acknowledged = new_event("alert.acknowledged", ALERT_STEP, "matching", "donor:GB-GOV-1")
    assert not domain.subscription_matches(sub("donor", "GB-GOV-1"), acknowledged)   # its own step
    assert domain.subscription_matches(sub("donor", "DE-BMZ-1"), acknowledged)
    assert domain.subscription_matches(sub("state", "KEN"), acknowledged)
    assert not domain.subscription_matches(sub("donor", "US-GOV-1"), acknowledged)   # named by none
    assert domain.subscription_matches(sub("network", "AFRICAN"), acknowledged, african_states())
    by_matching = new_event("alert.resolved", {**ALERT_STEP, "status": "resolved", "actor": "service:matching",
                                               "resolution": "cause_gone", "automatic": True}, "matching")
    assert domain.subscription_matches(sub("donor", "GB-GOV-1"), by_matching)


def test_a_match_step_reaches_the_other_side_of_the_match():
    accepted = step("match.accepted", "donor:GB-GOV-1")
    assert domain.subscription_matches(sub("state", "KEN"), accepted)
    assert not domain.subscription_matches(sub("donor", "GB-GOV-1"), accepted)
    agreed = step("match.agreed", "state:KEN", status="agreed", previous_status="accepted")
    assert domain.subscription_matches(sub("donor", "GB-GOV-1"), agreed)
    assert not domain.subscription_matches(sub("state", "KEN"), agreed)
    assert not domain.subscription_matches(sub("donor", "US-GOV-1"), agreed)
    by_operator = step("match.cancelled", "operator:*", status="cancelled", reason="duplicate request")
    assert domain.subscription_matches(sub("donor", "GB-GOV-1"), by_operator)
    assert domain.subscription_matches(sub("state", "KEN"), by_operator)
    assert domain.subscription_matches(sub("network", "EAST_AFRICA", types=["match.*"]), by_operator, ["KEN"])


def test_a_match_naming_no_provider_is_no_donors_business_but_a_gap_is_every_donors():
    expert = new_event("match.proposed", {**KENYA_MATCH["data"], "provider": None, "offer_id": None,
                                          "expert_id": "exp-1", "level": "expert"}, "matching")
    assert not domain.subscription_matches(sub("donor", "US-GOV-1"), expert)
    assert domain.subscription_matches(sub("state", "KEN"), expert)
    gap = new_event("gap.detected", {"gap_id": "g", "kind": "no_supply", "state": "UGA", "article": 15,
                                     "regional_group": "AFRICAN", "since": "2026-01-01"}, "matching")
    assert domain.subscription_matches(sub("donor", "US-GOV-1"), gap)


def test_a_retracted_match_naming_only_ids_reaches_the_sides_its_proposal_named():
    retracted = new_event("match.retracted", {"match_id": "m1", "need_id": "KEN-9-x", "offer_id": "o1",
                                              "reason": "need withdrawn"}, "matching")
    assert not domain.subscription_matches(sub("state", "KEN"), retracted)   # nothing known of m1
    known = dict(domain.facts_of(KENYA_MATCH))
    assert known["match:m1"]["provider"] == "GB-GOV-1" and known["match:m1"]["state"] == "KEN"
    assert domain.fact_keys([retracted]) == ["match:m1", "offer:o1"]
    immediate, _ = domain.route([retracted], [sub("state", "KEN"), sub("donor", "GB-GOV-1"), sub("donor", "X-1")],
                                {}, known)
    assert [s["subject"] for s, _ in immediate] == ["KEN", "GB-GOV-1"]
    assert domain.completed(retracted, known)["data"]["reason"] == "need withdrawn"
    offer = new_event("offer.published", {"offer_id": "o1", "provider": "GB-GOV-1", "provider_name": "FCDO",
                                          "level": "bilateral", "scope_states": ["KEN"]}, "supply")
    assert domain.facts_of(offer) == [("offer:o1", {"provider": "GB-GOV-1", "provider_name": "FCDO",
                                                    "level": "bilateral"})]
    assert domain.completed(KENYA_MATCH, dict(domain.facts_of(offer)))["data"]["provider_name"] == "FCDO"


def test_a_resent_notification_has_outcome_event_ids_of_its_own():
    first = domain.outcome_event_id("sub-1:evt-1", "delivered")
    assert first == domain.outcome_event_id("sub-1:evt-1", "delivered", 0)
    assert len({first, domain.outcome_event_id("sub-1:evt-1", "delivered", 1),
                domain.outcome_event_id("sub-1:evt-1", "delivered", 2)}) == 3
