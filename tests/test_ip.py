"""eventstore/ip.py: what an address is and whether it is in a set of addresses and ranges, once for every
engine and page."""
import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore.ip import IpSet, entries_matching, parse_entry


@pytest.mark.parametrize("text, expected", [
    ("198.51.100.9", "198.51.100.9"), (" [2001:DB8::1] ", "2001:db8::1"), ("198.51.100.0/24", "198.51.100.0/24"),
    ("198.51.100.7/24", "198.51.100.0/24"), ("198.51.100.9/32", "198.51.100.9"), ("::ffff:203.0.113.5", "203.0.113.5"),
    ("10.0.0.0/33", None), ("999.1.1.1", None), ("not-an-ip", None), ("", None)])
def test_entries_are_parsed_into_one_form(text, expected):
    assert parse_entry(text) == expected


def test_membership_of_addresses_and_nested_ranges():
    wanted = IpSet(["198.51.100.9", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "203.0.113.0/25",
                    "203.0.113.128/25"])
    assert "198.51.100.9" in wanted and "198.51.100.10" not in wanted
    assert "10.1.2.3" in wanted and "11.0.0.1" not in wanted
    assert "2001:db8:ffff::1" in wanted and "2001:db9::1" not in wanted
    assert "203.0.113.200" in wanted and len(wanted.ranges) == 3, "adjacent and nested ranges are merged"
    assert "office-proxy" not in wanted


def test_which_entries_matched_something():
    entries = ["198.51.100.9", "198.51.100.10", "10.0.0.0/8", "2001:db8::/32"]
    assert entries_matching(entries, ["198.51.100.9", "10.200.0.1", "192.0.2.1"]) == {"198.51.100.9", "10.0.0.0/8"}


addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
networks = st.one_of(st.builds(lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
                               st.ip_addresses(v=4), st.integers(8, 32)),
                     st.builds(lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
                               st.ip_addresses(v=6), st.integers(16, 128)))


def as_network(entry: str):
    """The oracle's reading of an entry: an IPv4-mapped IPv6 address typed alone is its IPv4 address, as everywhere
    in the tool (a range stays as written)."""
    network = ipaddress.ip_network(entry, strict=False)
    mapped = "/" not in entry and getattr(network.network_address, "ipv4_mapped", None)
    return ipaddress.ip_network(mapped) if mapped else network


@given(st.lists(st.one_of(addresses, networks), max_size=12), st.lists(addresses, max_size=12))
@example(entries=["::ffff:0:1"], probes=["0.0.0.1"])  # a draw that failed once: the oracle read it as IPv6
def test_set_membership_agrees_with_ipaddress(entries, probes):
    wanted = IpSet(entries)
    parsed = [as_network(e) for e in entries]
    for probe in probes + [str(n.network_address) for n in parsed]:
        address = ipaddress.ip_address(probe)
        if getattr(address, "ipv4_mapped", None):
            continue
        assert (probe in wanted) == any(address.version == n.version and address in n for n in parsed)
