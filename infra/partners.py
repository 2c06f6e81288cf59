"""Broker users for partner systems, with least privilege (RabbitMQ management API).

    python -m infra.partners add acme SECRET      # prints what the partner may do
    python -m infra.partners grant-queue acme SUBSCRIPTION_ID   # may read notify's queue of that subscription
    python -m infra.partners remove acme

A partner user may only publish to ``tacoord.ingress``, only with the routing
keys of intake messages (topic permission), may declare and read nothing but
its own notification queue ``notify.sub.partner-<name>.*``, and every message
must carry ``user_id=<name>``: RabbitMQ refuses a publish whose ``user_id``
differs from the connection's user, so a partner cannot speak for another.
``grant-queue`` adds the queue of one AMQP notification subscription
(``notify.sub.<subscription_id>``, see services/notify/README.md) to what the
partner may read; read permissions are one regex, kept as alternatives.
"""
import re
import sys

from infra.definitions import any_of, management_api
from tacoord import config, topology

INGRESS_KEYS = r"^(need|offer|expert|workshop|checklist_assistance)\.[a-z_]+$"


def add_partner(name, password, vhost=None):
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}", name):
        raise SystemExit("partners: name must be 2-41 lowercase letters, digits or '-'")
    vhost = vhost or config.amqp_vhost()
    own_queue = any_of([_own_queue(name)])
    management_api("PUT", f"users/{name}", json={"password": password, "tags": ""})
    management_api("PUT", f"permissions/{vhost}/{name}",
                   json={"configure": own_queue, "write": rf"^{re.escape(topology.INGRESS)}$", "read": own_queue})
    management_api("PUT", f"topic-permissions/{vhost}/{name}",
                   json={"exchange": topology.INGRESS, "write": INGRESS_KEYS, "read": "^$"})
    return {"user": name, "vhost": vhost, "publish_to": topology.INGRESS, "routing_keys": INGRESS_KEYS,
            "user_id_property": name}


def _own_queue(name):
    return rf"notify\.sub\.partner-{re.escape(name)}(\..*)?"


def grant_queue(name, subscription_id, vhost=None):
    """Let partner ``name`` read notify's queue of AMQP subscription ``subscription_id``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", subscription_id):
        raise SystemExit("partners: a subscription id is letters, digits, '_' or '-' (as notify returned it)")
    vhost = vhost or config.amqp_vhost()
    current = management_api("GET", f"permissions/{vhost}/{name}")
    if current.status_code == 404:
        raise SystemExit(f"partners: no partner {name!r} in vhost {vhost!r} (add it first)")
    permissions = current.json()
    read = permissions["read"]
    granted = read[2:-2].split("|") if read.startswith("^(") and read.endswith(")$") else [_own_queue(name)]
    queue = re.escape(f"notify.sub.{subscription_id}")
    if queue not in granted:
        granted.append(queue)
    management_api("PUT", f"permissions/{vhost}/{name}",
                   json={"configure": permissions["configure"], "write": permissions["write"], "read": any_of(granted)})
    return {"user": name, "vhost": vhost, "may_read": f"notify.sub.{subscription_id}"}


def remove_partner(name):
    management_api("DELETE", f"users/{name}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "add":
        print(add_partner(argv[1], argv[2]))
    elif len(argv) == 3 and argv[0] == "grant-queue":
        print(grant_queue(argv[1], argv[2]))
    elif len(argv) == 2 and argv[0] == "remove":
        remove_partner(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
