"""RabbitMQ users, vhost and permissions, applied with rabbitmqctl (idempotent).

Exchanges and queues are not here: they are declared from ``tacoord.topology``
by whoever connects first, so there is one table of them.

Users:

- the admin user (``TACOORD_AMQP_ADMIN_USER``): everything; used by
  ``infra.stack up`` to declare the topology, by the operator's tools and by
  the tests' sandboxes;
- one user per service, ``tacoord-<service>``, with least privilege
  (:func:`service_permissions`): it configures only its own queues (and their
  retry queues), reads only them, binds them only to the exchanges they are
  bound to in the topology, and publishes only its own event types on
  ``tacoord.events`` (topic permission), dead letters on ``tacoord.dead`` and
  retries to its own retry queues only, through ``tacoord.retry`` (topic
  permission; no service may write the default exchange, which reaches any
  queue by name). A retried message's partner header is believed only when it
  comes back through ``tacoord.requeue``, which nobody but the admin may
  publish to. Passwords are generated once and kept
  in ``$TACOORD_STATE_DIR/amqp-service-users.json`` (mode 600), where
  ``tacoord.config.service_amqp_uri`` finds them for the services that
  ``infra.stack services`` starts;
- partner users: ``infra/partners.py``.
"""
import json
import os
import re
import secrets

import requests

from tacoord import config, topology

# The event types each service may publish on tacoord.events (topic permission).
# tests/integration/test_service_broker_users.py checks that every registered
# event type is owned by exactly one service.
SERVICE_EMITS = {
    "needs": r"need\.[a-z_]+|party\.corrected",
    "supply": r"(offer|expert)\.[a-z_]+",
    "requests": r"workshop\.(requested|under_review|approved|scheduled|held|declined|cancelled|joined|offered|"
                r"accepted)|network\.(registered|updated|retired)",
    "matching": r"(match|gap|duplication|alert)\.[a-z_]+|workshop\.participants_proposed",
    "notify": r"notification\.[a-z_]+",
    "audit": None,
}
NOTIFY_EXCHANGE = "tacoord.notify"   # services/notify: the direct exchange of subscribers' queues
NOTIFY_QUEUES = r"notify\.sub\.[A-Za-z0-9_.-]+"


def service_user(service):
    return f"tacoord-{service}"


def own_queues(service):
    """The consumer queue specs of ``service`` (named ``<service>.…`` in the topology)."""
    return [spec for spec in topology.CONSUMER_QUEUES if spec.name.startswith(f"{service}.")]


def any_of(names):
    return "^(" + "|".join(dict.fromkeys(names)) + ")$"   # each once, in order


def service_permissions(service):
    """{"configure", "write", "read", "topic": {exchange: (write, read)}} for a service's user."""
    specs = own_queues(service)
    queues = [re.escape(n) for spec in specs for n in (spec.name, spec.retry_name if spec.retry else None) if n]
    bound = sorted({spec.exchange for spec in specs})
    configure, write, read = list(queues), list(queues), list(queues)
    write.append(re.escape(topology.DEAD))                          # park
    read += [re.escape(name) for name in bound]                     # queue.bind needs read on the exchange
    retry_queues = [re.escape(spec.retry_name) for spec in specs if spec.retry]
    if retry_queues:
        read.append(re.escape(topology.REQUEUE))                    # bound to it; never written by anyone but the broker
        read.append(re.escape(topology.RETRY))                      # its retry queues are bound to it
        write.append(re.escape(topology.RETRY))                     # retry: only to its own, by topic permission
    if SERVICE_EMITS[service]:
        write.append(re.escape(topology.EVENTS))
    if service == "notify":   # declares subscribers' queues and publishes to them; reads none
        configure += [re.escape(NOTIFY_EXCHANGE), NOTIFY_QUEUES]
        write += [re.escape(NOTIFY_EXCHANGE), NOTIFY_QUEUES]
        read += [re.escape(NOTIFY_EXCHANGE)]
    own_retries = any_of(retry_queues) if retry_queues else "^$"
    topic = {topology.RETRY: (own_retries, own_retries)}  # publish to, and bind, its own retry queues
    for exchange in (topology.EVENTS, topology.INGRESS):
        keys = [re.escape(key) for spec in specs if spec.exchange == exchange for key in spec.routing_keys]
        emits = SERVICE_EMITS[service] if exchange == topology.EVENTS else None
        topic[exchange] = (f"^({emits})$" if emits else "^$", any_of(keys) if keys else "^$")
    return {"configure": any_of(configure), "write": any_of(write),
            "read": any_of(read), "topic": topic}


