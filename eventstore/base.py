"""The EventStore contract every backend (SQLite, Cosmos DB) implements and one test suite checks."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from .model import BlobRecord, Checkpoint, EventRow, Filter, StoreStats


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or opened; the message says how to fix it and holds no secret."""


class EventStore(ABC):
    #: a short, secret-free description for logs and the UI, e.g. "SQLite data/audit.db"
    description: str = ""

    # --- ingest side -------------------------------------------------------------------------
    @abstractmethod
    def store_blobs(self, batch: Sequence[tuple[BlobRecord, Sequence[EventRow]]]) -> int:
        """Store each blob's events and mark the blob stored; a blob is never marked stored without its
        events. Events already stored (same Id) are left as they are. Returns how many events were new.
        Several blobs per call let a backend group its writes (SQLite: one transaction)."""

    @abstractmethod
    def record_lost_blob(self, blob: BlobRecord) -> None:
        """Remember a blob the API could not deliver (expired, unknown), so status can show it."""

    @abstractmethod
    def known_blob_ids(self, content_type: str, content_ids: Iterable[str]) -> set[str]:
        """Of these content ids, the ones already stored or recorded lost (so a re-list skips them)."""

    @abstractmethod
    def get_checkpoint(self, content_type: str) -> Checkpoint: ...

    @abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abstractmethod
    def lost_blobs(self) -> list[BlobRecord]: ...

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete events older than `before` (retention) and blob records past their expiration."""

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

    # --- reading side ------------------------------------------------------------------------
    @abstractmethod
    def query(self, flt: Filter, limit: int = 100, offset: int = 0) -> list[EventRow]:
        """Matching events, newest first."""

    @abstractmethod
    def count(self, flt: Filter) -> int: ...

    @abstractmethod
    def iter_events(self, flt: Filter | None = None) -> Iterator[EventRow]:
        """Every matching event, in no promised order, streamed (never all in memory)."""

    @abstractmethod
    def stats(self) -> StoreStats: ...

    # --- what an in-memory analytic index needs to keep in step incrementally ------------------
    @abstractmethod
    def data_version(self) -> tuple[int, int]:
        """(position after the last stored event, removal generation). The first grows with every
        stored event; the second changes whenever events are removed (retention)."""

    @abstractmethod
    def rows_since(self, position: int, limit: int = 50_000) -> list[tuple]:
        """Up to `limit` events stored after `position`, in storage order, as (position, *narrow columns)
        tuples: every EventRow field except raw."""

    @abstractmethod
    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        """The full events (with raw JSON) at these positions, in the order given."""

    # --- watch-lists, shared by everyone who uses this store ----------------------------------
    @abstractmethod
    def save_watchlist(self, name: str, payload: str) -> None: ...

    @abstractmethod
    def watchlists(self) -> dict[str, str]:
        """name → payload (JSON text written by the dashboard)."""

    @abstractmethod
    def delete_watchlist(self, name: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def checkpoints(self, content_types: Iterable[str]) -> list[Checkpoint]:
        return [self.get_checkpoint(ct) for ct in content_types]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
