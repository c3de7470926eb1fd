"""Counted edges → a drawable graph: nodes sized and edges widened by event count, the top entities kept
(never a silent sample), positions computed once, every label and tooltip escaped. Pure: no Streamlit,
no I/O, so the drawing component can be swapped and this can be tested hard."""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field

import networkx as nx
import pandas as pd

from eventstore.ip import IpSet
from eventstore.model import fold

from .untrusted import html_text

KIND_COLORS = {"user": "#4f8df7", "ip": "#f2994a", "operation": "#27ae60", "file": "#bb6bd9", "site": "#9b51e0",
               "workload": "#56ccf2", "application": "#eb5757", "agent": "#828282"}
KIND_LABELS = {"user": "user", "ip": "IP", "operation": "operation", "file": "file", "site": "site",
               "workload": "workload", "application": "application", "agent": "user agent"}
HIGHLIGHT = "#ffd400"
DEFAULT_CAP, MAX_CAP = 60, 300  # the first view is read at a glance; the analyst raises it when they need to
# vis-network slows sharply with many edges (measured: 1,500 edges take 8 s to draw, 200 take 1 s), so
# draw each kept entity's strongest link, then the strongest of the rest, up to this many.
MAX_LINKS = 400
MIN_SIZE, MAX_SIZE = 10.0, 50.0
MIN_WIDTH, MAX_WIDTH = 1.0, 10.0
# Names drawn at first sight: the biggest entities' (every one's on a small graph); the others' appear as the
# analyst zooms in, and all are in the tooltips. The first view is fitted to the canvas, so a label's size in
# graph units is chosen to come out at LABEL_PX on a canvas about CANVAS_PX wide.
LABELLED, SMALL_GRAPH = 15, 30
LABEL_PX, CANVAS_PX = 13, 560

# What the analyst can ask to see, as chains of entity kinds.
RELATIONSHIPS = {
    "user → IP": ("user", "ip"),
    "IP → user": ("ip", "user"),
    "user → operation": ("user", "operation"),
    "user → file": ("user", "file"),
    "user → site": ("user", "site"),
    "user → workload": ("user", "workload"),
    "user → IP → operation": ("user", "ip", "operation"),
    "IP → operation": ("ip", "operation"),
}


@dataclass
class Node:
    id: str
    kind: str
    value: str
    count: int
    highlighted: bool = False
    x: float = 0.0
    y: float = 0.0
    size: float = MIN_SIZE


@dataclass
class Link:
    source: str
    target: str
    count: int
    width: float = MIN_WIDTH


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    total_entities: int = 0  # before the cap
    total_links: int = 0  # among the kept entities, before the link cap
    label_size: float = float(LABEL_PX)  # font size, in graph units, of the names drawn at first sight

    @property
    def capped(self) -> bool:
        return len(self.nodes) < self.total_entities

    @property
    def links_capped(self) -> bool:
        return len(self.links) < self.total_links


def node_id(kind: str, value: str) -> str:
    return f"{kind}:{value}"  # kinds hold no colon, so the first one splits it back


def split_node_id(identifier: str) -> tuple[str, str]:
    kind, _, value = identifier.partition(":")
    return kind, value


def watched_entities(edges: pd.DataFrame, watch, case_sensitive: bool = True) -> frozenset[tuple[str, str]]:
    """The (kind, value) pairs among these edges that a watch-list names: its accounts (users) and the IPs
    inside its addresses/ranges."""
    found = set()
    same = (lambda value: value) if case_sensitive else fold
    accounts = {same(a) for a in watch.accounts}
    addresses = IpSet(watch.networks)
    for kind, column in (("src_kind", "src"), ("dst_kind", "dst")):
        for entity_kind, value in set(zip(edges[kind], edges[column])):
            if entity_kind == "user" and same(value) in accounts:
                found.add((entity_kind, value))
            elif entity_kind == "ip" and value in addresses:
                found.add((entity_kind, value))
    return frozenset(found)


def scale(count: int, smallest: int, largest: int, low: float, high: float) -> float:
    """Logarithmic between the smallest and largest count drawn, so that a 5-event and a 50,000-event
    entity are both readable and the busiest stand out."""
    if largest <= smallest:
        return high if count >= largest else low
    return round(low + (high - low) * (math.log(count) - math.log(smallest)) /
                 (math.log(largest) - math.log(smallest)), 2)


def build_graph(edges: pd.DataFrame, cap: int = DEFAULT_CAP, highlight: frozenset[tuple[str, str]] = frozenset(),
                seed: int = 7, max_links: int | None = None) -> Graph:
    """`edges` has columns src_kind, src, dst_kind, dst, n. Keeps the `cap` entities with the most events
    (highlighted ones first), the edges among them, and lays them out once."""
    cap = max(1, min(int(cap), MAX_CAP))
    if edges.empty:
        return Graph()
    outgoing = edges.groupby(["src_kind", "src"])["n"].sum()
    incoming = edges.groupby(["dst_kind", "dst"])["n"].sum()
    totals: dict[tuple[str, str], int] = {}
    for (kind, value), n in list(outgoing.items()) + list(incoming.items()):
        totals[(kind, value)] = max(totals.get((kind, value), 0), int(n))  # a middle node is counted once
    ranked = sorted(totals, key=lambda key: (key not in highlight, -totals[key], key))
    kept = set(ranked[:cap])
    smallest, largest = min(totals[key] for key in kept), max(totals[key] for key in kept)
    nodes = {key: Node(node_id(*key), key[0], key[1], totals[key], key in highlight,
                       size=scale(totals[key], smallest, largest, MIN_SIZE, MAX_SIZE)) for key in ranked[:cap]}
    sources, targets = edges["src_kind"] + ":" + edges["src"], edges["dst_kind"] + ":" + edges["dst"]  # node ids
    kept_ids = {node.id for node in nodes.values()}
    among_kept = sources.isin(kept_ids) & targets.isin(kept_ids)
    candidates = [Link(source, target, int(n)) for source, target, n in
                  zip(sources[among_kept], targets[among_kept], edges["n"][among_kept])]
    # two links per entity on average reads as a picture; every entity keeps its strongest link in any case
    budget = min(MAX_LINKS, 2 * cap) if max_links is None else max_links
    links = _strongest_links(candidates, budget, {node.id: node.count for node in nodes.values()})
    thinnest, widest = min((k.count for k in links), default=1), max((k.count for k in links), default=1)
    for link in links:
        link.width = scale(link.count, thinnest, widest, MIN_WIDTH, MAX_WIDTH)
    graph = Graph(list(nodes.values()), links, len(totals), len(candidates))
    _layout(graph, seed)
    return graph


