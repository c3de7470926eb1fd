"""Dashboard benchmark on a store of N simulated events (default 1,000,000): the time from a filter change to
graph data ready (query + aggregation + cap + layout) for user → IP over 7 days and for narrow filters, and,
in the same run, the limit: the same edge counts computed by DuckDB over an in-memory table of only the
needed columns. Also: the index's first load, how soon a finished sync shows in the graph, peak RSS.

    .venv/bin/python bench/dashboard.py [--events 1000000] [--store PATH]

The store is built in a child process (so its memory is not counted), and kept when --store is given."""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dashboard.graph import build_graph  # noqa: E402
from dashboard.index import ActivityIndex  # noqa: E402
from eventstore import Filter  # noqa: E402
from eventstore.model import CONTENT_TYPES, BlobRecord, utc_text  # noqa: E402
from eventstore.normalize import decode_blob  # noqa: E402
from eventstore.sqlite import SqliteStore  # noqa: E402
from ingest.simulator.tenant import ATTACKER_IP, SimulatedTenant  # noqa: E402

START = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=7, hours=-1)


def store_tenant(store: SqliteStore, tenant: SimulatedTenant, start: datetime, end: datetime) -> int:
    added = 0
    for content_type in CONTENT_TYPES:
        for blob in tenant.blobs_created(content_type, start, end, end):
            created = utc_text(blob.created)
            rows = decode_blob(tenant.blob_json(content_type, blob.index), content_type, created).rows
            added += store.store_blobs([(BlobRecord(blob.content_id, content_type, created,
                                                    utc_text(blob.expiration)), rows)])
    return added


def build(path: str, events: int) -> None:
    tenant = SimulatedTenant(START, seed=7, events_per_week=events)
    with SqliteStore(path) as store:
        # everything but the last hour; the last hour is the "sync that completes" measured later
        store_tenant(store, tenant, START - timedelta(days=1), datetime.now(timezone.utc) - timedelta(hours=1))


def median_seconds(action, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", help="store file to build or reuse")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.store, args.events)
        return
    workdir = tempfile.mkdtemp(prefix="bench-dashboard-")
    path = args.store or os.path.join(workdir, "audit.db")
    if not os.path.exists(path):
        began = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build-only", "--store", path, "--events", str(args.events)],
                       check=True)
        print(f"store built : {time.perf_counter() - began:.0f} s ({path})")

    store = SqliteStore(path)
    index = ActivityIndex(store)
    began = time.perf_counter()
    index.refresh()
    total = index.count(Filter())
    print(f"index load  : {total:,} events into the in-memory index in {time.perf_counter() - began:.1f} s "
          "(once per dashboard process; later syncs are copied incrementally)")

    week = Filter(start=datetime.now(timezone.utc) - timedelta(days=7))
    cases = {
        "user → IP, 7 days": week,
        "one user, 7 days": Filter(start=week.start, user_id=("Megan.Bowen@contoso.com",)),
        "one IP, 7 days": Filter(start=week.start, client_ip=(ATTACKER_IP,)),
    }
    limit_con = duckdb.connect()
    frame = index._query("SELECT user_id, client_ip, ts FROM ev", [])  # just the needed columns
    limit_con.register("frame", frame)
    limit_con.execute("CREATE TABLE t AS SELECT * FROM frame")
    del frame
    naive_start = week.start.replace(tzinfo=None)
    limits = {
        "user → IP, 7 days": ("SELECT user_id, client_ip, count(*) FROM t WHERE ts >= ? AND user_id <> '' AND "
                              "client_ip <> '' GROUP BY ALL", [naive_start]),
        "one user, 7 days": ("SELECT user_id, client_ip, count(*) FROM t WHERE ts >= ? AND user_id = ? AND "
                             "client_ip <> '' GROUP BY ALL", [naive_start, "Megan.Bowen@contoso.com"]),
        "one IP, 7 days": ("SELECT user_id, client_ip, count(*) FROM t WHERE ts >= ? AND client_ip = ? AND "
                           "user_id <> '' GROUP BY ALL", [naive_start, ATTACKER_IP]),
    }
    for name, flt in cases.items():
        ours = median_seconds(lambda flt=flt: build_graph(index.edges(flt, ("user", "ip")), cap=150))
        sql, params = limits[name]
        limit = median_seconds(lambda sql=sql, params=params: limit_con.execute(sql, params).fetchall())
        graph = build_graph(index.edges(flt, ("user", "ip")), cap=150)
        print(f"{name:<18}: {ours:.3f} s to graph data ready ({len(graph.nodes)} of {graph.total_entities:,} "
              f"entities, layout included) · DuckDB limit {limit:.3f} s · ratio {ours / limit:.1f}×")

    # A sync completes: an hour of events the store has not seen arrives; how long until the graph shows it?
    tenant = SimulatedTenant(START, seed=int(time.time()), events_per_week=args.events)
    added = store_tenant(store, tenant, datetime.now(timezone.utc) - timedelta(hours=1, minutes=1),
                         datetime.now(timezone.utc))
    began = time.perf_counter()
    index.refresh()
    build_graph(index.edges(week, ("user", "ip")), cap=150)
    print(f"after a sync: {added:,} new events visible in the graph {time.perf_counter() - began:.2f} s after it "
          "completed (index refresh + graph)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS    : {peak:.0f} MB (this process plays the dashboard: index + queries)")
    store.close()


if __name__ == "__main__":
    main()
