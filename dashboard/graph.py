"""Counted edges → a drawable graph: nodes sized and edges widened by event count, the top entities kept
(never a silent sample), positions computed once, every label and tooltip escaped. Pure: no Streamlit,
no I/O, so the drawing component can be swapped and this can be tested hard."""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from eventstore.ip import IpSet
from eventstore.model import fold

from .entities import KINDS, scoped
from .untrusted import html_text

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
LABELLED, SMALL_GRAPH = 15, 50  # a pivot such as one IP and the 40 accounts it sprayed is "small"
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
    "user → operation → target": ("user", "operation", "object"),
    "IP → operation": ("ip", "operation"),
}


@dataclass
class Node:
    id: str
    kind: str
    value: str
    count: int
    highlighted: bool = False
    scope: str = ""  # the id of the node this one belongs to (an operation drawn once per user), or ""
    note: str = ""  # a second line under the name (an IP's country and network owner)
    x: float = 0.0
    y: float = 0.0
    size: float = MIN_SIZE

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.value, self.scope


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

    def find(self, identifier: str) -> Node | None:
        return next((node for node in self.nodes if node.id == identifier), None)

    @property
    def capped(self) -> bool:
        return len(self.nodes) < self.total_entities

    @property
    def links_capped(self) -> bool:
        return len(self.links) < self.total_links


def node_id(kind: str, value: str, scope: str = "") -> str:
    """"ip:198.51.100.9"; a node drawn once per chain head: its parts in JSON, which no value can imitate."""
    return f"{kind}:{value}" if not scope else json.dumps([kind, value, scope], ensure_ascii=False)


def split_node_id(identifier: str) -> tuple[str, str]:
    """(kind, value) of an unscoped node's id: kinds hold no colon, so the first one splits it."""
    kind, _, value = identifier.partition(":")
    return kind, value


def parse_node_id(identifier: str) -> tuple[str, str, str] | None:
    """(kind, value, scope) of a node id — from a URL too, so anything else is None."""
    if identifier.startswith("["):
        try:
            key = json.loads(identifier)
        except ValueError:
            return None
        ok = isinstance(key, list) and len(key) == 3 and all(isinstance(part, str) for part in key)
        return tuple(key) if ok and key[0] in KINDS and parse_node_id(key[2]) else None
    kind, value = split_node_id(identifier)
    return (kind, value, "") if kind in KINDS and value else None


def entity_of(kind: str, value: str, scope: str = "") -> dict[str, str]:
    """kind → value of the events behind a node: its own, and its chain head's when it belongs to one."""
    entity = {kind: value}
    if scope:
        head_kind, head_value = split_node_id(scope)
        entity[head_kind] = head_value
    return entity


def neighbour_edges(key: tuple[str, str, str], related: dict[str, pd.DataFrame], chain: tuple[str, ...]
                    ) -> pd.DataFrame:
    """A node's top neighbours of each kind (value, n frames) as edges from it, to draw in place. An operation
    found from a chain head belongs to that head, as the chain's own operations do."""
    kind, value, scope = key
    rows = []
    for other, frame in related.items():
        other_scope = node_id(kind, value) if scoped(other, chain) and kind == chain[0] else ""
        # a hop per kind: the node's events are counted once per kind, not once per neighbour kind summed
        rows.extend((kind, value, scope, other, v, other_scope, int(n), f"{node_id(*key)} → {other}")
                    for v, n in zip(frame["value"], frame["n"]))
    return pd.DataFrame(rows, columns=["src_kind", "src", "src_scope", "dst_kind", "dst", "dst_scope", "n", "hop"])


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
                seed: int = 7, max_links: int | None = None, keep: frozenset[tuple[str, str, str]] = frozenset()
                ) -> Graph:
    """`edges` has columns src_kind, src, dst_kind, dst, n (and optionally src_scope, dst_scope, and hop: which
    set of edges a row belongs to). Keeps the `cap` entities with the most events (highlighted ones first) plus the
    (kind, value, scope) entities in `keep` (a node's neighbours, expanded in place), the edges among them, and lays
    them out once."""
    cap = max(1, min(int(cap), MAX_CAP))
    if edges.empty:
        return Graph()
    edges = edges.assign(**{c: "" for c in ("src_scope", "dst_scope") if c not in edges})
    chain_hop = edges["src_kind"] + ">" + edges["dst_kind"]
    edges = edges.assign(hop=edges["hop"].fillna(chain_hop) if "hop" in edges else chain_hop)
    # an entity's events: the most it has on one side of one hop (a middle node is not counted twice)
    totals: dict[tuple[str, str, str], int] = {}
    for side in ("src", "dst"):
        sums = edges.groupby(["hop", f"{side}_kind", side, f"{side}_scope"])["n"].sum()
        for (_, kind, value, scope), n in sums.items():
            totals[(kind, value, scope)] = max(totals.get((kind, value, scope), 0), int(n))
    ranked = sorted(totals, key=lambda key: (key[:2] not in highlight, -totals[key], key))
    kept = list(dict.fromkeys(ranked[:cap] + [key for key in ranked if key in keep]))
    smallest, largest = min(totals[key] for key in kept), max(totals[key] for key in kept)
    nodes = {key: Node(node_id(*key), key[0], key[1], totals[key], key[:2] in highlight, scope=key[2],
                       size=scale(totals[key], smallest, largest, MIN_SIZE, MAX_SIZE)) for key in kept}
    ids = {side: _ids(edges[f"{side}_kind"], edges[side], edges[f"{side}_scope"]) for side in ("src", "dst")}
    kept_ids = {node.id for node in nodes.values()}
    among_kept = ids["src"].isin(kept_ids) & ids["dst"].isin(kept_ids)
    # the same pair from a hop and from an expansion is one link
    pairs = pd.DataFrame({"s": ids["src"][among_kept], "t": ids["dst"][among_kept], "n": edges["n"][among_kept]})
    candidates = [Link(source, target, int(n)) for (source, target), n in pairs.groupby(["s", "t"])["n"].sum().items()]
    # two links per entity on average reads as a picture; every entity keeps its strongest link in any case
    budget = min(MAX_LINKS, 2 * max(cap, len(kept))) if max_links is None else max_links
    links = _strongest_links(candidates, budget, {node.id: node.count for node in nodes.values()})
    thinnest, widest = min((k.count for k in links), default=1), max((k.count for k in links), default=1)
    for link in links:
        link.width = scale(link.count, thinnest, widest, MIN_WIDTH, MAX_WIDTH)
    graph = Graph(list(nodes.values()), links, len(totals), len(candidates))
    _layout(graph, seed)
    return graph


