"""watchlist.py: the files analysts really upload parse; bad ones are refused with a clear reason."""
import codecs

import pytest

from dashboard.watchlist import MAX_BYTES, WatchListError, parse_watchlist


@pytest.mark.parametrize("data, accounts, networks", [
    (b"admin1@contoso.com\nAdmin2@contoso.com\n", ("admin1@contoso.com", "Admin2@contoso.com"), ()),
    (b"admins\nadmin1@contoso.com\nadmin2@contoso.com\n", ("admin1@contoso.com", "admin2@contoso.com"), ()),
    (codecs.BOM_UTF8 + b"UserId,Department\r\nmegan@contoso.com,IT\r\n", ("megan@contoso.com",), ()),
    (b"UPN;IP\nmegan@contoso.com;198.51.100.9\n;2001:db8::/32\n", ("megan@contoso.com",),
     ("198.51.100.9", "2001:db8::/32")),
    (b"ClientIP\n198.51.100.0/24\n203.0.113.7\n", (), ("198.51.100.0/24", "203.0.113.7")),
    (b"198.51.100.9\nsvc@contoso.com\n198.51.100.9\n", ("svc@contoso.com",), ("198.51.100.9",)),
    ("Email\nJosé@contoso.com\n".encode("utf-16"), ("José@contoso.com",), ()),
], ids=["one-column", "one-column-header", "bom-userid", "semicolon-two-columns", "ip-cidr", "mixed-dedupe",
        "utf16-excel"])
def test_accepted_files(data, accounts, networks):
    watchlist = parse_watchlist("admins", data)
    assert watchlist.accounts == accounts
    assert watchlist.networks == networks


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary"),
    (b"x" * (MAX_BYTES + 1), "at most"),
    ("admin@contoso.com\nJos\xe9\n".encode("latin-1"), "UTF-8"),
    ((",".join(f"c{i}" for i in range(5000)) + "\n").encode(), "columns"),
    (b"UserId\n=HYPERLINK(\"http://evil\",\"x\")\n", "formula"),
    (b"@SUM(A1)\n", "formula"),
    (b"name,dept\nmegan,IT\n", "which column"),
    (b"IP\nnot-an-ip\n", "not an IP"),
], ids=["empty", "blank", "binary", "too-large", "latin1", "5000-columns", "hyperlink-formula", "at-formula",
        "ambiguous", "bad-ip"])
def test_refused_files_say_why(data, message):
    with pytest.raises(WatchListError, match=message):
        parse_watchlist("x", data)


def test_a_name_is_needed():
    with pytest.raises(WatchListError, match="name"):
        parse_watchlist("  ", b"a@b.com")


def test_round_trip_through_the_store_payload():
    watchlist = parse_watchlist("admins", b"UPN,IP\na@b.com,198.51.100.9\n")
    from dashboard.watchlist import WatchList

    assert WatchList.from_json("admins", watchlist.to_json()) == watchlist
