"""``tacoord stack``: the local stack's commands (added to the command line by ``services/cli.py``)."""
import sys

import click

from infra import stack as infra_stack


@click.group()
def stack():
    """Start, stop and inspect the local stack (RabbitMQ, database, gateway, services) without Docker."""


def _stack_call(function, *args):
    try:
        return getattr(infra_stack, function)(*args)
    except infra_stack.StackError as exc:
        raise click.ClickException(str(exc.code).removeprefix("stack: "))


@stack.command("up")
def stack_up():
    """Start RabbitMQ, the database and the gateway, apply definitions and indexes (idempotent)."""
    _stack_call("up")


@stack.command("services")
def stack_services():
    """Start every service and wait until each is ready (after `stack up`)."""
    _stack_call("start_services")


@stack.command("down")
def stack_down():
    """Stop the gateway, the services, RabbitMQ and the database."""
    _stack_call("down")


@stack.command("status")
def stack_status():
    """Show what runs where; exit 1 when the broker or the database is down."""
    code = _stack_call("status")
    if code:
        sys.exit(code)
