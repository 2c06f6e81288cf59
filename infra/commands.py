"""``tacoord stack``: the local stack's commands (added to the command line by ``services/cli.py``)."""
import sys

import click

from infra import stack as infra_stack

CLUSTER = click.option("--cluster", is_flag=True,
                       help="The three-node RabbitMQ cluster (quorum queues) and two instances of each "
                            "service (infra/cluster.py) instead of one node.")


@click.group()
def stack():
    """Start, stop and inspect the local stack (RabbitMQ, database, gateway, services) without Docker."""


def _stack_call(function, *args, cluster=False):
    try:
        if cluster:
            from infra import cluster as infra_cluster
            return infra_cluster.run(function, *args)
        return getattr(infra_stack, function)(*args)
    except infra_stack.StackError as exc:
        raise click.ClickException(str(exc.code).removeprefix("stack: "))


@stack.command("up")
@CLUSTER
def stack_up(cluster):
    """Start RabbitMQ, the database and the gateway, apply definitions and indexes (idempotent)."""
    _stack_call("up", cluster=cluster)


@stack.command("services")
@CLUSTER
def stack_services(cluster):
    """Start every service and wait until each is ready (after `stack up`)."""
    _stack_call("services" if cluster else "start_services", cluster=cluster)


@stack.command("down")
@CLUSTER
def stack_down(cluster):
    """Stop the gateway, the services, RabbitMQ and the database."""
    _stack_call("down", cluster=cluster)


@stack.command("status")
@CLUSTER
def stack_status(cluster):
    """Show what runs where; exit 1 when the broker (a node of the cluster) or the database is down."""
    code = _stack_call("status", cluster=cluster)
    if code:
        sys.exit(code)


@stack.command("node")
@click.argument("action", type=click.Choice(["stop", "start"]))
@click.argument("number", type=click.IntRange(1, 3))
def stack_node(action, number):
    """Stop or start one node of the cluster (it rejoins the cluster when started again)."""
    _stack_call(f"node-{action}", number, cluster=True)
