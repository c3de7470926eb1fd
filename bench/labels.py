"""Readable graphs: on the DEMO tenant's week, five relationships × three layouts at the default cap (60) and at 150
— how many names are drawn at first sight, how many drawn names (or shapes) they overlap, and how long each graph
takes to build — with names given room (dashboard.graph._name) against the same layouts with the biggest names
simply drawn where the layout put them, measured in the same run. Positions are the frame's own pixels, so an
overlap here is one on screen; the browser tests read the names off the canvas to check it.

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


def overlapping(graph) -> int:
    """Pairs of (a drawn name's box, another box: a name or a shape) that overlap, in the frame's pixels."""
    from dashboard.graph import _box

    boxes = [(n.x - b[0], n.y - b[1], n.x + b[0], n.y + b[2], n.named) for n in graph.nodes for b in [_box(n)]]
    return sum(1 for a, b in itertools.combinations(boxes, 2) if (a[4] or b[4]) and
               a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


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
    name_them = drawing._name

    def where_they_fall(graph, candidates, movable):  # the baseline: every candidate named where the layout put it
        for node in candidates:
            node.named = True

    for cap in (60, 150):
        for label, naming in (("names where the layout put them", where_they_fall), ("names given room", name_them)):
            drawing._name = naming
            named, overlaps, slowest = [], [], 0.0
            for edges in cases.values():
                for seed in (7, 8, 9):
                    began = time.perf_counter()
                    graph = drawing.build_graph(edges, cap=cap, seed=seed)
                    slowest = max(slowest, time.perf_counter() - began)
                    named.append(sum(n.named for n in graph.nodes))
                    overlaps.append(overlapping(graph))
            print(f"cap {cap}, {label}: {sum(overlaps)} overlaps over {len(overlaps)} graphs; names drawn "
                  f"{min(named)}–{max(named)} a graph (mean {sum(named) / len(named):.0f}); slowest build "
                  f"{slowest:.2f} s")
    drawing._name = name_them
    index.close()
    store.close()


if __name__ == "__main__":
    main()
