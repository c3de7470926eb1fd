"""The workspace source: a Log Analytics workspace that Microsoft Sentinel's connectors already fill, read through
the Log Analytics query API (POST /v1/workspaces/{id}/query), for teams that collect Microsoft 365 audit data there
and do not want a second pipeline.

Three tables, each mapped back to the audit record the rest of the house reads (see docs/workspace.md, field by
field): OfficeActivity (its OfficeId is the audit record's Id, so a record the feed or the backfill also brought is
stored once), SigninLogs (sign-ins, as UserLoggedIn / UserLoginFailed) and AuditLogs (directory changes: roles,
consents, credentials, users).

Rows are read by when the workspace received them (`ingestion_time()`), not by when they happened, so a row that
arrives hours late is read by the window of its arrival and never skipped. The cursor, one per table, is the list
of arrival spans read to their end (kind "workspace" in the store); a sync reads from its end to a few minutes ago,
a backfill the spans not read yet. A result over the row limit, or one the service calls partial, is not trusted:
its window is halved and read again. One bad answer is one recorded error for its table; the next run tries again."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial

import requests

from eventstore import EventStore
from eventstore.model import EventRow, parse_utc, retention_start, uncovered, utc_text

from .api import (
    REFRESH,
    ApiClient,
    ApiError,
    BadAnswer,
    FatalApiError,
    Interrupted,
    error_of,
    parse_json,
    service_error,
)
from .auth import AuthError, AzureIdentityTokens
from .blobs import Parser
from .feedstate import FeedState
from .normalize import CONTENT_TYPE_OF_WORKLOAD, UnusableId, content_type_of, normalize
from .settings import MANAGED_IDENTITY, Settings
from .settings import WORKSPACE_TABLES as TABLES
from .source import Part, Progress, Report, Source, at_once, run

log = logging.getLogger("ingest.workspace")
KIND = "workspace"
ROW_LIMIT = 500_000  # rows in one answer (the service's limit); a result this long may have been cut
RESULT_BYTES = 100 * 1024 * 1024  # the service answers at most ~64 MB; more is not an answer to believe
FIRST_SYNC = timedelta(days=7)  # what a first sync reads, as the live feed would
SETTLE = timedelta(minutes=5)  # rows arriving now may not be queryable yet: windows end this long ago
LATE_AT_MOST = timedelta(days=2)  # how long after it happened a row may arrive and still be read
LONGEST, SMALLEST = timedelta(days=1), timedelta(minutes=1)

PERMISSION_HINT = ("Give the app's service principal the Log Analytics Reader role (or Microsoft Sentinel Reader) "
                   "on the workspace, and check WORKSPACE_ID.")

# the audit record's RecordType and UserType, which OfficeActivity writes as names
RECORD_TYPES = {"ExchangeAdmin": 1, "ExchangeItem": 2, "ExchangeItemGroup": 3, "SharePoint": 4,
                "SharePointFileOperation": 6, "OneDrive": 7, "AzureActiveDirectory": 8,
                "SharePointSharingOperation": 14, "AzureActiveDirectoryStsLogon": 15, "MicrosoftTeams": 25,
                "ExchangeItemAggregated": 50}
USER_TYPES = {"Regular": 0, "Reserved": 1, "Admin": 2, "DcAdmin": 3, "System": 4, "Application": 5,
              "ServicePrincipal": 6, "CustomPolicy": 7, "SystemPolicy": 8}
# OfficeActivity's columns named otherwise than the audit record's fields; every other column keeps its name
OFFICE_FIELDS = {"TimeGenerated": "CreationTime", "OfficeId": "Id", "OfficeWorkload": "Workload",
                 "OfficeObjectId": "ObjectId", "Client_IPAddress": "ClientIPAddress", "Site_Url": "SiteUrl"}
# the workspace's own bookkeeping, not the audit record's
WORKSPACE_COLUMNS = {"TenantId", "SourceSystem", "Type", "_ResourceId", "ElevationTime", "SourceRecordId"}


class TooManyRows(BadAnswer):
    """The result was cut (the row limit) or called partial: nothing in it is trusted; read a smaller window."""


# --- the API -------------------------------------------------------------------------------------
class LogAnalyticsApi(ApiClient):
    RESOURCE = "workspace_url"

    def __init__(self, settings: Settings, *args, **kwargs):
        super().__init__(settings, *args, **kwargs)
        self.endpoint = f"{settings.workspace_url}/v1/workspaces/{settings.workspace_id}/query"
        self._trust(self.endpoint, "this Log Analytics workspace's query API")

    @classmethod
    def tokens_for(cls, settings: Settings, session, resource: str):
        if settings.workspace_credential == MANAGED_IDENTITY:
            return AzureIdentityTokens(resource)
        return super().tokens_for(settings, session, resource)

    def answer(self, table: str, arrived_from: datetime, arrived_until: datetime) -> bytes:
        """The query result (JSON: `answer_rows` reads it) for the table's rows that arrived in [arrived_from,
        arrived_until)."""
        if table not in RECORDS:  # the one name written into the query: only a table this module maps
            raise ValueError(f"not a table the workspace source reads: {table!r}")
        query = (f"{table} | where ingestion_time() >= datetime({utc_text(arrived_from)}) "
                 f"and ingestion_time() < datetime({utc_text(arrived_until)})")
        timespan = f"{utc_text(arrived_from - LATE_AT_MOST)}/{utc_text(arrived_until)}"  # when they happened
        return self._exchange("POST", self.endpoint, RESULT_BYTES, json={"query": query, "timespan": timespan}).content

    def _judge(self, response: requests.Response, refreshed: bool) -> str | None:
        status = response.status_code
        code, _ = service_error(response)
        if status == 401:
            if refreshed:
                raise FatalApiError("The Log Analytics API refused a freshly issued token (HTTP 401): check that "
                                    "LOG_ANALYTICS_URL is the query API of the workspace's cloud (the token is asked "
                                    "for its audience) and that this machine's clock is right.", code, status)
            return REFRESH
        if status == 403:
            raise FatalApiError(f"The Log Analytics API refused the query (HTTP 403{', ' + code if code else ''}): "
                                f"{PERMISSION_HINT}", code, status)
        if status == 429:
            return "throttled by the Log Analytics API (429)"
        if status in (408, 500, 502, 503, 504):
            return f"Log Analytics service error {status}"
        if status == 404:
            raise FatalApiError(f"The Log Analytics API does not know the workspace (HTTP 404"
                                f"{', ' + code if code else ''}): check WORKSPACE_ID.", code, status)
        raise BadAnswer(f"The Log Analytics API refused the query (HTTP {status}{', ' + code if code else ''})",
                        code or f"HTTP{status}", status)


# --- rows → audit records (pure) -------------------------------------------------------------------
def _dynamic(value):
    """A dynamic column's value: the API sends it as JSON text."""
    if type(value) is str and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _when(value) -> str:
    """TimeGenerated as the audit record's zone-less UTC CreationTime."""
    return parse_utc(str(value)).isoformat()[:19]  # (isoformat: under half the time of utc_text's strftime)


