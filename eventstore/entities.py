"""The kinds of entity the graph draws, declared once: the stored column each comes from, its name for people, its
colour and its shape (so that a kind is told apart without its colour), which filter narrows to one of it, which
side of a watch-list names it, and whether the timeline can be stacked by it. Relationships, pivots, watch checks,
the timeline and the legend all read it from here. Pure."""
from __future__ import annotations

from typing import NamedTuple


class Kind(NamedTuple):
    column: str  # in the index
    label: str
    color: str
    shape: str  # vis-network's: dot, diamond, triangle, triangleDown, star, square, hexagon (a name goes below it)
    symbol: str  # the shape as a character, for legends and the report
    pivot: str  # the View field that narrows to one of these ("text" searches user agent, target, site, file, app)
    watch: str = ""  # "accounts" or "networks": the watch-list entries that name one of these
    stack: bool = False  # the timeline can be stacked by it


KINDS = {
    "user": Kind("user_id", "user", "#4f8df7", "dot", "●", "user", watch="accounts"),
    "ip": Kind("client_ip", "IP", "#f2994a", "diamond", "◆", "ip", watch="networks"),
    "operation": Kind("operation", "operation", "#27ae60", "triangle", "▲", "operation", stack=True),
    # what was acted on (ObjectId): a role assignment's member, an inbox rule, a mailbox, a file's URL, a team
    "object": Kind("object_id", "target", "#eb5757", "star", "★", "text"),
    "file": Kind("file_name", "file", "#bb6bd9", "square", "■", "text"),
    "site": Kind("site_url", "site", "#9b51e0", "triangleDown", "▼", "text"),
    "workload": Kind("workload", "workload", "#56ccf2", "square", "■", "workload", stack=True),
    "application": Kind("application", "application", "#f2c94c", "hexagon", "⬢", "text"),
    "agent": Kind("user_agent", "user agent", "#828282", "triangleDown", "▼", "text"),
}

# What the timeline can be stacked by: the kinds that say so, and the content type (not a kind of entity).
STACK_COLUMNS = {**{kind.label: kind.column for kind in KINDS.values() if kind.stack}, "content type": "content_type"}

# An operation is something someone did, not a thing of its own: in a chain of three ("user → IP → operation"),
# a shared "FileDownloaded" node would join every user who downloaded anything, so an operation is drawn once per
# chain head ("FileDownloaded by megan"), and a path through the graph stays one person's doing.
ACTIONS = frozenset({"operation"})

# Kinds a node's neighbours are looked up in when the analyst expands it in place.
NEIGHBOUR_KINDS = ("user", "ip", "operation", "object", "application")


def scoped(kind: str, chain: tuple[str, ...]) -> bool:
    """Whether nodes of this kind are drawn once per chain head in a graph of this chain."""
    return kind in ACTIONS and len(chain) > 2 and chain[0] != kind
