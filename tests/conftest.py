"""Shared fixtures: a real HTTPS simulator of the tenant on loopback, stores on disk, settings for both."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from eventstore.model import CONTENT_TYPES
from eventstore.sqlite import SqliteStore
from ingest.settings import load_settings
from ingest.simulator import SimulatedTenant, SimulatorConfig, start_simulator


def week_start() -> datetime:
    """A tenant whose subscription began a little under 7 days ago, so its whole history is listable."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(days=7) + timedelta(hours=1)


@pytest.fixture
def simulator(tmp_path):
    """Factory: start(tenant=None, **config) → (service, env). Every server is stopped after the test."""
    servers = []

    def start(tenant: SimulatedTenant | None = None, **config):
        config.setdefault("frozen_at", datetime.now(timezone.utc))  # ground truth must not move mid-test
        tenant = tenant or SimulatedTenant(week_start(), seed=11, events_per_week=3_000, blob_minutes=240)
        server, env = start_simulator(tenant, SimulatorConfig(**config), tls_dir=str(tmp_path / f"tls{len(servers)}"))
        servers.append(server)
        return server.service, env

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "audit.db")


@pytest.fixture
def make_settings(store_path):
    def make(env: dict, **extra):
        values = {"AUDIT_STORE": f"sqlite:///{store_path}", "O365_MAX_REQUESTS_PER_MINUTE": "60000", **env}
        values.update({k: str(v) for k, v in extra.items()})
        return load_settings(values, dotenv_path=None)

    return make


@pytest.fixture
def store(store_path):
    with SqliteStore(store_path) as s:
        yield s


def ground_truth(service, content_types=None, since=None):
    """What a faithful client must hold after syncing everything the simulator has announced so far:
    (every record Id, every content id that can only be recorded lost)."""
    tenant = service.tenant
    now = service.now()
    start = since or now - timedelta(days=7) + timedelta(minutes=15)
    ids, lost = set(), set()
    for content_type in content_types or CONTENT_TYPES:
        found_ids, found_lost = tenant.expected_ids(content_type, start, now, now)
        ids |= found_ids
        lost |= found_lost
    return ids, lost


def stored_ids(store) -> list[str]:
    return [row.id for row in store.iter_events()]


def fill_store(store, tenant: SimulatedTenant, now: datetime | None = None) -> int:
    """Store every record the tenant has announced by `now`, through the real normalization and store
    (no HTTP): for tests of what reads the store."""
    from eventstore.model import BlobRecord, utc_text
    from eventstore.normalize import decode_blob

    now = now or datetime.now(timezone.utc)
    added = 0
    for content_type in CONTENT_TYPES:
        batch = []
        for blob in tenant.blobs_created(content_type, tenant.start - timedelta(days=1), now, now):
            created = utc_text(blob.created)
            rows = decode_blob(tenant.blob_json(content_type, blob.index), content_type, created).rows
            batch.append((BlobRecord(blob.content_id, content_type, created, utc_text(blob.expiration)), rows))
        added += store.store_blobs(batch)
    return added


@pytest.fixture(scope="session")
def demo_like_tenant():
    return SimulatedTenant(week_start(), seed=7, events_per_week=8_000, blob_minutes=240)
