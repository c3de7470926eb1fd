"""graph.py: counts become sizes and widths, the cap is said out loud, names have room and are drawn as typed,
tooltips can never become markup, an expansion moves nothing."""
import itertools
import json
import math
import re

import networkx as nx
import pandas as pd
import pytest

from dashboard.graph import (
    FONT_PX,
    FRAME_H,
    FRAME_W,
    MAX_CAP,
    MAX_SIZE,
    MIN_SIZE,
    _box,
    build_graph,
    grow,
    node_id,
    parse_node_id,
    split_node_id,
    to_graphml,
    to_json,
    to_svg,
    vis_edges,
    vis_nodes,
    watched_entities,
)
from dashboard.index import Watch


def edges(rows):
    return pd.DataFrame(rows, columns=["src_kind", "src", "dst_kind", "dst", "n"])


def star(users: int, per_user=lambda i: i + 1, ip="198.51.100.9"):
    return edges([("user", f"u{i}@contoso.com", "ip", ip, per_user(i)) for i in range(users)])


def test_node_size_and_edge_width_grow_with_event_count_and_stay_readable():
    graph = build_graph(edges([("user", "small@c.com", "ip", "192.0.2.1", 5),
                               ("user", "big@c.com", "ip", "192.0.2.2", 50_000)]))
    by_value = {n.value: n for n in graph.nodes}
    assert by_value["big@c.com"].size > by_value["small@c.com"].size >= MIN_SIZE
    assert by_value["big@c.com"].size <= MAX_SIZE
    assert by_value["small@c.com"].size >= 7, "a 5-event node must still be visible next to a 50,000-event one"
    widths = {link.count: link.width for link in graph.links}
    assert widths[50_000] > widths[5] >= 1


def test_cap_keeps_the_busiest_entities_and_says_how_many_there_were():
    graph = build_graph(star(400), cap=50)
    assert len(graph.nodes) == 50 and graph.total_entities == 401 and graph.capped
    kept = {n.value for n in graph.nodes}
    assert "198.51.100.9" in kept and "u399@contoso.com" in kept and "u0@contoso.com" not in kept
    assert all(split_node_id(link.source)[1] in kept and split_node_id(link.target)[1] in kept for link in graph.links)
    assert len(build_graph(star(400), cap=10_000).nodes) == MAX_CAP


def test_links_are_capped_strongest_first_and_no_node_is_left_without_one():
    rows = [("user", f"u{i}", "ip", f"192.0.2.{j}", 1 + (i * j) % 17) for i in range(40) for j in range(1, 30)]
    graph = build_graph(edges(rows), cap=300, max_links=100)
    assert graph.total_links == len(rows) and len(graph.links) >= 69 and graph.links_capped
    linked = {link.source for link in graph.links} | {link.target for link in graph.links}
    assert linked == {n.id for n in graph.nodes}
    dropped = min(link.count for link in graph.links)
    assert max(link.count for link in graph.links) == 17 and dropped >= 1


def test_the_link_budget_goes_to_the_busiest_entities_first():
    hub = [("user", f"victim{i}", "ip", "198.51.100.9", 4) for i in range(40)]  # a spray: many small links
    noise = [("user", f"u{i}", "ip", f"192.0.2.{j}", 20) for i in range(30) for j in range(1, 6)]
    graph = build_graph(edges(hub + noise), cap=300, max_links=100)
    spokes = [link for link in graph.links if link.target == "ip:198.51.100.9"]
    assert len(spokes) == 40, "the busiest node keeps every link"


def test_a_middle_node_of_a_chain_is_counted_once():
    graph = build_graph(edges([("user", "a@c.com", "ip", "192.0.2.1", 10),
                               ("ip", "192.0.2.1", "operation", "FileDownloaded", 10)]))
    assert {n.value: n.count for n in graph.nodes}["192.0.2.1"] == 10


