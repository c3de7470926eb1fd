"""Readable graphs: pairs of drawn names that overlap, on the DEMO tenant's week, for five relationships and three
layouts each — with the names made room for (dashboard.graph._make_room) against the same layouts without it,
measured in the same run — and the time to build each graph.

    .venv/bin/python bench/labels.py"""
from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def overlapping(graph, labelled) -> int:
    """Pairs of names drawn at first sight whose boxes (centred under their dots) overlap."""
    size, boxes = graph.label_size, []
    for node in graph.nodes:
        if node.id in labelled:
            width = min(32, len(node.value)) * 0.55 * size
            boxes.append((node.x - width / 2, node.y + node.size, node.x + width / 2, node.y + node.size + size))
    return sum(1 for a, b in itertools.combinations(boxes, 2)
               if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def main() -> None:
    from dashboard import graph as drawing
    from dashboard.index import ActivityIndex
    from eventstore import Filter
    from eventstore.sqlite import SqliteStore
    from ingest.demo import DEMO_EVENTS_PER_WEEK, DEMO_SEED
    from simulator import SimulatedTenant
    from simulator.tenant import ATTACKER_IP
    from tests.conftest import fill_store

    folder = tempfile.mkdtemp(prefix="bench-labels-")
    store = SqliteStore(os.path.join(folder, "audit.db"))
    start = datetime.now(timezone.utc) - timedelta(days=7) + timedelta(hours=1)
    fill_store(store, SimulatedTenant(start, seed=DEMO_SEED, events_per_week=DEMO_EVENTS_PER_WEEK))
    index = ActivityIndex(store, os.path.join(folder, "audit.db.index"))
    index.refresh()
    index.wait()
    cases = {"user → IP": index.edges(Filter(), ("user", "ip")),
             "user → IP → operation": index.edges(Filter(), ("user", "ip", "operation")),
             "user → operation → target": index.edges(Filter(), ("user", "operation", "object")),
             "IP → user, one IP": index.edges(Filter(client_ip=(ATTACKER_IP,)), ("ip", "user")),
             "user → file": index.edges(Filter(), ("user", "file"))}
    make_room = drawing._make_room
    totals = {}
    for name, room in (("without making room", lambda graph: None), ("with making room", make_room)):
        drawing._make_room = room
        found, slowest = [], 0.0
        for edges in cases.values():
            for seed in (7, 8, 9):
                began = time.perf_counter()
                graph = drawing.build_graph(edges, seed=seed)
                slowest = max(slowest, time.perf_counter() - began)
                found.append(overlapping(graph, drawing.labelled(graph)))
        totals[name] = sum(found)
        print(f"{name}: {sum(found)} overlapping pairs of names over {len(found)} graphs ({found}); slowest build "
              f"{slowest:.3f} s")
    drawing._make_room = make_room
    index.close()
    store.close()


if __name__ == "__main__":
    main()