def office_record(row: dict) -> dict:
    record = {}
    for column, value in row.items():
        if value is None or value == "" or column in WORKSPACE_COLUMNS:
            continue
        name = OFFICE_FIELDS.get(column, column)
        convert = _OFFICE_CONVERSIONS.get(name)
        record[name] = convert(value) if convert else _dynamic(value)
    return record


_OFFICE_CONVERSIONS = {"CreationTime": _when, "RecordType": lambda name: RECORD_TYPES.get(name, name),
                       "UserType": lambda name: USER_TYPES.get(name, name)}


def signin_record(row: dict) -> dict:
    result = str(row.get("ResultType") or "0")
    ok = result == "0"
    properties = [{"Name": "UserAgent", "Value": row.get("UserAgent") or ""}]
    if not ok and row.get("ResultDescription"):
        properties.insert(0, {"Name": "ResultStatusDetail", "Value": row["ResultDescription"]})
    record = {"CreationTime": _when(row.get("TimeGenerated")), "Id": row.get("Id"),
              "Operation": "UserLoggedIn" if ok else "UserLoginFailed", "OrganizationId": row.get("AADTenantId"),
              "RecordType": 15, "UserKey": row.get("UserId"), "Workload": "AzureActiveDirectory",
              "UserId": row.get("UserPrincipalName"), "ResultStatus": "Success" if ok else "Failed",
              "ClientIP": row.get("IPAddress"), "ActorIpAddress": row.get("IPAddress"),
              "ApplicationId": row.get("AppId"), "ObjectId": row.get("ResourceIdentity"), "ErrorCode": result,
              "ExtendedProperties": properties}
    return {k: v for k, v in record.items() if v not in (None, "")}


