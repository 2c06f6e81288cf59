"""Run one service: ``python -m tacoord.run needs``.

Checks the broker and the database first, so a wrong URI, wrong credentials
or a stopped server end the process with one line naming the problem
(exit 2) instead of a reconnect loop of tracebacks. Then runs the service
with nameko's runner (SIGTERM stops it gracefully). ``nameko run --config
services/<name>/config.yml services.<name>.service`` runs the same code
without the pre-flight check.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402  (must precede every other import)

import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from tacoord import config  # noqa: E402


def preflight(cfg):
    """Return None when broker and database answer, else one line saying why."""
    from amqp.exceptions import AccessRefused, NotAllowed
    from kombu import Connection
    from nameko.utils import sanitize_url
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    uri = cfg[config.AMQP_URI_KEY]
    try:
        with Connection(uri, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except AccessRefused:
        return f"broker refused the credentials in AMQP_URI ({sanitize_url(uri)})"
    except NotAllowed:
        return f"broker refused access to the vhost in AMQP_URI ({sanitize_url(uri)})"
    except Exception as exc:
        return f"cannot reach the broker at {sanitize_url(uri)}: {exc}"
    mongo = cfg[config.MONGO_URI_KEY]
    try:
        MongoClient(mongo, serverSelectionTimeoutMS=3000).admin.command("ping")
    except OperationFailure as exc:
        return f"database refused MONGO_URI ({mongo}): {exc}"
    except PyMongoError:
        return f"cannot reach the database at MONGO_URI={mongo} (is it running?)"
    return None


def service_class(name):
    module = importlib.import_module(f"services.{name}.service")
    return module.SERVICE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in config.SERVICES:
        print(f"usage: python -m tacoord.run {{{','.join(config.SERVICES)}}}", file=sys.stderr)
        return 2
    name = argv[0]
    cfg = config.service_config(name)
    problem = preflight(cfg)
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    from nameko.cli.run import run
    print(f"{name}: starting; HTTP {cfg['WEB_SERVER_ADDRESS']}, metrics and health on port "
          f"{cfg[config.OPS_PORT_KEY]}", flush=True)
    run([service_class(name)], cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
