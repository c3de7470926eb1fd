"""Counted edges → a drawable graph: nodes sized and edges widened by event count, the top entities kept
(never a silent sample), positions computed once in the frame's own pixels with room made for every name drawn, so
that no name overlaps another or is cut at the frame's edge; nodes a later expansion adds are placed around their
node without moving the others. Names are text for the canvas (drawn as typed); tooltips are text the component
cannot read as HTML. Pure: no Streamlit, no I/O, so the drawing component can be swapped and this can be tested
hard."""
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

from eventstore.entities import KINDS, scoped
from .applications import name_of
from .ipinfo import place_text
from .textwidth import text_width
from .untrusted import canvas_text, html_text, inert_html

HIGHLIGHT = "#ffd400"
DEFAULT_CAP, MAX_CAP = 60, 300  # the first view is read at a glance; the analyst raises it when they need to
# vis-network slows sharply with many edges (measured: 1,500 edges take 8 s to draw, 200 take 1 s), so
# draw each kept entity's strongest link, then the strongest of the rest, up to this many.
MAX_LINKS = 400
# Positions, sizes and fonts are in the frame's pixels: the frame is the dashboard's wide column on a 1,500-pixel
# screen. Two corner marks make the first view fit exactly this rectangle, so what is laid out here is what is
# drawn (larger on a wider screen, smaller on a narrower one, the same picture).
FRAME_W, FRAME_H = 1040, 700
MIN_SIZE, MAX_SIZE = 7.0, 30.0  # radii
MIN_WIDTH, MAX_WIDTH = 1.0, 8.0
FONT_PX = 12
NAME_CHARS = 30  # a longer name is drawn with "…" (it is whole in the tooltip and the detail panel)
NAMED = 60  # names drawn at first sight, biggest first; the others show on hover (tooltip) and when zoomed in

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
    name: str = ""  # what is drawn when it is not the value (an application's display name); the value is in the tip
    named: bool = False  # its name is drawn at first sight
    about: str = ""  # more for the tooltip (an address's AS number, an application's id)

    @property
    def lines(self) -> list[str]:
        """The name as drawn under the shape: one or two lines, each at most NAME_CHARS."""
        return [canvas_text(text, limit) for text, limit in ((self.name or self.value, NAME_CHARS), (self.note, 26))
                if text]

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
    counts: tuple[int, int] = (1, 1)  # the smallest and largest node counts the sizes scale between
    link_counts: tuple[int, int] = (1, 1)  # ... and link counts the widths do

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
    listed = {"accounts": lambda value: same(value) in accounts, "networks": lambda value: value in addresses}
    for kind, column in (("src_kind", "src"), ("dst_kind", "dst")):
        for entity_kind, value in set(zip(edges[kind], edges[column])):
            side = KINDS[entity_kind].watch
            if side and listed[side](value):
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
                seed: int = 7, max_links: int | None = None, describe=None) -> Graph:
    """`edges` has columns src_kind, src, dst_kind, dst, n (and optionally src_scope, dst_scope, and hop: which
    set of edges a row belongs to). Keeps the `cap` entities with the most events (highlighted ones first), the
    edges among them, and lays them out once. `describe(nodes)` may give the kept nodes a name, a note and more for
    their tooltip before their names are made room for."""
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
    kept = sorted(totals, key=lambda key: (key[:2] not in highlight, -totals[key], key))[:cap]
    graph = Graph(total_entities=len(totals))
    graph.counts = (min(totals[key] for key in kept), max(totals[key] for key in kept))
    graph.nodes = [Node(node_id(*key), key[0], key[1], totals[key], key[:2] in highlight, scope=key[2],
                        size=_size(graph, totals[key])) for key in kept]
    ids = {side: _ids(edges[f"{side}_kind"], edges[side], edges[f"{side}_scope"]) for side in ("src", "dst")}
    kept_ids = {node.id for node in graph.nodes}
    among_kept = ids["src"].isin(kept_ids) & ids["dst"].isin(kept_ids)
    # the same pair from two hops is one link
    pairs = pd.DataFrame({"s": ids["src"][among_kept], "t": ids["dst"][among_kept], "n": edges["n"][among_kept]})
    candidates = [Link(source, target, int(n)) for (source, target), n in pairs.groupby(["s", "t"])["n"].sum().items()]
    # two links per entity on average reads as a picture; every entity keeps its strongest link in any case
    budget = min(MAX_LINKS, 2 * max(cap, len(kept))) if max_links is None else max_links
    graph.links = _strongest_links(candidates, budget, {node.id: node.count for node in graph.nodes})
    graph.total_links = len(candidates)
    graph.link_counts = (min((k.count for k in graph.links), default=1), max((k.count for k in graph.links), default=1))
    for link in graph.links:
        link.width = _width(graph, link.count)
    if describe is not None:
        describe(graph.nodes)
    _layout(graph, seed)
    return graph


