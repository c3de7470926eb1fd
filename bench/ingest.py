"""Ingest benchmark: sync N simulated events end to end (HTTPS, MSAL, paging, parsing, SQLite) and compare
with the raw limit measured in the same run on the same blobs: parse the JSON, normalize and store through the
store's own write path, in one process, no HTTP.

    .venv/bin/python bench/ingest.py [--events 200000] [--workers 8]

Prints events/s, the ratio to the raw limit and the sync process's peak RSS. No assertions: figures."""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from eventstore.sqlite import SqliteStore  # noqa: E402
from ingest.feedstate import CONTENT_TYPES, BlobRecord, FeedState  # noqa: E402
from ingest.normalize import decode_blob  # noqa: E402


def start_simulator(events: int, workdir: str) -> tuple[subprocess.Popen, dict]:
    env_file = os.path.join(workdir, "sim.env")
    process = subprocess.Popen([sys.executable, "-m", "ingest", "simulate", "--port", "0", "--events", str(events),
                                "--rate-limit", "100000000", "--page-size", "500", "--env-file", env_file, "--warm"],
                               cwd=workdir, env={**os.environ, "PYTHONPATH": ROOT},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(3000):
        if os.path.exists(env_file) and os.path.getsize(env_file):
            break
        time.sleep(0.1)
    with open(env_file) as f:
        env = dict(line.strip().split("=", 1) for line in f if "=" in line)
    return process, env


def client_env(sim_env: dict, store_path: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O365_", "AUDIT_"))}
    env.update(sim_env)
    env.update({"PYTHONPATH": ROOT, "AUDIT_STORE": f"sqlite:///{store_path}",
                "O365_MAX_REQUESTS_PER_MINUTE": "100000000"})
    return env


def end_to_end(sim_env: dict, workdir: str, workers: int) -> tuple[float, int, int]:
    store_path = os.path.join(workdir, "e2e.db")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingest", "sync", "--workers", str(workers)], cwd=workdir,
                   env=client_env(sim_env, store_path), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the sync is the only child waited for
    with SqliteStore(store_path) as store:
        count = store.stats().events
    return seconds, count, peak_kib


def download_blobs(sim_env: dict, workdir: str) -> list[tuple[str, str, bytes]]:
    """Every blob the simulator announces, fetched once through the real client, kept in memory."""
    from ingest.api import ActivityApi
    from ingest.settings import load_settings
    from ingest.windows import plan_windows

    settings = load_settings(client_env(sim_env, os.path.join(workdir, "unused.db")), dotenv_path=None)
    api = ActivityApi.connect(settings)
    now = api.server_now()
    blobs = []
    for content_type in CONTENT_TYPES:
        for start, end in plan_windows(None, now).windows:
            try:
                listed = list(api.list_content(content_type, start, end))
            except Exception:  # noqa: BLE001 - first call per type: start the subscription
                api.start_subscription(content_type)
                listed = list(api.list_content(content_type, start, end))
            for blob in listed:
                try:
                    blobs.append((content_type, blob.created, api.fetch_blob(blob.content_uri)))
                except Exception:  # noqa: BLE001 - expired blobs are part of the tenant's story
                    pass
    return blobs


def raw_limit(blobs: list[tuple[str, str, bytes]], workdir: str) -> tuple[float, int]:
    """Parse, normalize and store (the store's own write path, 5,000 events per transaction), all in this one
    process: what storing these events costs with no HTTP at all."""
    store = SqliteStore(os.path.join(workdir, "raw.db"))
    began = time.perf_counter()
    batch, rows = [], 0
    for content_type, created, body in blobs:
        decoded = decode_blob(body, content_type, created).rows
        batch.append((BlobRecord(f"raw${len(batch)}${rows}", content_type, created, "2099-01-01T00:00:00Z"), decoded))
        rows += len(decoded)
        if rows >= 5000:
            FeedState(store).store_blobs(batch)
            batch, rows = [], 0
    FeedState(store).store_blobs(batch)
    seconds = time.perf_counter() - began
    count = store.stats().events
    store.close()
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the simulated week")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--skip-raw", action="store_true", help="end to end only (e.g. for the 1M memory run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
        simulator, sim_env = start_simulator(args.events, workdir)
        try:
            seconds, count, peak_kib = end_to_end(sim_env, workdir, args.workers)
            print(f"end to end : {count:,} events in {seconds:.2f} s = {count / seconds:,.0f} events/s "
                  f"(sync process peak RSS {peak_kib / 1024:.0f} MB, {args.workers} fetch workers)")
            if not args.skip_raw:
                blobs = download_blobs(sim_env, workdir)
                raw_seconds, raw_count = raw_limit(blobs, workdir)
                print(f"raw limit  : {raw_count:,} events in {raw_seconds:.2f} s = {raw_count / raw_seconds:,.0f} "
                      f"events/s (parse + normalize + store, one process, no HTTP)")
                print(f"ratio      : end to end is {(count / seconds) / (raw_count / raw_seconds):.0%} of the raw limit")
        finally:
            simulator.terminate()
            simulator.wait()


if __name__ == "__main__":
    main()
