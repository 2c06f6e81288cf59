"""Run one service by name: ``python -m services.run needs``.

The entry point of every service process (``infra.stack services``, Docker,
the benches): picks the class from the list in ``services/__init__.py`` and
runs it with ``tacoord.run.run``, which checks the broker and the database
first. ``nameko run --config services/<name>/config.yml services.<name>.service``
runs the same code without that check.
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
    return run(services.service_class(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
