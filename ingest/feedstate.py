"""The live feed's state (Management Activity API): a checkpoint per content type and a record per content blob.
What each of their fields means is decided here, once; the store keeps them as a source's cursor documents and
work items (stream = content type, key = content id) without knowing what a blob is."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from eventstore import EventStore
from eventstore.model import EventRow, WorkItem, parse_utc, utc_text

CONTENT_TYPES = (
    "Audit.AzureActiveDirectory",
    "Audit.Exchange",
    "Audit.SharePoint",
    "Audit.General",
    "DLP.All",
)
CURSORS = "cursor"  # the kind of store document that holds a content type's checkpoint


@dataclass
class Checkpoint:
    """Per content type: every blob whose contentCreated is before `listed_until` has been listed and
    either stored or recorded as lost. The next pass re-lists from a little before it (late content).
    With queue fan-out, `queued_until` runs ahead of it: every blob created before it has been listed and its
    message accepted by the queue; `listed_until` follows once the workers have stored (or lost) them."""

    content_type: str
    listed_until: datetime | None = None
    last_success: datetime | None = None
    last_error: str = ""
    queued_until: datetime | None = None

    def to_json(self) -> str:
        def text(moment: datetime | None) -> str | None:
            return utc_text(moment) if moment else None

        return json.dumps({"listed_until": text(self.listed_until), "last_success": text(self.last_success),
                           "last_error": self.last_error, "queued_until": text(self.queued_until)})

    @classmethod
    def from_json(cls, content_type: str, text: str) -> "Checkpoint":
        saved = json.loads(text)

        def moment(name: str) -> datetime | None:
            return parse_utc(saved[name]) if saved.get(name) else None

        return cls(content_type, moment("listed_until"), moment("last_success"), saved.get("last_error") or "",
                   moment("queued_until"))


@dataclass(frozen=True)
class BlobRecord:
    """A content blob as the feed remembers it. `status`: "stored" (its events are; an error code then says
    what had to be repaired or skipped), "queued" (its message waits for a worker), "retrying" (its answer was
    unusable; fetched again next pass, or when its message comes back) or "lost" (it will never be had)."""

    content_id: str
    content_type: str
    content_created: str
    content_expiration: str
    events: int = 0
    status: str = "stored"
    error_code: str = ""
    error_message: str = ""
    attempts: int = 0  # passes whose fetch of it failed

    def work_item(self) -> WorkItem:
        # a stored blob is only needed while the API can still list it; the others are kept to be reported
        repaired = self.status == "stored" and bool(self.error_code)
        return WorkItem(self.content_type, self.content_id, self.content_created,
                        pending=self.status in ("queued", "retrying"),
                        issue=self.status in ("lost", "retrying") or repaired,
                        expires=self.content_expiration if self.status == "stored" else "",
                        detail=json.dumps({"expiration": self.content_expiration, "events": self.events,
                                           "status": self.status, "error_code": self.error_code,
                                           "error_message": self.error_message, "attempts": self.attempts}))

    @classmethod
    def of(cls, item: WorkItem) -> "BlobRecord":
        d = json.loads(item.detail)
        return cls(item.key, item.stream, item.at, d["expiration"], d["events"], d["status"], d["error_code"],
                   d["error_message"], d["attempts"])


class FeedState:
    """The live feed's checkpoints and blob records in one store."""

    def __init__(self, store: EventStore):
        self.store = store

    def checkpoint(self, content_type: str) -> Checkpoint:
        return self.checkpoints([content_type])[0]

    def checkpoints(self, content_types: Iterable[str]) -> list[Checkpoint]:
        saved = self.store.documents(CURSORS)
        return [Checkpoint.from_json(ct, saved[ct]) if ct in saved else Checkpoint(ct) for ct in content_types]

    def save(self, checkpoint: Checkpoint) -> None:
        self.store.put_documents(CURSORS, {checkpoint.content_type: checkpoint.to_json()})

    def store_blobs(self, batch: Sequence[tuple[BlobRecord, Sequence[EventRow]]]) -> int:
        """Store each blob's events and mark the blob stored (never marked without its events). Returns how many
        events were new."""
        return self.store.store_events([row for _, rows in batch for row in rows],
                                       [replace(blob, events=len(rows), status="stored").work_item()
                                        for blob, rows in batch])

    def record_lost(self, blob: BlobRecord) -> None:
        """Remember a blob the API could not deliver (expired, unknown), so status can show it."""
        self.store.put_work([replace(blob, events=0, status="lost").work_item()])

    def record_failure(self, blob: BlobRecord, give_up_after: int) -> BlobRecord:
        """Count one more pass in which this blob's answer was unusable (its error code and message say why).
        It stays "retrying" (fetched again by the next pass) until it has failed `give_up_after` times, then it
        is "lost". Returns the record as kept. (Read, then written: one blob is fetched by one sync or one
        worker at a time — the sync lease, the queue's visibility timeout.)"""
        previous = self.store.work_items(blob.content_type, [blob.content_id]).get(blob.content_id)
        before = BlobRecord.of(previous) if previous else None
        attempts = (before.attempts if before and before.status == "retrying" else 0) + 1
        kept = replace(blob, events=0, status="lost" if attempts >= give_up_after else "retrying", attempts=attempts)
        self.store.put_work([kept.work_item()])
        return kept

    def known_ids(self, content_type: str, content_ids: Iterable[str], queued_too: bool = False) -> set[str]:
        """Of these content ids, the ones stored or recorded lost (so a re-list skips them), and with `queued_too`
        also those waiting in the queue; a retrying blob is not known yet."""
        known = {"stored", "lost", "queued"} if queued_too else {"stored", "lost"}
        return {key for key, item in self.store.work_items(content_type, content_ids).items()
                if BlobRecord.of(item).status in known}

    def record_queued(self, blobs: Sequence[BlobRecord]) -> None:
        """Remember blobs whose messages the queue accepted, as "queued" — except those with a record already (a
        worker may have stored one before this is written)."""
        self.store.put_work([replace(b, status="queued").work_item() for b in blobs], keep_existing=True)

    def pending(self, content_type: str) -> tuple[int, str | None]:
        """(how many blobs are queued or retrying, the contentCreated of the oldest): what keeps `listed_until`
        behind `queued_until`."""
        return self.store.pending_work(content_type)

    def issues(self) -> list[BlobRecord]:
        """Every blob that is lost, retrying, or stored with an error code (something repaired or skipped),
        oldest first."""
        return [BlobRecord.of(item) for item in self.store.work_issues() if item.stream in CONTENT_TYPES]
