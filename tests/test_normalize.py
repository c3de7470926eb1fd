"""Normalization: one raw record → the row we filter and graph on. Open schema: nothing is an error."""
import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore.ip import normalize as normalize_ip
from ingest.normalize import NotRecords, decode_blob, normalize

FALLBACK = "2026-01-01T00:00:00Z"


def test_sharepoint_record_keeps_fields_and_original_json():
    record = {"CreationTime": "2025-03-04T09:30:55", "Id": "c41e8f02", "Operation": "FileAccessed",
              "RecordType": 6, "UserId": "Megan.B@contoso.com", "ClientIP": "203.0.113.45:51234",
              "Workload": "SharePoint", "UserAgent": "Mozilla/5.0 Edg/122.0",
              "ObjectId": "https://contoso.sharepoint.com/sites/Finance/Shared Documents/FY25 Plan.xlsx",
              "SiteUrl": "https://contoso.sharepoint.com/sites/Finance/", "SourceFileName": "FY25 Plan.xlsx"}
    row = normalize(record, "Audit.SharePoint", FALLBACK)
    assert row.time == "2025-03-04T09:30:55Z"  # zone-less CreationTime is UTC
    assert row.user_id == "Megan.B@contoso.com"  # case is evidence: kept as sent
    assert row.client_ip == "203.0.113.45"
    assert (row.file_name, row.site_url, row.user_agent) == ("FY25 Plan.xlsx", record["SiteUrl"], record["UserAgent"])
    assert json.loads(row.raw) == record


def test_entra_signin_takes_user_agent_from_extended_properties_and_ip_from_actor():
    record = {"Id": "x", "CreationTime": "2025-03-04T09:15:42.123Z", "Operation": "UserLoginFailed",
              "RecordType": 15, "ActorIpAddress": "2001:DB8::1", "ApplicationId": "d3590ed6",
              "ExtendedProperties": [{"Name": "UserAgent", "Value": "python-requests/2.31"}]}
    row = normalize(record, "Audit.AzureActiveDirectory", FALLBACK)
    assert (row.client_ip, row.user_agent, row.application) == ("2001:db8::1", "python-requests/2.31", "d3590ed6")
    assert row.time == "2025-03-04T09:15:42Z"


def test_exchange_client_ip_address_with_bracketed_ipv6_port():
    row = normalize({"Id": "y", "ClientIPAddress": "[2001:db8::7]:443", "Item": {"Subject": "Q1"}},
                    "Audit.Exchange", FALLBACK)
    assert row.client_ip == "2001:db8::7"
    assert row.object_id == "Q1"


def test_unknown_record_type_and_missing_fields_are_normal():
    row = normalize({"Id": "z", "RecordType": "NotANumber", "Workload": "FutureService"}, "Audit.General", FALLBACK)
    assert row.record_type is None
    assert row.time == FALLBACK  # no CreationTime: the blob's time stands in
    assert row.user_id == row.client_ip == row.operation == ""


def test_record_without_id_gets_a_stable_id_so_it_still_dedupes():
    record = {"Operation": "Odd", "CreationTime": "2025-01-01T00:00:00"}
    assert normalize(record, "Audit.General", FALLBACK).id == normalize(dict(record), "Audit.General", FALLBACK).id


@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_every_ip_form_normalizes_to_the_address(address, port):
    expected = str(address.ipv4_mapped or address) if address.version == 6 else str(address)
    forms = [str(address), f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"]
    if address.version == 6:
        forms.append(str(address).upper())
    for form in forms:
        assert normalize_ip(form) == expected


@given(st.text(max_size=40))
def test_text_that_is_not_an_address_is_kept_not_lost(text):
    result = normalize_ip(text)
    try:
        ipaddress.ip_address(result)
    except ValueError:
        assert result == text.strip()


# --- a whole blob, as the API (or something in between) sent it ------------------------------------------
def blob_of(*records: bytes) -> bytes:
    return b"[" + b",".join(records) + b"]"


def test_an_invalid_utf8_byte_keeps_every_record_and_says_where_it_was():
    good = b'{"Id":"a","Operation":"FileAccessed"}'
    bad = b'{"Id":"b","SourceFileName":"Bud\xffget.xlsx"}'
    body = blob_of(good, bad, b'{"Id":"c"}')
    decoded = decode_blob(body, "Audit.SharePoint", FALLBACK)
    assert [r.id for r in decoded.rows] == ["a", "b", "c"]
    assert decoded.rows[0].raw == good.decode() and decoded.rows[1].file_name == "Bud\ufffdget.xlsx"
    where = body.index(b"\xff")
    assert f"1 byte sequence(s) that are not UTF-8, the first at byte {where}" in decoded.notes
    assert not decoded.broken


def test_nan_and_infinity_are_stored_as_strict_json():
    decoded = decode_blob(b'[{"Id":"n","Score":NaN,"Max":-Infinity}]', "Audit.General", FALLBACK)
    (row,) = decoded.rows
    assert json.loads(row.raw, parse_constant=lambda name: pytest.fail(f"{name} left in the stored JSON")) == \
        {"Id": "n", "Score": None, "Max": None}
    assert "NaN or Infinity" in decoded.notes


@pytest.mark.parametrize("tail, why", [(b',{"Id":"x",', "Expecting property name"),
                                       (b"," + b"[" * 100_000 + b"]" * 100_000 + b"]", "nested too deeply")])
def test_a_break_in_the_json_keeps_the_records_before_it(tail, why):
    decoded = decode_blob(b'[{"Id":"a"},{"Id":"b"}' + tail, "Audit.General", FALLBACK)
    assert [r.id for r in decoded.rows] == ["a", "b"]
    assert why in decoded.broken and "character 23" in decoded.broken


def test_an_id_that_is_not_text_is_never_stored_under_an_invented_one():
    body = json.dumps([{"Id": {"x": 1}, "Operation": "a"}, {"Id": ["y"], "Operation": "b"}, {"Id": True},
                       {"Id": 42, "Operation": "c"}, {"Id": "real-id", "Operation": "d"}]).encode()
    decoded = decode_blob(body, "Audit.General", "2026-01-01T00:00:00Z")
    assert [row.id for row in decoded.rows] == ["42", "real-id"]
    assert "3 record(s) had an Id that is not text and were skipped" in decoded.notes


def test_elements_that_are_not_records_are_skipped_and_counted():
    decoded = decode_blob(b'[1, "x", {"Id":"a"}, null]', "Audit.General", FALLBACK)
    assert [r.id for r in decoded.rows] == ["a"] and "3 element(s)" in decoded.notes


@pytest.mark.parametrize("body", [b"<html>blocked</html>", b'{"value": []}', b"", b"\xff\xfe"])
def test_a_body_that_is_not_an_array_is_refused(body):
    with pytest.raises(NotRecords):
        decode_blob(body, "Audit.General", FALLBACK)
