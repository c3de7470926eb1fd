"""The one place that knows the drawing component (streamlit-agraph, i.e. vis-network). Swap it here."""
from __future__ import annotations

from streamlit_agraph import Config, Edge, Node, agraph

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
