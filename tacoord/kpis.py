"""Coordination KPIs: gauges a service refreshes on a timer from the data it owns.

    class NeedsKpis(Kpis):
        def refresh(self):                   # every TACOORD_KPI_SECONDS (60), in a managed thread
            replace(OPEN_NEEDS, {("1", "2"): 12, ...})   # label values -> value

A scrape only reads the gauges: it never waits for a query, and a full checklist round
(~32,000 needs) costs one refresh per interval, not one per scrape. Each service computes its
own figures from its own collections or in-memory model; no service reads another's
database. With several instances of a service each reports the same figures (they share the
database): dashboards take ``max`` over instances, not ``sum``.
"""
import logging

import eventlet
from nameko.extensions import DependencyProvider

from tacoord.config import setting
from tacoord.store import DatabaseClient

log = logging.getLogger(__name__)

KPI_SECONDS_KEY = "TACOORD_KPI_SECONDS"
KPI_SECONDS = 60.0


def replace(gauge, values):
    """Set a labelled gauge to exactly ``values`` (``{label values tuple: number}``): label sets
    no longer present go away. No I/O in between, so a scrape never sees it half-replaced."""
    gauge.clear()
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


class Kpis(DependencyProvider):
    """Runs :meth:`refresh` at start and then every ``TACOORD_KPI_SECONDS``; a failing refresh is
    logged and tried again next time (the gauges keep their last values). Subclasses read
    ``self.database`` (the service's own) or another provider of the container."""

    database_client = DatabaseClient()
    interval_key, default_interval = KPI_SECONDS_KEY, KPI_SECONDS

    def setup(self):
        self.interval = float(setting(self.container.config, self.interval_key, self.default_interval))
        self.database = self.database_client.database()
        self._thread = None

    def start(self):
        self._thread = self.container.spawn_managed_thread(self._refresh_forever, identifier="kpis")

    def stop(self):
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    kill = stop

    def _refresh_forever(self):
        failing = False
        while True:
            try:
                self.refresh()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("could not refresh the KPI gauges (%s); will retry every %.0fs", exc, self.interval)
                failing = True
            eventlet.sleep(self.interval)

    def refresh(self):
        raise NotImplementedError

    def provider(self, cls):
        """Another provider of this container (e.g. the store holding an in-memory model)."""
        return next(p for p in self.container.dependencies if isinstance(p, cls))

    def get_dependency(self, worker_ctx):
        return self
