"""The simulated tenant's Microsoft Graph audit log query API (`/security/auditLog/queries`), as Purview serves it:
a query is submitted, runs for a while (and now and then fails or is cancelled), then its records are paged by
`@odata.nextLink`; a query over too many records stops at a limit and says so; submissions are limited per day
and in flight. The records are the tenant's history: the same records as its Management Activity feed for the
last 7 days, and 180 days before that."""
from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .tenant import SimulatedTenant

QUERY_ROLE = "AuditLogsQuery.Read.All"  # or a per-service AuditLogsQuery-<service>.Read.All
EMPTY_ROLE = "AuditLog.Read.All"  # accepted, but since April 2026 its queries return no records
HISTORY = timedelta(days=187)  # the feed's 7 days and 180 before


@dataclass
class AuditSearchConfig:
    seconds: float = 1.0  # how long a query runs before it succeeds
    record_limit: int = 1_000_000  # a query returns at most this many records, then says isRecordCountLimitExceeded
    page_size: int = 1000  # the largest $top
    submissions_per_day: int = 200
    max_in_flight: int = 50  # queued or running
    fail_every: int = 0  # every Nth query ends "failed"
    cancel_every: int = 0  # every Nth query ends "cancelled"
    throttle_every: int = 0  # every Nth submission answers 429 (Retry-After: 1)
    unavailable_every: int = 0  # every Nth request answers 503


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a time")
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def graph_record(record: dict) -> dict:
    """A tenant record as Graph's auditLogRecord: a few fields lifted out, the original in auditData."""
    return {"id": record["Id"], "createdDateTime": record["CreationTime"] + "Z",
            "auditLogRecordType": str(record.get("RecordType", "")), "operation": record.get("Operation", ""),
            "organizationId": record.get("OrganizationId", ""), "userType": str(record.get("UserType", "")),
            "userId": record.get("UserId", ""), "service": record.get("Workload", ""),
            "objectId": record.get("ObjectId", ""), "userPrincipalName": record.get("UserId", ""),
            "clientIp": record.get("ClientIP", ""), "administrativeUnits": [], "auditData": record}


class AuditSearch:
    def __init__(self, tenant: SimulatedTenant, config: AuditSearchConfig, now):
        self.tenant, self.config, self.now = tenant, config, now
        self.queries: dict[str, dict] = {}
        self.submitted: deque[float] = deque()  # when, for the per-day budget
        self._records: dict[str, list[dict]] = {}
        self._counter = 0  # submissions
        self._requests = 0
        self._lock = threading.Lock()

    def handle(self, method: str, rest: list[str], query: dict[str, str], body: dict | None, roles, base: str):
        if EMPTY_ROLE not in roles and not any(r.startswith("AuditLogsQuery") for r in roles):
            raise GraphError(403, "Forbidden", "Insufficient privileges to complete the operation.")
        with self._lock:
            self._requests += 1
            unavailable = self.config.unavailable_every and self._requests % self.config.unavailable_every == 0
        if unavailable:
            raise GraphError(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        if rest == [] and method == "POST":
            return 201, self.submit(body or {}, base)
        if rest == [] and method == "GET":
            return 200, {"value": [self._public(q) for q in self.queries.values()]}
        if len(rest) == 1 and method == "GET":
            return 200, self._public(self._query(rest[0]))
        if len(rest) == 2 and rest[1] == "records" and method == "GET":
            return 200, self.page(rest[0], query, base, roles)
        raise GraphError(404, "ResourceNotFound", "Resource not found for the segment.")

    def submit(self, body: dict, base: str) -> dict:
        try:
            start, end = _parse(body.get("filterStartDateTime")), _parse(body.get("filterEndDateTime"))
        except ValueError:
            raise GraphError(400, "BadRequest", "filterStartDateTime and filterEndDateTime are required.") from None
        if not start < end:
            raise GraphError(400, "BadRequest", "filterStartDateTime must be before filterEndDateTime.")
        with self._lock:
            self._counter += 1
            clock = time.time()
            while self.submitted and self.submitted[0] < clock - 86400:
                self.submitted.popleft()
            in_flight = sum(1 for q in self.queries.values() if self._status(q) in ("notStarted", "running"))
            throttled = self.config.throttle_every and self._counter % self.config.throttle_every == 0
            if throttled or len(self.submitted) >= self.config.submissions_per_day or \
                    in_flight >= self.config.max_in_flight:
                raise GraphError(429, "TooManyRequests", "Too many requests.", {"Retry-After": "1"})
            self.submitted.append(clock)
            number = len(self.queries) + 1
            ends = "failed" if self.config.fail_every and number % self.config.fail_every == 0 else \
                "cancelled" if self.config.cancel_every and number % self.config.cancel_every == 0 else "succeeded"
            query = {"id": str(uuid.uuid4()), "displayName": str(body.get("displayName", ""))[:200],
                     "filterStartDateTime": _stamp(start), "filterEndDateTime": _stamp(end),
                     "serviceFilters": [str(s) for s in body.get("serviceFilters") or []],
                     "_submitted": clock, "_ends": ends}
            self.queries[query["id"]] = query
        return self._public(query)

    def _query(self, query_id: str) -> dict:
        query = self.queries.get(query_id)
        if query is None:
            raise GraphError(404, "ResourceNotFound", f"The query {query_id} does not exist.")
        return query

    def _status(self, query: dict) -> str:
        age = time.time() - query["_submitted"]
        if age < self.config.seconds / 3:
            return "notStarted"
        if age < self.config.seconds:
            return "running"
        return query["_ends"]

    def _public(self, query: dict) -> dict:
        status = self._status(query)
        public = {k: v for k, v in query.items() if not k.startswith("_")}
        public["status"] = status
        if status == "succeeded":
            public["isRecordCountLimitExceeded"] = len(self._all_records(query)) > self.config.record_limit
        return public

    def _all_records(self, query: dict) -> list[dict]:
        with self._lock:
            found = self._records.get(query["id"])
        if found is None:
            now = self.now()
            start = max(_parse(query["filterStartDateTime"]), now - HISTORY)
            end = min(_parse(query["filterEndDateTime"]), now - timedelta(minutes=30))
            found = self.tenant.history(start, end, now) if start < end else []
            if query["serviceFilters"]:
                found = [r for r in found if r.get("Workload") in query["serviceFilters"]]
            with self._lock:
                self._records[query["id"]] = found
        return found

    def page(self, query_id: str, params: dict[str, str], base: str, roles) -> dict:
        query = self._query(query_id)
        if self._status(query) != "succeeded":
            raise GraphError(400, "BadRequest", f"The query is {self._status(query)}; its records are not ready.")
        if not any(r.startswith("AuditLogsQuery") for r in roles):
            return {"value": []}  # AuditLog.Read.All alone: no records (as since April 2026)
        records = self._all_records(query)[: self.config.record_limit]
        try:
            top = min(self.config.page_size, max(1, int(params.get("$top", self.config.page_size))))
            skip = max(0, int(params.get("$skiptoken", "0")))
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid paging parameters.") from None
        out = {"value": [graph_record(r) for r in records[skip:skip + top]]}
        if skip + top < len(records):
            out["@odata.nextLink"] = f"{base}/{query_id}/records?$top={top}&$skiptoken={skip + top}"
        return out
