"""The shapes both sides agree on: a stored event row, a filter, a checkpoint, a blob record."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

CONTENT_TYPES = (
    "Audit.AzureActiveDirectory",
    "Audit.Exchange",
    "Audit.SharePoint",
    "Audit.General",
    "DLP.All",
)


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
    text: str = ""  # substring of user agent, object, site or file name
    case_sensitive: bool = True


@dataclass
class Checkpoint:
    """Per content type: every blob whose contentCreated is before `listed_until` has been listed and
    either stored or recorded as lost. The next pass re-lists from a little before it (late content).
    With queue fan-out, `queued_until` runs ahead of it: every blob created before it has been listed and its
    message accepted by the queue; `listed_until` follows once the workers have stored (or lost) them."""

    content_type: str
    listed_until: datetime | None = None
    last_success: datetime | None = None
    last_error: str = ""
    queued_until: datetime | None = None


@dataclass(frozen=True)
class BlobRecord:
    """A content blob as the store remembers it. `status`: "stored" (its events are; an error code then says
    what had to be repaired or skipped), "queued" (its message waits for a worker), "retrying" (its answer was
    unusable; fetched again next pass, or when its message comes back) or "lost" (it will never be had)."""

    content_id: str
    content_type: str
    content_created: str
    content_expiration: str
    events: int = 0
    status: str = "stored"
    error_code: str = ""
    error_message: str = ""
    attempts: int = 0  # passes whose fetch of it failed


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