def directory_record(row: dict) -> dict:
    """An AuditLogs row as the audit log's AzureActiveDirectory record: the Core Directory's operations end with a
    full stop there ("Add member to role."), the other services' do not."""
    operation = str(row.get("OperationName") or "")
    if row.get("LoggedByService") == "Core Directory" and not operation.endswith("."):
        operation += "."
    initiated = _dynamic(row.get("InitiatedBy"))
    actor = (initiated.get("user") or initiated.get("app") or {}) if isinstance(initiated, dict) else {}
    actor = actor if isinstance(actor, dict) else {}
    targets = [t for t in _dynamic(row.get("TargetResources")) or [] if isinstance(t, dict)] \
        if isinstance(_dynamic(row.get("TargetResources")), list) else []
    changes = [{"Name": p.get("displayName"), "OldValue": _unquoted(p.get("oldValue")),
                "NewValue": _unquoted(p.get("newValue"))}
               for t in targets for p in t.get("modifiedProperties") or [] if isinstance(p, dict)]
    users = [t["userPrincipalName"] for t in targets if t.get("userPrincipalName")]
    principals = [t.get("id") for t in targets if t.get("type") == "ServicePrincipal" and t.get("id")]
    record = {"CreationTime": _when(row.get("TimeGenerated")), "Id": row.get("Id"), "Operation": operation,
              "OrganizationId": row.get("AADTenantId"), "RecordType": 8, "Workload": "AzureActiveDirectory",
              "UserId": actor.get("userPrincipalName") or actor.get("displayName"), "UserKey": actor.get("id"),
              "ClientIP": actor.get("ipAddress"),
              "ResultStatus": "Success" if str(row.get("Result", "")).lower() == "success" else "Failure",
              "ObjectId": (users or principals or [t.get("id") for t in targets] or [None])[0],
              "Target": [{"ID": t.get("userPrincipalName") or t.get("id"),
                          "Type": 5 if t.get("userPrincipalName") else 1 if t.get("type") == "ServicePrincipal"
                          else 2} for t in targets],
              "ModifiedProperties": changes}
    return {k: v for k, v in record.items() if v not in (None, "", [])}


def _unquoted(value):
    """AuditLogs writes a changed value as JSON text ("\\"Global Administrator\\""); the audit log as the value."""
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        return inner if isinstance(inner, str) else value
    return value


RECORDS = {"OfficeActivity": office_record, "SigninLogs": signin_record, "AuditLogs": directory_record}


def answer_rows(body: bytes, row_limit: int) -> list[dict]:
    """A query result's rows, each as {column: value}; TooManyRows for a result that may have been cut (`row_limit`
    rows) or that the service calls partial, BadAnswer for anything not in the API's shape."""
    answer = parse_json(body, "a query result")
    if not isinstance(answer, dict):
        raise BadAnswer("a query result is not a JSON object", "MALFORMED")
    if answer.get("error") is not None:
        raise TooManyRows(f"the service answered a partial result ({error_of(answer)[0]})", "PARTIAL")
    tables = answer.get("tables")
    if not isinstance(tables, list) or not tables or not isinstance(tables[0], dict):
        raise BadAnswer("a query result has no table", "MALFORMED")
    columns, rows = tables[0].get("columns"), tables[0].get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list) or \
            not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in columns):
        raise BadAnswer("a query result's table is not {columns: [...], rows: [...]}", "MALFORMED")
    if len(rows) >= row_limit:
        raise TooManyRows(f"the result holds {len(rows):,} rows, the service's limit: it may have been cut",
                          "ROW_LIMIT")
    names = [c["name"] for c in columns]
    # a row that does not fit the columns is kept as nothing, to be counted unusable
    return [dict(zip(names, row)) if isinstance(row, list) and len(row) == len(names) else {} for row in rows]


