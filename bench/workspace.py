"""The workspace source: records/s read from the simulated tenant's Log Analytics workspace (HTTPS, MSAL, the real
client: a query per table and window, rows mapped back to audit records, normalized, stored) into a SQLite store,
each request taking `--latency` seconds as the real service's do, against the raw limit measured in the same run
(the same rows mapped, normalized and stored, no HTTP). The simulator runs in a process of its own and makes every
record before the clock starts, so its work (Microsoft's, for the real service) does not share the client's
interpreter; the client reads the tables at once, as `python -m ingest sync --source workspace` does.

    .venv/bin/python bench/workspace.py [--days 7] [--events-per-week 150000] [--latency 0.1]"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def serve(days: int, events_per_week: int, latency: float, folder: str, now: datetime, pipe) -> None:
    """The simulated tenant's workspace, in a process of its own: sends its settings and rows, serves until told."""
    from ingest.workspace import SETTLE
    from simulator import SimulatedTenant, SimulatorConfig, start_simulator
    from simulator.workspace import ROWS, ingested_at, table_of

    tenant = SimulatedTenant(now - timedelta(days=days), seed=9, events_per_week=events_per_week)
    server, env = start_simulator(tenant, SimulatorConfig(frozen_at=now, latency=latency),
                                  tls_dir=os.path.join(folder, "tls"))
    since, by_table = now - timedelta(days=days), {}
    for record in server.service.workspace.warm():
        table = table_of(record)
        if table and since <= ingested_at(record) < now - SETTLE:
            by_table.setdefault(table, []).append(ROWS[table](record))
    pipe.send((env, by_table))
    pipe.recv()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-week", type=int, default=150_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each query takes")
    args = parser.parse_args()

    from eventstore.sqlite import SqliteStore
    from ingest.settings import load_settings
    from ingest.workspace import rows_of, run_workspace

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    folder = tempfile.mkdtemp(prefix="bench-workspace-")
    ours, theirs = multiprocessing.Pipe()
    simulator = multiprocessing.get_context("spawn").Process(
        target=serve, args=(args.days, args.events_per_week, args.latency, folder, now, theirs), daemon=True)
    simulator.start()
    env, by_table = ours.recv()
    total = sum(map(len, by_table.values()))
    print(f"{total:,} rows over {args.days} days in {', '.join(f'{t} {len(r):,}' for t, r in by_table.items())} "
          f"({args.events_per_week:,} events a simulated week)")

    # the raw limit: the same rows mapped, normalized and stored in batches of 5,000, no HTTP
    with SqliteStore(os.path.join(folder, "raw.db")) as store:
        began = time.perf_counter()
        for table, rows in by_table.items():
            for i in range(0, len(rows), 5000):
                store.store_events(rows_of(table, rows[i:i + 5000])[0])
        raw = total / (time.perf_counter() - began)

    path = os.path.join(folder, "audit.db")
    settings = load_settings({"AUDIT_STORE": f"sqlite:///{path}", **env}, dotenv_path=None)
    with SqliteStore(path) as store:
        began = time.perf_counter()
        report = run_workspace(settings, store, now - timedelta(days=args.days))
        seconds = time.perf_counter() - began
    ours.send("stop")
    simulator.join()
    assert report.ok and report.records >= total, report.summary()
    rate = report.records / seconds
    print(f"workspace: {report.records:,} records in {seconds:,.1f} s over {report.units} queries = {rate:,.0f} "
          f"records/s end to end (HTTPS with {args.latency} s a query, mapped, normalized, stored); raw limit in the "
          f"same run: {raw:,.0f} records/s (map + normalize + store, no HTTP) — {rate / raw:.0%} of it")


if __name__ == "__main__":
    main()
