"""Run one nameko service class, after checking that its broker and database answer.

    from tacoord.run import run
    sys.exit(run(NeedsService))          # config: tacoord.config.service_config(NeedsService.name)

A wrong URI, wrong credentials or a stopped server end the process with one
line naming the problem (exit 2) instead of a reconnect loop of tracebacks; so
does a queue declared by an older release with other arguments.
Then the service logs JSON lines (:mod:`tacoord.logs`) and runs under nameko's runner
(SIGTERM stops it gracefully).
The caller monkey-patches eventlet before it imports anything else, as
``services/run.py`` does: that is the entry point that picks the class by
name (``python -m services.run needs``).
"""
import sys

from tacoord import config, logs


def preflight(cfg):
    """Return None when broker and database answer, else one line saying why."""
    from amqp.exceptions import AccessRefused, NotAllowed
    from kombu import Connection
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    from tacoord import store

    uri = cfg[config.AMQP_URI_KEY]
    try:
        with Connection(uri, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except AccessRefused:
        return f"broker refused the credentials in AMQP_URI ({config.masked(uri)})"
    except NotAllowed:
        return f"broker refused access to the vhost in AMQP_URI ({config.masked(uri)})"
    except Exception as exc:
        return f"cannot reach the broker at {config.masked(uri)}: {exc}"
    mongo = cfg[config.MONGO_URI_KEY]
    try:
        with MongoClient(mongo, serverSelectionTimeoutMS=3000) as client:
            store.wait_for_database(lambda: client.admin.command("ping"), store.startup_seconds(cfg))
    except OperationFailure as exc:
        return f"database refused MONGO_URI ({mongo}): {exc}"
    except PyMongoError:
        return f"cannot reach the database at MONGO_URI={mongo} (is it running?)"
    return None


def run(service_class, cfg=None):
    """Pre-flight, then run ``service_class`` until it is stopped; the process's exit code."""
    name = service_class.name
    cfg = config.service_config(name) if cfg is None else cfg
    problem = preflight(cfg)
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 2
    logs.setup(name)  # one JSON object per line on stderr (the stack's .stack/run/<name>.log)
    from nameko.cli.run import run as nameko_run

    from tacoord.topology import QueueArgumentsChanged
    print(f"{name}: starting; HTTP {cfg['WEB_SERVER_ADDRESS']}, metrics and health on port "
          f"{cfg[config.OPS_PORT_KEY]}", flush=True)
    try:
        nameko_run([service_class], cfg)
    except QueueArgumentsChanged as exc:   # made by an older release: `tacoord stack up` moves it
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return 0
