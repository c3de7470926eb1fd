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


@pytest.mark.parametrize("data, message", [
    (b"UserId\n" + b"a" * 140_000 + b"@contoso.com\n", "cannot be read as CSV"),
    (b",,,\n,,\n , ,\n", "only separators"),
    (codecs.BOM_UTF16_LE + b"U\x00s\x00e", "not valid UTF-16"),
    (b"10.0.0.1\n10.0.0.0/33\n", "not an IP address"),
    (b"999.1.1.1\n198.51.100.9\n", "not an IP address"),
    (b"admins\njdoe\n", "neither an account"),
], ids=["field-over-128k", "only-separators", "utf16-odd-byte", "cidr-33", "octet-999", "plain-word"])
def test_input_that_used_to_crash_or_slip_through_is_refused(data, message):
    with pytest.raises(WatchListError, match=message):
        parse_watchlist("x", data)


def test_excel_unicode_text_is_tab_separated_utf16():
    data = "UserId\tRole\r\nmegan@contoso.com\tGlobal Administrator\r\nBen.L@contoso.com\tUser Administrator\r\n"
    watchlist = parse_watchlist("admins", data.encode("utf-16"))
    assert watchlist.accounts == ("megan@contoso.com", "Ben.L@contoso.com")


def test_accounts_as_audit_records_name_them_are_accepted():
    data = ("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com\n9f1c2d3e-4a5b-46c7-8d9e-0f1a2b3c4d5e\n"
            "S-1-5-21-1004336348-1177238915-682003330-512\nCONTOSO\\svc-backup\n2001:DB8::1\n").encode()
    watchlist = parse_watchlist("mixed", data)
    assert len(watchlist.accounts) == 4 and watchlist.networks == ("2001:db8::1",)


def test_the_example_admin_list_names_the_demo_tenants_admins():
    """examples/adminlist.csv, which the README points at, is the DEMO tenant's administrators as Entra spells them."""
    import os
    from datetime import datetime, timezone

    from ingest.demo import DEMO_SEED
    from simulator import SimulatedTenant

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "adminlist.csv")
    with open(path, "rb") as f:
        listed = parse_watchlist("admins", f.read())
    tenant = SimulatedTenant(datetime.now(timezone.utc), seed=DEMO_SEED)
    assert set(listed.accounts) == {u.upn for u in tenant.admins} and tenant.victim.upn in listed.accounts
