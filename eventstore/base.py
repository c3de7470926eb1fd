"""The EventStore contract every backend (SQLite, Cosmos DB) implements and one test suite checks."""
from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from .model import ActivityEntry, ActivityQuery, EventRow, StoreStats, WorkItem


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

    # --- ingest side: events, and what each source remembers of its work -------------------------
    @staticmethod
    def encode(row: EventRow):
        """`row` in the form this backend writes (a pure function, picklable: the ingest runs it in the process
        that parses, away from the one that writes). `store_events` takes rows in either form."""
        return row

    @abstractmethod
    def store_events(self, rows: Sequence[EventRow], done: Sequence[WorkItem] = ()) -> int:
        """Store events (EventRows, or as `encode` made them) that are not stored yet (by record Id) and then the
        work items `done` (a source's record that these events are in): an item is never written without its
        events. Returns how many events were new. Many events per call let a backend group its writes (SQLite: one
        transaction)."""

    @abstractmethod
    def put_work(self, items: Sequence[WorkItem], keep_existing: bool = False) -> None:
        """Write work items (replacing those with the same stream and key); with `keep_existing`, only those not
        recorded yet (a worker may have recorded an item before its producer does)."""

    @abstractmethod
    def work_items(self, stream: str, keys: Iterable[str]) -> dict[str, WorkItem]:
        """Of these keys, the items recorded in `stream`, by key."""

    @abstractmethod
    def pending_work(self, stream: str) -> tuple[int, str | None]:
        """(how many of the stream's items are pending, the `at` of the oldest)."""

    @abstractmethod
    def work_issues(self) -> list[WorkItem]:
        """Every item with an issue, in every stream, oldest `at` first."""

    def check(self, full: bool = False) -> str:
        """An integrity check: "" when the store is sound, else what is wrong and what to do. Without `full`,
        only the small tables of state (milliseconds); with it, everything (reads the whole store)."""
        return ""

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete the events of the UTC days before `before`'s day (retention works in whole days), a day at a
        time and never holding writers up for long, and the work items past their `expires`; the horizon becomes
        `before`'s day (if it is later). Returns how many events went."""

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
    def stats(self, content_types: Iterable[str] = ()) -> StoreStats:
        """How many events, their first and last time, and how many of each of these content types."""

    def identity(self) -> str:
        """Made when the store was created: an index built from another store (or an earlier one at the same
        path) is not this one's."""
        return self.get_meta("store.id") or ""

    # --- what the dashboard's index needs to keep in step incrementally --------------------------
    @abstractmethod
    def horizon(self) -> str:
        """The first UTC day ("YYYY-MM-DD") retention keeps: everything before it is gone, whether or not the days
        before held events. "" until the first prune."""

    @abstractmethod
    def changes(self, cursor: str, limit: int = 50_000) -> Changes:
        """Events stored since `cursor` ("" for everything), about `limit` at a time, as (position, *narrow
        columns) tuples (every EventRow field except raw), with the cursor to pass next. At least once: a backend
        whose feed must be read with an overlap (Cosmos DB's `_ts`) may deliver a row again; a position names one
        event for good, so the reader keeps each position once."""

    @abstractmethod
    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        """The full events (with raw JSON) at these positions, in the order given (missing ones left out)."""

    @abstractmethod
    def records_at(self, positions: Sequence[int]) -> dict[int, str]:
        """position → the original record (raw JSON text), for those of these positions still stored: what the
        detections read, cheaper than whole events."""

    # --- watch-lists, shared by everyone who uses this store ----------------------------------
    @abstractmethod
    def save_watchlist(self, name: str, payload: str) -> None: ...

    @abstractmethod
    def watchlists(self) -> dict[str, str]:
        """name → payload (JSON text written by the dashboard)."""

    @abstractmethod
    def delete_watchlist(self, name: str) -> None: ...

    # --- small JSON documents by kind and key: sources' cursors, the dashboard's leads and their reviews ----------
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
    def activity(self, query: ActivityQuery = ActivityQuery(), limit: int | None = 1000,
                 offset: int = 0) -> tuple[int, list[ActivityEntry]]:
        """(how many entries match, the `limit` of them from `offset` on, newest first; None: all of them). The whole
        log stays reachable however many entries someone adds."""

    @abstractmethod
    def activity_facets(self) -> tuple[list[str], list[str]]:
        """(every person, every action) the activity log holds, sorted: what it can be filtered by."""

    @abstractmethod
    def close(self) -> None: ...

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
            # (a static method is pure: no driver in it)
            if callable(member) and not name.startswith("_") and not isinstance(member, staticmethod):
                setattr(cls, name, wrap(member))
        return cls

    return decorate

