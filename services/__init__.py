"""tacoord's services, in one explicit list: the composition root.

The core (``tacoord/``) knows no service. What it needs from them — the
payload schemas of the events they accept and emit (registered with
``tacoord.envelope.register`` when their ``schemas`` module is imported) and
the class to run, its HTTP routes — comes from here, for processes that are not one service
(the command line ``services/cli.py``, which also adds the services'
command groups by name; ``services/run.py``; the partner client's users; the
tests). A service process registers its own by importing its modules.
"""
import importlib

SERVICES = ("needs", "supply", "matching", "notify", "requests", "audit")


def register_schemas():
    """Import every service's ``schemas`` module, so every event type is registered."""
    for name in SERVICES:
        importlib.import_module(f"services.{name}.schemas")


def service_class(name):
    """The nameko service class of one service."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.service").SERVICE


def http_apis():
    """``{service: (its HTTP routes, a line saying what it is)}``, for the OpenAPI document."""
    from tacoord.routes import routes_of, service_summary
    return {name: (routes_of(service_class(name)), service_summary(service_class(name))) for name in SERVICES}
