"""Scale-out benchmark: Cosmos DB writes and queue fan-out, against the same local stand-ins the tests use (the
Cosmos DB REST server, Azurite) and the simulated tenant.

    .venv/bin/python bench/scaleout.py [--events 20000] [--fanout-events 20000] [--latency 0.3]

1. Cosmos DB: round trips and request charge per 1,000 events stored and read back through the index feed, and
   events/s with 1 and 4 concurrent batch writers — against a baseline measured in the same run: one upsert per
   event (the store's previous write path).
2. Queue fan-out: `enqueue`, then 1, 2, 4 and 8 `worker --drain` processes against a simulated tenant whose every
   request takes `--latency` seconds and whose quota is 2,000 requests a minute, as the real API's: events/s for
   each, and which limit binds. No assertions: figures."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from eventstore import cosmos  # noqa: E402
from eventstore.model import utc_text  # noqa: E402
from ingest.feedstate import CONTENT_TYPES, BlobRecord, FeedState  # noqa: E402
from ingest.normalize import decode_blob  # noqa: E402
from simulator import SimulatedTenant  # noqa: E402
from tests.conftest import start_azurite, start_cosmos_server  # noqa: E402


def tenant_blobs(events: int):
    now = datetime.now(timezone.utc)
    tenant = SimulatedTenant(now - timedelta(days=6), seed=5, events_per_week=events, blob_minutes=60)
    batch = []
    for content_type in CONTENT_TYPES:
        for blob in tenant.blobs_created(content_type, tenant.start - timedelta(days=1), now, now):
            created = utc_text(blob.created)
            rows = decode_blob(tenant.blob_json(content_type, blob.index), content_type, created).rows
            batch.append((BlobRecord(blob.content_id, content_type, created, utc_text(blob.expiration)), rows))
    return batch


def cosmos_figures(server, blobs) -> None:
    events = sum(len(rows) for _, rows in blobs)
    print(f"Cosmos DB: {events:,} events in {len(blobs)} blobs")
    baseline = server.store()
    sample = [row for _, rows in blobs for row in rows][:2000]
    began = time.perf_counter()
    for n, row in enumerate(sample):  # the previous write path: one upsert per event
        baseline._events.upsert_item({**dict(zip(cosmos.EVENT_COLUMNS, row)), "day": row.time[:10], "seq": n},
                                     response_hook=baseline.meter)
    base_rate = len(sample) / (time.perf_counter() - began)
    print(f"  baseline, one upsert per event: {base_rate:,.0f} events/s, "
          f"{1000 * baseline.meter.round_trips / len(sample):,.0f} round trips per 1,000 events")
    baseline.close()
    for writers in (1, 4):
        cosmos.WRITERS = writers
        store = server.store()
        before_trips, before_ru = store.meter.round_trips, store.meter.request_units
        began = time.perf_counter()
        for i in range(0, len(blobs), 50):
            FeedState(store).store_blobs(blobs[i:i + 50])
        seconds = time.perf_counter() - began
        trips = store.meter.round_trips - before_trips
        charge = store.meter.request_units - before_ru
        print(f"  batches, {writers} writer(s): {events / seconds:,.0f} events/s ({events / seconds / base_rate:.1f}x "
              f"baseline), {1000 * trips / events:.1f} round trips and {1000 * charge / events:.1f} RU (as the "
              f"test server reports it) per 1,000 events stored")
        before_trips, before_ru = store.meter.round_trips, store.meter.request_units
        cursor, read = "", 0
        while True:
            changes = store.changes(cursor, 50_000)
            read += len(changes.rows)
            cursor = changes.cursor
            if changes.caught_up:
                break
        print(f"  index feed: {1000 * (store.meter.round_trips - before_trips) / read:.1f} round trips per 1,000 "
              f"events read ({read:,} rows delivered for {store.stats().events:,} distinct events stored)")
        store.close()


def fanout_figures(events: int, latency: float, workdir: str) -> None:
    azurite, connection = start_azurite()
    env_file = os.path.join(workdir, "sim.env")
    simulator = subprocess.Popen([sys.executable, "-m", "ingest", "simulate", "--port", "0", "--events", str(events),
                                  "--rate-limit", "2000", "--latency", str(latency), "--blob-minutes", "30",
                                  "--env-file", env_file, "--warm"], cwd=workdir,
                                 env={**os.environ, "PYTHONPATH": ROOT},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (os.path.exists(env_file) and os.path.getsize(env_file)):
            time.sleep(0.1)
        with open(env_file) as f:
            sim = dict(line.strip().split("=", 1) for line in f if "=" in line)
        print(f"Queue fan-out: ~{events:,} events a week, {latency * 1000:.0f} ms per request, quota 2,000 "
              "requests/min, 4 fetch threads per worker, 2 cores")
        for count in (1, 2, 4, 8):
            env = {**os.environ, **sim, "PYTHONPATH": ROOT, "QUEUE_CONNECTION_STRING": connection,
                   "QUEUE_NAME": f"bench-{count}", "AUDIT_STORE": f"sqlite:///{workdir}/fanout-{count}.db",
                   "O365_MAX_REQUESTS_PER_MINUTE": "1900"}
            subprocess.run([sys.executable, "-m", "ingest", "enqueue"], cwd=workdir, env=env, check=True,
                           capture_output=True)
            began = time.perf_counter()
            workers = [subprocess.Popen([sys.executable, "-m", "ingest", "worker", "--drain"], cwd=workdir, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]
            cpu_before = os.times()
            for worker in workers:
                worker.wait()
            seconds = time.perf_counter() - began
            cpu = (os.times().children_user + os.times().children_system
                   - cpu_before.children_user - cpu_before.children_system)
            from eventstore.sqlite import SqliteStore

            with SqliteStore(f"{workdir}/fanout-{count}.db") as store:
                stored = store.stats().events
            print(f"  {count} worker(s): {stored / seconds:,.0f} events/s ({stored:,} events in {seconds:.1f} s; "
                  f"workers' CPU {cpu / seconds:.2f} cores of 2)")
    finally:
        simulator.terminate()
        azurite.terminate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--fanout-events", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, server = start_cosmos_server(os.path.join(workdir, "tls"))
        try:
            cosmos_figures(server, tenant_blobs(args.events))
        finally:
            process.terminate()
        fanout_figures(args.fanout_events, args.latency, workdir)


if __name__ == "__main__":
    main()
