"""Structured logs: one JSON object per line, carrying the ids of what is being handled.

    logs.setup("needs")                       # tacoord.run.run does this in every service process
    with logs.bound(**logs.event_fields(event)):
        log.warning("could not …")           # the line carries the event's ids

Every line has ``time`` (UTC, ISO 8601), ``level``, ``service``, ``logger`` and ``message``,
then the fields bound where it was logged: ``event_id``, ``event_type``, ``correlation_id``,
``causation_id`` and ``actor`` while a consumer settles or handles an event (a batch: each
event while :func:`tacoord.consumer.apply_each` applies it), ``request_id``, ``method``,
``route``, ``role`` and ``actor`` while ``@api`` serves a request; ``status``, ``reason``,
``queue`` where a line gives them; ``exc_info`` (the traceback) for a bug only.

The bound fields live in a context variable: every eventlet green thread (each nameko
worker) has its own context, so a worker's fields never leak into another's.
"""
import contextvars
import logging
import sys
from contextlib import contextmanager
from datetime import datetime, timezone

from pythonjsonlogger.json import JsonFormatter

LEVEL_KEY = "TACOORD_LOG_LEVEL"
_CONTEXT = contextvars.ContextVar("tacoord_log_fields", default={})


def current():
    """The fields bound in this green thread (a copy)."""
    return dict(_CONTEXT.get())


@contextmanager
def bound(**fields):
    """Bind ``fields`` (``None`` values skipped) to every line logged inside, in this green thread."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def event_fields(event):
    """The log fields of an envelope (``{}`` for anything else)."""
    if not isinstance(event, dict):
        return {}
    fields = {"event_id": event.get("id"), "event_type": event.get("type"),
              "correlation_id": event.get("correlation_id"), "causation_id": event.get("causation_id"),
              "actor": event.get("actor")}
    return {k: v for k, v in fields.items() if isinstance(v, str)}


class ContextFilter(logging.Filter):
    """Puts the service name and the bound fields on each record (explicit ``extra`` wins)."""

    def __init__(self, service):
        super().__init__()
        self.service = service

    def filter(self, record):
        record.service = self.service
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class Formatter(JsonFormatter):
    """python-json-logger's formatter with tacoord's field names and UTC ISO 8601 times."""

    def __init__(self):
        super().__init__("%(levelname)s %(service)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"}, timestamp=False)

    def add_fields(self, log_data, record, message_dict):
        log_data["time"] = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


def setup(service, level=None, stream=None):
    """Log JSON lines for ``service`` on ``stream`` (stderr) from the root logger, at ``level``
    (``TACOORD_LOG_LEVEL``, default INFO); replaces any handler already there."""
    import os
    level = level or os.environ.get(LEVEL_KEY) or "INFO"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(Formatter())
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def read(paths, **match):
    """The JSON lines of the log files ``paths`` whose fields equal ``match`` (any other line,
    e.g. a service's start-up banner, is skipped), file by file."""
    import json
    found = []
    for path in paths:
        try:
            lines = open(path, encoding="utf-8", errors="replace")
        except OSError:
            continue
        with lines:
            for line in lines:
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and all(entry.get(k) == v for k, v in match.items()):
                    found.append(entry)
    return found
