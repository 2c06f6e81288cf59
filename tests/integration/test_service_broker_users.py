"""Each service's own broker user can do what its service needs, and nothing of another's.

The users and permissions are those of ``infra/definitions.py`` (applied by
``infra.stack up``), created here in the test's vhost through the management API.
"""
import importlib
import json
import re

import pytest
import requests
from amqp.exceptions import AccessRefused, PreconditionFailed
from kombu import Connection, Exchange, Producer

from infra.definitions import SERVICE_EMITS, apply_service_user, own_queues, service_permissions
from infra.partners import remove_partner
from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord import config, envelope, topology
from tacoord.testing import unique, wait_until

SERVICES = config.SERVICES
CLASSES = (AuditService, NeedsService, SupplyService, RequestsService, MatchingService, NotifyService)
KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1}
PASSWORD = "s3rvice"


@pytest.fixture
def service_users(sandbox):
    """{service: amqp uri} for one least-privilege user per service in the sandbox vhost."""
    users = {service: unique(f"svc-{service}-") for service in SERVICES}
    for service, user in users.items():
        apply_service_user(service, user, PASSWORD, sandbox.vhost)
    yield {service: config.amqp_uri(vhost=sandbox.vhost, user=user, password=PASSWORD)
           for service, user in users.items()}
    for user in users.values():
        remove_partner(user)  # deletes the broker user


def refused(uri, action):
    """True when the broker refuses ``action(channel)`` (403 closes the channel)."""
    try:
        with Connection(uri, transport_options={"confirm_publish": True}) as connection:
            action(connection.channel())
    except (AccessRefused, PreconditionFailed):
        return True
    return False


def publish(exchange, routing_key, **properties):
    def action(channel):
        Producer(channel).publish(json.dumps({"x": 1}), exchange=Exchange(exchange) if exchange else "",
                                  routing_key=routing_key, content_type="application/json", **properties)
    return action


def read(queue):
    return lambda channel: channel.basic_get(queue)


def other_queue(service):
    return next(spec.name for spec in topology.CONSUMER_QUEUES if not spec.name.startswith(service + "."))


def test_every_event_type_is_published_by_exactly_one_service():
    for service in SERVICES:
        if service != "audit":
            importlib.import_module(f"services.{service}.schemas")
    for event_type in envelope.registered_types(envelope.EVENTS):
        owners = [s for s, pattern in SERVICE_EMITS.items() if pattern and re.fullmatch(pattern, event_type)]
        assert len(owners) == 1, f"{event_type} may be published by {owners or 'no service'}"


def test_every_consumer_queue_belongs_to_exactly_one_service():
    for spec in topology.CONSUMER_QUEUES:
        assert [s for s in SERVICES if spec in own_queues(s)] == [spec.name.split(".")[0]]
    assert all(service_permissions(s)["configure"] for s in SERVICES)


def test_all_services_run_as_their_own_users_from_a_state_to_the_audit_log(sandbox, start, service_users):
    for cls in CLASSES:
        start(cls, AMQP_URI=service_users[cls.name])
    response = requests.post(sandbox.url("needs", "/needs"), json=KENYA_NEED, timeout=10,
                             headers=sandbox.headers("state", "KEN"))
    assert response.status_code == 201, response.text
    need_id = response.json()["need_id"]
    audited = wait_until(lambda: sandbox.db("audit").audit.find_one({"type": "need.submitted"}), message="audit")
    assert need_id in json.dumps(audited, default=str)
    # matching (its own user) consumed the event too
    wait_until(lambda: sandbox.queue_depth("matching.events") == 0 and
               sandbox.db("matching").list_collection_names(), message="matching consumed")
    # an invalid ingress message is parked on tacoord.dead by needs' user, then audited
    sandbox.publish("need.submitted", {**KENYA_NEED, "article": 99})
    wait_until(lambda: sandbox.db("audit").audit.find_one({"kind": "rejection"}), message="rejection audited")
    # notify's user declares a subscriber's queue on its own exchange
    created = requests.post(sandbox.url("notify", "/subscriptions"), json={"channel": "amqp"}, timeout=10,
                            headers=sandbox.headers("donor", "GB-GOV-1"))
    assert created.status_code == 201, created.text
    assert sandbox.queue_depth(created.json()["queue"]) == 0


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_user_can_retry_through_its_own_retry_queue_and_no_other(service_users, service):
    [spec, *_] = own_queues(service)
    assert not refused(service_users[service], publish(topology.RETRY, spec.retry_name))
    theirs = next(s for s in topology.CONSUMER_QUEUES if s not in own_queues(service))
    assert refused(service_users[service], publish(topology.RETRY, theirs.retry_name))
    # the default exchange would reach any queue by name: closed to every service
    assert refused(service_users[service], publish("", spec.retry_name))
    assert refused(service_users[service], publish("", theirs.retry_name))


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_user_may_publish_to_the_requeue_exchange(service_users, service):
    """Only the broker's own dead-lettering reaches tacoord.requeue, whose partner header is trusted."""
    assert refused(service_users[service], publish(topology.REQUEUE, topology.NEEDS_INGRESS.name))


