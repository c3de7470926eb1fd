"""What the ingest has done, built once for `python -m ingest status` and the dashboard's Sync page: per content
type of the live feed, its checkpoint, events, queued and lost blobs; the backfill's windows and gaps; how far each
table of the workspace is read."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eventstore import EventStore
from eventstore.model import StoreStats, utc_text

from .backfill import backfill_summary
from .feedstate import BlobRecord, Checkpoint, FeedState
from .settings import Settings
from .workspace import audit_log_left_out, workspace_summary


@dataclass(frozen=True)
class IngestStatus:
    description: str  # the store, as it names itself
    stats: StoreStats
    checkpoints: list[Checkpoint]
    issues: list[BlobRecord]  # lost, retrying, or stored with a repair
    queued: dict[str, int]  # content type → blobs waiting for a queue worker
    backfill: dict
    workspace: list[dict]
    sync_running: bool
    feed_left_out: str  # why the feed leaves a content type out, another source bringing it ("" when it does not)

    @property
    def lost(self) -> list[BlobRecord]:
        return [b for b in self.issues if b.status == "lost"]

    def as_json(self) -> dict:
        """The shape `status --json` prints (times as UTC text)."""
        lost = self.lost
        return {
            "store": self.description,
            "events": self.stats.events,
            "first_event": self.stats.first_time,
            "last_event": self.stats.last_time,
            "sync_running": self.sync_running,
            "content_types": [
                {"content_type": cp.content_type, "listed_until": _iso(cp.listed_until),
                 "queued_until": _iso(cp.queued_until), "blobs_queued": self.queued[cp.content_type],
                 "last_success": _iso(cp.last_success), "last_error": cp.last_error,
                 "events_stored": self.stats.per_content_type.get(cp.content_type, 0),
                 "blobs_lost": sum(1 for b in lost if b.content_type == cp.content_type)}
                for cp in self.checkpoints],
            "backfill": self.backfill,
            "workspace": self.workspace,
            "feed_left_out": self.feed_left_out,
            "lost_blobs": [_blob(b) for b in lost],
            # fetched again by the next pass, or stored with something repaired or skipped
            "blob_issues": [_blob(b) for b in self.issues if b.status != "lost"],
        }


def ingest_status(store: EventStore, settings: Settings) -> IngestStatus:
    feed = FeedState(store)
    left_out, why = audit_log_left_out(settings, store)
    return IngestStatus(store.description, store.stats(settings.content_types),
                        feed.checkpoints(settings.content_types), feed.issues(),
                        {ct: feed.pending(ct)[0] for ct in settings.content_types}, backfill_summary(store),
                        workspace_summary(store, settings.workspace_tables), store.lease_holder("sync") is not None,
                        why if set(left_out) & set(settings.content_types) else "")


def _iso(moment: datetime | None) -> str | None:
    return utc_text(moment) if moment else None


def _blob(b: BlobRecord) -> dict:
    return {"content_type": b.content_type, "content_id": b.content_id, "content_created": b.content_created,
            "status": b.status, "attempts": b.attempts, "code": b.error_code, "message": b.error_message}
