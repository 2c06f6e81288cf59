"""Moving a queue to new arguments, keeping its messages and its bindings.

RabbitMQ fixes a queue's arguments when the queue is made: declaring it again with
others (``x-queue-type: quorum`` on a classic queue, matching's
``x-single-active-consumer``) fails with 406 PRECONDITION_FAILED. To move it:

1. a holding queue ``<queue>.upgrade`` is declared with the queue's bindings, so what is
   published meanwhile reaches it;
2. the queue's messages are moved into it (taken, republished confirmed, then acked);
3. the queue, now empty and without consumers, is deleted and declared anew;
4. the holding queue's messages are moved back, it is unbound and deleted.

A message published during the move can arrive twice (in the old queue and in the
holding queue): consumers skip copies by event id. Nobody may consume the queue
meanwhile (:class:`QueueInUse` otherwise): stop its service first.

Ingress messages carry their partner in ``user_id``, which RabbitMQ lets only that
partner set; a moved message carries it in ``headers.PARTNER`` instead, and is moved
through ``tacoord.requeue``, the only exchange through which the consumer believes
that header (as for a message coming back from its retry queue).
"""
import logging

from amqp import Message
from kombu import Queue, binding

from tacoord import headers

log = logging.getLogger(__name__)

HOLDING_SUFFIX = ".upgrade"


class QueueInUse(RuntimeError):
    """The queue to move has consumers."""


def holding_name(name):
    return name + HOLDING_SUFFIX


def consumers_of(connection, name):
    with connection.channel() as channel:
        return channel.queue_declare(name, passive=True).consumer_count


def move(connection, target, requeue_exchange=None, arguments=None):
    """Give the existing queue ``target.name`` the arguments of ``target`` (a kombu ``Queue``, with
    its bindings). ``requeue_exchange``: the messages travel through this exchange (bound to the
    holding queue under its own name), so their partner header stays believed. ``arguments``:
    the holding queue's (its type). Returns how many messages were moved."""
    name = target.name
    if consumers_of(connection, name):
        raise QueueInUse(f"queue {name} has consumers: stop its service, then declare the topology again "
                         f"(tacoord stack up) to move it to its new arguments")
    through = requeue_exchange.name if requeue_exchange is not None else ""
    extra = [binding(requeue_exchange, routing_key=holding_name(name))] if requeue_exchange is not None else []
    holding = Queue(holding_name(name), durable=True, queue_arguments=arguments,
                    bindings=list(target.bindings) + extra)
    with connection.channel() as channel:
        holding.bind(channel).declare()
    moved = 0
    while True:
        moved += _move_messages(connection, name, through, holding.name)  # bound under its name there
        if _deleted_if_empty(connection, name):
            break
    with connection.channel() as channel:
        target.bind(channel).declare()
    for kept in target.bindings:   # from now on new messages reach only the queue itself
        with connection.channel() as channel:
            channel.queue_unbind(holding.name, kept.exchange.name, kept.routing_key or "")
    while True:
        _move_messages(connection, holding.name, through, name)
        if _deleted_if_empty(connection, holding.name):
            break
    log.warning("queue %s moved to its new arguments (%d message(s) kept)", name, moved)
    return moved


def _deleted_if_empty(connection, name):
    """Delete ``name`` if it is empty (checked first: quorum queues refuse ``if-unused``). Safe here:
    what reaches the old queue reaches the holding queue too, and the holding queue is unbound
    before it is deleted."""
    with connection.channel() as channel:
        if channel.queue_declare(name, passive=True).message_count:
            return False   # a message arrived after the last move: move again
        channel.queue_delete(name)
    return True


def _partner(message, trusted_exchange):
    """The partner a message is from, as the consumer would believe it (tacoord.consumer)."""
    return message.properties.get("user_id") or (
        (message.properties.get("application_headers") or {}).get(headers.PARTNER)
        if message.delivery_info.get("exchange") == trusted_exchange else None)


def _move_messages(connection, source, exchange, routing_key):
    """Take every message of ``source`` and republish it (persistent, confirmed) to ``exchange``
    with ``routing_key``, then ack it. Through the requeue exchange (``exchange`` not the default),
    the partner goes in the header the consumer believes only from there; else the headers are
    kept as they are (a retry queue's messages come back through it by themselves). Returns how many."""
    moved = 0
    with connection.channel() as out, connection.channel() as channel:
        while True:
            message = channel.basic_get(source, no_ack=False)
            if message is None:
                return moved
            properties = {k: v for k, v in message.properties.items() if k != "user_id"}
            if exchange:
                kept = {k: v for k, v in (properties.get("application_headers") or {}).items()
                        if k != headers.PARTNER}
                partner = _partner(message, exchange)
                if partner:
                    kept[headers.PARTNER] = partner
                properties["application_headers"] = kept
            properties["delivery_mode"] = 2
            out.basic_publish_confirm(Message(message.body, **properties), exchange=exchange,
                                      routing_key=routing_key)
            channel.basic_ack(message.delivery_tag)
            moved += 1
