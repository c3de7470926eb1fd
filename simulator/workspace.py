"""A Log Analytics workspace that Microsoft Sentinel's connectors fill, as its query API serves it: POST
/v1/workspaces/{id}/query with a KQL `query` and an ISO 8601 `timespan`. The tenant's audit records appear in the
connectors' tables, each with the shape, the losses and the ingestion delay of the real ones:

- OfficeActivity (the Office 365 connector): Exchange, SharePoint, OneDrive and Teams records, flattened into the
  table's columns; OfficeId is the audit record's Id; fields the table has no column for are lost.
- SigninLogs (the Entra ID connector): the sign-ins, with ids of their own (not the audit record's).
- AuditLogs (the Entra ID connector): the directory changes (roles, consents, credentials, users).

Dynamic columns come as JSON text, as the API sends them. A result over the row limit is cut and answered as a
partial error (HTTP 200 with an `error` beside the rows); 429s come with Retry-After. The query language understood
is what a reader sends: `Table | where ingestion_time() >= datetime(A) and ingestion_time() < datetime(B)`, anything
else is a 400."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .tenant import SimulatedTenant

WORKSPACE_ID = "5b1f0a6e-8d2c-4e3f-9a7b-1c2d3e4f5a6b"
READER_ROLE = "Data.Read"  # Log Analytics Reader (or Microsoft Sentinel Reader) on the workspace
RETENTION = timedelta(days=90)

OFFICE_WORKLOADS = {"Exchange", "SharePoint", "OneDrive", "MicrosoftTeams"}
RECORD_TYPE_NAMES = {1: "ExchangeAdmin", 2: "ExchangeItem", 3: "ExchangeItemGroup", 4: "SharePoint",
                     6: "SharePointFileOperation", 7: "OneDrive", 14: "SharePointSharingOperation",
                     25: "MicrosoftTeams", 50: "ExchangeItemAggregated"}
USER_TYPE_NAMES = {0: "Regular", 1: "Reserved", 2: "Admin", 3: "DcAdmin", 4: "System", 5: "Application",
                   6: "ServicePrincipal", 7: "CustomPolicy", 8: "SystemPolicy"}
# OfficeActivity's columns (a part of the real table's), and the audit field each is filled from
OFFICE_COLUMNS = {
    "TimeGenerated": "CreationTime", "OfficeId": "Id", "Operation": "Operation", "OrganizationId": "OrganizationId",
    "RecordType": "RecordType", "UserKey": "UserKey", "UserType": "UserType", "OfficeWorkload": "Workload",
    "UserId": "UserId", "ClientIP": "ClientIP", "Client_IPAddress": "ClientIPAddress",
    "OfficeObjectId": "ObjectId", "ResultStatus": "ResultStatus", "Parameters": "Parameters",
    "ExternalAccess": "ExternalAccess", "OrganizationName": "OrganizationName",
    "OriginatingServer": "OriginatingServer", "ClientInfoString": "ClientInfoString", "LogonType": "LogonType",
    "MailboxOwnerUPN": "MailboxOwnerUPN", "MailboxGuid": "MailboxGuid", "ClientAppId": "ClientAppId",
    "AppId": "AppId", "OperationProperties": "OperationProperties", "Item": "Item", "ItemType": "ItemType",
    "UserAgent": "UserAgent", "Site_Url": "SiteUrl", "SourceRelativeUrl": "SourceRelativeUrl",
    "SourceFileName": "SourceFileName", "SourceFileExtension": "SourceFileExtension", "TeamName": "TeamName",
}
DYNAMIC = {"Parameters", "OperationProperties", "Item", "LocationDetails", "Status", "InitiatedBy",
           "TargetResources", "AdditionalDetails"}
_QUERY = re.compile(r"\s*(\w+)\s*\|\s*where\s+ingestion_time\(\)\s*>=\s*datetime\(([^)]+)\)\s+and\s+"
                    r"ingestion_time\(\)\s*<\s*datetime\(([^)]+)\)\s*")


@dataclass
class WorkspaceConfig:
    row_limit: int = 500_000  # rows in one result; more and the result is cut and called partial
    throttle_every: int = 0  # every Nth query answers 429 with Retry-After: 1


class WorkspaceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ingested_at(record: dict) -> datetime:
    """When the connector delivered a record to the workspace: most within minutes, some hours late, a few
    nearly a day late (the same record always the same)."""
    roll = int(hashlib.sha256(record["Id"].encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    delay = 60 + roll * 540 if roll < 0.9 else 600 + roll * 7200 if roll < 0.99 else 7200 + roll * 72000
    return _parse(record["CreationTime"]) + timedelta(seconds=delay)


def _other_id(prefix: str, record: dict) -> str:
    return prefix + str(uuid.uuid5(uuid.NAMESPACE_URL, record["Id"]))


def _dynamic(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def office_row(record: dict) -> dict:
    row = {}
    for column, field in OFFICE_COLUMNS.items():
        if field in record:
            value = record[field]
            if column == "RecordType":
                value = RECORD_TYPE_NAMES.get(value, str(value))
            elif column == "UserType":
                value = USER_TYPE_NAMES.get(value, str(value))
            elif column == "TimeGenerated":
                value = value + "Z"
            elif column in DYNAMIC:
                value = _dynamic(value)
            elif isinstance(value, bool):
                value = str(value)
            row[column] = value
    return row


def signin_row(record: dict) -> dict:
    failed = record.get("Operation") == "UserLoginFailed"
    details = {p.get("Name"): p.get("Value") for p in record.get("ExtendedProperties") or [] if isinstance(p, dict)}
    return {"TimeGenerated": record["CreationTime"] + "Z", "Id": _other_id("", record),
            "UserPrincipalName": record.get("UserId", ""), "UserId": record.get("UserKey", ""),
            "IPAddress": record.get("ClientIP", ""), "AppId": record.get("ApplicationId", ""),
            "ResourceIdentity": record.get("ObjectId", ""), "ResultType": str(record.get("ErrorCode", "0")),
            "ResultDescription": details.get("ResultStatusDetail", "") if failed else "",
            "UserAgent": details.get("UserAgent", ""), "AADTenantId": record.get("OrganizationId", ""),
            "Status": _dynamic({"errorCode": int(record.get("ErrorCode") or 0)})}


_TARGET_TYPES = {5: "User", 1: "ServicePrincipal", 2: "Application"}


def audit_row(record: dict) -> dict:
    operation = record.get("Operation", "")
    core = operation.endswith(".")
    targets = []
    for n, target in enumerate(t for t in record.get("Target") or [] if isinstance(t, dict)):
        kind = _TARGET_TYPES.get(target.get("Type"), "Other")
        resource = {"id": str(target.get("ID", "")), "type": kind}
        if kind == "User":
            resource["userPrincipalName"] = str(target.get("ID", ""))
        if n == 0:
            resource["modifiedProperties"] = [
                {"displayName": p.get("Name"), "oldValue": json.dumps(p.get("OldValue")),
                 "newValue": json.dumps(p.get("NewValue"))}
                for p in record.get("ModifiedProperties") or [] if isinstance(p, dict)]
        targets.append(resource)
    if not targets and record.get("ObjectId"):
        targets.append({"id": record["ObjectId"], "type": "User", "userPrincipalName": record["ObjectId"],
                        "modifiedProperties": []})
    return {"TimeGenerated": record["CreationTime"] + "Z", "Id": _other_id("Directory_", record),
            "OperationName": operation[:-1] if core else operation,
            "LoggedByService": "Core Directory" if core else "Authentication Methods",
            "Result": "success" if record.get("ResultStatus", "Success") == "Success" else "failure",
            "InitiatedBy": _dynamic({"user": {"userPrincipalName": record.get("UserId", ""),
                                              "id": record.get("UserKey", ""),
                                              "ipAddress": record.get("ClientIP", "")}}),
            "TargetResources": _dynamic(targets), "AADTenantId": record.get("OrganizationId", "")}


def table_of(record: dict) -> str | None:
    workload = record.get("Workload")
    if workload in OFFICE_WORKLOADS and record.get("RecordType") not in (11, 13):  # DLP is not in OfficeActivity
        return "OfficeActivity"
    if workload == "AzureActiveDirectory":
        return "SigninLogs" if record.get("Operation") in ("UserLoggedIn", "UserLoginFailed") else "AuditLogs"
    return None


ROWS = {"OfficeActivity": office_row, "SigninLogs": signin_row, "AuditLogs": audit_row}


class Workspace:
    def __init__(self, tenant: SimulatedTenant, config: WorkspaceConfig, now):
        self.tenant, self.config, self.now = tenant, config, now
        self.queries: list[tuple[str, datetime, datetime]] = []  # table, ingested from, until: what was asked
        # every row, made once, by table and arrival (benchmarks: the service's work is not the client's)
        self._warm: dict[str, tuple[list[datetime], list[tuple[str, dict]]]] | None = None
        self._count = 0
        self._lock = threading.Lock()

    def handle(self, method: str, rest: list[str], body: dict | None, roles) -> dict:
        if method != "POST" or len(rest) != 2 or rest[1] != "query":
            raise WorkspaceError(404, "PathNotFoundError", "The requested path does not exist.")
        if rest[0] != WORKSPACE_ID:
            raise WorkspaceError(404, "WorkspaceNotFoundError", f"Workspace {rest[0]!r} not found.")
        if READER_ROLE not in roles:
            raise WorkspaceError(403, "InsufficientAccessError", "The provided credentials have insufficient access "
                                 "to perform the requested operation")
        with self._lock:
            self._count += 1
            throttled = self.config.throttle_every and self._count % self.config.throttle_every == 0
        if throttled:
            raise WorkspaceError(429, "ThrottledError", "Your request was throttled.", {"Retry-After": "1"})
        body = body or {}
        found = _QUERY.fullmatch(str(body.get("query", "")))
        span = str(body.get("timespan", "")).split("/")
        try:
            table, low, high = found.group(1), _parse(found.group(2)), _parse(found.group(3))
            since, until = _parse(span[0]), _parse(span[1])
        except (AttributeError, IndexError, ValueError):
            raise WorkspaceError(400, "BadArgumentError", "The request had some invalid properties") from None
        if table not in ROWS:
            raise WorkspaceError(400, "BadArgumentError", f"'{table}' operator: Failed to resolve table expression "
                                 f"named '{table}'")
        with self._lock:
            self.queries.append((table, low, high))
        return self.result(table, low, high, since, until)

    def warm(self) -> list[dict]:
        """Make every row the workspace holds now, once, and serve queries from them (a frozen clock only).
        Returns the records they were made from."""
        now = self.now()
        records = self.tenant.history(now - RETENTION, now, now)
        tables: dict[str, list] = {}
        for record in records:
            table = table_of(record)
            if table:
                tables.setdefault(table, []).append((ingested_at(record), record["CreationTime"], ROWS[table](record)))
        self._warm = {}
        for table, rows in tables.items():
            rows.sort(key=lambda row: row[0])
            self._warm[table] = ([row[0] for row in rows], [row[1:] for row in rows])
        return records

    def result(self, table: str, low: datetime, high: datetime, since: datetime, until: datetime) -> dict:
        now = self.now()
        since, until = max(since, now - RETENTION), min(until, now)
        rows = []
        if since < until:
            low_text, high_text = since.strftime("%Y-%m-%dT%H:%M:%S"), until.strftime("%Y-%m-%dT%H:%M:%S")
            if self._warm is not None:
                arrived, made = self._warm.get(table, ([], []))
                rows = [row for created, row in made[bisect_left(arrived, low):bisect_left(arrived, min(high, now))]
                        if low_text <= created < high_text]
            else:
                for record in self.tenant.history(since, until, now):
                    if table_of(record) == table and low <= ingested_at(record) < min(high, now):
                        rows.append(ROWS[table](record))
        columns = list(dict.fromkeys(column for row in rows for column in row)) or ["TimeGenerated"]
        answer = {"tables": [{"name": "PrimaryResult",
                              "columns": [{"name": c, "type": "dynamic" if c in DYNAMIC else
                                           "datetime" if c == "TimeGenerated" else "string"} for c in columns],
                              "rows": [[row.get(c) for c in columns] for row in rows[:self.config.row_limit]]}]}
        if len(rows) > self.config.row_limit:
            answer["error"] = {"code": "PartialError", "message": "There were some errors when processing your "
                               "query.", "details": [{"code": "EngineError", "message": "Query result set has "
                                                      "exceeded the internal record count limit",
                                                      "innererror": {"code": "E_QUERY_RESULT_SET_TOO_LARGE"}}]}
        return answer
