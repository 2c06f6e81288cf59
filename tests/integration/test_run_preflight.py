"""Bad configuration ends a service with one clear line, not a traceback loop."""
import os
import subprocess
import sys

import pytest

from tacoord import config
from tacoord.testing import free_port


def run_service(**env):
    result = subprocess.run([sys.executable, "-m", "services.run", "needs"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60, cwd=config.PROJECT_ROOT)
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("env, expected", [
    ({"AMQP_URI": f"pyamqp://tacoord:tacoord@127.0.0.1:{free_port()}/tacoord"}, "cannot reach the broker"),
    ({"AMQP_URI": f"pyamqp://tacoord:wrong@127.0.0.1:{config.amqp_port()}/tacoord"}, "refused the credentials"),
    # not waited for (TACOORD_DB_STARTUP_SECONDS=0): tests/integration/test_store_startup.py has the wait
    ({"MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/", "TACOORD_DB_STARTUP_SECONDS": "0"},
     "cannot reach the database"),
], ids=["unreachable broker", "wrong credentials", "missing database"])
def test_bad_configuration_ends_the_service_with_one_clear_line(stack, env, expected):
    code, lines = run_service(**env)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("needs: ") and expected in lines[0]


def test_a_queue_made_by_an_older_release_ends_the_service_with_one_line_naming_the_command(sandbox):
    from kombu import Connection

    from tacoord import topology
    with Connection(sandbox.amqp_uri) as connection, connection.channel() as channel:
        channel.queue_delete(topology.NEEDS_INGRESS.name)
        old = topology.kombu_queue(topology.NEEDS_INGRESS)
        old.queue_arguments = {"x-max-length": 1000}   # arguments this release does not declare
        old.bind(channel).declare()
    code, lines = run_service(AMQP_URI=sandbox.amqp_uri, TACOORD_DB_PREFIX=sandbox.prefix,
                              TACOORD_NEEDS_HTTP_PORT=str(free_port()), TACOORD_NEEDS_OPS_PORT=str(free_port()))
    assert code == 2
    assert lines[-1].startswith("needs: queue needs.ingress exists with other arguments") and \
        "tacoord stack up" in lines[-1]
