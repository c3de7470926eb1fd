"""Azure Cosmos DB store, for teams that outgrow one machine.

Events live in one container, partitioned by UTC day ("/day"): logical partitions stay far below 20 GB and a
time-bounded query touches few of them. `id` is the record Id (stable, so a re-sent record overwrites itself),
the container's default TTL is the retention. State (blobs, checkpoints, leases, meta, watch-lists) lives in a
second, small container partitioned by "/kind". Every query is parameterized. The store is read by position (what
the dashboard's index copies) and by position list (an event's original record); filtering and aggregating are
the index's work: no RU-priced cross-partition scan per click."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from .base import EventStore, StoreError, StoreUnavailable, translate_errors
from .model import EVENT_COLUMNS, BlobRecord, Checkpoint, EventRow, StoreStats, parse_utc, utc_text

_NARROW = [c for c in EVENT_COLUMNS if c != "raw"]
_SEQ_KEY = "next_seq"
_IF_MATCH = MatchConditions.IfNotModified


def _dt(text):
    return parse_utc(text) if text else None


def _cosmos_error(store: "CosmosStore", exc: Exception) -> StoreError:
    # the SDK's own messages can quote request headers: say what happened in our words instead
    status = getattr(exc, "status_code", None)
    if status == 429:
        return StoreError("Cosmos DB is throttling this store (HTTP 429): raise the container's throughput or "
                          "sync less often.")
    if status in (401, 403):
        return StoreError(f"Cosmos DB refused access (HTTP {status}): check COSMOS_KEY.")
    return StoreError(f"Cosmos DB failed ({type(exc).__name__}{f', HTTP {status}' if status else ''}): check "
                      "COSMOS_ENDPOINT, the network and the account.")


@translate_errors(AzureError, _cosmos_error)
class CosmosStore(EventStore):
    def __init__(self, endpoint: str, key: str, database: str = "o365audit", container: str = "events",
                 retention_days: int = 90, verify: bool = True):
        self.description = f"Cosmos DB {endpoint} / {database} / {container}"
        try:
            self._client = CosmosClient(endpoint, credential=key, connection_verify=verify,
                                        connection_timeout=30)
            db = self._client.create_database_if_not_exists(database)
            self._events = db.create_container_if_not_exists(
                container, partition_key=PartitionKey(path="/day"), default_ttl=retention_days * 86400)
            self._state = db.create_container_if_not_exists(f"{container}-state",
                                                            partition_key=PartitionKey(path="/kind"))
            try:
                self._state.create_item({"id": "meta:store.id", "kind": "meta", "name": "store.id",
                                         "value": uuid.uuid4().hex})
            except CosmosResourceExistsError:
                pass
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
            parameters=(params or []) + [{"name": "@kind", "value": kind}], enable_cross_partition_query=True))

    def _reserve_positions(self, count: int) -> int:
        """Take `count` consecutive positions from a counter, with an etag so two writers never share one."""
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
    def store_blobs(self, batch: Sequence[tuple[BlobRecord, Sequence[EventRow]]]) -> int:
        rows = [row for _, blob_rows in batch for row in blob_rows]
        seen = self._existing_ids([r.id for r in rows])
        fresh = []
        for row in rows:
            if row.id not in seen:
                seen.add(row.id)
                fresh.append(row)
        if fresh:
            first = self._reserve_positions(len(fresh))
            for n, row in enumerate(fresh):
                doc = dict(zip(EVENT_COLUMNS, row))
                doc.update(day=row.time[:10], seq=first + n)
                self._events.upsert_item(doc)
        # a blob is marked stored only after all its events are (a crash in between re-fetches it)
        for blob, blob_rows in batch:
            self._write_blob(blob, len(blob_rows), "stored")
        return len(fresh)

    def _existing_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), 200):
            chunk = ids[i:i + 200]
            found.update(doc["id"] for doc in self._events.query_items(
                "SELECT c.id FROM c WHERE ARRAY_CONTAINS(@ids, c.id)", parameters=[{"name": "@ids", "value": chunk}],
                enable_cross_partition_query=True))
        return found

    def _write_blob(self, blob: BlobRecord, events: int, status: str) -> None:
        self._write("blob", blob.content_id, {
            "content_type": blob.content_type, "content_created": blob.content_created,
            "content_expiration": blob.content_expiration, "events": events, "status": status,
            "error_code": blob.error_code, "error_message": blob.error_message, "attempts": blob.attempts})

    def record_lost_blob(self, blob: BlobRecord) -> None:
        self._write_blob(blob, 0, "lost")

    def record_blob_failure(self, blob: BlobRecord, give_up_after: int) -> BlobRecord:
        previous = self._read("blob", blob.content_id)
        attempts = (previous.get("attempts", 0) if previous and previous["status"] == "retrying" else 0) + 1
        recorded = replace(blob, events=0, status="lost" if attempts >= give_up_after else "retrying",
                           attempts=attempts)
        self._write_blob(recorded, 0, recorded.status)
        return recorded

    def known_blob_ids(self, content_type: str, content_ids: Iterable[str]) -> set[str]:
        ids = list(content_ids)
        found: set[str] = set()
        for i in range(0, len(ids), 200):
            found.update(d["name"] for d in self._state_query(
                "blob", "ARRAY_CONTAINS(@ids, c.name) AND c.status <> 'retrying'",
                [{"name": "@ids", "value": ids[i:i + 200]}], "c.name"))
        return found

    def get_checkpoint(self, content_type: str) -> Checkpoint:
        doc = self._read("checkpoint", content_type)
        if doc is None:
            return Checkpoint(content_type)
        return Checkpoint(content_type, _dt(doc.get("listed_until")), _dt(doc.get("last_success")),
                          doc.get("last_error", ""))

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._write("checkpoint", checkpoint.content_type, {
            "listed_until": utc_text(checkpoint.listed_until) if checkpoint.listed_until else None,
            "last_success": utc_text(checkpoint.last_success) if checkpoint.last_success else None,
            "last_error": checkpoint.last_error})

    def blob_issues(self) -> list[BlobRecord]:
        docs = self._state_query("blob", "c.status <> 'stored' OR c.error_code <> ''")
        return sorted((BlobRecord(d["name"], d["content_type"], d["content_created"], d["content_expiration"],
                                  d["events"], d["status"], d["error_code"], d["error_message"], d.get("attempts", 0))
                       for d in docs), key=lambda b: b.content_created)

    def prune(self, before: datetime) -> int:
        """The container's TTL expires events on real Cosmos DB; this also deletes the days before `before`'s
        explicitly (the local stand-in does not enforce TTL) and moves the horizon the dashboard's index follows."""
        cutoff = utc_text(before)[:10]
        removed = 0
        for doc in list(self._events.query_items(
                "SELECT c.id, c.day FROM c WHERE c.day < @cutoff", parameters=[{"name": "@cutoff", "value": cutoff}],
                enable_cross_partition_query=True)):
            self._events.delete_item(doc["id"], partition_key=doc["day"])
            removed += 1
        now = utc_text(datetime.now(timezone.utc))
        for doc in self._state_query("blob", "c.status = @s AND c.content_expiration < @now",
                                     [{"name": "@s", "value": "stored"}, {"name": "@now", "value": now}], "c.id"):
            self._state.delete_item(doc["id"], partition_key="blob")
        if removed and cutoff > (self.get_meta("horizon") or ""):
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

    def stats(self) -> StoreStats:
        per_type: dict[str, int] = {}
        first = last = None
        for doc in self._events.query_items("SELECT c.content_type, c.time FROM c", enable_cross_partition_query=True):
            per_type[doc["content_type"]] = per_type.get(doc["content_type"], 0) + 1
            first = doc["time"] if first is None or doc["time"] < first else first
            last = doc["time"] if last is None or doc["time"] > last else last
        return StoreStats(sum(per_type.values()), first, last, per_type)

    def data_version(self) -> tuple[int, str]:
        return int(self.get_meta(_SEQ_KEY) or 1) - 1, self.get_meta("horizon") or ""

    def rows_since(self, position: int, limit: int = 50_000) -> list[tuple]:
        rows = []
        for doc in self._events.query_items(
                f"SELECT c.seq, {', '.join('c.' + c for c in _NARROW)} FROM c WHERE c.seq > @p ORDER BY c.seq",
                parameters=[{"name": "@p", "value": position}], enable_cross_partition_query=True):
            rows.append((doc["seq"], *(doc.get(c) for c in _NARROW)))
            if len(rows) >= limit:
                break
        return rows

    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        found = {}
        positions = list(positions)
        for i in range(0, len(positions), 200):
            for doc in self._events.query_items("SELECT * FROM c WHERE ARRAY_CONTAINS(@s, c.seq)",
                                                parameters=[{"name": "@s", "value": positions[i:i + 200]}],
                                                enable_cross_partition_query=True):
                found[doc["seq"]] = self._row(doc)
        return [found[p] for p in positions if p in found]

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

    def retention_seconds(self) -> int | None:
        """The container's default TTL as Cosmos DB stores it (tests read it back)."""
        return self._events.read().get("defaultTtl")

    def close(self) -> None:
        self._client.close()

