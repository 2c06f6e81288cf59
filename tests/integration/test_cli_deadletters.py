"""`tacoord deadletters`: list, show and replay messages the needs service parked."""
import json
import uuid

from click.testing import CliRunner
from kombu import Connection, Producer

from services.cli import main
from services.needs.service import NeedsService
from tacoord import envelope, topology
from tacoord.testing import wait_until

DLQ = topology.DEAD_LETTERS_QUEUE
KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform", "checklist_round": "2026-1"}


def cli(sandbox, *args):
    return CliRunner().invoke(main, ["--vhost", sandbox.vhost, "--db-prefix", sandbox.prefix, *args])


def dead_letters(sandbox):
    result = cli(sandbox, "deadletters", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def parked(sandbox, count):
    wait_until(lambda: sandbox.queue_depth(DLQ) == count, message=f"{count} dead letter(s)")
    return dead_letters(sandbox)["dead_letters"]


def test_listing_and_showing_dead_letters_leaves_them_in_place_and_in_order(sandbox, start):
    start(NeedsService)
    sent = [sandbox.publish("need.submitted", {**KENYA_NEED, "article": article}) for article in (1, 2, 99)]

    first = parked(sandbox, 3)
    again = dead_letters(sandbox)

    assert again["depth"] == 3
    assert [d["id"] for d in again["dead_letters"]] == [d["id"] for d in first]
    assert [d["body"]["id"] for d in first] == [event["id"] for event in sent]
    letter = first[1]
    assert letter["queue"] == "needs.ingress" and letter["kind"] == "invalid"
    assert (letter["exchange"], letter["routing_key"], letter["type"]) == \
        ("tacoord.ingress", "need.submitted", "need.submitted")
    assert "data.article" in letter["reason"]

    shown = cli(sandbox, "deadletters", "show", letter["id"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["body"]["data"]["article"] == 2
    table = cli(sandbox, "deadletters", "list")
    assert table.stdout.startswith("3 dead letter(s) in tacoord.dead-letters")
    assert letter["id"] in table.stdout
    assert sandbox.queue_depth(DLQ) == 3


def test_replaying_a_corrected_message_files_the_need_and_removes_the_dead_letter(sandbox, start, tmp_path):
    start(NeedsService)
    sandbox.publish("need.submitted", {**KENYA_NEED, "article": 99})
    [letter] = parked(sandbox, 1)

    as_it_was = cli(sandbox, "deadletters", "replay", letter["id"])
    assert as_it_was.exit_code == 0, as_it_was.output
    [again] = parked(sandbox, 1)
    assert again["id"] != letter["id"] and again["body"]["id"] == letter["body"]["id"]
    assert sandbox.db("needs").needs.count_documents({}) == 0

    corrected = tmp_path / "corrected.json"
    corrected.write_text(json.dumps({**again["body"], "data": {**again["body"]["data"], "article": 9}}))
    replayed = cli(sandbox, "deadletters", "replay", again["id"], "--body", str(corrected))
    assert replayed.exit_code == 0, replayed.output
    assert "with the corrected body" in replayed.stdout

    need = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN", "article": 9}),
                      message="the corrected need stored")
    assert need["status"] == "open"
    assert sandbox.queue_depth(DLQ) == 0


def test_replay_all_republishes_a_message_parked_for_a_missing_user_id(sandbox, start):
    start(NeedsService)
    event = envelope.new_event("need.submitted", KENYA_NEED, "test")
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection).publish(json.dumps(event), exchange=topology.EXCHANGES[topology.INGRESS],
                                     routing_key="need.submitted", content_type="application/json",
                                     delivery_mode=2)  # no user_id: the consumer refuses it
    [letter] = parked(sandbox, 1)
    assert "user_id" in letter["reason"]

    replayed = cli(sandbox, "deadletters", "replay", "--all")
    assert replayed.exit_code == 0, replayed.output
    assert "1 dead letter(s) replayed" in replayed.stdout

    wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="need stored")
    assert sandbox.queue_depth(DLQ) == 0


def test_dead_letter_mistakes_end_with_one_clear_line_and_a_non_zero_exit(sandbox):
    unknown = str(uuid.uuid4())
    for args in (("show", unknown), ("replay", unknown)):
        result = cli(sandbox, "deadletters", *args)
        assert result.exit_code == 1
        assert f"Error: no dead letter '{unknown}' in tacoord.dead-letters" in result.output

    both = cli(sandbox, "deadletters", "replay", unknown, "--all")
    assert both.exit_code == 2 and "give either one DEAD_LETTER_ID or --all" in both.output

    no_vhost = CliRunner().invoke(main, ["--vhost", "no-such-vhost", "deadletters", "list"])
    assert no_vhost.exit_code == 1 and "cannot reach the broker" in no_vhost.output
    assert "Traceback" not in no_vhost.output

    purged = cli(sandbox, "deadletters", "purge", "--yes")
    assert purged.exit_code == 0 and "purged 0 dead letter(s)" in purged.stdout