def _ids(kinds: pd.Series, values: pd.Series, scopes: pd.Series) -> pd.Series:
    """node_id over whole columns (a week of a large tenant has many thousand pairs)."""
    ids = kinds + ":" + values
    scoped_rows = scopes != ""
    if scoped_rows.any():
        ids[scoped_rows] = [node_id(*key) for key in zip(kinds[scoped_rows], values[scoped_rows], scopes[scoped_rows])]
    return ids


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
    _make_room(graph)
    graph.label_size = _label_size(graph)


def _label_size(graph: Graph) -> float:
    """The font size, in graph units, that comes out at LABEL_PX once the first view fits the graph into the canvas."""
    extent = 2 * max((max(abs(n.x), abs(n.y)) for n in graph.nodes), default=0.0) + 2 * MAX_SIZE
    return round(LABEL_PX * extent / CANVAS_PX, 1)


def _make_room(graph: Graph, rounds: int = 80) -> None:
    """Push apart the nodes whose drawn names would overlap (a name is centred under its dot), a little at a time
    along the axis that needs the smaller move. The font grows with the picture, so it is measured every round."""
    shown = labelled(graph)
    nodes = [n for n in graph.nodes if n.id in shown]
    if len(nodes) < 2:
        return
    x, y = np.array([n.x for n in nodes]), np.array([n.y for n in nodes])
    radius = np.array([n.size for n in nodes])
    chars = np.array([min(len(n.value), 33) for n in nodes]) * 0.55  # an average glyph is ~0.55 em wide
    order = np.arange(len(nodes))
    ties = np.where(order[:, None] < order[None, :], 1.0, -1.0)
    others = [max(abs(n.x), abs(n.y)) for n in graph.nodes if n.id not in shown]
    for _ in range(rounds):
        extent = 2 * max(np.abs(x).max(), np.abs(y).max(), *others) + 2 * MAX_SIZE
        font = LABEL_PX * extent / CANVAS_PX
        half_w = np.maximum(chars * font / 2, radius) + font * 0.3
        top, bottom = y - radius, y + radius + 1.4 * font
        centre_y, half_h = (top + bottom) / 2, (bottom - top) / 2
        dx, dy = x[:, None] - x[None, :], centre_y[:, None] - centre_y[None, :]
        over_x = half_w[:, None] + half_w[None, :] - np.abs(dx)
        over_y = half_h[:, None] + half_h[None, :] - np.abs(dy)
        overlap = (over_x > 0) & (over_y > 0)
        np.fill_diagonal(overlap, False)
        if not overlap.any():
            break
        along_y = overlap & (over_y <= over_x)
        along_x = overlap & ~along_y
        y += 0.3 * np.where(along_y, np.where(dy == 0, ties, np.sign(dy)) * over_y, 0.0).sum(axis=1)
        x += 0.3 * np.where(along_x, np.where(dx == 0, ties, np.sign(dx)) * over_x, 0.0).sum(axis=1)
    for node, new_x, new_y in zip(nodes, x, y):
        node.x, node.y = round(float(new_x), 1), round(float(new_y), 1)


def annotate(graph: Graph, notes: dict[tuple[str, str], str]) -> None:
    """Give nodes a second line: (kind, value) → text, e.g. ("ip", "198.51.100.9") → "RO · Example Hosting"."""
    for node in graph.nodes:
        node.note = notes.get((node.kind, node.value), "")


def tooltip(node: Node) -> str:
    # Starts with a digit: the component opens a node's title on double-click, and a string that begins
    # with a digit can never be read as a URL scheme such as javascript:.
    text = f"{node.count:,} events · {KINDS[node.kind].label}: {html_text(node.value, 300)}"
    if node.note:
        text += f" · {html_text(node.note, 120)}"
    if node.scope:
        kind, value = split_node_id(node.scope)
        text += f" · by {KINDS[kind].label} {html_text(value, 200)}"
    return text


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
        color = KINDS[node.kind].color
        out.append({
            "id": node.id, "label": html_text(node.value, 32) + (f"\n{html_text(node.note, 32)}" if node.note else ""),
            "title": tooltip(node),
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
                   watchlisted=node.highlighted, by=_xml_safe(node.scope), x=node.x, y=node.y)
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
        "nodes": [{"id": n.id, "kind": n.kind, "value": n.value, "events": n.count, "watchlisted": n.highlighted,
                   **({"by": n.scope} if n.scope else {})} for n in graph.nodes],
        "edges": [{"source": link.source, "target": link.target, "events": link.count} for link in graph.links],
    }, ensure_ascii=False, indent=1)
