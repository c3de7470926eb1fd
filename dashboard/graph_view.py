"""The one place that knows the drawing components (streamlit-agraph, i.e. vis-network, for the graph; Vega-Lite
for the timeline). Swap them here."""
from __future__ import annotations

from datetime import datetime, timezone

import altair as alt
import pandas as pd
import streamlit as st
from streamlit_agraph import Config, Edge, Node, agraph

from .filters import covering
from .graph import Graph, vis_edges, vis_nodes


def draw(graph: Graph, height: int = 620) -> str | None:
    """Draw the graph with positions fixed and physics off; returns the id of the node clicked, if any."""
    nodes = [Node(**{k: v for k, v in n.items()}) for n in vis_nodes(graph)]
    edges = [Edge(e.pop("from"), e.pop("to"), **{k: v for k, v in e.items() if k != "color"}, color=e["color"])
             for e in vis_edges(graph)]
    config = Config(width="100%", height=height, directed=True, physics=False, hierarchical=False,
                    interaction={"hover": True, "tooltipDelay": 120, "navigationButtons": False},
                    nodes={"shape": "dot"})
    config.width = "100%"  # Config formats numbers as px; the component accepts any CSS length
    return agraph(nodes=nodes, edges=edges, config=config)


def timeline_chart(timeline: pd.DataFrame, stack_by: str) -> tuple[datetime, datetime] | None:
    """Stacked bars per time bucket, in UTC, each as wide as its bucket; dragging across it picks a span, returned
    as (start, end) in UTC and widened to the edges of the bars it touches, so that it keeps all of their events."""
    frame = timeline.assign(bucket=pd.to_datetime(timeline["bucket"]).dt.tz_localize("UTC"),
                            end=pd.to_datetime(timeline["end"]).dt.tz_localize("UTC"))
    brush = alt.selection_interval(encodings=["x"], name="span")
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("bucket:T", title="UTC (drag across to pick a span)", scale=alt.Scale(type="utc"),
                axis=alt.Axis(format="%b %d %H:%M", labelOverlap=True)),
        x2="end:T",
        y=alt.Y("sum(n):Q", title="events"),
        color=alt.Color("series:N", title=stack_by),
        tooltip=[alt.Tooltip("utcyearmonthdatehoursminutes(bucket):T", title="UTC", format="%Y-%m-%d %H:%M"),
                 # without "utc", Vega-Lite writes a time in the browser's own zone
                 alt.Tooltip("yearmonthdatehoursminutes(bucket):T", title="your time", format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("series:N", title=stack_by), alt.Tooltip("n:Q", title="events")],
    ).add_params(brush).properties(height=220)
    event = st.altair_chart(chart, on_select="rerun", selection_mode="span", key="timeline", width="stretch")
    picked = (event.selection.get("span") or {}).get("bucket") if event else None
    if not picked or len(picked) != 2:
        return None
    start, end = (datetime.fromtimestamp(float(ms) / 1000, tz=timezone.utc) for ms in picked)
    if not start < end:
        return None
    bars = frame[["bucket", "end"]].drop_duplicates()
    return covering(start, end, [(a.to_pydatetime(), b.to_pydatetime()) for a, b in zip(bars["bucket"], bars["end"])])