def parse_answer(table: str, body: bytes, row_limit: int, encode: Callable) -> tuple[list, int]:
    """A query result → the table's events in the store's form (`EventStore.encode`), and how many rows were
    unusable. It runs in the helper process that parses: a day of `OfficeActivity` is seconds of Python."""
    events, unusable = rows_of(table, answer_rows(body, row_limit))
    return [encode(event) for event in events], unusable


def rows_of(table: str, rows: list[dict]) -> tuple[list[EventRow], int]:
    """A table's rows → event rows through the one normalization, and how many could not be used (no time, an Id
    that is not text): counted, never stored."""
    events, unusable = [], 0
    for row in rows:
        try:
            record = RECORDS[table](row)
            if not isinstance(record.get("Id"), str):
                raise UnusableId("no Id")
            events.append(normalize(record, content_type_of(record), record["CreationTime"] + "Z"))
        except (UnusableId, ValueError, TypeError, AttributeError, RecursionError):
            unusable += 1
    return events, unusable


# --- the cursor ----------------------------------------------------------------------------------
@dataclass
class Cursor:
    """One table's arrival spans read to their end, merged, oldest first ([start, end) as UTC text)."""

    table: str
    read: list[list[str]] = field(default_factory=list)
    records: int = 0
    added: int = 0
    unusable: int = 0
    last_success: str = ""
    last_error: str = ""

    def spans(self) -> list[tuple[datetime, datetime]]:
        return [(parse_utc(a), parse_utc(b)) for a, b in self.read]

    def cover(self, start: datetime, end: datetime) -> None:
        merged: list[list[datetime]] = []
        for low, high in sorted([*self.spans(), (start, end)]):
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.read = [[utc_text(a), utc_text(b)] for a, b in merged]

    def gaps(self, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        return uncovered(since, until, self.spans())

    @property
    def read_until(self) -> datetime | None:
        return parse_utc(self.read[-1][1]) if self.read else None


def load_cursors(store: EventStore, tables: tuple[str, ...]) -> dict[str, Cursor]:
    saved = store.documents(KIND)
    cursors = {}
    for table in tables:
        try:
            cursors[table] = Cursor(**json.loads(saved[table])) if table in saved else Cursor(table)
        except (TypeError, ValueError):
            log.warning("the workspace cursor of %s in the store cannot be read; it is read again from the start",
                        table)
            cursors[table] = Cursor(table)
    return cursors


def save_cursor(store: EventStore, cursor: Cursor) -> None:
    store.put_documents(KIND, {cursor.table: json.dumps(asdict(cursor))})


# --- the run -------------------------------------------------------------------------------------
class WorkspaceReader:
    def __init__(self, api: LogAnalyticsApi, store: EventStore, tables: tuple[str, ...] = TABLES, *,
                 progress: Callable[[Progress], None] | None = None, clock=None):
        self.api, self.store, self.tables = api, store, tables
        self.progress = progress or (lambda p: None)
        self.now = clock or (lambda: datetime.now(timezone.utc))
        self._answered = threading.Event()  # the service has answered a query of this run

    def run(self, since: datetime | None = None) -> Report:
        """Read every table from `since` (None: from each table's cursor, or FIRST_SYNC back on the first run) to
        SETTLE ago, skipping what the cursor has read already."""
        until = (self.now() - SETTLE).replace(microsecond=0)
        cursors = load_cursors(self.store, self.tables)
        starts = {t: since or c.read_until or until - FIRST_SYNC for t, c in cursors.items()}
        report = Report(KIND, since=utc_text(min(starts.values(), default=until)), until=utc_text(until),
                        parts=[Part(table) for table in cursors])
        tables = [(part, cursors[part.name], starts[part.name]) for part in report.parts]
        self._answered.clear()
        # a table's next window is asked for while this one is parsed (in the helper process) and the one before it
        # stored (one writer for all tables)
        self._parser = Parser()
        self._asking = ThreadPoolExecutor(max(1, len(tables)), thread_name_prefix="workspace-ask")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="workspace-store")
        try:
            reading = at_once([partial(self._read_table, *table, until) for table in tables], self._answered,
                              refused=lambda first: first.exception() is not None, name="workspace")
        finally:
            for pool in (self._asking, self._writer):
                pool.shutdown(wait=True, cancel_futures=True)
            self._parser.shutdown()
        for future in reading:
            try:
                future.result()
            except (FatalApiError, AuthError) as refused:
                report.fatal = report.fatal or str(refused)
        return report

    def _read_table(self, part: Part, cursor: Cursor, since: datetime, until: datetime) -> None:
        """One table, gap by gap; what stops it is its part's error (a refusal every query would get is raised)."""
        try:
            for start, end in cursor.gaps(since, until):
                why = self._read(cursor, start, end, part)
                if why:
                    cursor.last_error = part.error = why[:300]
                    save_cursor(self.store, cursor)
                    log.warning("workspace %s from %s: %s", cursor.table, utc_text(start), why)
                    return
        except (FatalApiError, AuthError):
            self.api.stop.set()  # the other tables would be refused alike
            raise
        except Interrupted:
            part.error = "stopped before the end (run it again: it resumes)"

    def _read(self, cursor: Cursor, start: datetime, end: datetime, part: Part) -> str:
        """Read one gap window by window, each saved as it is stored; what stopped it ("" when read to its end)."""
        length = LONGEST
        asked = self._ask(cursor.table, start, min(end, start + length))
        storing: Future | None = None  # the window before, being stored (its cursor saved after it)
        try:
            while asked is not None:
                if self.api.stop.is_set():
                    raise Interrupted("Stopped.")
                step, answer = asked[1], asked[2]
                asked = None
                part.units += 1
                try:
                    parsing = self._parser.submit(parse_answer, cursor.table, answer.result(), ROW_LIMIT,
                                                  self.store.encode)
                    if step < end:  # the next window, as it will be if this one is whole
                        asked = self._ask(cursor.table, step, min(end, step + min(LONGEST, length * 2)))
                    events, unusable = parsing.result()
                except TooManyRows as cut:
                    if step - start <= SMALLEST:
                        return f"{cut} even for {SMALLEST.total_seconds() / 60:.0f} minute from {utc_text(start)}"
                    length = (step - start) / 2
                    asked = self._ask(cursor.table, start, min(end, start + length))
                    continue
                except FatalApiError:
                    raise  # every query would get it: the run stops (see run)
                except ApiError as refused:  # a bad answer, retries outlasted: this table's error; next run retries
                    return str(refused)
                except BrokenProcessPool:  # the helper process died (a new one takes the next run's windows)
                    return "the helper process that parses query results ended unexpectedly"
                self._answered.set()
                if storing is not None:
                    storing.result()
                storing = self._writer.submit(self._store, cursor, part, start, step, events, unusable)
                start, length = step, min(LONGEST, length * 2)
            return ""
        finally:  # what was read is saved before this ends, however it ends
            if storing is not None:
                storing.result()

    def _ask(self, table: str, start: datetime, step: datetime) -> tuple[datetime, datetime, Future]:
        return start, step, self._asking.submit(self.api.answer, table, start, step)

    def _store(self, cursor: Cursor, part: Part, start: datetime, step: datetime, events: list, unusable: int) -> None:
        added = self.store.store_events(events) if events else 0  # the events first, then the cursor
        cursor.records += len(events)
        cursor.added += added
        cursor.unusable += unusable
        cursor.cover(start, step)
        cursor.last_success, cursor.last_error = utc_text(self.now()), ""
        save_cursor(self.store, cursor)
        part.done += 1
        part.records += len(events)
        part.added += added
        part.unusable += unusable
        self.progress(Progress(KIND, cursor.table, part.done, part.units, part.records, part.added,
                               f"read until {utc_text(step)}"))


