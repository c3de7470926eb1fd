"""The EventStore contract every backend (SQLite, Cosmos DB) implements and one test suite checks."""
from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from .model import BlobRecord, Checkpoint, EventRow, StoreStats


@dataclass
class Changes:
    rows: list[tuple]
    cursor: str
    remaining: int | None  # events stored after `cursor`: 0 when caught up; None when more follow but the
    #                        backend cannot say how many cheaply

    @property
    def caught_up(self) -> bool:
        return self.remaining == 0


class StoreError(RuntimeError):
    """The store failed an operation (a full disk, a damaged file, a service that is down); the message says
    what to do and holds no secret."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened; the message says how to fix it and holds no secret."""


class EventStore(ABC):
    #: a short, secret-free description for logs and the UI, e.g. "SQLite data/audit.db"
    description: str = ""
    #: opened with credentials that may read but not write (a Cosmos DB read-only key)
    read_only: bool = False

    # --- ingest side -------------------------------------------------------------------------
    @abstractmethod
    def store_events(self, rows: Sequence[EventRow]) -> int:
        """Store events that are not stored yet (by record Id); returns how many were new. For a source that has
        no blobs (the backfill); store_blobs does this and keeps the blob's record in the same step."""

    @abstractmethod
    def store_blobs(self, batch: Sequence[tuple[BlobRecord, Sequence[EventRow]]]) -> int:
        """Store each blob's events and mark the blob stored; a blob is never marked stored without its
        events. Events already stored (same Id) are left as they are. Returns how many events were new.
        Several blobs per call let a backend group its writes (SQLite: one transaction)."""

    @abstractmethod
    def record_lost_blob(self, blob: BlobRecord) -> None:
        """Remember a blob the API could not deliver (expired, unknown), so status can show it."""

    @abstractmethod
    def record_blob_failure(self, blob: BlobRecord, give_up_after: int) -> BlobRecord:
        """Count one more pass in which this blob's answer was unusable (its error code and message say why).
        It stays "retrying" (fetched again by the next pass) until it has failed `give_up_after` times, then it
        is "lost". Returns the record as stored."""

    @abstractmethod
    def known_blob_ids(self, content_type: str, content_ids: Iterable[str], queued_too: bool = False) -> set[str]:
        """Of these content ids, the ones already stored or recorded lost (so a re-list skips them), and with
        `queued_too` also those waiting in the queue; a retrying blob is not known yet."""

    @abstractmethod
    def record_queued(self, blobs: Sequence[BlobRecord]) -> None:
        """Remember blobs whose messages the queue accepted, as "queued" — except those with a record already (a
        worker may have stored one before this is written)."""

    @abstractmethod
    def pending_blobs(self, content_type: str) -> tuple[int, str | None]:
        """(how many blobs are queued or retrying, the contentCreated of the oldest): what keeps `listed_until`
        behind `queued_until`."""

    @abstractmethod
    def get_checkpoint(self, content_type: str) -> Checkpoint: ...

    @abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abstractmethod
    def blob_issues(self) -> list[BlobRecord]:
        """Every blob that is lost, retrying, or stored with an error code (something repaired or skipped),
        oldest first."""

    def check(self, full: bool = False) -> str:
        """An integrity check: "" when the store is sound, else what is wrong and what to do. Without `full`,
        only the small tables of state (milliseconds); with it, everything (reads the whole store)."""
        return ""

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete the events of the UTC days before `before`'s day (retention works in whole days), a day at a
        time and never holding writers up for long, and blob records past their expiration. Returns how many
        events went."""

    @abstractmethod
    def try_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew a named lease (one sync at a time across processes)."""

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def lease_holder(self, name: str) -> str | None: ...

    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    # --- reading side: the store is the durable record; the dashboard's index answers questions ----
    @abstractmethod
    def iter_events(self) -> Iterator[EventRow]:
        """Every stored event, in position order, streamed (never all in memory)."""

    @abstractmethod
    def stats(self) -> StoreStats: ...

    def identity(self) -> str:
        """Made when the store was created: an index built from another store (or an earlier one at the same
        path) is not this one's."""
        return self.get_meta("store.id") or ""

    # --- what the dashboard's index needs to keep in step incrementally --------------------------
    @abstractmethod
    def horizon(self) -> str:
        """The first UTC day ("YYYY-MM-DD") retention has kept; "" until anything was pruned."""

    @abstractmethod
    def changes(self, cursor: str, limit: int = 50_000) -> Changes:
        """Events stored since `cursor` ("" for everything), about `limit` at a time, as (position, *narrow
        columns) tuples (every EventRow field except raw), with the cursor to pass next. At least once: a backend
        whose feed must be read with an overlap (Cosmos DB's `_ts`) may deliver a row again; a position names one
        event for good, so the reader keeps each position once."""

    @abstractmethod
    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        """The full events (with raw JSON) at these positions, in the order given (missing ones left out)."""

    # --- watch-lists, shared by everyone who uses this store ----------------------------------
    @abstractmethod
    def save_watchlist(self, name: str, payload: str) -> None: ...

    @abstractmethod
    def watchlists(self) -> dict[str, str]:
        """name → payload (JSON text written by the dashboard)."""

    @abstractmethod
    def delete_watchlist(self, name: str) -> None: ...

    # --- what the dashboard finds and notes (leads, their reviews): small JSON documents by kind and key ----------
    @abstractmethod
    def put_documents(self, kind: str, documents: dict[str, str]) -> None:
        """Insert or replace key → payload (JSON text) for one kind."""

    @abstractmethod
    def documents(self, kind: str) -> dict[str, str]:
        """key → payload of one kind."""

    # --- the dashboard's own activity log: who changed or took what -----------------------------
    @abstractmethod
    def record_activity(self, who: str, action: str, detail: str) -> None:
        """Append one entry (UTC time now) to the dashboard's activity log."""

    @abstractmethod
    def activity(self, limit: int = 1000) -> list[tuple[str, str, str, str]]:
        """The newest entries first, as (time "YYYY-MM-DDTHH:MM:SSZ", who, action, detail)."""

    @abstractmethod
    def close(self) -> None: ...

    def checkpoints(self, content_types: Iterable[str]) -> list[Checkpoint]:
        return [self.get_checkpoint(ct) for ct in content_types]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def translate_errors(native: type[Exception] | tuple[type[Exception], ...],
                     translate: Callable[["EventStore", Exception], StoreError]):
    """Class decorator for a backend: its driver's exceptions leave every public method (and every streamed
    result) as a StoreError saying what happened and what to do, so no caller needs to know the driver."""

    def wrap(method):
        if inspect.isgeneratorfunction(method):
            @functools.wraps(method)
            def streamed(self, *args, **kwargs):
                try:
                    yield from method(self, *args, **kwargs)
                except native as exc:
                    raise translate(self, exc) from None
            return streamed

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except native as exc:
                raise translate(self, exc) from None
        return call

    def decorate(cls):
        for name, member in list(vars(cls).items()):
            if callable(member) and not name.startswith("_"):
                setattr(cls, name, wrap(member))
        return cls

    return decorate

