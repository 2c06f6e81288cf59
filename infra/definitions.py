"""RabbitMQ users, vhost and permissions, applied with rabbitmqctl (idempotent).

Exchanges and queues are not here: they are declared from ``tacoord.topology``
by whoever connects first, so there is one table of them.
"""
from tacoord import config


def apply(rabbitmqctl):
    vhost = config.amqp_vhost()
    user, password = config.amqp_admin()
    if vhost not in rabbitmqctl("list_vhosts", "--silent").stdout.split():
        rabbitmqctl("add_vhost", vhost)
    ensure_user(rabbitmqctl, user, password, tags=("administrator",))
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    rabbitmqctl("delete_user", "guest", check=False)


def ensure_user(rabbitmqctl, user, password, tags=()):
    existing = [line.split("\t")[0] for line in
                rabbitmqctl("list_users", "--silent").stdout.splitlines()]
    if user in existing:
        rabbitmqctl("change_password", user, password)
    else:
        rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_user_tags", user, *tags)