def workspace_summary(store: EventStore, tables: tuple[str, ...] = TABLES) -> list[dict]:
    """Per table: how far it is read (by arrival), records, new, unusable, last success and error."""
    return [{"table": c.table, "from": c.read[0][0] if c.read else None, "read_until": c.read[-1][1] if c.read
             else None, "spans": len(c.read), "records": c.records, "added": c.added, "unusable": c.unusable,
             "last_success": c.last_success or None, "last_error": c.last_error}
            for c in load_cursors(store, tables).values() if c.read or c.last_error]


class Workspace(Source):
    """A Log Analytics workspace's tables, by arrival: from each table's cursor, or from `since` (a backfill, kept
    within the store's retention: older events would be pruned at once)."""

    kind = KIND

    def __init__(self, since: datetime | None = None):
        self.since = since

    def parts(self, settings: Settings) -> tuple[str, ...]:
        return settings.workspace_tables

    def check(self, settings: Settings) -> str:
        return "" if settings.workspace_id else ("WORKSPACE_ID is not set: it names the Log Analytics workspace to "
                                                 "read (its Workspace ID, a GUID, on the workspace's Overview page).")

    def connect(self, settings: Settings) -> LogAnalyticsApi:
        return LogAnalyticsApi.connect(settings)

    def run_with(self, api: LogAnalyticsApi, store: EventStore, settings: Settings, progress) -> Report:
        since = self.since and max(self.since, retention_start(datetime.now(timezone.utc), settings.retention_days))
        tables, left_out = tables_to_read(settings, store)
        report = WorkspaceReader(api, store, tables, progress=progress).run(since)
        report.note = left_out
        return report


