"""The composition roots (services/cli.py, services/run.py) wire the services into the core; the core alone knows none.

Each test runs a fresh interpreter: in this one, tests/conftest.py has already registered every schema.
"""
import subprocess
import sys

import services
from tacoord import config


def python(*args, code=None):
    command = [sys.executable, *(("-c", code) if code else args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=config.PROJECT_ROOT)


def test_the_core_alone_registers_no_service_and_says_so_where_it_needs_them():
    result = python(code="""
import pkgutil, sys, tacoord
for module in pkgutil.iter_modules(tacoord.__path__):
    __import__(f"tacoord.{module.name}")
from tacoord import asyncapi, envelope
from tacoord.partner import PartnerClient
outside = sorted(m for m in sys.modules if m.split(".")[0] in ("services", "infra"))
assert not outside, outside
assert envelope.registered_types(envelope.INGRESS) == {} and envelope.registered_types(envelope.EVENTS) == {}
for attempt in (asyncapi.build, lambda: PartnerClient("amqp://x:y@127.0.0.1:1/v").build("need.submitted", {})):
    try:
        attempt()
    except LookupError as exc:
        assert "services.register_schemas()" in str(exc), exc
    else:
        raise AssertionError("no error without registered schemas")
print("ok")
""")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_command_line_documents_every_service_in_the_asyncapi_document():
    result = python("-m", "services.cli", "asyncapi", "--check")
    assert result.returncode == 0 and "is up to date" in result.stdout, result.stdout + result.stderr


def test_the_command_line_has_the_groups_owned_by_infra_and_the_services():
    result = python("-m", "services.cli", "--help")
    commands = result.stdout.split("Commands:")[1].split()
    assert result.returncode == 0
    assert {"stack", "audit", "matching", "asyncapi", "deadletters", "credentials", "import"} <= set(commands)


def test_running_a_service_by_name_takes_one_of_the_list():
    result = python("-m", "services.run", "nosuch")
    assert result.returncode == 2
    assert result.stderr.strip() == f"usage: python -m services.run {{{','.join(services.SERVICES)}}}"