def test_watchlisted_entities_are_kept_first_and_ringed():
    frame = star(100)
    watched = frozenset({("user", "u0@contoso.com")})
    graph = build_graph(frame, cap=5, highlight=watched)
    assert graph.nodes[0].value == "u0@contoso.com" and graph.nodes[0].highlighted
    drawn = vis_nodes(graph)[0]
    assert drawn["borderWidth"] > 1 and drawn["color"]["border"] != drawn["color"]["background"]


def test_watched_entities_match_accounts_and_ranges():
    frame = edges([("user", "Admin@c.com", "ip", "198.51.100.9", 3), ("user", "x@c.com", "ip", "2001:db8::5", 1)])
    watch = Watch(accounts=("admin@c.com",), networks=("198.51.100.0/24", "2001:db8::/32"))
    assert watched_entities(frame, watch, case_sensitive=True) == {("ip", "198.51.100.9"), ("ip", "2001:db8::5")}
    assert ("user", "Admin@c.com") in watched_entities(frame, watch, case_sensitive=False)


def test_hostile_names_are_drawn_as_typed_and_tooltips_can_never_become_markup():
    hostile = ["<img src=x onerror=alert(1)>.docx", "javascript:alert(1)", '"><script>alert(1)</script>',
               "invoice\u202eslx.exe", "a&lt;b"]
    graph = build_graph(edges([("user", h, "file", h + "2", 3) for h in hostile]))
    drawn = [n for n in vis_nodes(graph) if not n["id"].startswith("frame:")]
    labels = {n["label"] for n in drawn}
    # the canvas draws text: what was typed, not its HTML escape; an invisible reordering character made visible
    assert "<img src=x onerror=alert(1)>.…" in labels and "a&lt;b" in labels and "invoice\\u202eslx.exe" in labels
    for node in drawn:
        # the component parses a title as HTML: no "<" can open a tag, and it reads as typed when shown as text
        assert not re.search(r"<[A-Za-z/!?]", node["title"])
        assert node["title"][0].isdigit(), "a title opened on double-click must not be a javascript: URL"
    assert any("<\u200bimg src=x onerror=alert(1)>" in n["title"] for n in drawn)
    for edge in vis_edges(graph):
        assert edge["title"][0].isdigit()


def test_layout_is_deterministic_and_spreads_nodes():
    a, b = build_graph(star(30)), build_graph(star(30))
    assert [(n.x, n.y) for n in a.nodes] == [(n.x, n.y) for n in b.nodes]
    assert len({(n.x, n.y) for n in a.nodes}) == len(a.nodes)


def test_exports_carry_counts():
    graph = build_graph(star(3))
    g = nx.read_graphml(__import__("io").BytesIO(to_graphml(graph)))
    assert sorted(d["events"] for _, d in g.nodes(data=True)) == [1, 2, 3, 6]
    data = json.loads(to_json(graph))
    assert data["total_entities"] == 4 and sum(e["events"] for e in data["edges"]) == 6


def test_graphml_holds_control_characters_from_audit_text():
    graph = build_graph(edges([("user", "evil\x00\x1b[31m@c.com", "ip", "192.0.2.1", 2)]))
    g = nx.read_graphml(__import__("io").BytesIO(to_graphml(graph)))
    assert any("\\u0000" in d["value"] for _, d in g.nodes(data=True))


def test_empty_edges_make_an_empty_graph():
    assert build_graph(edges([])).nodes == []


def boxes_of(graph):
    return {n.id: (n.x - b[0], n.y - b[1], n.x + b[0], n.y + b[2]) for n in graph.nodes for b in [_box(n)]}


def overlapping(graph) -> list[tuple[str, str]]:
    boxes = boxes_of(graph)
    named = {n.id for n in graph.nodes if n.named}
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if (a in named or b in named) and
            boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2] and boxes[a][1] < boxes[b][3] and
            boxes[b][1] < boxes[a][3]]


