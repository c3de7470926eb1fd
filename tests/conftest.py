"""Shared fixtures: a real HTTPS simulator of the tenant on loopback, stores on disk, settings for both, and the
real local servers that stand in for Azure (a Cosmos DB REST server, Azurite's queue service)."""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from eventstore.sqlite import SqliteStore
from ingest.feedstate import CONTENT_TYPES, FeedState
from ingest.settings import load_settings
from simulator import SimulatedTenant, SimulatorConfig, start_simulator
from simulator.tls import make_loopback_tls

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SERVERS = os.path.join(TESTS, "servers")


# --- the clock: CI runs at any hour, so a test must pass at any hour -----------------------------------------
def pytest_addoption(parser):
    parser.addoption("--clock", default="", help="run at this UTC time (e.g. 2026-12-03T00:30), the clock ticking "
                                                 "from there, in this process and every Python process it starts: "
                                                 "finds tests that depend on the hour they run (make test-clocks)")


def pytest_configure(config):
    clock = config.getoption("--clock")
    if clock:
        import time_machine

        target = datetime.fromisoformat(clock)
        target = target if target.tzinfo else target.replace(tzinfo=timezone.utc)
        os.environ["TEST_CLOCK_OFFSET"] = str(target.timestamp() - time.time())
        time_machine.travel(target, tick=True).start()


def child_pythonpath() -> str:
    """PYTHONPATH for the Python processes a test starts: the project, and the fixed clock when there is one."""
    return os.pathsep.join([ROOT, os.path.join(TESTS, "clock")] if os.environ.get("TEST_CLOCK_OFFSET") else [ROOT])


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
    from eventstore.model import utc_text
    from ingest.feedstate import BlobRecord
    from ingest.normalize import decode_blob

    now = now or datetime.now(timezone.utc)
    added = 0
    for content_type in CONTENT_TYPES:
        batch = []
        for blob in tenant.blobs_created(content_type, tenant.start - timedelta(days=1), now, now):
            created = utc_text(blob.created)
            rows = decode_blob(tenant.blob_json(content_type, blob.index), content_type, created).rows
            batch.append((BlobRecord(blob.content_id, content_type, created, utc_text(blob.expiration)), rows))
        added += FeedState(store).store_blobs(batch)
    return added


@pytest.fixture(scope="session")
def demo_like_tenant():
    return SimulatedTenant(week_start(), seed=7, events_per_week=8_000, blob_minutes=240)


# --- Azure stand-ins ------------------------------------------------------------------------------------------
def _node_server(package: str) -> str:
    if not os.path.isdir(os.path.join(SERVERS, "node_modules", *package.split("/"))):
        pytest.fail(f"The test server {package} is not installed: run `bash tests/install-test-tools.sh` (or "
                    "`make test`), which runs npm ci in tests/servers.")
    node = shutil.which("node")
    assert node, "Node.js is needed for the Azure stand-ins (tests/servers)"
    return node


@dataclass
class CosmosServer:
    endpoint: str
    key: str
    read_only_key: str
    ca_bundle: str
    _databases = itertools.count()

    def store(self, read_only: bool = False, database: str = "", **options):
        """A CosmosStore in a database of its own (each test starts empty)."""
        from eventstore.cosmos import CosmosStore

        return CosmosStore(self.endpoint, self.read_only_key if read_only else self.key,
                           database=database or f"db{next(self._databases)}", ca_bundle=self.ca_bundle, **options)

    def env(self, database: str) -> dict:
        return {"AUDIT_STORE": "cosmos", "COSMOS_ENDPOINT": self.endpoint, "COSMOS_KEY": self.key,
                "COSMOS_DATABASE": database, "COSMOS_CA_BUNDLE": self.ca_bundle}


def start_cosmos_server(tls_dir: str, *extra: str) -> tuple[subprocess.Popen, CosmosServer]:
    node = _node_server("@vercel/cosmosdb-server")
    ca, cert, key = make_loopback_tls(tls_dir)
    read_only_key = "cmVhZC1vbmx5LWtleS1mb3ItdGhlLXRlc3RzLW9ubHktMTIzNA=="
    process = subprocess.Popen([node, "cosmos.js", "0", "--cert", cert, "--key", key, "--read-only-key", read_only_key,
                                *extra], cwd=SERVERS, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening"), line
    return process, CosmosServer(f"https://127.0.0.1:{int(line.split()[1])}",
                                 "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==",
                                 read_only_key, ca)


@pytest.fixture(scope="session")
def cosmos_server(tmp_path_factory):
    process, server = start_cosmos_server(str(tmp_path_factory.mktemp("cosmos-tls")))
    yield server
    process.terminate()
    process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_azurite() -> tuple[subprocess.Popen, str]:
    """Azurite's queue service, in memory; returns the process and its connection string."""
    node = _node_server("azurite")
    port = _free_port()
    process = subprocess.Popen(
        [node, os.path.join(SERVERS, "node_modules", "azurite", "dist", "src", "queue", "main.js"),
         "--queueHost", "127.0.0.1", "--queuePort", str(port), "--inMemoryPersistence", "--skipApiVersionCheck",
         "--disableTelemetry", "--silent"], cwd=SERVERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("Azurite did not start within 20 s")
    # Azurite's well-known development account (public, in Azure's documentation)
    return process, ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlm"
                     "EtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
                     f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


@pytest.fixture(scope="session")
def azurite():
    process, connection_string = start_azurite()
    yield connection_string
    process.terminate()
    process.wait(timeout=10)