def grow(graph: Graph, centre: str, neighbours: pd.DataFrame, describe=None) -> list[Node]:
    """Add a node's neighbours (neighbour_edges' rows) in place: those not drawn yet go around it, nothing already
    drawn moves. Returns the nodes added."""
    hub = graph.find(centre)
    if hub is None or neighbours.empty:
        return []
    added, by_id = [], {node.id: node for node in graph.nodes}
    for kind, value, scope, n in zip(neighbours["dst_kind"], neighbours["dst"], neighbours["dst_scope"],
                                     neighbours["n"]):
        identifier = node_id(kind, value, scope)
        if identifier not in by_id:
            by_id[identifier] = Node(identifier, kind, value, int(n), scope=scope, size=_size(graph, int(n)))
            added.append(by_id[identifier])
        link = next((k for k in graph.links if {k.source, k.target} == {centre, identifier}), None)
        if link is None:
            graph.links.append(Link(centre, identifier, int(n), _width(graph, int(n))))
    if describe is not None and added:
        describe(added)
    graph.nodes.extend(added)
    # on a ring around the node, starting on the side away from the frame's centre
    away = math.atan2(hub.y - FRAME_H / 2, hub.x - FRAME_W / 2)
    ring = hub.size + 70
    for k, node in enumerate(added):
        angle = away + 2 * math.pi * k / max(1, len(added))
        node.x = min(max(hub.x + ring * math.cos(angle), node.size), FRAME_W - node.size)
        node.y = min(max(hub.y + ring * math.sin(angle), node.size), FRAME_H - node.size)
    _spread_shapes(graph.nodes, movable=np.array([node in added for node in graph.nodes]))
    _name(graph, sorted(added, key=lambda n: -n.count), movable={node.id for node in added})
    return added


def _size(graph: Graph, count: int) -> float:
    low, high = graph.counts
    return scale(min(max(count, low), high), low, high, MIN_SIZE, MAX_SIZE)


def _width(graph: Graph, count: int) -> float:
    low, high = graph.link_counts
    return scale(min(max(count, low), high), low, high, MIN_WIDTH, MAX_WIDTH)


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
    """Positions once, in the frame's pixels, so the picture does not move and redraws fast (physics stays off):
    a spring layout spread evenly over the frame, shapes pushed apart, then names given room biggest first."""
    g = nx.Graph()
    g.add_nodes_from(n.id for n in graph.nodes)
    g.add_weighted_edges_from((link.source, link.target, math.log1p(link.count)) for link in graph.links)
    positions = nx.spring_layout(g, seed=seed, iterations=50, k=3.0 / math.sqrt(max(1, len(graph.nodes))))
    for axis, length, edge in ((0, FRAME_W, 90.0), (1, FRAME_H, 40.0)):
        values = np.array([positions[n.id][axis] for n in graph.nodes])
        spread = values.max() - values.min()
        # half where the spring put it, half by rank: a crowded middle is opened up, the order kept
        even = (values.argsort().argsort() + 0.5) / len(values)
        fraction = (0.5 * (values - values.min()) / spread + 0.5 * even) if spread else np.full(len(values), 0.5)
        for node, f in zip(graph.nodes, fraction):
            setattr(node, "xy"[axis], float(edge + f * (length - 2 * edge)))
    _spread_shapes(graph.nodes, movable=np.ones(len(graph.nodes), bool))
    _name(graph, sorted(graph.nodes, key=lambda n: -n.count)[:NAMED], movable={n.id for n in graph.nodes})


