"""Leads at scale: the built-in detections over stores of 1M and 20M events (90 days, built as bench/scale.py builds
them), measured as a first look over everything (the baseline: what a full rescan per page view would cost), then
per synced batch (five minutes of a 5,000-seat tenant: ~3,500 events) — the cost the incremental design pays — and
the number of leads on a week of the simulated organization's everyday activity (no planted stories); then the
leads joined into incidents, all at once (the baseline) and per batch.

    .venv/bin/python bench/leads.py [--sizes 1M,20M] [--workdir DIR]"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.scale import NOW, build, day_events, size_of, source_week, write  # noqa: E402

BATCH = 3_500  # five minutes of ~1M events a day


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, week) -> dict:
    from dashboard.index import ActivityIndex
    from dashboard.ipinfo import IpInfo
    from detect.incidents import Correlator
    from detect.leads import LeadEngine
    from eventstore.sqlite import SqliteStore
    from simulator.tenant import NETWORKS

    out = {}
    with SqliteStore(path) as store:
        index = ActivityIndex(store, path + ".index", ipinfo=IpInfo(networks_text=NETWORKS))
        began = time.perf_counter()
        index.refresh()
        index.wait(timeout=7200)
        out["index build s"] = time.perf_counter() - began
        engine = LeadEngine(index, store)
        began = time.perf_counter()
        out["leads"] = engine.update()
        out["first look s"] = time.perf_counter() - began
        correlator = Correlator(index, store)
        leads = engine.leads()
        began = time.perf_counter()
        out["incidents"] = len(correlator.correlate(leads))
        out["first correlation s"] = time.perf_counter() - began
        rounds, reads, joins = [], [], []
        for n in range(5):
            rows = day_events(week, NOW.replace(hour=0), BATCH)
            write(store, rows)
            began = time.perf_counter()
            index.refresh()
            engine.update()
            rounds.append(time.perf_counter() - began)
            began = time.perf_counter()
            leads = engine.leads()  # from the store, as every page that shows them reads them
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            correlator.correlate(leads)
            joins.append(time.perf_counter() - began)
        out["per batch s"] = statistics.median(rounds)
        out["correlation per batch s"] = statistics.median(joins)
        out["leads read s"] = statistics.median(reads)
        index.close()
    out["peak MB"] = peak_mb()
    return out


def benign() -> int:
    from dashboard.index import ActivityIndex
    from dashboard.ipinfo import IpInfo
    from detect.leads import LeadEngine
    from eventstore.sqlite import SqliteStore
    from simulator import SimulatedTenant
    from simulator.tenant import NETWORKS
    from tests.conftest import fill_store

    folder = tempfile.mkdtemp()
    counts = []
    for seed in (7, 11, 13):
        tenant = SimulatedTenant(NOW - timedelta(days=7) + timedelta(hours=1), seed=seed, events_per_week=30_000,
                                 stories=False)
        with SqliteStore(os.path.join(folder, f"{seed}.db")) as store:
            fill_store(store, tenant)
            index = ActivityIndex(store, os.path.join(folder, f"{seed}.index"), ipinfo=IpInfo(networks_text=NETWORKS))
            index.refresh()
            index.wait()
            engine = LeadEngine(index, store)
            engine.update()
            counts.append(len(engine.leads()))
            index.close()
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,20M")
    parser.add_argument("--workdir", help="where the stores go (kept; a store already there is reused)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-leads-")
    os.makedirs(workdir, exist_ok=True)
    print(f"leads on the simulated organization's everyday activity, 3 weeks of 30,000 events (seeds 7, 11, 13): "
          f"{benign()}")
    week = source_week(300_000)
    for size in args.sizes.split(","):
        path = os.path.join(workdir, f"leads-{size}.db")
        if not os.path.exists(path):
            began = time.perf_counter()
            build(path, size_of(size), week)
            print(f"{size}: store built in {time.perf_counter() - began:,.0f} s")
        for name in (".index", ".index.wal"):
            if os.path.exists(path + name):
                os.remove(path + name)
        figures = measure(path, week)
        ratio = figures["first look s"] / max(figures["per batch s"], 1e-9)
        print(f"{size}: index built in {figures['index build s']:,.1f} s; first look (every rule over everything) "
              f"{figures['first look s']:,.2f} s, {figures['leads']:,} leads; per synced batch of {BATCH:,} events "
              f"(index refresh + leads) {figures['per batch s']:,.3f} s, {ratio:,.0f}x less than a full look; "
              f"peak {figures['peak MB']:,.0f} MB")
        print(f"{size}: {figures['leads']:,} leads joined into {figures['incidents']:,} incidents in "
              f"{figures['first correlation s']:,.2f} s; per synced batch {figures['correlation per batch s']:,.3f} s "
              f"({figures['first correlation s'] / max(figures['correlation per batch s'], 1e-9):,.0f}x less), after "
              f"reading the leads from the store ({figures['leads read s']:,.3f} s)")


if __name__ == "__main__":
    main()
