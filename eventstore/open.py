"""Build a store from its URL: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `cosmos`."""
from __future__ import annotations

from .base import EventStore, StoreUnavailable


def sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        raise StoreUnavailable(
            f"AUDIT_STORE must be sqlite:///path/file.db or cosmos, not {url!r}")
    return url[len("sqlite:///"):]


def open_store(url: str, *, cosmos: dict | None = None, retention_days: int = 90) -> EventStore:
    """`cosmos` holds endpoint, key, database, container (and optionally verify) when url == 'cosmos'."""
    if url == "cosmos":
        from .cosmos import CosmosStore  # azure-cosmos is only imported by teams that use it

        return CosmosStore(retention_days=retention_days, **(cosmos or {}))
    from .sqlite import SqliteStore

    return SqliteStore(sqlite_path(url))
