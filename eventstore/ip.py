"""IP addresses, in one place: how an address from the API is written down (normalize), what counts as an address
or a range someone typed or uploaded (parse_entry), and whether an address is in a set of them (IpSet). Every
engine (SQLite, DuckDB, Cosmos DB) and every page builds on these, so an address means the same everywhere."""
from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize(text: str) -> str:
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


def parse_entry(text: str) -> str | None:
    """An address or CIDR range someone typed or uploaded, in the one form we keep ('198.51.100.9',
    '198.51.100.0/24', '2001:db8::/32'); None when it is neither (e.g. '10.0.0.0/33', '999.1.1.1')."""
    value = text.strip().strip("[]") if "/" not in text else text.strip()
    try:
        if "/" in value:
            network = ipaddress.ip_network(value, strict=False)
            if network.num_addresses > 1:
                return str(network)
            value = str(network.network_address)
        return normalize(str(ipaddress.ip_address(value)))
    except ValueError:
        return None


@lru_cache(maxsize=200_000)
def number(text: str) -> tuple[bool | None, int | None]:
    """(is IPv6, the address as an integer) for a normalized address; (None, None) for other text."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None, None
    return address.version == 6, int(address)


class IpSet:
    """Addresses and ranges (entries as parse_entry returns them). Single addresses are a hash set; ranges are
    merged into disjoint, sorted spans, so even 10,000 entries answer `in` in microseconds (and give SQL few
    terms)."""

    def __init__(self, entries: Iterable[str]):
        exact, spans = set(), []
        for entry in entries:
            parsed = parse_entry(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not an IP address or CIDR range")
            if "/" in parsed:
                network = ipaddress.ip_network(parsed)
                spans.append((network.version == 6, int(network.network_address), int(network.broadcast_address)))
            else:
                exact.add(parsed)
        merged: list[tuple[bool, int, int]] = []
        for v6, low, high in sorted(spans):
            if merged and merged[-1][0] == v6 and low <= merged[-1][2] + 1:
                merged[-1] = (v6, merged[-1][1], max(merged[-1][2], high))
            else:
                merged.append((v6, low, high))
        self.exact: frozenset[str] = frozenset(exact)
        self.ranges: tuple[tuple[bool, int, int], ...] = tuple(merged)  # (is IPv6, first, last), disjoint
        self._starts = [(v6, low) for v6, low, _ in merged]

    def __bool__(self) -> bool:
        return bool(self.exact or self.ranges)

    def __contains__(self, address: str) -> bool:
        if address in self.exact:
            return True
        v6, value = number(address) if self.ranges else (None, None)
        if v6 is None:
            return False
        index = bisect.bisect_right(self._starts, (v6, value)) - 1
        return index >= 0 and self.ranges[index][0] == v6 and self.ranges[index][2] >= value


def entries_matching(entries: Iterable[str], addresses: Iterable[str]) -> set[str]:
    """Which entries (addresses or ranges) hold at least one of these addresses: sorted numbers and a binary
    search per range, so 10,000 entries against 10,000 addresses take milliseconds."""
    addresses = set(addresses)
    numbers: dict[bool, list[int]] = {False: [], True: []}
    for address in addresses:
        v6, value = number(address)
        if v6 is not None:
            numbers[v6].append(value)
    for values in numbers.values():
        values.sort()
    matched = set()
    for entry in entries:
        parsed = parse_entry(entry)
        if parsed is None:
            continue
        if "/" not in parsed:
            if parsed in addresses:
                matched.add(entry)
            continue
        network = ipaddress.ip_network(parsed)
        values = numbers[network.version == 6]
        at = bisect.bisect_left(values, int(network.network_address))
        if at < len(values) and values[at] <= int(network.broadcast_address):
            matched.add(entry)
    return matched



def span(entry: str) -> tuple[bool, int, int]:
    """(is IPv6, first, last) of an entry as parse_entry returns it."""
    network = ipaddress.ip_network(entry, strict=False)
    return network.version == 6, int(network.network_address), int(network.broadcast_address)


def most_specific(address: str, spans: list[tuple[tuple[bool, int, int], object]]):
    """The value of the narrowest span that holds the address, or None: `spans` sorted narrowest first."""
    v6, value = number(address)
    if v6 is None:
        return None
    for (span_v6, low, high), found in spans:
        if span_v6 == v6 and low <= value <= high:
            return found
    return None
