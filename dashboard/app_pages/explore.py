"""Explore: who did what from where, as a count-weighted graph, with a detail panel and a timeline."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from dashboard import services, ui
from dashboard.filters import STACKS, View
from dashboard.graph import (
    KIND_COLORS,
    KIND_LABELS,
    MAX_CAP,
    RELATIONSHIPS,
    build_graph,
    split_node_id,
    to_graphml,
    to_json,
    watched_entities,
)
from dashboard.graph_view import draw, timeline_chart
from dashboard.pages_common import events_csv, page_start, related_table, show_events
from dashboard.untrusted import markdown

cur, index = page_start("Explore", "the graph")


def _open_found() -> None:
    """A node picked in "Find a node" opens its detail panel, as a click on it would."""
    if st.session_state.get("find_node"):
        st.session_state["f_node"] = st.session_state["find_node"]


def _name(node: str) -> str:
    kind, value = split_node_id(node)
    return f"{value}  ·  {KIND_LABELS[kind]}"


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
graph = build_graph(edges, cap=cap, highlight=highlight)

summary = f"{total:,} events"
if graph.total_entities:
    summary += f" · showing {len(graph.nodes):,} of {graph.total_entities:,} entities"
    if graph.capped:
        summary += " — narrow the filters to see the rest"
    if graph.links_capped:
        summary += f" · the {len(graph.links):,} strongest of {graph.total_links:,} links drawn"
st.markdown(summary)

if not graph.nodes:
    st.info("No events match these filters." if total == 0 else
            "The matching events have no values for this relationship; try another one.")
else:
    graph_column, detail_column = st.columns([3, 2])
    with graph_column:
        by_count = sorted(graph.nodes, key=lambda n: -n.count)
        st.selectbox("Find a node", [n.id for n in by_count], index=None, key="find_node",
                     placeholder=f"type a name: {len(by_count):,} in the graph, biggest first",
                     format_func=_name, on_change=_open_found)
        clicked = draw(graph)
        legend = " ".join(f"<span style='color:{KIND_COLORS[k]}'>●</span> {KIND_LABELS[k]}" for k in
                          dict.fromkeys(kind for kind in chain))
        st.markdown(legend + (" · <span style='color:#ffd400'>◯</span> on the watch-list" if highlight else "")
                    + " · dot size: the entity's events · line width: the events joining two entities · names of the "
                    "biggest shown, zoom in for the rest",
                    unsafe_allow_html=True)  # our own fixed text only: no audit data in here
    if clicked and clicked != view.node:
        st.session_state["f_node"] = clicked
        st.query_params.from_dict(replace(view, node=clicked).to_params())  # the URL names the node at once
    selected = st.session_state.get("f_node")
    with detail_column:
        if selected and any(n.id == selected for n in graph.nodes):
            kind, value = split_node_id(selected)
            st.subheader(f"Selected {KIND_LABELS[kind]}")
            st.code(value, language=None, wrap_lines=True)
            info = index.entity_summary(cur.filter, kind, value, cur.watch)
            st.markdown(f"**{info['events']:,} events** · first {info['first']:%Y-%m-%d %H:%M} · "
                        f"last {info['last']:%Y-%m-%d %H:%M} UTC")
            for other, frame in info["related"].items():
                related_table(f"Top {KIND_LABELS[other]}s", frame)
            b1, b2 = st.columns(2)
            b1.button("Pivot on this", on_click=ui.apply_view, args=(view.pivot(kind, value),),
                      help="Narrow the filters to this entity", width="stretch")
            with b2.popover("+ watch-list", width="stretch",
                            disabled=not services.access().can("manage watch-lists") or services.read_only()):
                names = sorted(services.watchlists())
                target = st.selectbox("Watch-list", names + ["(new)"], key="add_target")
                new_name = st.text_input("New watch-list name", key="add_new_name") if target == "(new)" else target
                if st.button("Add", key="add_to_watchlist"):
                    message = services.add_to_watchlist(new_name, kind, value)
                    (st.success if message.startswith("Added") else st.error)(markdown(message))
            node_filter = View.pivot(view, kind, value).to_filter()
            show_events(index, node_filter, cur.watch, key="node_events", limit=200)
        else:
            st.caption("Click a node to see its counts, first and last seen, top related entities and its events.")

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

    d1, d2, d3 = st.columns(3)
    d1.download_button("Graph as GraphML", services.exporter("graph as GraphML", lambda: to_graphml(graph)),
                       "activity-graph.graphml", "application/xml")
    d2.download_button("Graph as JSON", services.exporter("graph as JSON", lambda: to_json(graph)),
                       "activity-graph.json", "application/json")
    d3.download_button("Events as CSV", events_csv(index, cur.filter, cur.watch), "events.csv", "text/csv",
                       help="The events behind this graph, newest first (at most 100,000).")
