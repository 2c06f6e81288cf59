"""The ``tacoord`` command line: the core's commands and the groups owned elsewhere, added here by name.

    tacoord --help                     (the console script: pyproject.toml points at ``main`` below)
    python -m services.cli --help      (the same, from a checkout)

The core (``tacoord/cli.py``) holds the group and the generic commands
(dead letters, credentials, imports over HTTP, the AsyncAPI document);
``stack`` is infra's (``infra/commands.py``); ``audit``, ``trace`` and ``matching`` are
their services' (``services/<name>/commands.py``); ``import iati`` is supply's
(``services/supply/commands.py``), put in place of the core's generic upload. ``asyncapi`` registers
every service's schemas before it renders, so it documents all of them;
``openapi`` reads every service's routes (``services.http_apis()``).
"""
import services
from infra.commands import stack
from services.audit.commands import audit, trace
from services.matching.commands import matching
from services.supply.commands import iati_import
from tacoord.cli import asyncapi_command, import_, main, openapi_command

main.add_command(stack)
main.add_command(audit)
main.add_command(trace)
main.add_command(matching)
import_.add_command(iati_import)   # supply's `import iati` (with an offline --dry-run) in place of the generic upload
main.add_command(asyncapi_command(services.register_schemas))
main.add_command(openapi_command(services.http_apis))

if __name__ == "__main__":
    main()