def _box(node: Node, named: bool | None = None) -> tuple[float, float, float]:
    """(half width, height above the centre, height below it) of what a node draws: its shape, and its name when
    drawn (centred under the shape, a line per FONT_PX * 1.25)."""
    if not (node.named if named is None else named):
        return node.size, node.size, node.size
    width = max(text_width(line, FONT_PX) for line in node.lines) + 6
    return max(node.size, width / 2), node.size, node.size + 4 + len(node.lines) * FONT_PX * 1.25


def _spread_shapes(nodes: list[Node], movable: np.ndarray, rounds: int = 60) -> None:
    """Push apart shapes that overlap (only the movable ones move), inside the frame."""
    if len(nodes) < 2:
        return
    x, y = np.array([n.x for n in nodes]), np.array([n.y for n in nodes])
    r = np.array([n.size for n in nodes]) + 2
    order = np.arange(len(nodes))
    ties = np.where(order[:, None] < order[None, :], 1.0, -1.0)
    for _ in range(rounds):
        dx, dy = x[:, None] - x[None, :], y[:, None] - y[None, :]
        gap = r[:, None] + r[None, :] - np.hypot(dx, dy)
        overlap = (gap > 0) & (movable[:, None] | movable[None, :])
        np.fill_diagonal(overlap, False)
        if not overlap.any():
            break
        share = np.where(movable[None, :], 0.5, 1.0) * movable[:, None] * np.where(overlap, gap, 0.0)
        distance = np.maximum(np.hypot(dx, dy), 1e-6)
        x += (share * np.where(distance > 1e-6, dx / distance, ties)).sum(axis=1) * 0.5
        y += (share * np.where(distance > 1e-6, dy / distance, 0.0)).sum(axis=1) * 0.5
        x, y = np.clip(x, r, FRAME_W - r), np.clip(y, r, FRAME_H - r)
    for node, new_x, new_y in zip(nodes, x, y):
        node.x, node.y = float(new_x), float(new_y)


# where a node may be nudged to give its name room: nearest first, on rings up to 110 px away
_NUDGES = [(0.0, 0.0)] + [(d * math.cos(a), d * math.sin(a)) for d in (12, 24, 40, 60, 85, 110)
                          for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)]


def _name(graph: Graph, candidates: list[Node], movable: set[str]) -> None:
    """Give names room, in the order given (the most important first): a movable node may be nudged a little for
    its name to fit inside the frame without covering another name or any shape, or, where nothing else helps,
    push movable shapes that have no name yet out of its way (to where they cover no name); a name that cannot fit
    is not drawn at first sight (it shows on hover and when zoomed in). Names already placed stay where they are."""
    nodes = graph.nodes
    index = {node.id: i for i, node in enumerate(nodes)}
    boxes = np.array([[n.x - b[0], n.y - b[1], n.x + b[0], n.y + b[2]] for n in nodes for b in [_box(n)]])
    placed = np.array([n.named and n not in candidates for n in nodes])
    pushable = np.array([n.id in movable for n in nodes])
    for node in candidates:
        i = index[node.id]
        half, above, below = _box(node, named=True)
        spots = _NUDGES if node.id in movable else _NUDGES[:1]
        done = False
        for evict in (False, True):
            for ox, oy in spots:
                x, y = node.x + ox, node.y + oy
                box = np.array([x - half - 2, y - above - 2, x + half + 2, y + below + 2])
                if box[0] < 0 or box[1] < 0 or box[2] > FRAME_W or box[3] > FRAME_H:
                    continue
                hit = _hits(boxes, box)
                hit[i] = False
                if hit.any() and not evict:
                    continue
                moves = [] if not hit.any() or (placed | ~pushable)[hit].any() else \
                    [(j, _out_of(nodes[j], box, boxes[placed])) for j in np.flatnonzero(hit)]
                if hit.any() and (not moves or any(to is None for _, to in moves)):
                    continue
                for j, (to_x, to_y) in moves:
                    r = nodes[j].size
                    nodes[j].x, nodes[j].y, boxes[j] = to_x, to_y, [to_x - r, to_y - r, to_x + r, to_y + r]
                node.x, node.y, node.named = x, y, True
                boxes[i], placed[i], done = box + np.array([2, 2, -2, -2]), True, True
                break
            if done:
                break
        node.named = done
    for node in nodes:
        node.x, node.y = round(node.x, 1), round(node.y, 1)


