"""The one place that knows the drawing components (streamlit-agraph, i.e. vis-network, for the graph; Vega-Lite
for the timeline). Swap them here."""
from __future__ import annotations

from datetime import datetime, timezone

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components
from streamlit_agraph import Config, Edge, Node, agraph

from .filters import covering
from .graph import FRAME_H, Graph, vis_edges, vis_nodes


# vis-network styles its tooltip inside the component's frame (a pale box, a serif font on some systems): this
# restyles it for the dashboard's dark theme, from a sibling frame of the same origin. No data passes through here.
_TOOLTIP_STYLE = """<script>
(() => {
  const css = "div.vis-tooltip{background:#262730;color:#fafafa;border:1px solid #4b4b57;border-radius:6px;" +
    "font:13px 'Source Sans Pro','Source Sans 3',sans-serif;white-space:pre-wrap;max-width:440px;padding:6px 9px;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.45)}";
  const restyle = () => {
    for (const frame of window.parent.document.querySelectorAll('iframe[title="streamlit_agraph.agraph"]')) {
      const doc = frame.contentDocument;
      if (doc && doc.head && !doc.getElementById("theme-tooltip")) {
        const style = doc.createElement("style");
        style.id = "theme-tooltip";
        style.textContent = css;
        doc.head.appendChild(style);
      }
    }
  };
  restyle();
  setInterval(restyle, 500);
})();
</script>"""


def draw(graph: Graph) -> str | None:
    """Draw the graph with positions fixed and physics off, in the frame it was laid out for; returns the id of the
    node clicked, if any."""
    nodes = [Node(**{k: v for k, v in n.items()}) for n in vis_nodes(graph)]
    edges = [Edge(e.pop("from"), e.pop("to"), **{k: v for k, v in e.items() if k != "color"}, color=e["color"])
             for e in vis_edges(graph)]
    config = Config(width="100%", height=FRAME_H, directed=True, physics=False, hierarchical=False,
                    interaction={"hover": True, "tooltipDelay": 120, "navigationButtons": False})
    config.width = "100%"  # Config formats numbers as px; the component accepts any CSS length
    clicked = agraph(nodes=nodes, edges=edges, config=config)
    components.html(_TOOLTIP_STYLE, height=0)
    return clicked


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
