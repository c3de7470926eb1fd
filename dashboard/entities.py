"""The kinds of entity the graph draws, declared once: the stored column each comes from, its name for people and
its colour. Pure."""
from __future__ import annotations

from typing import NamedTuple


class Kind(NamedTuple):
    column: str  # in the index
    label: str
    color: str


KINDS = {
    "user": Kind("user_id", "user", "#4f8df7"),
    "ip": Kind("client_ip", "IP", "#f2994a"),
    "operation": Kind("operation", "operation", "#27ae60"),
    # what was acted on (ObjectId): a role assignment's member, an inbox rule, a mailbox, a file's URL, a team
    "object": Kind("object_id", "target", "#eb5757"),
    "file": Kind("file_name", "file", "#bb6bd9"),
    "site": Kind("site_url", "site", "#9b51e0"),
    "workload": Kind("workload", "workload", "#56ccf2"),
    "application": Kind("application", "application", "#f2c94c"),
    "agent": Kind("user_agent", "user agent", "#828282"),
}

# An operation is something someone did, not a thing of its own: in a chain of three ("user → IP → operation"),
# a shared "FileDownloaded" node would join every user who downloaded anything, so an operation is drawn once per
# chain head ("FileDownloaded by megan"), and a path through the graph stays one person's doing.
ACTIONS = frozenset({"operation"})

# Kinds a node's neighbours are looked up in when the analyst expands it in place.
NEIGHBOUR_KINDS = ("user", "ip", "operation", "object", "application")


def scoped(kind: str, chain: tuple[str, ...]) -> bool:
    """Whether nodes of this kind are drawn once per chain head in a graph of this chain."""
    return kind in ACTIONS and len(chain) > 2 and chain[0] != kind