def _hits(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] < box[2]) & (box[0] < boxes[:, 2]) & (boxes[:, 1] < box[3]) & (box[1] < boxes[:, 3])


def _out_of(node: Node, box: np.ndarray, names: np.ndarray) -> tuple[float, float] | None:
    """Where a shape goes to leave `box`: the shortest way out that stays in the frame and covers no name."""
    r = node.size + 3
    ways = [(box[0] - r, node.y), (box[2] + r, node.y), (node.x, box[1] - r), (node.x, box[3] + r)]
    for x, y in sorted(ways, key=lambda to: abs(to[0] - node.x) + abs(to[1] - node.y)):
        if r <= x <= FRAME_W - r and r <= y <= FRAME_H - r and \
                not _hits(names, np.array([x - r, y - r, x + r, y + r])).any():
            return float(x), float(y)
    return None


def describe_nodes(nodes: list[Node], places: dict[str, tuple[str, str, object]], consented: dict[str, str]) -> None:
    """Give nodes what people recognise them by: an address its place (country and network owner; its AS number in
    the tooltip), an application id its name (the id in the tooltip)."""
    for node in nodes:
        if node.kind == "ip" and node.value in places:
            country, owner, asn = places[node.value]
            node.note, node.about = place_text(country, owner), place_text(country, owner, asn)
        name = name_of(node.value, consented)
        if name:
            node.name, node.about = name, f"application id {node.value}"


def tooltip(node: Node) -> str:
    """What hovering a node says. It starts with a digit: the component opens a node's title on double-click, and a
    string that begins with a digit can never be read as a URL scheme such as javascript:."""
    text = f"{node.count:,} events · {KINDS[node.kind].label}: {node.value}"
    if node.name and node.name != node.value:
        text += f" ({node.name})"
    for extra in (node.note, node.about):
        if extra:
            text += f" · {extra}"
    if node.scope:
        kind, value = split_node_id(node.scope)
        text += f" · by {KINDS[kind].label} {value}"
    return inert_html(text, 600)


def vis_nodes(graph: Graph) -> list[dict]:
    """Node dicts as the vis-network component takes them, and two invisible marks at the frame's corners (ids
    starting "frame:") that make its first view fit the frame the layout was made for. Every node has its name;
    the ones not drawn at first sight get a font small enough that vis-network skips it until the analyst zooms
    in."""
    out = []
    for node in graph.nodes:
        kind = KINDS[node.kind]
        out.append({
            "id": node.id, "label": "\n".join(node.lines), "title": tooltip(node), "shape": kind.shape,
            "size": node.size, "x": node.x, "y": node.y, "physics": False,
            "color": {"background": kind.color, "border": HIGHLIGHT if node.highlighted else kind.color},
            "borderWidth": 4 if node.highlighted else 1,
            # readable on a light and a dark theme alike
            "font": {"color": "#f0f0f0", "size": FONT_PX if node.named else 3, "face": "arial",
                     "strokeWidth": 3, "strokeColor": "#1e1e1e"},
        })
    for corner, (x, y) in enumerate(((0, 0), (FRAME_W, FRAME_H))):
        out.append({"id": f"frame:{corner}", "label": "", "shape": "dot", "size": 0.1, "x": x, "y": y,
                    "physics": False, "color": {"background": "rgba(0,0,0,0)", "border": "rgba(0,0,0,0)"},
                    "borderWidth": 0, "chosen": False})
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


