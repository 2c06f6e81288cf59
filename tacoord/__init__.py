"""tacoord shared core: what every service does alike.

One module per concept (the table in docs/architecture.md lists them all):
``config`` (settings from the environment), ``reference`` (UNCAC reference
data), ``envelope`` (the event envelope), ``fields`` (fields the services
share), ``topology`` (exchanges and queues), ``publisher`` (confirmed
publishing and the outbox), ``consumer`` (idempotent consumption, retries,
dead letters), ``store`` (MongoDB), ``ops`` (metrics and health), ``web``
(HTTP helpers). The core imports no service and nothing of ``infra``: the
services register what it needs from ``services/__init__.py``.
"""
