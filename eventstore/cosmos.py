"""Azure Cosmos DB store, for teams that outgrow one machine.

Events live in one container, partitioned by UTC day ("/day"): logical partitions stay far below 20 GB and a
time-bounded query touches few of them. `id` is the record Id, so Cosmos DB itself refuses a second copy of an
event (a record's time, hence its day, never changes); the container's default TTL is the retention. State (work
items, documents, leases, meta, watch-lists) lives in a second, small container partitioned by "/kind". Every query
is parameterized.

Writing at throughput: events go in as create-only transactional batches of up to 100 per day partition, several
partitions at once; a batch refused because one of its events exists already (409) is followed by one query for
which of its ids exist and a retry with the rest; 429s are retried by the SDK after the service's retry-after.
About 11 round trips per 1,000 events. Positions (each event's `seq`, how the dashboard names an event) are leased
per process in blocks of POSITION_BLOCK from one counter document: it is touched once per 10,000 events, not per
write, so writers on many machines never queue behind it.

Reading: the dashboard's index follows `_ts` (the second each document was written) with an overlap of FEED_LAG
seconds, and keeps each position once. Why that is complete on the real service: a document becomes visible
when its write commits and its `_ts` is its partition's clock at that moment, so a document not yet visible when
a read returned `_ts` T is stamped later than T minus the clock skew between partitions (NTP-synchronized,
well under a second); re-reading from T - FEED_LAG covers it. The change feed would avoid re-reading the overlap
but the local test server cannot serve a second change-feed read, and an untested feed is not one to trust.
Filtering and aggregating are the index's work: no RU-priced cross-partition scan per click."""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.documents import SSLConfiguration
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from .base import Changes, EventStore, StoreError, StoreUnavailable, translate_errors
from .model import EVENT_COLUMNS, ActivityEntry, ActivityQuery, EventRow, StoreStats, WorkItem, utc_text

# The SDK logs every request and response at INFO: thousands of lines per sync. Its warnings still show.
logging.getLogger("azure").setLevel(logging.WARNING)
log = logging.getLogger("eventstore.cosmos")

_NARROW = [c for c in EVENT_COLUMNS if c != "raw"]
_SEQ_KEY = "next_seq"
_IF_MATCH = MatchConditions.IfNotModified
POSITION_BLOCK = 10_000
FEED_LAG = 15  # seconds of `_ts` read again by every feed read
BATCH_OPERATIONS = 100  # the service's limit per transactional batch
BATCH_BYTES = 1_500_000  # of documents per batch, under the service's 2 MB request limit
MAX_RAW_CHARS = 1_000_000  # of one record's original JSON (escaped, a character can take 6 bytes of JSON)
WRITERS = 4  # batches in flight at once (different day partitions)
_QUERY_CHUNK = 200  # ids per ARRAY_CONTAINS parameter
# Only what the store queries is indexed: every indexed path costs request units on every write, and the original
# record (`raw`, the bulk of a document) is never searched here — the dashboard's index does the searching.
EVENT_INDEXING = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": f"/{name}/?"} for name in ("day", "seq", "_ts", "content_type", "time")],
    "excludedPaths": [{"path": "/*"}],
}


def _fitting(row: EventRow) -> EventRow:
    """An event as a Cosmos DB item can hold it (2 MB at most): a record larger than that — none Microsoft sends
    comes near it — keeps its columns, and its original JSON is replaced by a note saying so."""
    if len(row.raw) <= MAX_RAW_CHARS:
        return row
    log.warning("record %s: its original JSON (%d characters) exceeds a Cosmos DB item; only its columns are kept",
                row.id[:80], len(row.raw))
    return row._replace(raw=json.dumps({"Id": row.id, "_omitted": f"the original record of {len(row.raw)} "
                                        "characters exceeds Cosmos DB's 2 MB item limit"}))


def _chunks(day: str, rows: list[EventRow]) -> Iterator[tuple[str, list[EventRow]]]:
    """One day's events in pieces a transactional batch takes: at most 100, and well under 2 MB."""
    chunk, size = [], 0
    for row in map(_fitting, rows):
        row_size = sum(len(str(value)) for value in row) + 300  # JSON quoting, names, system fields
        if chunk and (len(chunk) == BATCH_OPERATIONS or size + row_size > BATCH_BYTES):
            yield day, chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield day, chunk