def _points(shape: str, x: float, y: float, s: float) -> str:
    """A vis-network shape's outline as SVG polygon points (a dot is a circle, drawn apart)."""
    if shape == "square":
        corners = [(-s, -s), (s, -s), (s, s), (-s, s)]
        corners = [(cx * 0.88, cy * 0.88) for cx, cy in corners]
    elif shape == "diamond":
        corners = [(0, -s), (s, 0), (0, s), (-s, 0)]
    elif shape in ("triangle", "triangleDown"):
        flip = -1 if shape == "triangleDown" else 1
        corners = [(0, -s * flip), (s * 0.87, s * 0.5 * flip), (-s * 0.87, s * 0.5 * flip)]
    elif shape == "hexagon":
        corners = [(s * math.cos(math.pi / 3 * k), s * math.sin(math.pi / 3 * k)) for k in range(6)]
    else:  # star
        corners = [((s if k % 2 == 0 else s * 0.45) * math.sin(math.pi / 5 * k),
                    -(s if k % 2 == 0 else s * 0.45) * math.cos(math.pi / 5 * k)) for k in range(10)]
    return " ".join(f"{x + cx:.1f},{y + cy:.1f}" for cx, cy in corners)


def to_svg(graph: Graph, title: str = "") -> str:
    """The graph as the dashboard draws it (same positions, shapes, colours and names), as a standalone SVG picture:
    for a report, a ticket or a slide. Audit text is XML-escaped text, never markup."""
    esc = lambda text: html_text(text)  # noqa: E731 - escaped, control characters made visible
    by_id = {node.id: node for node in graph.nodes}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {FRAME_W} {FRAME_H}" width="{FRAME_W}" '
             f'height="{FRAME_H}" font-family="Arial, Helvetica, sans-serif" font-size="{FONT_PX}">',
             f"<title>{esc(title)}</title>" if title else "",
             f'<rect width="{FRAME_W}" height="{FRAME_H}" fill="#0e1117"/>']
    for link in graph.links:
        a, b = by_id.get(link.source), by_id.get(link.target)
        if a and b:
            parts.append(f'<line x1="{a.x}" y1="{a.y}" x2="{b.x}" y2="{b.y}" stroke="#7f8c8d" stroke-opacity="0.7" '
                         f'stroke-width="{link.width}"><title>{link.count:,} events</title></line>')
    for node in graph.nodes:
        kind = KINDS[node.kind]
        ring = f' stroke="{HIGHLIGHT}" stroke-width="4"' if node.highlighted else ""
        shape = (f'<circle cx="{node.x}" cy="{node.y}" r="{node.size}" fill="{kind.color}"{ring}/>'
                 if kind.shape == "dot" else
                 f'<polygon points="{_points(kind.shape, node.x, node.y, node.size)}" fill="{kind.color}"{ring}/>')
        parts.append(f"<g>{shape}<title>{esc(tooltip(node).replace(chr(0x200b), ''))}</title>")
        if node.named:
            for k, line in enumerate(node.lines):
                parts.append(f'<text x="{node.x}" y="{node.y + node.size + 4 + FONT_PX * (k + 1)}" '
                             f'text-anchor="middle" fill="#f0f0f0" stroke="#1e1e1e" stroke-width="3" '
                             f'paint-order="stroke">{esc(line)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(part for part in parts if part)


def to_json(graph: Graph) -> str:
    return json.dumps({
        "total_entities": graph.total_entities,
        "nodes": [{"id": n.id, "kind": n.kind, "value": n.value, "events": n.count, "watchlisted": n.highlighted,
                   **({"by": n.scope} if n.scope else {})} for n in graph.nodes],
        "edges": [{"source": link.source, "target": link.target, "events": link.count} for link in graph.links],
    }, ensure_ascii=False, indent=1)
