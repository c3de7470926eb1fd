"""The workspace source: records/s read from the simulated tenant's Log Analytics workspace (HTTPS, MSAL, the real
client: a query per table and window, rows mapped back to audit records, normalized, stored) into a SQLite store,
each request taking `--latency` seconds as the real service's do, against the raw limit measured in the same run
(the same answers, a table's day each, decoded, mapped, normalized and stored in one process, no HTTP: as
bench/ingest.py's raw limit starts from the blobs' bytes). The simulator runs in a process of its own and makes every
record before the clock starts, so its work (Microsoft's, for the real service) does not share the client's
interpreter; the client reads the tables at once, as `python -m ingest sync --source workspace` does.

    .venv/bin/python bench/workspace.py [--days 7] [--events-per-week 150000] [--latency 0.1]"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def serve(days: int, events_per_week: int, latency: float, folder: str, now: datetime, pipe) -> None:
    """The simulated tenant's workspace, in a process of its own: sends its settings and its answers to a query per
    table and day (as the client asks: table, rows, body), serves until told."""
    from ingest.workspace import LATE_AT_MOST, SETTLE, TABLES
    from simulator import SimulatedTenant, SimulatorConfig, start_simulator

    tenant = SimulatedTenant(now - timedelta(days=days), seed=9, events_per_week=events_per_week)
    server, env = start_simulator(tenant, SimulatorConfig(frozen_at=now, latency=latency),
                                  tls_dir=os.path.join(folder, "tls"))
    workspace, answers = server.service.workspace, []
    workspace.warm()
    for table in TABLES:
        low = now - timedelta(days=days)  # what the client reads: from there to SETTLE before the frozen clock
        while low < now - SETTLE:
            high = min(low + timedelta(days=1), now - SETTLE)
            answer = workspace.result(table, low, high, low - LATE_AT_MOST, high)
            answers.append((table, len(answer["tables"][0]["rows"]), json.dumps(answer).encode()))
            low = high
    pipe.send((env, answers))
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
    from ingest.workspace import ROW_LIMIT, answer_rows, rows_of, run_workspace

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    folder = tempfile.mkdtemp(prefix="bench-workspace-")
    ours, theirs = multiprocessing.Pipe()
    simulator = multiprocessing.get_context("spawn").Process(
        target=serve, args=(args.days, args.events_per_week, args.latency, folder, now, theirs), daemon=True)
    simulator.start()
    env, answers = ours.recv()
    by_table = Counter()
    for table, rows, _ in answers:
        by_table[table] += rows
    total = by_table.total()
    print(f"{total:,} rows over {args.days} days in {', '.join(f'{t} {n:,}' for t, n in by_table.items())} "
          f"({args.events_per_week:,} events a simulated week)")

    # the raw limit: the same answers decoded, mapped, normalized and stored in batches of 5,000, no HTTP
    with SqliteStore(os.path.join(folder, "raw.db")) as store:
        began = time.perf_counter()
        for table, _, body in answers:
            events = rows_of(table, answer_rows(body, ROW_LIMIT))[0]
            for i in range(0, len(events), 5000):
                store.store_events(events[i:i + 5000])
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
          f"same run: {raw:,.0f} records/s (decode + map + normalize + store, no HTTP) — {rate / raw:.0%} of it "
          f"(target >= 80%)")


if __name__ == "__main__":
    main()
