"""Dead letters over HTTP (audit's operator routes): list, show and replay, as `tacoord deadletters` does."""
import json

import requests
from kombu import Connection, Producer

from services.audit.service import AuditService
from services.needs.service import NeedsService
from tacoord import envelope, topology
from tacoord.testing import wait_until

DLQ = topology.DEAD_LETTERS_QUEUE
KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement"}


def park_one_without_user_id(sandbox):
    event = envelope.new_event("need.submitted", KENYA_NEED, "test")
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection).publish(json.dumps(event), exchange=topology.EXCHANGES[topology.INGRESS],
                                     routing_key="need.submitted", content_type="application/json",
                                     delivery_mode=2)  # no user_id: the consumer refuses it
    wait_until(lambda: sandbox.queue_depth(DLQ) == 1, message="one dead letter")
    return event


def test_an_operator_lists_shows_and_replays_a_dead_letter_over_http(sandbox, start):
    start(NeedsService, AuditService)
    event = park_one_without_user_id(sandbox)
    operator = sandbox.headers("operator")
    url = sandbox.url("audit", "/audit/dead-letters")

    listed = requests.get(url, headers=operator, timeout=10).json()
    assert listed["depth"] == 1 and len(listed["dead_letters"]) == 1
    [letter] = listed["dead_letters"]
    assert (letter["queue"], letter["type"]) == ("needs.ingress", "need.submitted") and "user_id" in letter["reason"]
    shown = requests.get(f"{url}/{letter['id']}", headers=operator, timeout=10).json()
    assert shown["body"]["id"] == event["id"] and shown["exchange"] == topology.INGRESS
    assert sandbox.queue_depth(DLQ) == 1                                   # reading leaves it there

    assert requests.get(f"{url}?limit=0", headers=operator, timeout=10).json()["fields"] == {
        "limit": ["limit is a whole number from 1 to 100"]}
    for path in (f"{url}/nope", f"{url}/nope/replay"):
        method = requests.post if path.endswith("replay") else requests.get
        missing = method(path, headers=operator, timeout=10)
        assert missing.status_code == 404 and "no dead letter 'nope'" in missing.json()["error"]
    assert requests.get(url, headers=sandbox.headers("donor", "GB-GOV-1"), timeout=10).status_code == 403

    replayed = requests.post(f"{url}/{letter['id']}/replay", headers=operator, timeout=10)
    assert replayed.status_code == 200 and replayed.json()["replayed"]["id"] == letter["id"], replayed.text
    wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="the replayed need stored")
    assert sandbox.queue_depth(DLQ) == 0
    assert requests.get(url, headers=operator, timeout=10).json() == {"depth": 0, "dead_letters": []}


def test_without_the_broker_rights_the_dead_letter_routes_say_which_setting_gives_them(sandbox, start):
    wrong = "pyamqp://nobody:wrong@" + sandbox.amqp_uri.split("@", 1)[1]
    start(AuditService, TACOORD_DEADLETTERS_AMQP_URI=wrong)
    refused = requests.get(sandbox.url("audit", "/audit/dead-letters"), headers=sandbox.headers("operator"),
                           timeout=30)
    assert refused.status_code == 503 and "TACOORD_DEADLETTERS_AMQP_URI" in refused.json()["error"], refused.text
