"""Demo mode: with no tenant configured, a simulated tenant runs on loopback inside this process and
the real client code (MSAL, HTTPS, paging, retries) syncs from it. Everything it feeds says DEMO."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from eventstore import EventStore

from .settings import Settings

TENANT_START_KEY = "demo.tenant_start"
DEMO_EVENTS_PER_WEEK = 30_000
DEMO_SEED = 7
DEMO_BACKFILL_DAYS = 30  # the history `python -m ingest run` backfills by itself in DEMO mode
# what the status says of the DEMO's lost blobs, which are no fault of the sync
PLANTED_LOSS = ("DEMO: the simulated tenant lets two blobs expire before they can be fetched (AF20051), on purpose, "
                "to show how a lost blob is recorded and reported.")
# The simulated tenant grants a larger quota than a real one, so the first demo sync takes seconds.
DEMO_REQUESTS_PER_MINUTE = 6000

_lock = threading.Lock()
_running: dict[str, dict[str, str]] = {}


def demo_tenant_start(store: EventStore) -> datetime:
    """The simulated tenant's first day, kept in the store so a restart replays the same week."""
    value = store.get_meta(TENANT_START_KEY)
    if value is None:
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        store.set_meta(TENANT_START_KEY, (now - timedelta(days=7) + timedelta(hours=1)).isoformat())
        value = store.get_meta(TENANT_START_KEY)  # the dashboard and the ingest may both be starting up
    return datetime.fromisoformat(value)


def tenant_settings(settings: Settings, store: EventStore) -> Settings:
    """The settings to connect with: in DEMO mode (no tenant configured), those of the simulated tenant, started in
    this process on first use; otherwise `settings` as they are. Every entry point that connects calls it."""
    if not settings.demo:
        return settings
    from simulator import Faults, SimulatedTenant, SimulatorConfig, start_simulator  # only a DEMO needs it

    start = demo_tenant_start(store)
    with _lock:
        env = _running.get(start.isoformat())
        if env is None:
            tenant = SimulatedTenant(start, seed=DEMO_SEED, events_per_week=DEMO_EVENTS_PER_WEEK)
            config = SimulatorConfig(quota_requests=DEMO_REQUESTS_PER_MINUTE * 2,
                                     faults=Faults(throttle_every=173, retry_after=1, error_every=409,
                                                   empty_page_every=61))
            _, env = start_simulator(tenant, config)
            _running[start.isoformat()] = env
    demo = settings.for_demo_tenant(env)
    return replace(demo, max_requests_per_minute=max(demo.max_requests_per_minute, DEMO_REQUESTS_PER_MINUTE))