def service_passwords():
    """{service: password}, generated once and kept in the state directory."""
    path = config.service_users_file()
    stored = {}
    if path.exists():
        stored = {name: entry["password"] for name, entry in json.loads(path.read_text()).items()}
    # hex: a password starting with "-" would be read by rabbitmqctl as an option (token_urlsafe
    # produced one in ~9 % of fresh stacks); an older stored one like that is replaced
    passwords = {name: stored[name] if stored.get(name) and not stored[name].startswith("-")
                 else secrets.token_hex(24) for name in config.SERVICES}
    if passwords != stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({name: {"user": service_user(name), "password": pw}
                                    for name, pw in passwords.items()}, indent=1))
        os.chmod(path, 0o600)
    return passwords


def apply(rabbitmqctl):
    vhost = config.amqp_vhost()
    user, password = config.amqp_admin()
    if vhost not in rabbitmqctl("list_vhosts", "--silent").stdout.split():
        rabbitmqctl("add_vhost", vhost)
    ensure_user(rabbitmqctl, user, password, tags=("administrator",))
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    rabbitmqctl("delete_user", "guest", check=False)
    for service, service_password in service_passwords().items():
        name = service_user(service)
        ensure_user(rabbitmqctl, name, service_password)
        perms = service_permissions(service)
        rabbitmqctl("set_permissions", "-p", vhost, name, perms["configure"], perms["write"], perms["read"])
        for exchange, (write, read) in perms["topic"].items():
            rabbitmqctl("set_topic_permissions", "-p", vhost, name, exchange, write, read)


def apply_service_user(service, user, password, vhost):
    """The same user and permissions through the management API (tests, other vhosts)."""
    perms = service_permissions(service)
    management_api("PUT", f"users/{user}", json={"password": password, "tags": ""})
    management_api("PUT", f"permissions/{vhost}/{user}",
                   json={k: perms[k] for k in ("configure", "write", "read")})
    for exchange, (write, read) in perms["topic"].items():
        management_api("PUT", f"topic-permissions/{vhost}/{user}",
                       json={"exchange": exchange, "write": write, "read": read})


def management_api(method, path, **kwargs):
    """One call to RabbitMQ's management HTTP API as the admin; exits naming the call when it fails."""
    url = config.amqp_mgmt_url(path)
    response = requests.request(method, url, auth=config.amqp_admin(), timeout=10, **kwargs)
    if response.status_code >= 400 and not (method in ("DELETE", "GET") and response.status_code == 404):
        raise SystemExit(f"management API: {method} {path} failed: {response.status_code} {response.text}")
    return response


def ensure_user(rabbitmqctl, user, password, tags=()):
    existing = [line.split("\t")[0] for line in
                rabbitmqctl("list_users", "--silent").stdout.splitlines()]
    if user in existing:
        rabbitmqctl("change_password", user, password)
    else:
        rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_user_tags", user, *tags)


def apply_over_api(passwords=None):
    """Service users and the topology on a broker reached only over the network (Docker
    Compose's one-shot ``broker-setup``): users and permissions through the management API,
    exchanges and queues declared as the admin. Passwords: ``TACOORD_AMQP_<SERVICE>_PASSWORD``
    (every one required: a service must be able to log in with what it is given)."""
    vhost = config.amqp_vhost()
    if passwords is None:
        missing = [f"TACOORD_AMQP_{s.upper()}_PASSWORD" for s in config.SERVICES
                   if not os.environ.get(f"TACOORD_AMQP_{s.upper()}_PASSWORD")]
        if missing:
            raise SystemExit(f"broker-users: set {', '.join(missing)}")
        passwords = {s: os.environ[f"TACOORD_AMQP_{s.upper()}_PASSWORD"] for s in config.SERVICES}
    for service, password in passwords.items():
        apply_service_user(service, service_user(service), password, vhost)
    from kombu import Connection
    with Connection(config.amqp_uri(), connect_timeout=10) as connection:
        topology.declare_all(connection, upgrade=True)
    return sorted(service_user(s) for s in passwords)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m infra.definitions", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("broker-users", help="service users (passwords from TACOORD_AMQP_<SERVICE>_PASSWORD) "
                                             "and the topology, over the management API and AMQP")
    args = parser.parse_args(argv)
    if args.command == "broker-users":
        users = apply_over_api()
        print(f"broker-users: {', '.join(users)} set on vhost {config.amqp_vhost()} at {config.amqp_host()}; "
              "topology declared")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