def test_a_partner_header_sent_straight_to_a_queue_is_not_believed(sandbox, start, service_users):
    """Only the admin may reach a queue by name (the default exchange); even a message sent
    that way claiming a partner is refused by the consumer, not taken as the partner's."""
    start(NeedsService)
    event = envelope.new_event("need.submitted", KENYA_NEED, "test")
    forged = {"x-tacoord-user-id": "acme", "x-tacoord-attempt": 2}
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection.channel()).publish(json.dumps(event), exchange="",
                                               routing_key=topology.NEEDS_INGRESS.name, headers=forged,
                                               content_type="application/json", delivery_mode=2)
    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, message="forged message parked")
    [(_, headers)] = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert "user_id" in headers["x-tacoord-reason"]
    assert sandbox.db("needs").needs.count_documents({}) == 0


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_user_cannot_read_another_services_queue(service_users, service):
    assert refused(service_users[service], read(other_queue(service)))
    assert refused(service_users[service], read(topology.DEAD_LETTERS_QUEUE))
    assert not refused(service_users[service], read(own_queues(service)[0].name))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_user_cannot_declare_or_delete_another_services_queue(service_users, service):
    assert refused(service_users[service], lambda channel: channel.queue_delete(other_queue(service)))
    assert refused(service_users[service], lambda channel: channel.queue_declare("rogue", durable=True))
    assert refused(service_users[service], lambda channel: channel.exchange_delete(topology.EVENTS))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_user_cannot_publish_to_ingress_nor_as_a_partner(service_users, service):
    assert refused(service_users[service], publish(topology.INGRESS, "need.submitted"))
    assert refused(service_users[service], publish(topology.INGRESS, "need.submitted", user_id="acme"))
    assert refused(service_users[service], publish(topology.EVENTS, "match.proposed" if service != "matching"
                                                    else "need.submitted", user_id="acme"))


@pytest.mark.parametrize("service, own, foreign", [
    ("needs", "need.submitted", "offer.published"),
    ("supply", "offer.published", "need.withdrawn"),
    ("requests", "workshop.requested", "workshop.participants_proposed"),
    ("matching", "match.proposed", "workshop.approved"),
    ("notify", "notification.delivered", "match.proposed"),
    ("audit", None, "need.submitted"),
])
def test_a_service_user_publishes_only_its_own_event_types(service_users, service, own, foreign):
    if own:
        assert not refused(service_users[service], publish(topology.EVENTS, own))
    assert refused(service_users[service], publish(topology.EVENTS, foreign))


def test_stack_started_services_use_their_own_user_unless_amqp_uri_is_set(tmp_path, monkeypatch):
    from infra.definitions import service_passwords
    monkeypatch.setenv("TACOORD_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AMQP_URI", raising=False)
    passwords = service_passwords()
    assert service_passwords() == passwords                       # generated once, then kept
    assert (tmp_path / "amqp-service-users.json").stat().st_mode & 0o077 == 0
    uri = config.service_config("needs")[config.AMQP_URI_KEY]
    assert uri.startswith(f"pyamqp://tacoord-needs:{passwords['needs']}@")
    monkeypatch.setenv("AMQP_URI", "pyamqp://x:y@h:1/v")
    assert config.service_config("needs")[config.AMQP_URI_KEY] == "pyamqp://x:y@h:1/v"


def test_stack_definitions_create_every_service_user_with_its_permissions(tmp_path, monkeypatch):
    """infra.stack up applies the same table with rabbitmqctl (recorded here, not run)."""
    from types import SimpleNamespace

    from infra import definitions
    monkeypatch.setenv("TACOORD_STATE_DIR", str(tmp_path))
    calls = []

    def rabbitmqctl(*args, check=True):
        calls.append(args)
        return SimpleNamespace(stdout="tacoord\t[administrator]\n" if args[0] == "list_users" else "tacoord\n")
    definitions.apply(rabbitmqctl)
    for service in SERVICES:
        perms = service_permissions(service)
        user = definitions.service_user(service)
        assert ("add_user", user, definitions.service_passwords()[service]) in calls
        assert ("set_permissions", "-p", config.amqp_vhost(), user, perms["configure"], perms["write"], perms["read"]) in calls
        assert ("set_topic_permissions", "-p", config.amqp_vhost(), user, topology.EVENTS, *perms["topic"][topology.EVENTS]) \
            in calls


def test_broker_setup_over_the_network_gives_each_service_its_user_and_declares_the_topology(sandbox):
    # What Docker Compose's one-shot broker-setup runs. Users are global to the broker, so the
    # passwords given are the ones the local stack already uses: nothing else changes.
    import os
    import subprocess
    import sys

    from infra.definitions import service_passwords, service_user
    passwords = service_passwords()
    env = {**os.environ, "TACOORD_AMQP_VHOST": sandbox.vhost,
           **{f"TACOORD_AMQP_{s.upper()}_PASSWORD": pw for s, pw in passwords.items()}}
    env.pop("AMQP_URI", None)
    missing = subprocess.run([sys.executable, "-m", "infra.definitions", "broker-users"], capture_output=True,
                             text=True, env={k: v for k, v in env.items() if not k.endswith("_NEEDS_PASSWORD")},
                             cwd=config.PROJECT_ROOT, timeout=60)
    assert missing.returncode != 0 and "TACOORD_AMQP_NEEDS_PASSWORD" in missing.stderr

    done = subprocess.run([sys.executable, "-m", "infra.definitions", "broker-users"], capture_output=True,
                          text=True, env=env, cwd=config.PROJECT_ROOT, timeout=60)

    assert done.returncode == 0, done.stderr
    needs = config.amqp_uri(vhost=sandbox.vhost, user=service_user("needs"), password=passwords["needs"])
    with Connection(needs) as connection:  # the topology is there, declared by the admin
        Exchange(topology.EVENTS, type="topic", passive=True)(connection.default_channel).declare()
        connection.default_channel.queue_declare(topology.NEEDS_INGRESS.name, passive=True)
    assert refused(needs, lambda channel: channel.basic_get(topology.AUDIT_EVENTS.name))
