"""The one function that turns a raw audit record into the row we store — the source side's knowledge of the
Office 365 audit schema (its field names), shared by every source (the Management Activity feed, the Graph
backfill). Pure: no I/O.

Records are an open schema: unknown RecordTypes and missing fields are normal, never errors."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple

from eventstore import ip
from eventstore.model import EventRow, parse_utc, utc_text

_IP_FIELDS = ("ClientIP", "ClientIPAddress", "ActorIpAddress")
_APP_FIELDS = ("ApplicationDisplayName", "AppDisplayName", "ApplicationId", "AppId", "ClientAppId", "ClientInfoString")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _name_value(items: Any, name: str) -> str:
    """Look up `name` in a [{"Name":..,"Value":..}] list (ExtendedProperties, Parameters)."""
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("Name") == name:
                return _text(item.get("Value"))
    return ""


def named_values(record: dict, field: str, name: str) -> list[str]:
    """Every value the record's list `field` (Parameters, ModifiedProperties, ExtendedProperties) gives `name`: an
    item's Value, or its NewValue for a change, as text without surrounding quotes."""
    items = record.get(field)
    found = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("Name") == name:
            value = item.get("Value", item.get("NewValue"))
            found.append("" if value is None else str(value).strip().strip('"'))
    return found


def domain_of(address: str) -> str:
    """The domain of a mail address or UPN, case folded ("" for anything else)."""
    return address.rsplit("@", 1)[-1].casefold() if "@" in address else ""


_SEPARATOR = re.compile(r"[ \t\n\r]*,?[ \t\n\r]*")
_cached_ip = lru_cache(maxsize=65536)(ip.normalize)  # a tenant's addresses repeat endlessly


def _time(record: dict, fallback: str) -> str:
    value = record.get("CreationTime")
    if isinstance(value, str) and value:
        if len(value) == 19 and value[10] == "T":  # the API's usual zone-less form: already UTC
            return value + "Z"
        try:
            return utc_text(parse_utc(value))
        except ValueError:
            pass
    return fallback