def test_names_drawn_have_room_of_their_own_inside_the_frame_biggest_first():
    graph = build_graph(star(149, per_user=lambda i: 1 + i % 37), cap=150)
    drawn = [n for n in vis_nodes(graph) if not n["id"].startswith("frame:")]
    named = [n for n in graph.nodes if n.named]
    assert len(named) >= 20 and all(n["label"] for n in drawn), "every node keeps its name for zooming in"
    assert overlapping(graph) == [], "no drawn name covers another, or a shape"
    assert all(0 <= box[0] and 0 <= box[1] and box[2] <= FRAME_W and box[3] <= FRAME_H
               for box in boxes_of(graph).values()), "nothing is cut at the frame's edge"
    assert sorted(graph.nodes, key=lambda n: -n.count)[0].named, "the biggest is named first"
    assert all(n["font"]["size"] == (FONT_PX if graph.find(n["id"]).named else 3) for n in drawn)
    corners = [(n["x"], n["y"]) for n in vis_nodes(graph) if n["id"].startswith("frame:")]
    assert corners == [(0, 0), (FRAME_W, FRAME_H)], "the first view fits the frame the layout was made for"
    small = build_graph(star(12), cap=150)
    assert all(n.named for n in small.nodes), "a small graph: every name"


def test_an_expansion_places_its_nodes_around_the_node_and_moves_nothing():
    graph = build_graph(star(30), cap=60)
    before = {n.id: (n.x, n.y, n.named) for n in graph.nodes}
    neighbours = pd.DataFrame([("ip", "198.51.100.9", "", "operation", op, "", 5 + k, "hop")
                               for k, op in enumerate(["UserLoginFailed", "FileDownloaded", "New-InboxRule"])],
                              columns=["src_kind", "src", "src_scope", "dst_kind", "dst", "dst_scope", "n", "hop"])
    added = grow(graph, "ip:198.51.100.9", neighbours)
    assert [n.value for n in added] == ["UserLoginFailed", "FileDownloaded", "New-InboxRule"]
    assert {n.id: (n.x, n.y, n.named) for n in graph.nodes if n.id in before} == before
    assert overlapping(graph) == []
    hub = graph.find("ip:198.51.100.9")
    assert all(math.hypot(n.x - hub.x, n.y - hub.y) < 250 for n in added), "around the node expanded"
    assert grow(graph, "ip:198.51.100.9", neighbours) == [], "already drawn: nothing added again"


@pytest.mark.parametrize("identifier", ["", "nokind", "ip:", "bogus:1.2.3.4", "[", "[1,2,3]", '["ip","x"]',
                                        '["operation","Send","not a node"]', '["zzz","a","user:b"]'])
def test_a_node_id_from_a_url_is_read_or_refused(identifier):
    assert parse_node_id(identifier) is None


def test_node_ids_round_trip_whatever_the_value_holds():
    for key in [("ip", "198.51.100.9", ""), ("user", 'a:"b"]@c', ""),
                ("operation", 'x", "y', node_id("user", 'e"vil:@["')), ("object", "[not json", "")]:
        assert parse_node_id(node_id(*key)) == key
    scoped = node_id("operation", "Send", "user:a@c.com")
    assert scoped != node_id("operation", "Send", "user:b@c.com") != node_id("operation", "Send")


def test_the_svg_picture_draws_what_the_dashboard_draws_and_its_text_is_text():
    from xml.etree import ElementTree

    graph = build_graph(edges([("user", "<script>alert(1)</script>", "ip", "198.51.100.9", 5),
                               ("user", "b@c.com", "ip", "198.51.100.9", 2)]))
    svg = to_svg(graph, "user → IP")
    root = ElementTree.fromstring(svg)  # well formed
    ns = "{http://www.w3.org/2000/svg}"
    assert {t.text for t in root.iter(f"{ns}text")} >= {"<script>alert(1)</script>", "198.51.100.9", "b@c.com"}
    assert not list(root.iter(f"{ns}script")), "the attacker's text is text"
    assert len(list(root.iter(f"{ns}circle"))) == 2 and len(list(root.iter(f"{ns}polygon"))) == 1, "shapes by kind"