def creation_commands(database: str, container: str, retention_days: int) -> str:
    """The Azure CLI commands that create what CosmosStore would (for identities that may not create it)."""
    where = "--account-name ACCOUNT --resource-group GROUP"
    return (f"  az cosmosdb sql database create {where} --name {database}\n"
            f"  az cosmosdb sql container create {where} --database-name {database} --name {container} "
            f"--partition-key-path /day --ttl {retention_days * 86400} --idx '{json.dumps(EVENT_INDEXING)}'\n"
            f"  az cosmosdb sql container create {where} --database-name {database} --name {container}-state "
            "--partition-key-path /kind")


def _cosmos_error(store: "CosmosStore", exc: Exception) -> StoreError:
    # the SDK's own messages can quote request headers: say what happened in our words instead
    status = getattr(exc, "status_code", None)
    if status == 429:
        return StoreError("Cosmos DB is throttling this store (HTTP 429) beyond the SDK's retries: raise the "
                          "container's throughput (or use autoscale) or run fewer workers.")
    if status == 403 and store.read_only:
        return StoreError("This store was opened with a read-only Cosmos DB key: it can be read, not changed. "
                          "Use the read-write key where changes are made (the ingest; watch-lists).")
    if status in (401, 403):
        return StoreError(f"Cosmos DB refused access (HTTP {status}): check COSMOS_KEY.")
    return StoreError(f"Cosmos DB failed ({type(exc).__name__}{f', HTTP {status}' if status else ''}): check "
                      "COSMOS_ENDPOINT, the network and the account.")


@dataclass
class Meter:
    """Round trips and request units this store has spent (the service reports RU per response)."""

    round_trips: int = 0
    request_units: float = 0.0

    def __post_init__(self):
        self._lock = threading.Lock()

    def __call__(self, headers, _body=None) -> None:
        try:
            charge = float(headers.get("x-ms-request-charge", 0) or 0)
        except (TypeError, ValueError):
            charge = 0.0
        with self._lock:
            self.round_trips += 1
            self.request_units += charge


def _work_item(doc: dict) -> WorkItem:
    return WorkItem(*(doc[name] for name in WorkItem.__dataclass_fields__))


class _Positions:
    """Positions for this process, leased in blocks from the counter document with an etag (so two processes
    never share one); handed out under a lock (so two threads never do)."""

    def __init__(self, lease_block):
        self._lease_block, self._lock = lease_block, threading.Lock()
        self._next = self._end = 0

    def take(self, count: int) -> list[int]:
        taken = []
        with self._lock:
            while len(taken) < count:
                if self._next >= self._end:
                    size = max(POSITION_BLOCK, count - len(taken))
                    self._next = self._lease_block(size)
                    self._end = self._next + size
                step = min(count - len(taken), self._end - self._next)
                taken.extend(range(self._next, self._next + step))
                self._next += step
        return taken


