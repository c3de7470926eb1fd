"""The shapes both sides agree on: a stored event row, a filter, a checkpoint, a blob record."""
from __future__ import annotations

import ipaddress
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
    case-sensitively, as a Cosmos DB query does."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    workload: tuple[str, ...] = ()
    content_type: tuple[str, ...] = ()
    operation: tuple[str, ...] = ()
    record_type: tuple[int, ...] = ()
    result_status: tuple[str, ...] = ()
    user_id: tuple[str, ...] = ()
    client_ip: tuple[str, ...] = ()  # addresses or CIDR ranges
    text: str = ""  # substring of user agent, object, site or file name
    case_sensitive: bool = True

    def ip_networks(self) -> tuple[list[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        """Split the client_ip values into exact addresses and CIDR networks."""
        exact, networks = [], []
        for value in self.client_ip:
            if "/" in value:
                networks.append(ipaddress.ip_network(value, strict=False))
            else:
                exact.append(normalize_ip(value))
        return exact, networks


@dataclass
class Checkpoint:
    """Per content type: every blob whose contentCreated is before `listed_until` has been listed and
    either stored or recorded as lost. The next pass re-lists from a little before it (late content)."""

    content_type: str
    listed_until: datetime | None = None
    last_success: datetime | None = None
    last_error: str = ""
    events_stored: int = 0  # events this content type has added, over all passes


@dataclass(frozen=True)
class BlobRecord:
    content_id: str
    content_type: str
    content_created: str
    content_expiration: str
    events: int = 0
    status: str = "stored"  # or "lost"
    error_code: str = ""
    error_message: str = ""


@dataclass
class StoreStats:
    events: int = 0
    first_time: str | None = None
    last_time: str | None = None
    per_content_type: dict[str, int] = field(default_factory=dict)


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


def normalize_ip(text: str) -> str:
    """'203.0.113.9:51234' → '203.0.113.9', '[2001:db8::1]:443' → '2001:db8::1', mapped IPv4 → IPv4.
    Text that is not an address is kept as it is (stripped): it is still evidence."""
    value = text.strip()
    if not value:
        return ""
    candidate = value
    if candidate.startswith("["):
        candidate = candidate[1:].split("]", 1)[0]
    elif candidate.count(":") == 1:  # IPv4 with a port; a bare IPv6 has at least two colons
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)
