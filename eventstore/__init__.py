"""Where audit events live. Both the ingest and the dashboard import this package; it imports neither."""
from .base import Changes, EventStore, StoreError, StoreUnavailable
from .model import CONTENT_TYPES, BlobRecord, Checkpoint, EventRow, Filter
from .open import open_store

__all__ = ["CONTENT_TYPES", "BlobRecord", "Changes", "Checkpoint", "EventRow", "EventStore", "Filter", "StoreError",
           "StoreUnavailable", "open_store"]
