"""The shapes both sides agree on: a stored event row, a filter, a source's unit of work."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple


class EventRow(NamedTuple):
    """One audit record as stored: the fields we filter and graph on, plus the original JSON."""

    id: str
    time: str  # UTC, "YYYY-MM-DDTHH:MM:SSZ": sorts as text
    content_type: str
    workload: str
    record_type: int | None
    operation: str
    result_status: str
    user_id: str
    client_ip: str
    user_agent: str
    application: str
    object_id: str
    site_url: str
    file_name: str
    raw: str  # the record exactly as the API sent it (JSON text)


EVENT_COLUMNS = EventRow._fields


@dataclass(frozen=True)
class Filter:
    """What the analyst asked for. Empty tuples mean 'any'. Values match exactly and, by default,
    case-sensitively, as a Cosmos DB query does; with case_sensitive off, equal once folded (`fold`)."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    workload: tuple[str, ...] = ()
    content_type: tuple[str, ...] = ()
    operation: tuple[str, ...] = ()
    record_type: tuple[int, ...] = ()
    result_status: tuple[str, ...] = ()
    user_id: tuple[str, ...] = ()
    client_ip: tuple[str, ...] = ()  # addresses or CIDR ranges
    country: tuple[str, ...] = ()  # where the client address is (ISO 3166 codes, as the dashboard's IP sources say)
    owner: tuple[str, ...] = ()  # who owns the client address's network
    text: str = ""  # substring of user agent, object, site, file name or application
    case_sensitive: bool = True


@dataclass(frozen=True)
class WorkItem:
    """One unit of a source's work (the live feed's content blob, say) as the store keeps it beside the events, so
    that an item and its events change in one step. The store reads `stream`, `key`, `at`, `pending`, `issue` and
    `expires` to answer its questions (which keys are known, what is still pending, what to report, what to forget);
    `detail` is the source's own (JSON text), never read here."""

    stream: str  # the part of a source the item belongs to (the feed's content type)
    key: str  # unique within the stream
    at: str  # orders a stream's items (UTC text)
    pending: bool = False  # work remains: it holds the stream's cursor back
    issue: bool = False  # something a person should hear about
    expires: str = ""  # the store may forget the item after this time (UTC text); "" = keep it
    detail: str = "{}"


@dataclass(frozen=True)
class ActivityQuery:
    """Which entries of the dashboard's activity log: exact person and action ("" = any), `since` <= time < `until`
    (UTC text; "" = open)."""

    who: str = ""
    action: str = ""
    since: str = ""
    until: str = ""


ActivityEntry = tuple[str, str, str, str]  # (time "YYYY-MM-DDTHH:MM:SSZ", who, action, detail)


@dataclass
class StoreStats:
    events: int = 0
    first_time: str | None = None
    last_time: str | None = None
    per_content_type: dict[str, int] = field(default_factory=dict)


def fold(text: str) -> str:
    """What "ignore case" means, everywhere (filters, watch-lists, hints): Unicode full case folding, as
    str.casefold does it — Straße = STRASSE, ς = σ = Σ, and İ (Turkish capital dotted I) folds to i + a combining
    dot, so it is not plain I or i. Engines never fold by themselves; the index applies this to the values."""
    return text.casefold()


def utc_text(moment: datetime) -> str:
    """The one textual form of a time we store and compare: UTC, seconds, trailing Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parse our stored form or the API's zone-less form; always returns an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def retention_start(now: datetime, days: int) -> datetime:
    """The oldest moment a store with `days` of retention keeps: the UTC midnight `days` before `now` (retention works
    in whole UTC days). Prune removes what is before it; a backfill starts at it."""
    return (now.astimezone(timezone.utc) - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)


def uncovered(since: datetime, until: datetime, covered) -> list[tuple[datetime, datetime]]:
    """The parts of [since, until) that none of the `covered` (start, end) spans holds, oldest first."""
    gaps, start = [], since
    for low, high in sorted(covered):
        if low > start:
            gaps.append((start, min(low, until)))
        start = max(start, high)
        if start >= until:
            break
    if start < until:
        gaps.append((start, until))
    return [(a, b) for a, b in gaps if a < b]
