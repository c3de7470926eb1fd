"""Backfill: records/s paged from the simulated tenant's Microsoft Graph audit log queries (HTTPS, MSAL, the real
client) into a SQLite store — one finished query paged at a time (the baseline) and PAGERS at a time, each request
taking `--latency` seconds as the real service's do — against the raw limit measured in the same run (the same
records normalized and stored with no HTTP), and the wall time of a 180-day backfill of a 5,000-seat tenant as a
model from the API's limits and the paging rate.

    .venv/bin/python bench/backfill.py [--days 7] [--events-per-week 150000] [--latency 0.1]"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-week", type=int, default=150_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each Graph request takes")
    args = parser.parse_args()

    from eventstore.sqlite import SqliteStore
    from ingest import backfill
    from ingest.backfill import rows_of, run_backfill
    from ingest.settings import load_settings
    from simulator import SimulatedTenant, SimulatorConfig, start_simulator
    from simulator.auditsearch import AuditSearchConfig, graph_record

    backfill.POLL_FIRST, backfill.POLL_MAX = 0.2, 1.0
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    tenant = SimulatedTenant(now - timedelta(days=7), seed=9, events_per_week=args.events_per_week)
    folder = tempfile.mkdtemp(prefix="bench-backfill-")
    server, env = start_simulator(tenant, SimulatorConfig(frozen_at=now, latency=args.latency,
                                                          audit_search=AuditSearchConfig(seconds=0.2)),
                                  tls_dir=os.path.join(folder, "tls"))
    since, until = now - timedelta(days=args.days), now
    history = tenant.history(since, until - timedelta(minutes=30), now)  # what the queries will return
    print(f"{len(history):,} records over {args.days} days ({args.events_per_week:,} events a simulated week)")

    # the raw limit: the same records, normalized and stored in pages of 1,000, no HTTP
    with SqliteStore(os.path.join(folder, "raw.db")) as store:
        pages = [[graph_record(r) for r in history[i:i + 1000]] for i in range(0, len(history), 1000)]
        began = time.perf_counter()
        for page in pages:
            store.store_events(rows_of(page)[0])
        raw = len(history) / (time.perf_counter() - began)

    def backfill_rate(pagers: int) -> float:
        backfill.PAGERS = pagers
        path = os.path.join(folder, f"audit-{pagers}.db")
        settings = load_settings({"AUDIT_STORE": f"sqlite:///{path}", **env}, dotenv_path=None)
        with SqliteStore(path) as store:
            began = time.perf_counter()
            report = run_backfill(settings, store, since, until)
            seconds = time.perf_counter() - began
        assert report.ok and report.records == len(history), report.summary()
        rate = report.records / seconds
        print(f"backfill, {pagers} quer{'y' if pagers == 1 else 'ies'} paged at a time: {report.records:,} records "
              f"in {seconds:,.1f} s = {rate:,.0f} records/s end to end (submitted, polled, paged over HTTPS with "
              f"{args.latency} s a request, normalized, stored): {rate / raw:.0%} of the raw limit")
        return rate

    pagers = backfill.PAGERS
    one, several = backfill_rate(1), backfill_rate(pagers)
    server.stop()
    print(f"raw limit: {raw:,.0f} records/s (normalize + store, no HTTP); {pagers} pagers vs 1: "
          f"{several / one:.2f}×")

    # the model: 5,000 seats, ~1M records a day, 180 days
    per_day, days, limit, budget = 1_000_000, 180, backfill.RECORD_LIMIT, backfill.SUBMISSIONS_PER_DAY
    queries = math.ceil(timedelta(days=days) / backfill.window_length(per_day))  # as the planner sizes them
    page_seconds = 1.5  # a page of 1,000 records from the real service (assumed; the simulator answers faster)
    paging_hours = per_day * days / 1000 * page_seconds / 3600
    print(f"model, 5,000 seats × 180 days: {per_day * days / 1e6:,.0f}M records, {queries} queries (each under the "
          f"~{limit / 1e6:.0f}M record limit) → {queries / budget:.1f} days of the {budget}/24 h submission budget; "
          f"paging at {page_seconds} s per 1,000-record page: {paging_hours:,.0f} h one query at a time, "
          f"{paging_hours / pagers:,.0f} h with {pagers} at a time; storing at the raw limit measured here: "
          f"{per_day * days / raw / 3600:,.1f} h")


if __name__ == "__main__":
    main()
