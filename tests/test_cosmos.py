"""Cosmos DB at production shape, against the real Cosmos DB REST server (tests/servers/cosmos.js): batched writes,
throttling, a read-only key, and a sync whose log stays readable."""
from __future__ import annotations

import pytest

from eventstore import StoreError
from ingest.feedstate import BlobRecord, FeedState

from .conftest import ground_truth, start_cosmos_server
from .test_cli import run_cli
from .test_store_contract import blob, record


def test_a_thousand_events_cost_few_round_trips(cosmos_server):
    store = cosmos_server.store()
    feed, before = FeedState(store), store.meter.round_trips
    assert feed.store_blobs([blob(f"b{k}", [record(100 * k + i, age_hours=(i % 48)) for i in range(100)])
                             for k in range(10)]) == 1000
    spent = store.meter.round_trips - before
    assert spent <= 20, f"{spent} round trips for 1,000 events (target: at most 20)"
    # a blob sent twice (a crash before its record, or the API announcing it again) stores nothing twice
    assert feed.store_blobs([blob("again", [record(100 * 3 + i, age_hours=(i % 48)) for i in range(100)])]) == 0
    assert store.stats().events == 1000
    store.close()


def test_throttling_is_waited_out_and_nothing_is_lost(tmp_path):
    process, server = start_cosmos_server(str(tmp_path / "tls"), "--throttle-every", "3")
    try:
        store = server.store()
        feed = FeedState(store)
        written = feed.store_blobs([blob(f"t{k}", [record(50 * k + i) for i in range(50)]) for k in range(8)])
        assert written == 400 == store.stats().events
        assert {b.content_id for b in feed.issues()} == set(), "every blob recorded stored, none lost"
        store.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_read_only_key_reads_and_says_plainly_it_cannot_write(cosmos_server):
    writer = cosmos_server.store(database="shared")
    FeedState(writer).store_blobs([blob("b", [record(1), record(2)])])
    writer.save_watchlist("admins", '{"accounts": ["a@contoso.com"], "networks": []}')
    reader = cosmos_server.store(read_only=True, database="shared")
    assert reader.read_only and "read-only" in reader.description
    assert len(reader.changes("").rows) == 2 and reader.watchlists() == writer.watchlists()
    with pytest.raises(StoreError, match="read-only Cosmos DB key"):
        reader.save_watchlist("mine", "{}")
    with pytest.raises(StoreError, match="read-only"):
        cosmos_server.store(read_only=True, database="never-created")
    reader.close()
    writer.close()


def test_an_identity_that_may_not_create_the_database_is_told_how_then_works_once_it_exists(tmp_path):
    """A managed identity with only a data-plane role (Cosmos DB Built-in Data Contributor) cannot create the
    database and containers: the error gives the commands, and once they exist the identity reads and writes."""
    from eventstore.cosmos import CosmosStore

    data_plane = "ZGF0YS1wbGFuZS1rZXktZm9yLXRoZS10ZXN0cy1vbmx5LTEyMzQ="
    process, server = start_cosmos_server(str(tmp_path / "tls"), "--data-plane-key", data_plane)
    try:
        def as_identity():
            return CosmosStore(server.endpoint, data_plane, database="audit", container="ev", retention_days=30,
                               ca_bundle=server.ca_bundle)

        with pytest.raises(StoreError) as refused:
            as_identity()
        message = str(refused.value)
        assert "managed identity" in message and "az cosmosdb sql database create" in message
        assert "--name ev " in message and "--ttl 2592000" in message and "--name ev-state" in message
        server.store(database="audit", container="ev", retention_days=30).close()  # the owner creates them
        store = as_identity()
        assert not store.read_only
        assert FeedState(store).store_blobs([blob("b", [record(1), record(2)])]) == 2
        store.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cosmos_sync_is_exact_and_its_log_stays_one_line_per_window(simulator, cosmos_server, tmp_path):
    service, env = simulator()
    result = run_cli(tmp_path, {**env, **cosmos_server.env("clisync")}, "sync")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) < 60 and len(result.stderr) < 20_000, f"{len(lines)} lines, {len(result.stderr)} bytes"
    assert not any("Request URL" in line or "InsecureRequestWarning" in line for line in lines)
    store = cosmos_server.store(database="clisync")
    expected_ids, expected_lost = ground_truth(service)
    assert {row.id for row in store.iter_events()} == expected_ids
    assert {b.content_id for b in FeedState(store).issues() if b.status == "lost"} == expected_lost
    store.close()


def test_blob_records_are_written_in_batches_too(cosmos_server):
    store = cosmos_server.store()
    feed, before, names = FeedState(store), store.meter.round_trips, [f"empty{k}" for k in range(250)]
    feed.store_blobs([(BlobRecord(name, "Audit.General", "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z"), [])
                      for name in names])
    assert store.meter.round_trips - before == 3, "250 blob records: three batches of at most 100"
    assert feed.known_ids("Audit.General", names) == set(names)
    store.close()


def test_a_certificate_the_store_does_not_trust_is_refused_even_on_loopback(cosmos_server, tmp_path):
    from eventstore import StoreUnavailable
    from eventstore.cosmos import CosmosStore
    from simulator.tls import make_loopback_tls

    other_ca = make_loopback_tls(str(tmp_path / "other"))[0]
    with pytest.raises(StoreUnavailable, match="Cannot open Cosmos DB"):
        CosmosStore(cosmos_server.endpoint, cosmos_server.key, database="mitm", ca_bundle=other_ca)


def test_a_record_too_large_for_a_cosmos_item_keeps_its_columns_and_says_why(cosmos_server):
    store = cosmos_server.store()
    huge = record(7, Subject="x" * 3_000_000)
    assert FeedState(store).store_blobs([blob("huge", [huge, record(8)])]) == 2, \
        "one outsized record does not sink the batch"
    (kept,) = [row for row in store.iter_events() if row.id == huge["Id"]]
    assert kept.user_id == huge["UserId"] and "exceeds Cosmos DB's 2 MB item limit" in kept.raw
    store.close()
