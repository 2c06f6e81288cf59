"""tacoord shared core: what every service does alike.

One module per concept: ``config`` (settings from the environment),
``reference`` (UNCAC reference data), ``envelope`` (the event envelope),
``topology`` (exchanges and queues), ``publisher`` (confirmed publishing and
the outbox), ``consumer`` (idempotent consumption, retries, dead letters),
``store`` (MongoDB), ``ops`` (metrics and health), ``web`` (HTTP helpers).
"""