def _strongest_links(links: list[Link], limit: int, weight: dict[str, int]) -> list[Link]:
    """Every node keeps its strongest link (nothing floats unexplained); the rest of the budget goes to the
    links of the busiest entities first, so a hub such as a spraying IP shows all its spokes."""
    ordered = sorted(links, key=lambda link: -link.count)
    chosen, seen_nodes, rest = [], set(), []
    for link in ordered:
        if link.source not in seen_nodes or link.target not in seen_nodes:
            chosen.append(link)
            seen_nodes.update((link.source, link.target))
        else:
            rest.append(link)
    rest.sort(key=lambda link: (-max(weight[link.source], weight[link.target]), -link.count))
    chosen.extend(rest[: max(0, limit - len(chosen))])
    return chosen


def _layout(graph: Graph, seed: int) -> None:
    """Positions once, so the picture does not move and redraws fast (physics stays off)."""
    g = nx.Graph()
    g.add_nodes_from(n.id for n in graph.nodes)
    g.add_weighted_edges_from((link.source, link.target, math.log1p(link.count)) for link in graph.links)
    positions = nx.spring_layout(g, seed=seed, iterations=40, k=3.0 / math.sqrt(max(1, len(graph.nodes))))
    spread = 250 + 40 * math.sqrt(len(graph.nodes))  # graph units: room between nodes as the graph grows
    for node in graph.nodes:
        x, y = positions[node.id]
        node.x, node.y = round(float(x) * spread, 1), round(float(y) * spread, 1)
    extent = 2 * max((max(abs(n.x), abs(n.y)) for n in graph.nodes), default=0.0) + 2 * MAX_SIZE
    graph.label_size = round(LABEL_PX * extent / CANVAS_PX, 1)  # the first view fits `extent` into the canvas


def tooltip(count: int, kind: str, value: str) -> str:
    # Starts with a digit: the component opens a node's title on double-click, and a string that begins
    # with a digit can never be read as a URL scheme such as javascript:.
    return f"{count:,} events · {KIND_LABELS[kind]}: {html_text(value, 300)}"


def labelled(graph: Graph) -> set[str]:
    """The ids of the nodes whose names are drawn at first sight."""
    if len(graph.nodes) <= SMALL_GRAPH:
        return {n.id for n in graph.nodes}
    return {n.id for n in sorted(graph.nodes, key=lambda n: -n.count)[:LABELLED]}


def vis_nodes(graph: Graph) -> list[dict]:
    """Node dicts as the vis-network component takes them. Every node has its label; the ones not drawn at first
    sight get a font small enough that vis-network skips it until the analyst zooms in."""
    out, shown = [], labelled(graph)
    for node in graph.nodes:
        color = KIND_COLORS[node.kind]
        out.append({
            "id": node.id, "label": html_text(node.value, 32), "title": tooltip(node.count, node.kind, node.value),
            "size": node.size, "x": node.x, "y": node.y, "shape": "dot", "physics": False,
            "color": {"background": color, "border": HIGHLIGHT if node.highlighted else color},
            "borderWidth": 5 if node.highlighted else 1,
            # readable on a light and a dark theme alike
            "font": {"color": "#f0f0f0", "size": graph.label_size if node.id in shown else graph.label_size / 4,
                     "strokeWidth": graph.label_size / 5, "strokeColor": "#1e1e1e"},
        })
    return out


def vis_edges(graph: Graph) -> list[dict]:
    return [{"from": link.source, "to": link.target, "width": link.width, "title": f"{link.count:,} events",
             "color": "#7f8c8d", "arrows": "to", "smooth": False} for link in graph.links]


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters, which audit text may contain: write them as \\uXXXX."""
    return "".join(ch if ch in "\t\n\r" or (" " <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd")
                   or ch > "\uffff" else f"\\u{ord(ch):04x}" for ch in text)


def to_networkx(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph()
    for node in graph.nodes:
        g.add_node(_xml_safe(node.id), kind=node.kind, value=_xml_safe(node.value), events=node.count,
                   watchlisted=node.highlighted, x=node.x, y=node.y)
    for link in graph.links:
        g.add_edge(_xml_safe(link.source), _xml_safe(link.target), events=link.count)
    return g


def to_graphml(graph: Graph) -> bytes:
    buffer = io.BytesIO()
    nx.write_graphml(to_networkx(graph), buffer)
    return buffer.getvalue()


def to_json(graph: Graph) -> str:
    return json.dumps({
        "total_entities": graph.total_entities,
        "nodes": [{"id": n.id, "kind": n.kind, "value": n.value, "events": n.count, "watchlisted": n.highlighted}
                  for n in graph.nodes],
        "edges": [{"source": link.source, "target": link.target, "events": link.count} for link in graph.links],
    }, ensure_ascii=False, indent=1)