ENTRA_TABLES = ("SigninLogs", "AuditLogs")
ENTRA_CONTENT_TYPE = CONTENT_TYPE_OF_WORKLOAD["AzureActiveDirectory"]  # the feed's, where their records go


def _entra_tables(settings: Settings) -> tuple[str, ...]:
    return tuple(t for t in settings.workspace_tables if t in ENTRA_TABLES)


def entra_reader(settings: Settings, store: EventStore) -> str:
    """Which source brings this store's Entra ID sign-ins and directory changes: "feed" (its
    Audit.AzureActiveDirectory), "workspace" (SigninLogs and AuditLogs), or "" while neither has. The two hold the
    same events under other ids (the audit log's, Entra's), so a store takes them from one: the one that brought
    them first, for as long as it is set to (the feed when both have: its guard came first)."""
    if ENTRA_CONTENT_TYPE in settings.content_types:
        feed = FeedState(store).checkpoint(ENTRA_CONTENT_TYPE)
        if feed.listed_until or feed.queued_until:
            return "feed"
    configured = settings.workspace_id or settings.demo  # (the DEMO tenant serves a workspace of its own)
    if configured and any(c.read for c in load_cursors(store, _entra_tables(settings)).values()):
        return "workspace"
    return ""


def tables_to_read(settings: Settings, store: EventStore) -> tuple[tuple[str, ...], str]:
    """The tables a workspace run reads, and why any of WORKSPACE_TABLES is left out ("" when none is)."""
    skipped = _entra_tables(settings)
    if not skipped or entra_reader(settings, store) != "feed":
        return settings.workspace_tables, ""
    return tuple(t for t in settings.workspace_tables if t not in skipped), (
        f"{' and '.join(skipped)} not read: this store's live feed syncs {ENTRA_CONTENT_TYPE}, which holds the same "
        f"sign-ins and directory changes under other ids, so each would be stored twice. To read them from the "
        f"workspace instead, take {ENTRA_CONTENT_TYPE} out of O365_CONTENT_TYPES")


def audit_log_left_out(settings: Settings, store: EventStore) -> tuple[tuple[str, ...], str]:
    """The audit log's side of the same rule (the live feed and the Graph backfill): the content types whose records
    it leaves out, and why (none, "" while the workspace does not bring them)."""
    if entra_reader(settings, store) != "workspace":
        return (), ""
    tables = " and ".join(_entra_tables(settings))
    return (ENTRA_CONTENT_TYPE,), (
        f"{ENTRA_CONTENT_TYPE} left out: this store's sign-ins and directory changes come from the workspace's "
        f"{tables}, which hold the same events under other ids, so each would be stored twice. To take them from "
        f"the audit log instead, take {tables} out of WORKSPACE_TABLES")


def run_workspace(settings: Settings, store: EventStore, since: datetime | None = None, *, progress=None,
                  stop: threading.Event | None = None) -> Report:
    """What `python -m ingest sync|backfill --source workspace` calls."""
    return run(Workspace(since), settings, store, progress=progress, stop=stop)
