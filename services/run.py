"""Run one service by name: ``python -m services.run needs``.

The entry point of every service process (``infra.stack services``, Docker,
the benches): picks the class from the list in ``services/__init__.py``,
registers every service's event schemas (so its metrics name every event type it
consumes) and runs it with ``tacoord.run.run``, which checks the broker and the
database first. ``nameko run --config services/<name>/config.yml
services.<name>.service`` runs the same code without that check, with nameko's plain
log lines, and counts event types of other services as ``other``.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402  (must precede every other import)

import sys  # noqa: E402

import services  # noqa: E402
from tacoord.run import run  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in services.SERVICES:
        print(f"usage: python -m services.run {{{','.join(services.SERVICES)}}}", file=sys.stderr)
        return 2
    # Every service's event types known in this process too, not only those of the service's own
    # imports: the consumer labels its metrics by event type only for registered types (a bounded
    # set), so a matching process counts need.submitted as such, not as "other".
    services.register_schemas()
    return run(services.service_class(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
