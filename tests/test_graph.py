"""graph.py: counts become sizes and widths, the cap is said out loud, every label is safe."""
import json

import networkx as nx
import pandas as pd
import pytest

from dashboard.graph import (
    MAX_CAP,
    build_graph,
    node_id,
    parse_node_id,
    split_node_id,
    to_graphml,
    to_json,
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
    assert by_value["big@c.com"].size > by_value["small@c.com"].size >= 10
    assert by_value["big@c.com"].size <= 50
    assert by_value["small@c.com"].size >= 10, "a 5-event node must still be visible next to a 50,000-event one"
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


def test_hostile_labels_and_tooltips_are_escaped_and_never_a_url():
    hostile = ["<img src=x onerror=alert(1)>.docx", "javascript:alert(1)", '"><script>alert(1)</script>']
    graph = build_graph(edges([("user", h, "file", h + "2", 3) for h in hostile]))
    for node in vis_nodes(graph):
        for text in (node["label"], node["title"]):
            assert "<" not in text and ">" not in text
        assert node["title"][0].isdigit(), "a title opened on double-click must not be a javascript: URL"
        assert not node["label"].lower().startswith("javascript:") or node["title"][0].isdigit()
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


def test_the_biggest_names_are_readable_at_first_sight_and_the_rest_on_zooming_in():
    from dashboard.graph import CANVAS_PX, LABEL_PX, LABELLED, MAX_SIZE

    graph = build_graph(star(149), cap=150)
    nodes = vis_nodes(graph)
    drawn = [n for n in nodes if n["font"]["size"] == graph.label_size]
    assert len(drawn) == LABELLED and all(n["label"] for n in nodes), "every node keeps its name for zooming in"
    biggest = sorted(graph.nodes, key=lambda n: -n.count)[:LABELLED]
    assert {n["id"] for n in drawn} == {n.id for n in biggest}
    # the first view is fitted to the canvas: what size do the names come out at?
    extent = max(max(abs(n.x), abs(n.y)) for n in graph.nodes) * 2 + 2 * MAX_SIZE
    zoom = CANVAS_PX / extent
    assert graph.label_size * zoom == pytest.approx(LABEL_PX, rel=0.02), "the biggest names are readable"
    assert all(n["font"]["size"] * zoom < 5 for n in nodes if n not in drawn), "below vis-network's drawThreshold"
    small = build_graph(star(12), cap=150)
    assert all(n["font"]["size"] == small.label_size for n in vis_nodes(small)), "a small graph: every name"


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