@translate_errors(AzureError, _cosmos_error)
class CosmosStore(EventStore):
    def __init__(self, endpoint: str, key, database: str = "o365audit", container: str = "events",
                 retention_days: int = 90, ca_bundle: str = ""):
        """`key`: an account key (read-write or read-only: a read-only one opens the store for reading) or an
        Azure token credential (managed identity). `ca_bundle`: certificates to trust instead of the system's."""
        self.description = f"Cosmos DB {endpoint} / {database} / {container}"
        self.read_only = False
        self.meter = Meter()
        self._positions = _Positions(self._lease_positions)
        self._writers: ThreadPoolExecutor | None = None
        try:
            # an explicit TLS configuration: without one the SDK skips certificate checks for any loopback host
            self._client = CosmosClient(endpoint, credential=key, ssl_config=SSLConfiguration(),
                                        connection_verify=ca_bundle or True, connection_timeout=30, retry_total=9,
                                        retry_backoff_max=30)
            try:
                db = self._client.create_database_if_not_exists(database)
                self._events = db.create_container_if_not_exists(
                    container, partition_key=PartitionKey(path="/day"), default_ttl=retention_days * 86400,
                    indexing_policy=EVENT_INDEXING)
                self._state = db.create_container_if_not_exists(f"{container}-state",
                                                                partition_key=PartitionKey(path="/kind"))
            except CosmosHttpResponseError as refused:
                if refused.status_code != 403:
                    raise
                raise StoreUnavailable(
                    f"Cosmos DB {database}/{container} does not exist yet and this identity may not create it (a "
                    "read-only key, or a managed identity whose data-plane role cannot create databases). Create it "
                    "once: run the ingest with the account's read-write key, or, as the account's owner:\n"
                    + creation_commands(database, container, retention_days)) from None
            # The store's identity is made once; trying again is also how a read-only key shows (403, not 409).
            try:
                self._state.create_item({"id": "meta:store.id", "kind": "meta", "name": "store.id",
                                         "value": uuid.uuid4().hex})
            except CosmosResourceExistsError:
                pass
            except CosmosHttpResponseError as refused:
                if refused.status_code != 403:
                    raise
                self.read_only = True
                self.description += " (read-only key)"
            if not self.read_only:
                self._move_feed_state()
        except (AzureError, ValueError) as exc:
            # the SDK's messages can quote request headers; say what to check instead
            raise StoreUnavailable(f"Cannot open Cosmos DB at {endpoint} ({type(exc).__name__}). Check "
                                   "COSMOS_ENDPOINT, COSMOS_KEY, the network and the firewall.") from None

    # --- small helpers over the state container ------------------------------------------------
    def _read(self, kind: str, name: str) -> dict | None:
        # a query rather than read_item: a missing item is then an empty answer on real Cosmos DB and on
        # the local stand-in alike (which answers a point read of a missing id with a server error)
        docs = self._state_query(kind, "c.id = @id", [{"name": "@id", "value": f"{kind}:{name}"}])
        return docs[0] if docs else None

    def _write(self, kind: str, name: str, body: dict) -> None:
        self._state.upsert_item({"id": f"{kind}:{name}", "kind": kind, "name": name, **body})

    def _state_query(self, kind: str, where: str = "true", params: list[dict] | None = None,
                     fields: str = "*") -> list[dict]:
        """A query within one kind of state. The kind is in the WHERE clause as well as the partition key:
        the local stand-in ignores a query's partition key; real Cosmos DB uses it to touch one partition."""
        return list(self._state.query_items(
            f"SELECT {fields} FROM c WHERE c.kind = @kind AND ({where})",
            parameters=(params or []) + [{"name": "@kind", "value": kind}], partition_key=kind,
            response_hook=self.meter))

    def _move_feed_state(self) -> None:
        """Until the sources kept their own state (2026-11), the live feed's blobs and checkpoints were state
        documents of kinds of their own: moved once into work items and cursor documents."""
        if self.get_meta("feed-state.moved"):
            return
        blobs, checkpoints = self._state_query("blob"), self._state_query("checkpoint")
        items = [WorkItem(d["content_type"], d["name"], d["content_created"], d["status"] in ("queued", "retrying"),
                          d["status"] in ("lost", "retrying") or (d["status"] == "stored" and bool(d["error_code"])),
                          d["content_expiration"] if d["status"] == "stored" else "",
                          json.dumps({"expiration": d["content_expiration"], "events": d["events"],
                                      "status": d["status"], "error_code": d["error_code"],
                                      "error_message": d["error_message"], "attempts": d.get("attempts", 0)}))
                 for d in blobs]
        self.put_work(items)
        self.put_documents("cursor", {d["name"]: json.dumps({field: d.get(field) for field in (
            "listed_until", "last_success", "last_error", "queued_until")}) for d in checkpoints})
        for doc in blobs + checkpoints:
            self._state.delete_item(doc["id"], partition_key=doc["kind"])
        self.set_meta("feed-state.moved", "1")

    def _lease_positions(self, count: int) -> int:
        """Take `count` consecutive positions from the counter, with an etag so two processes never share one."""
        while True:
            doc = self._read("meta", _SEQ_KEY)
            if doc is None:
                try:
                    self._state.create_item({"id": f"meta:{_SEQ_KEY}", "kind": "meta", "name": _SEQ_KEY,
                                             "value": 1 + count})
                    return 1
                except CosmosResourceExistsError:
                    continue
            first = int(doc["value"])
            doc["value"] = first + count
            try:
                self._state.replace_item(doc["id"], doc, etag=doc["_etag"], match_condition=_IF_MATCH)
                return first
            except CosmosAccessConditionFailedError:
                continue

    # --- ingest side -------------------------------------------------------------------------
    def store_events(self, rows: Sequence[EventRow], done: Sequence[WorkItem] = ()) -> int:
        by_day: dict[str, dict[str, EventRow]] = {}
        for row in rows:
            by_day.setdefault(row.time[:10], {}).setdefault(row.id, row)
        chunks = [chunk for day, rows in by_day.items() for chunk in _chunks(day, list(rows.values()))]
        if self._writers is None:
            self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="cosmos-write")
        created = sum(self._writers.map(lambda chunk: self._create(*chunk), chunks))
        self.put_work(done)  # only once all the events are (a crash in between does the work again)
        return created

    def _create(self, day: str, rows: list[EventRow]) -> int:
        """Create these events of one day partition; those that exist already are left as they are. Returns how
        many were created."""
        docs = [{**dict(zip(EVENT_COLUMNS, row)), "day": day, "seq": seq}
                for row, seq in zip(rows, self._positions.take(len(rows)))]
        return self._create_new(self._events, day, docs, lambda ids: self._existing(day, ids))

    def _create_new(self, container, partition: str, docs: list[dict], existing) -> int:
        """Create documents of one partition (at most 100) in one transactional batch. One that exists already
        (409) fails the batch: `existing(ids)` says which do, and the rest is tried again. Returns how many were
        created; any other refusal is a StoreError."""
        while docs:
            try:
                container.execute_item_batch([("create", (doc,)) for doc in docs], partition_key=partition,
                                             response_hook=self.meter)
                return len(docs)
            except CosmosBatchOperationError as refused:
                if refused.operation_responses[refused.error_index].get("statusCode") != 409:
                    raise StoreError(f"Cosmos DB refused a batch of documents (HTTP {refused.status_code}).") \
                        from None
                found = existing([doc["id"] for doc in docs])
                docs = [doc for doc in docs if doc["id"] not in found]
        return 0

    def _existing(self, day: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _QUERY_CHUNK):
            found.update(self._events.query_items(
                "SELECT VALUE c.id FROM c WHERE c.day = @day AND ARRAY_CONTAINS(@ids, c.id)",
                parameters=[{"name": "@day", "value": day}, {"name": "@ids", "value": ids[i:i + _QUERY_CHUNK]}],
                partition_key=day, response_hook=self.meter))
        return found

    def _write_many(self, kind: str, named: list[tuple[str, dict]], create_only: bool = False) -> None:
        """Upsert state documents of one kind — or with `create_only`, create those not there yet — 100 per round
        trip (one partition: one transactional batch)."""
        docs = [{"id": f"{kind}:{name}", "kind": kind, "name": name, **body} for name, body in named]
        for i in range(0, len(docs), BATCH_OPERATIONS):
            chunk = docs[i:i + BATCH_OPERATIONS]
            if create_only:
                self._create_new(self._state, kind, chunk, lambda ids: {d["id"] for d in self._state_query(
                    kind, "ARRAY_CONTAINS(@ids, c.id)", [{"name": "@ids", "value": ids}], "c.id")})
            else:
                self._state.execute_item_batch([("upsert", (doc,)) for doc in chunk], partition_key=kind,
                                               response_hook=self.meter)

    def put_work(self, items: Sequence[WorkItem], keep_existing: bool = False) -> None:
        # a Cosmos DB id may not hold / \\ ? #: the stream and key are fields, their digest names the document
        self._write_many("work", [(hashlib.sha1(f"{item.stream}\n{item.key}".encode()).hexdigest(), asdict(item))
                                  for item in items], create_only=keep_existing)

    def work_items(self, stream: str, keys: Iterable[str]) -> dict[str, WorkItem]:
        keys, found = list(keys), {}
        for i in range(0, len(keys), _QUERY_CHUNK):
            for doc in self._state_query("work", "c.stream = @stream AND ARRAY_CONTAINS(@keys, c.key)",
                                         [{"name": "@stream", "value": stream},
                                          {"name": "@keys", "value": keys[i:i + _QUERY_CHUNK]}]):
                found[doc["key"]] = _work_item(doc)
        return found

    def pending_work(self, stream: str) -> tuple[int, str | None]:
        where, params = "c.stream = @stream AND c.pending = true", [{"name": "@stream", "value": stream}]
        (count,) = self._state_query("work", where, params, "VALUE COUNT(1)")
        oldest = self._state_query("work", where, params, "VALUE MIN(c.at)") if count else [None]
        return count, oldest[0]

    def work_issues(self) -> list[WorkItem]:
        return sorted((_work_item(doc) for doc in self._state_query("work", "c.issue = true")),
                      key=lambda item: item.at)

    def prune(self, before: datetime) -> int:
        """The container's TTL expires events on real Cosmos DB; this also deletes the days before `before`'s
        explicitly, 100 per transactional batch (the local stand-in does not enforce TTL, and TTL counts from when
        an event was written, not from its day) and moves the horizon the dashboard's index follows."""
        cutoff = utc_text(before)[:10]
        removed = 0
        days = sorted(set(self._events.query_items(
            "SELECT VALUE c.day FROM c WHERE c.day < @cutoff", parameters=[{"name": "@cutoff", "value": cutoff}],
            enable_cross_partition_query=True, response_hook=self.meter)))
        for day in days:
            ids = list(self._events.query_items("SELECT VALUE c.id FROM c WHERE c.day = @day",
                                                parameters=[{"name": "@day", "value": day}], partition_key=day,
                                                response_hook=self.meter))
            for i in range(0, len(ids), BATCH_OPERATIONS):
                self._events.execute_item_batch([("delete", (doc_id,)) for doc_id in ids[i:i + BATCH_OPERATIONS]],
                                                partition_key=day, response_hook=self.meter)
            removed += len(ids)
        now = utc_text(datetime.now(timezone.utc))
        for doc in self._state_query("work", "c.expires <> '' AND c.expires < @now", [{"name": "@now", "value": now}],
                                     "c.id"):
            self._state.delete_item(doc["id"], partition_key="work")
        if cutoff > (self.get_meta("horizon") or ""):
            self.set_meta("horizon", cutoff)
        return removed

    def try_lease(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        doc = self._read("lease", name)
        body = {"id": f"lease:{name}", "kind": "lease", "name": name, "owner": owner, "expires": now + seconds}
        try:
            if doc is None:
                self._state.create_item(body)
                return True
            if doc["owner"] != owner and doc["expires"] > now:
                return False
            self._state.replace_item(doc["id"], body, etag=doc["_etag"], match_condition=_IF_MATCH)
            return True
        except (CosmosResourceExistsError, CosmosAccessConditionFailedError):
            return False  # another process won the race

    def release_lease(self, name: str, owner: str) -> None:
        doc = self._read("lease", name)
        if doc is not None and doc["owner"] == owner:
            self._state.delete_item(doc["id"], partition_key="lease")

    def lease_holder(self, name: str) -> str | None:
        doc = self._read("lease", name)
        return doc["owner"] if doc and doc["expires"] > time.time() else None

    def get_meta(self, key: str) -> str | None:
        doc = self._read("meta", key)
        return None if doc is None else str(doc["value"])

    def set_meta(self, key: str, value: str) -> None:
        self._write("meta", key, {"value": value})

    # --- reading side ------------------------------------------------------------------------
    @staticmethod
    def _row(doc: dict) -> EventRow:
        return EventRow(*(doc.get(c, "") if c != "record_type" else doc.get(c) for c in EVENT_COLUMNS))

    def iter_events(self) -> Iterator[EventRow]:
        for doc in self._events.query_items("SELECT * FROM c ORDER BY c.seq", enable_cross_partition_query=True):
            yield self._row(doc)

    def stats(self, content_types: Iterable[str] = ()) -> StoreStats:
        """Counted by the service (index-only aggregates), never by reading every event."""
        def value(sql: str, params: list[dict]):
            answer = list(self._events.query_items(sql, parameters=params, enable_cross_partition_query=True,
                                                   response_hook=self.meter))
            return answer[0] if answer else None

        total = int(value("SELECT VALUE COUNT(1) FROM c", []) or 0)
        if not total:
            return StoreStats()
        per_type = {}
        for content_type in content_types:
            n = value("SELECT VALUE COUNT(1) FROM c WHERE c.content_type = @t", [{"name": "@t", "value": content_type}])
            if n:
                per_type[content_type] = int(n)
        return StoreStats(total, value("SELECT VALUE MIN(c.time) FROM c", []),
                          value("SELECT VALUE MAX(c.time) FROM c", []), per_type)

    def horizon(self) -> str:
        return self.get_meta("horizon") or ""

    def changes(self, cursor: str, limit: int = 50_000) -> Changes:
        """By `_ts`, from FEED_LAG seconds before the cursor (see the module's note), whole seconds at a time:
        the cursor is the last second delivered."""
        since = int(cursor or 0)
        rows, last, more = [], since, False
        for doc in self._events.query_items(
                f"SELECT c.seq, c._ts, {', '.join('c.' + c for c in _NARROW)} FROM c WHERE c._ts >= @from "
                "ORDER BY c._ts", parameters=[{"name": "@from", "value": since - FEED_LAG}],
                enable_cross_partition_query=True, max_item_count=1000, response_hook=self.meter):
            if len(rows) >= limit and doc["_ts"] > last > since:
                more = True
                break
            rows.append((doc["seq"], *(doc.get(c) for c in _NARROW)))
            last = max(last, doc["_ts"])
        return Changes(rows, str(last), None if more else 0)

    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        found = {doc["seq"]: self._row(doc) for doc in self._at(positions, "*")}
        return [found[p] for p in positions if p in found]

    def records_at(self, positions: Sequence[int]) -> dict[int, str]:
        return {doc["seq"]: doc.get("raw", "") for doc in self._at(positions, "c.seq, c.raw")}

    def _at(self, positions: Sequence[int], columns: str) -> Iterator[dict]:
        positions = list(positions)
        for i in range(0, len(positions), _QUERY_CHUNK):
            yield from self._events.query_items(f"SELECT {columns} FROM c WHERE ARRAY_CONTAINS(@s, c.seq)",
                                                parameters=[{"name": "@s", "value": positions[i:i + _QUERY_CHUNK]}],
                                                enable_cross_partition_query=True, response_hook=self.meter)

    def save_watchlist(self, name: str, payload: str) -> None:
        self._write("watchlist", name, {"payload": payload})

    def watchlists(self) -> dict[str, str]:
        docs = self._state_query("watchlist", fields="c.name, c.payload")
        return {d["name"]: d["payload"] for d in sorted(docs, key=lambda d: d["name"])}

    def delete_watchlist(self, name: str) -> None:
        try:
            self._state.delete_item(f"watchlist:{name}", partition_key="watchlist")
        except (CosmosResourceNotFoundError, CosmosHttpResponseError):
            pass

    def put_documents(self, kind: str, documents: dict[str, str]) -> None:
        # a Cosmos DB id may not hold / \\ ? #: the key is kept as a field, its digest names the document
        self._write_many(f"doc-{kind}", [(hashlib.sha1(key.encode()).hexdigest(), {"key": key, "payload": payload})
                                         for key, payload in documents.items()])

    def documents(self, kind: str) -> dict[str, str]:
        return {d["key"]: d["payload"] for d in self._state_query(f"doc-{kind}", fields="c.key, c.payload")}

    def record_activity(self, who: str, action: str, detail: str) -> None:
        now = datetime.now(timezone.utc)
        # the name sorts by time (microseconds, then a random tail): newest first is a sort on the name
        self._write("activity", f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}",
                    {"at": utc_text(now), "who": who, "action": action, "detail": detail})

    def activity(self, query: ActivityQuery = ActivityQuery(), limit: int | None = 1000,
                 offset: int = 0) -> tuple[int, list[ActivityEntry]]:
        where, params = ["true"], []
        for clause, name, value in (("c.who = @who", "@who", query.who), ("c.at >= @since", "@since", query.since),
                                    ("c.action = @action", "@action", query.action),
                                    ("c.at < @until", "@until", query.until)):
            if value:
                where.append(clause)
                params.append({"name": name, "value": value})
        # sorted here: the local stand-in has no OFFSET/LIMIT, and a team's log is thousands of entries, not millions
        docs = self._state_query("activity", " AND ".join(where), params, "c.name, c.at, c.who, c.action, c.detail")
        docs.sort(key=lambda d: d["name"], reverse=True)
        page = docs[offset:] if limit is None else docs[offset:offset + limit]
        return len(docs), [(d["at"], d["who"], d["action"], d["detail"]) for d in page]

    def activity_facets(self) -> tuple[list[str], list[str]]:
        docs = self._state_query("activity", fields="c.who, c.action")
        return sorted({d["who"] for d in docs}), sorted({d["action"] for d in docs})

    def retention_seconds(self) -> int | None:
        """The container's default TTL as Cosmos DB stores it (tests read it back)."""
        return self._events.read().get("defaultTtl")

    def close(self) -> None:
        if self._writers is not None:
            self._writers.shutdown(wait=True)
        self._client.close()

