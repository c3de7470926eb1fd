"""The one function that turns a raw audit record into the row we store. Pure: no I/O.

Records are an open schema: unknown RecordTypes and missing fields are normal, never errors."""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

from .model import EventRow, normalize_ip, parse_utc, utc_text

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


_decoder = json.JSONDecoder()
_SEPARATOR = re.compile(r"[ \t\n\r]*,?[ \t\n\r]*")
_cached_ip = lru_cache(maxsize=65536)(normalize_ip)  # a tenant's addresses repeat endlessly


def split_records(body: str) -> list[tuple[Any, str]]:
    """Parse a blob (a JSON array of records) into (record, its exact original JSON text) pairs, so the
    original is kept byte for byte without serializing it again. Raises ValueError if it is not an array."""
    index = _SEPARATOR.match(body, 0).end()
    if body[index:index + 1] != "[":
        raise ValueError("a content blob must be a JSON array")
    index += 1
    pairs = []
    while True:
        index = _SEPARATOR.match(body, index).end()
        if body[index:index + 1] == "]":
            return pairs
        record, end = _decoder.raw_decode(body, index)
        pairs.append((record, body[index:end]))
        index = end


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
    record_id = _text(record.get("Id"))
    if not record_id:  # never seen in practice, but a record without Id must still dedupe
        record_id = "sha1:" + hashlib.sha1(raw.encode("utf-8")).hexdigest()

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


def decode_blob(body: bytes, content_type: str, created: str) -> list[EventRow]:
    """A content blob's bytes → stored rows. Raises ValueError when it is not a JSON array of records
    (UnicodeDecodeError and JSONDecodeError are ValueErrors). Light to import: it runs in a helper process."""
    return [normalize(record, content_type, created, raw) for record, raw in split_records(body.decode("utf-8"))
            if isinstance(record, dict)]
