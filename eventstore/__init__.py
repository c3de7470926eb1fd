"""Where audit events live. Both the ingest and the dashboard import this package; it imports neither."""
from .base import Changes, EventStore, StoreError, StoreUnavailable
from .model import ActivityQuery, EventRow, Filter, WorkItem
from .open import open_store

__all__ = ["ActivityQuery", "Changes", "EventRow", "EventStore", "Filter", "StoreError", "StoreUnavailable", "WorkItem",
           "open_store"]
