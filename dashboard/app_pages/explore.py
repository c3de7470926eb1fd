"""Explore: who did what from where, as a count-weighted graph, with a detail panel and a timeline."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from dashboard import services, ui
from eventstore.entities import KINDS, NEIGHBOUR_KINDS
from dashboard.filters import STACKS, View, file_name, in_words
from dashboard.graph import (
    MAX_CAP,
    RELATIONSHIPS,
    Graph,
    build_graph,
    entity_of,
    grow,
    neighbour_edges,
    parse_node_id,
    split_node_id,
    to_graphml,
    to_json,
    to_svg,
    watched_entities,
)
from dashboard.graph_view import draw, timeline_chart
from dashboard.pages_common import event_downloads, page_start, related_table, show_events
from dashboard.untrusted import markdown

cur, index = page_start("Explore", "the graph")


def _open_found() -> None:
    """A node picked in "Find a node" opens its detail panel, as a click on it would."""
    if st.session_state.get("find_node"):
        st.session_state["f_node"] = st.session_state["find_node"]


def _name(graph: Graph, identifier: str) -> str:
    node = graph.find(identifier)
    if node is None:
        return identifier
    by = f" by {split_node_id(node.scope)[1]}" if node.scope else ""
    shown = f"{node.name} ({node.value})" if node.name else node.value
    return f"{KINDS[node.kind].symbol} {shown}  ·  {KINDS[node.kind].label}{by}"


def _expand(graph: Graph, view: View, chain: tuple[str, ...]) -> None:
    """Each node expanded in place (oldest first) gets its top neighbours of every kind around it, whatever the
    relationship and the cap; nothing already drawn moves."""
    for identifier in view.expand:
        key = parse_node_id(identifier)
        if key is None or graph.find(identifier) is None:
            continue
        info = services.entity_summary(cur.filter, entity_of(*key), cur.watch, NEIGHBOUR_KINDS, top=8)
        grow(graph, identifier, neighbour_edges(key, info["related"], chain), describe=services.describe)


left, middle, right = st.columns([2, 1, 1])
left.selectbox("Relationship", list(RELATIONSHIPS), key="f_relationship")
middle.number_input("Entities at most", min_value=10, max_value=MAX_CAP, step=10, key="f_cap")
right.selectbox("Timeline stacked by", STACKS, key="f_stack_by")
view: View = cur.view
chain = RELATIONSHIPS[st.session_state["f_relationship"]]
cap = int(st.session_state["f_cap"])

total = services.count(cur.filter, cur.watch)
edges = services.edges(cur.filter, chain, cur.watch)
highlight = watched_entities(edges, cur.watch, cur.filter.case_sensitive) if cur.watch and not cur.watch.restrict \
    else frozenset()
graph = build_graph(edges, cap=cap, highlight=highlight, describe=services.describe)
_expand(graph, view, chain)

summary = f"{total:,} events"
if graph.total_entities:
    summary += f" · showing {len(graph.nodes):,} of {graph.total_entities:,} entities"
    if graph.capped:
        summary += " — narrow the filters to see the rest"
    if graph.links_capped:
        summary += f" · the {len(graph.links):,} strongest of {graph.total_links:,} links drawn"
summary_column, link_column = st.columns([5, 1])
summary_column.markdown(summary)
with link_column:
    ui.links(cur)

if not graph.nodes:
    st.info("No events match these filters." if total == 0 else
            "The matching events have no values for this relationship; try another one.")
else:
    by_count = sorted(graph.nodes, key=lambda n: -n.count)
    st.selectbox("Find a node", [n.id for n in by_count], index=None, key="find_node",
                 placeholder=f"type a name: {len(by_count):,} in the graph, biggest first",
                 format_func=lambda identifier: _name(graph, identifier), on_change=_open_found)
    clicked = draw(graph)  # the page's whole width: the layout is made for it
    unnamed = sum(1 for n in graph.nodes if not n.named)
    legend = " ".join(f"<span style='color:{KINDS[k].color}'>{KINDS[k].symbol}</span> {KINDS[k].label}" for k in
                      dict.fromkeys([*chain, *(n.kind for n in graph.nodes)]))
    st.markdown(legend + (" · <span style='color:#ffd400'>◯</span> on the watch-list" if highlight else "")
                + " · size: the entity's events · line width: the events joining two entities"
                + (f" · {unnamed:,} smaller ones are named when you point at them or zoom in" if unnamed else ""),
                unsafe_allow_html=True)  # our own fixed text only: no audit data in here
    if clicked and clicked != view.node and graph.find(clicked):  # (a click on the frame's corner marks: nothing)
        st.session_state["f_node"] = clicked
        st.query_params.from_dict(replace(view, node=clicked).to_params())  # the URL names the node at once
    selected = graph.find(st.session_state.get("f_node") or "")
    detail_column, events_column = st.columns([2, 3])
    with detail_column:
        if selected:
            entity = entity_of(*selected.key)
            st.subheader(f"Selected {KINDS[selected.kind].label}")
            st.code(selected.value, language=None, wrap_lines=True)
            if selected.about and selected.kind == "ip":
                st.caption(f"{markdown(selected.about, 200)} (from the IP sources, offline)")
            if selected.scope:
                head_kind, head = split_node_id(selected.scope)
                st.caption(f"done by this {KINDS[head_kind].label}:")
                st.code(head, language=None, wrap_lines=True)
            if selected.name:
                st.caption(f"{markdown(selected.name, 200)}: the name this application goes by")
            info = services.entity_summary(cur.filter, entity, cur.watch)
            st.markdown(f"**{info['events']:,} events** · first {info['first']:%Y-%m-%d %H:%M} · "
                        f"last {info['last']:%Y-%m-%d %H:%M} UTC")
            for other, frame in info["related"].items():
                related_table(f"Top {KINDS[other].label}s", frame)
            b1, b2, b3 = st.columns(3)
            b1.button("Pivot on this", on_click=ui.apply_view, args=(view.pivot_all(entity),),
                      help="Narrow the filters to this entity", width="stretch")
            expanded = selected.id in view.expand
            b2.button("Collapse" if expanded else "Expand", key="expand_node", on_click=ui.apply_view,
                      args=(view.expanding(selected.id),), width="stretch",
                      help="Draw this node's top users, IPs, operations, targets and applications in place, "
                           "whatever the relationship and the cap")
            with b3.popover("+ watch-list", width="stretch",
                            disabled=not services.access().can("manage watch-lists") or services.read_only()):
                names = sorted(services.watchlists())
                target = st.selectbox("Watch-list", names + ["(new)"], key="add_target")
                new_name = st.text_input("New watch-list name", key="add_new_name") if target == "(new)" else target
                if st.button("Add", key="add_to_watchlist"):
                    message = services.add_to_watchlist(new_name, selected.kind, selected.value)
                    (st.success if message.startswith("Added") else st.error)(markdown(message))
        else:
            st.caption("Click a node to see its counts, first and last seen, top related entities and its events.")
    if selected:
        with events_column:
            show_events(index, view.pivot_all(entity).to_filter(), cur.watch, key="node_events", limit=200)

    timeline = services.timeline(cur.filter, st.session_state["f_stack_by"], cur.watch)
    if not timeline.empty:
        st.subheader("Timeline")
        span = timeline_chart(timeline, st.session_state["f_stack_by"])
        if span:
            start, end = span
            left, right = st.columns([3, 1])
            left.caption(f"Selected on the timeline: {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC")
            right.button("Narrow to this span", key="narrow_to_span", on_click=ui.apply_view,
                         args=(cur.view.narrowed(start, end),), width="stretch")

    columns = st.columns(6)
    described = f"{view.relationship}, {in_words(cur.filter)}"
    for column, (label, extension, mime, make) in zip(columns, (
            ("SVG picture", "svg", "image/svg+xml", lambda: to_svg(graph, f"{view.relationship} · {described}")),
            ("GraphML", "graphml", "application/xml", lambda: to_graphml(graph)),
            ("JSON", "json", "application/json", lambda: to_json(graph)))):
        column.download_button(f"Graph as {label}", services.exporter(f"graph as {label}: {described}", make),
                               file_name("graph", cur.filter, extension), mime, key=f"graph_{extension}")
    event_downloads(index, cur.filter, cur.watch, columns[3:])