def _record_type(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def normalize(record: dict, content_type: str, fallback_time: str, raw: str | None = None) -> EventRow:
    """`fallback_time` (the blob's contentCreated, our form) stands in for a missing or unreadable
    CreationTime; `raw` is the record's original JSON text when the caller has it."""
    if raw is None:
        raw = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    record_id = record.get("Id")
    if record_id is None or record_id == "":  # never seen in practice, but a record without Id must still dedupe
        record_id = "sha1:" + hashlib.sha1(raw.encode("utf-8")).hexdigest()
    elif isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    elif not isinstance(record_id, str):  # an object, a list, true: no id of ours may stand in for it
        raise UnusableId(f"its Id is a JSON {type(record_id).__name__}, not text")

    client_ip = ""
    for name in _IP_FIELDS:
        value = record.get(name)
        if value:
            client_ip = _cached_ip(_text(value))
            break

    user_agent = _text(record.get("UserAgent")) or _name_value(record.get("ExtendedProperties"), "UserAgent")
    application = ""
    for name in _APP_FIELDS:
        value = record.get(name)
        if value:
            application = _text(value)
            break

    file_name = _text(record.get("SourceFileName"))
    object_id = _text(record.get("ObjectId"))
    if not object_id:
        item = record.get("Item")
        if isinstance(item, dict):
            object_id = _text(item.get("Subject"))

    # positional, in EventRow's field order (id, time, content_type, workload, record_type, operation,
    # result_status, user_id, client_ip, user_agent, application, object_id, site_url, file_name, raw)
    return EventRow(record_id, _time(record, fallback_time), content_type, _text(record.get("Workload")),
                    _record_type(record.get("RecordType")), _text(record.get("Operation")),
                    _text(record.get("ResultStatus")), _text(record.get("UserId")), client_ip, user_agent,
                    application, object_id, _text(record.get("SiteUrl")), file_name, raw)


DLP_RECORD_TYPES = {11, 13, 33, 63, 99, 100, 107}
CONTENT_TYPE_OF_WORKLOAD = {"AzureActiveDirectory": "Audit.AzureActiveDirectory", "Exchange": "Audit.Exchange",
                            "SharePoint": "Audit.SharePoint", "OneDrive": "Audit.SharePoint"}


def content_type_of(record: dict) -> str:
    """The Management Activity content type a record would have come in, so every source store it alike."""
    try:
        if int(record.get("RecordType")) in DLP_RECORD_TYPES:
            return "DLP.All"
    except (TypeError, ValueError):
        pass
    return CONTENT_TYPE_OF_WORKLOAD.get(str(record.get("Workload", "")), "Audit.General")


class UnusableId(ValueError):
    """A record whose Id is neither text nor a number: it cannot be deduplicated, so it is counted, not stored."""


class NotRecords(ValueError):
    """The blob is not a JSON array: nothing in it can be read as records."""


class Decoded(NamedTuple):
    rows: list[EventRow]
    notes: str  # what had to be repaired or skipped ("" for a clean blob)
    broken: str  # where and why the JSON array could not be read to its end ("" when it could)


def _records(text: str, notes: list[str], broken: list[str]) -> Iterator[tuple[Any, str]]:
    """(record, its exact original JSON text) for each element of a JSON array, without serializing anything
    again. Where the array breaks (bad syntax, nesting too deep to read) it stops and says so in `broken`.
    NaN and Infinity (not JSON) are stored as null, and `notes` says so."""
    constants: list[str] = []

    def not_json(name: str) -> None:
        constants.append(name)
        return None

    decoder = json.JSONDecoder(parse_constant=not_json)
    index = _SEPARATOR.match(text, 0).end()
    if text[index:index + 1] != "[":
        raise NotRecords("a content blob must be a JSON array")
    index += 1
    repaired = 0
    while True:
        index = _SEPARATOR.match(text, index).end()
        if text[index:index + 1] == "]":
            break
        try:
            record, end = decoder.raw_decode(text, index)
        except (ValueError, RecursionError) as error:
            why = "nested too deeply" if isinstance(error, RecursionError) else error.args[0].split(":")[0]
            broken.append(f"the JSON breaks at character {index:,} ({why}); the {len(text) - index:,} characters "
                          "from there on cannot be read")
            break
        raw = text[index:end]
        if constants:  # valid JSON elsewhere: write this record again, with null in their place
            raw = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            constants.clear()
            repaired += 1
        yield record, raw
        index = end
    if repaired:
        notes.append(f"{repaired} record(s) held NaN or Infinity, which JSON does not allow: stored with null")


def decode_blob(body: bytes, content_type: str, created: str) -> Decoded:
    """A content blob's bytes → its rows, with what had to be repaired or skipped. Keeps every record that can
    be read: an invalid UTF-8 byte becomes U+FFFD in its record; a break in the JSON keeps the records before
    it (and says where it broke). Raises NotRecords when the body is not a JSON array at all. Light to import:
    it runs in a helper process."""
    notes: list[str] = []
    broken: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        text = body.decode("utf-8", "replace")
        bad = text.count("\ufffd") - body.count("\ufffd".encode())
        notes.append(f"{bad} byte sequence(s) that are not UTF-8, the first at byte {error.start:,}: replaced "
                     "with U+FFFD in their records")
    rows, skipped, no_id = [], 0, 0
    for record, raw in _records(text, notes, broken):
        if not isinstance(record, dict):
            skipped += 1
            continue
        try:
            rows.append(normalize(record, content_type, created, raw))
        except UnusableId:
            no_id += 1
    if skipped:
        notes.append(f"{skipped} element(s) of the array were not records (JSON objects) and were skipped")
    if no_id:
        notes.append(f"{no_id} record(s) had an Id that is not text and were skipped")
    return Decoded(rows, "; ".join(notes), "; ".join(broken))
