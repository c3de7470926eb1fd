"""Plans the time windows to list, on contentCreated (when a blob became available, not event time).
Pure: the rules of management-activity-api.md §3 in one function."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_WINDOW = timedelta(hours=24)
# The API refuses a start more than 7 days back; keep clear of the edge (clocks, slow requests).
OLDEST = timedelta(days=7) - timedelta(minutes=15)
# Blobs can be announced with a contentCreated a little in the past: re-list this much each pass.
OVERLAP = timedelta(hours=1)


@dataclass(frozen=True)
class Plan:
    windows: list[tuple[datetime, datetime]]
    # content announced in [gap_start, gap_end) can no longer be listed: the last pass was too long ago
    gap: tuple[datetime, datetime] | None = None


def plan_windows(listed_until: datetime | None, now: datetime, overlap: timedelta = OVERLAP) -> Plan:
    """Windows of at most 24 h that together cover [listed_until - overlap, now), never starting more
    than OLDEST before `now` (the service's clock). A first run starts at the oldest listable moment."""
    now = now.replace(microsecond=0)
    earliest = now - OLDEST
    start = earliest if listed_until is None else max(listed_until.replace(microsecond=0) - overlap, earliest)
    gap = (listed_until, earliest) if listed_until is not None and listed_until < earliest else None
    windows = []
    while start < now:
        end = min(start + MAX_WINDOW, now)
        windows.append((start, end))
        start = end
    return Plan(windows, gap)
