"""Ingest benchmark: sync N simulated events end to end (HTTPS, MSAL, paging, parsing, SQLite) and compare
with the raw limit measured in the same run on the same blobs: parse the JSON, normalize and store through the
store's own write path, in one process, no HTTP. The raw limit is measured for the compact store and for the first
layout's writer (one row per event in an indexed table, the record's JSON beside it: kept here, as it was, as the
baseline the compact store is held to).

    .venv/bin/python bench/ingest.py [--events 200000] [--workers 4] [--rounds 3]

Prints events/s (the median of the rounds), the ratios and the sync process's peak RSS. No assertions: figures."""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from eventstore.model import EVENT_COLUMNS  # noqa: E402
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


# runs a command and prints the peak RSS of its largest process (a small process of its own, so that the
# benchmark's memory, which a child shares at fork, is not counted)
_PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")


def end_to_end(sim_env: dict, workdir: str, workers: int) -> tuple[float, int, int]:
    store_path = os.path.join(tempfile.mkdtemp(dir=workdir), "e2e.db")  # a new, empty store each round
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "ingest", "sync", "--workers",
                           str(workers)], cwd=workdir, env=client_env(sim_env, store_path), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seconds = time.perf_counter() - began
    peak_kib = int(done.stdout.split()[-1])
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


def _batches(blobs: list) -> Iterator[list]:
    """The blobs parsed and normalized a write batch at a time (about 5,000 events each), as the sync holds them."""
    batch, rows = [], 0
    for n, (content_type, created, body) in enumerate(blobs):
        rows_of_blob = decode_blob(body, content_type, created).rows
        batch.append((BlobRecord(f"raw${n}", content_type, created, "2099-01-01T00:00:00Z"), rows_of_blob))
        rows += len(rows_of_blob)
        if rows >= 5000:
            yield batch
            batch, rows = [], 0
    yield batch


def compact_writer(path: str):
    store = SqliteStore(path)
    return FeedState(store).store_blobs, store.close


class FirstLayoutWriter:
    """The store's first layout and its writer (before the compact store), as they were: every event a row of an
    indexed table, its JSON in a second one, appended in position order; a blob's record in the same transaction."""

    NARROW = [column for column in EVENT_COLUMNS if column != "raw"]

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-32768"):
            self.conn.execute(f"PRAGMA {pragma}")
        columns = ", ".join(f"{c} {'INTEGER' if c == 'record_type' else 'TEXT NOT NULL'}"
                            f"{' UNIQUE' if c == 'id' else ''}" for c in self.NARROW)
        self.conn.executescript(
            f"CREATE TABLE events (seq INTEGER PRIMARY KEY, {columns});"
            "CREATE TABLE raw_events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);"
            "CREATE TABLE blobs (content_id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_created TEXT NOT "
            "NULL, content_expiration TEXT NOT NULL, events INTEGER NOT NULL, status TEXT NOT NULL, recorded_at TEXT "
            "NOT NULL) WITHOUT ROWID;"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('next_seq', '1');")
        self.insert = (f"INSERT OR IGNORE INTO events(seq, {', '.join(self.NARROW)}) "
                       f"VALUES (?, {', '.join('?' * len(self.NARROW))})")

    def store_blobs(self, batch) -> int:
        rows = [row for _, blob_rows in batch for row in blob_rows]
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        first = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        before = conn.total_changes
        conn.executemany(self.insert, ((first + n, *row[:-1]) for n, row in enumerate(rows)))
        added = conn.total_changes - before
        conn.executemany("INSERT INTO raw_events(seq, json) VALUES (?, ?)",
                         ((first + n, row.raw) for n, row in enumerate(rows)))
        if added < len(rows):
            conn.execute("DELETE FROM raw_events WHERE seq >= ? AND seq NOT IN (SELECT seq FROM events WHERE seq >= ?)",
                         (first, first))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(first + len(rows)),))
        for blob, blob_rows in batch:
            conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (blob.content_id, blob.content_type, blob.content_created, blob.content_expiration,
                          len(blob_rows), "stored", "2026-01-01T00:00:00Z"))
        conn.execute("COMMIT")
        return added


def first_layout_writer(path: str):
    writer = FirstLayoutWriter(path)
    return writer.store_blobs, writer.conn.close


def raw_limit(blobs: list[tuple[str, str, bytes]], workdir: str, writer) -> tuple[float, int]:
    """Parse, normalize and store (5,000 events per transaction), all in this one process: what storing these
    events costs with no HTTP at all. `writer(path)` gives (store_blobs, close)."""
    path = os.path.join(tempfile.mkdtemp(dir=workdir), "raw.db")
    store_blobs, close = writer(path)
    began = time.perf_counter()
    count = sum(store_blobs(batch) for batch in _batches(blobs))
    seconds = time.perf_counter() - began
    close()
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the simulated week")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="each figure is the median of this many runs")
    parser.add_argument("--skip-raw", action="store_true", help="end to end only (e.g. for the 1M memory run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
        simulator, sim_env = start_simulator(args.events, workdir)
        try:
            blobs = [] if args.skip_raw else download_blobs(sim_env, workdir)
            runs: dict[str, list[float]] = {"e2e": [], "compact": [], "first": []}
            for _ in range(args.rounds):  # interleaved, so a slow spell of the machine falls on all three alike
                seconds, count, peak_kib = end_to_end(sim_env, workdir, args.workers)
                runs["e2e"].append(count / seconds)
                if blobs:
                    for name, writer in (("compact", compact_writer), ("first", first_layout_writer)):
                        raw_seconds, raw_count = raw_limit(blobs, workdir, writer)
                        runs[name].append(raw_count / raw_seconds)
            e2e = statistics.median(runs["e2e"])
            print(f"end to end          : {count:,} events, {e2e:,.0f} events/s (sync process peak RSS "
                  f"{peak_kib / 1024:.0f} MB, {args.workers} fetch workers; rounds {_rates(runs['e2e'])})")
            if blobs:
                compact, first = statistics.median(runs["compact"]), statistics.median(runs["first"])
                print(f"raw limit, compact  : {raw_count:,} events, {compact:,.0f} events/s (parse + normalize + "
                      f"store, one process, no HTTP; rounds {_rates(runs['compact'])})")
                print(f"raw limit, first    : {first:,.0f} events/s (the same, into the first layout; rounds "
                      f"{_rates(runs['first'])})")
                print(f"ratios              : end to end is {e2e / compact:.0%} of the raw limit (target >= 80%); "
                      f"the compact store's raw limit is {compact / first:.0%} of the first layout's (target >= 90%)")
        finally:
            simulator.terminate()
            simulator.wait()


def _rates(values: list[float]) -> str:
    return " / ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
