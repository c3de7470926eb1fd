"""Queue fan-out: one `enqueue` lists the content and queues one message per new blob; any number of workers,
on any number of machines, fetch, normalize and store them. The same listing (sync.FeedPass), fetching and
judging of each answer (blobs.py), normalization and store as `sync`; only who fetches differs.

Why nothing is lost or stored twice:
- enqueue sends a window's messages, then records those blobs as "queued", then moves `queued_until` past the
  window. A crash before the record re-sends them next pass (a duplicate message is harmless: a worker skips a
  blob already stored, and events dedupe on their Id); the record never overwrites a worker's "stored".
- a worker deletes a message only after the blob's events are stored (or the blob is recorded lost). A worker
  killed mid-message leaves it invisible for QUEUE_VISIBILITY_TIMEOUT, then another takes it.
- a message delivered more than QUEUE_MAX_DEQUEUES times (workers keep dying on it) goes to the poison queue and
  its blob is recorded lost ("POISON"), so `status` and the Sync page show it. Throttling and refused sign-ins
  are not the message's fault: it is sent again with its count reset.
- a worker fetches the blob a message names by its id, from this tenant's feed (the contract: contentUri is
  feed/audit/{contentId}), and refuses a message whose contentUri names another blob: what a message claims never
  decides the fate of a blob it would not fetch. (So the DEMO tenant fans out too: each process serves the same
  simulated tenant, its first day kept in the store, on a port of its own.)
- `listed_until`, what `status` calls the checkpoint, is only moved by enqueue, to the oldest blob still queued
  or retrying (or `queued_until` when none is): everything created before it is stored or recorded lost."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone

from eventstore import EventStore, open_store
from eventstore.model import parse_utc

from . import redact
from .api import (
    ActivityApi,
    BadAnswer,
    ClockSkew,
    ContentBlob,
    FatalApiError,
    parse_json,
    parse_listing,
)
from .auth import AuthError
from .blobs import Outcome, Parser, fetch_decoded, outcome
from .demo import tenant_settings
from .feedstate import CONTENT_TYPES, BlobRecord, Checkpoint, FeedState
from .queues import ContentQueue, QueueError, Received, encode
from .settings import Settings
from .source import Part, Report
from .sync import FeedPass, run_sync

log = logging.getLogger("ingest.fanout")
MAX_MESSAGE_CHARS = 8000
RECEIVE = 16  # messages per receive (the service's maximum is 32)
REQUEUE_DELAY = 60  # seconds before a throttled or refused message is offered again


# --- the message: one listing item, in the API's own shape, checked like one -----------------------------------
def message_text(blob: ContentBlob) -> str:
    return json.dumps({"contentType": blob.content_type, "contentId": blob.content_id,
                       "contentUri": blob.content_uri, "contentCreated": blob.created,
                       "contentExpiration": blob.expiration})


def parse_message(text: str | None) -> ContentBlob:
    """A queue message (None: not Base64 UTF-8 text) → the blob it names, or BadAnswer. The storage account is
    another party: its messages are checked as the API's listings are (and the token still only goes to this
    tenant's feed)."""
    if text is None:
        raise BadAnswer("a queue message that is not Base64 UTF-8 text", "MALFORMED")
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadAnswer(f"a queue message of {len(text)} characters is not a blob reference", "MALFORMED")
    item = parse_json(text.encode("utf-8"), "a queue message")
    content_type = item.get("contentType") if isinstance(item, dict) else None
    if content_type not in CONTENT_TYPES:
        raise BadAnswer("a queue message names no known content type", "MALFORMED")
    (blob,) = parse_listing(json.dumps([item]).encode("utf-8"), content_type)
    return blob


# --- enqueue: the listing half of a sync pass -------------------------------------------------------------------
def enqueue_content_type(syncer: FeedPass, queue: ContentQueue, content_type: str) -> Part:
    feed, result, errors = syncer.feed, Part(content_type), []
    checkpoint = feed.checkpoint(content_type)
    plan_from = replace(checkpoint, listed_until=checkpoint.queued_until or checkpoint.listed_until)
    sent: set[str] = set()
    for end, blobs in syncer.list_windows(content_type, plan_from, errors):
        if blobs is None:
            break  # not listed: `queued_until` must not pass this window
        known = feed.known_ids(content_type, (b.content_id for b in blobs), queued_too=True) | sent
        fresh = list({b.content_id: b for b in blobs if b.content_id not in known}.values())
        try:
            queue.send([message_text(b) for b in fresh])
        except QueueError as error:
            errors.append(str(error))
            break
        feed.record_queued([BlobRecord(b.content_id, content_type, b.created, b.expiration) for b in fresh])
        sent.update(b.content_id for b in fresh)
        result.queued += len(fresh)
        syncer.guard.check()
        checkpoint.queued_until = end
        feed.save(checkpoint)
    settle(feed, checkpoint)
    result.error = checkpoint.last_error = redact.short("; ".join(errors), 600)
    if not errors:
        checkpoint.last_success = datetime.now(timezone.utc)
    feed.save(checkpoint)
    return result


def settle(feed: FeedState, checkpoint: Checkpoint) -> None:
    """Move `listed_until` up to what the workers have finished."""
    if checkpoint.queued_until is None:
        return
    pending, oldest = feed.pending(checkpoint.content_type)
    settled = min(checkpoint.queued_until, parse_utc(oldest)) if pending else checkpoint.queued_until
    if checkpoint.listed_until is None or settled > checkpoint.listed_until:
        checkpoint.listed_until = settled


def run_enqueue(settings: Settings, store: EventStore | None = None, *, stop: threading.Event | None = None
                ) -> Report:
    """One enqueue pass: what `python -m ingest enqueue` and the Functions timer call."""
    queue = ContentQueue(settings)
    try:
        return run_sync(settings, store, stop=stop,
                        step=lambda syncer, content_type: enqueue_content_type(syncer, queue, content_type))
    finally:
        queue.close()


# --- the worker: the fetching half ---------------------------------------------------------------------------
@dataclass
class WorkReport:
    messages: int = 0
    stored: int = 0  # blobs
    added: int = 0
    skipped: int = 0  # already stored or lost (a duplicate message)
    lost: int = 0
    retrying: int = 0
    requeued: int = 0
    poisoned: int = 0
    left: int = 0  # left in the queue, to come back after the visibility timeout
    fatal: str = ""
    errors: list[str] = field(default_factory=list)

    def add(self, other: "WorkReport") -> None:
        for counter in fields(self):
            if isinstance(getattr(self, counter.name), int):
                setattr(self, counter.name, getattr(self, counter.name) + getattr(other, counter.name))
        self.fatal = self.fatal or other.fatal
        self.errors.extend(other.errors)

    def summary(self) -> str:
        return (f"{self.messages} messages: {self.stored} blobs stored (+{self.added} new events), {self.skipped} "
                f"already done, {self.lost} lost, {self.retrying} to retry, {self.requeued} requeued, "
                f"{self.poisoned} poisoned" + (f"; STOPPED: {self.fatal}" if self.fatal else ""))


class Worker:
    """Handles what one receive brought: at most `threads` blobs fetched at once, their events stored in one
    call, each message deleted only once its blob is settled."""

    def __init__(self, api: ActivityApi, store: EventStore, queue: ContentQueue, max_dequeues: int,
                 threads: int = 4):
        self.api, self.feed, self.queue, self.max_dequeues = api, FeedState(store), queue, max_dequeues
        self.parser = Parser()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="worker-fetch")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.parser.shutdown()

    def handle(self, received: list[Received]) -> WorkReport:
        report = WorkReport(messages=len(received))
        todo: list[tuple[Received, ContentBlob]] = []
        for message in received:
            try:
                blob = parse_message(message.text)
            except BadAnswer as bad:
                log.error("queue message %s is not a blob reference (%s): moved to the poison queue",
                          message.message_id, bad)
                self.queue.poison(message)
                report.poisoned += 1
                continue
            if not self.api.names_blob(blob.content_uri, blob.content_id):
                # what a message claims decides nothing about a blob it would not fetch: the real blob of that id
                # keeps its own message and listing
                log.error("queue message %s names content %s but another address: not fetched, nothing recorded for "
                          "it, moved to the poison queue", message.message_id, redact.short(blob.content_id, 80))
                self.queue.poison(message)
                report.poisoned += 1
                continue
            blob = replace(blob, content_uri=self.api.blob_uri(blob.content_id))  # fetched where this tenant serves it
            if message.dequeue_count > self.max_dequeues:
                self._poison(message, blob)
                report.poisoned += 1
                continue
            todo.append((message, blob))
        done = set()
        for content_type in {blob.content_type for _, blob in todo}:
            done |= self.feed.known_ids(content_type, [b.content_id for _, b in todo
                                                       if b.content_type == content_type])
        for message, blob in [(m, b) for m, b in todo if b.content_id in done]:
            self.queue.delete(message)
            report.skipped += 1
        todo = [(m, b) for m, b in todo if b.content_id not in done]
        encode = self.feed.store.encode
        futures = [(message, blob, self.pool.submit(fetch_decoded, self.api, self.parser, blob, encode))
                   for message, blob in todo]
        keep: list[tuple[Received, BlobRecord, list]] = []
        for message, blob, future in futures:
            try:
                settled = outcome(self.api, self.feed, blob, future)
            except (FatalApiError, AuthError, ClockSkew) as refused:  # every message would fail alike: stop
                report.fatal = report.fatal or str(refused)
                settled = Outcome("later", str(refused))
            if settled.kind == "keep":
                keep.append((message, settled.record, settled.rows))
            elif settled.kind == "lost":
                self.queue.delete(message)
                report.lost += 1
            elif settled.kind == "retry":  # left in the queue: it comes back after the visibility timeout
                report.errors.append(f"{blob.content_id}: {settled.why}")
                report.retrying += 1
                report.left += 1
            elif settled.kind == "later":  # not the message's fault: offered again, its count reset
                report.errors.append(settled.why)
                self.queue.requeue(message, REQUEUE_DELAY)
                report.requeued += 1
            else:  # stopping: the message comes back after the visibility timeout
                report.left += 1
            if settled.given_up:
                report.errors.append(f"{blob.content_id}: {settled.why}")
        if keep:
            report.added += self.feed.store_blobs([(record, rows) for _, record, rows in keep])
            report.stored += len(keep)
            for message, _, _ in keep:
                self.queue.delete(message)
        return report

    def _poison(self, message: Received, blob: ContentBlob) -> None:
        log.error("%s: content %s failed %d deliveries (workers died or timed out on it): recorded lost and moved "
                  "to the poison queue", blob.content_type, blob.content_id, message.dequeue_count - 1)
        self.feed.record_lost(BlobRecord(
            blob.content_id, blob.content_type, blob.created, blob.expiration, 0, "lost", "POISON",
            f"its queue message failed {message.dequeue_count - 1} deliveries; it is in the poison queue"))
        self.queue.poison(message)


def _connect(settings: Settings, store: EventStore) -> ActivityApi:
    return ActivityApi.connect(tenant_settings(settings, store))


def run_worker(settings: Settings, *, stop: threading.Event | None = None, drain: bool = False,
               threads: int = 4, on_batch: Callable[[WorkReport], None] | None = None) -> WorkReport:
    """Receive and handle messages until stopped (or, with `drain`, until the queue is empty). Stops early when
    the service refuses this identity: every message would fail alike."""
    stop = stop or threading.Event()
    total = WorkReport()
    store = open_store(settings.store_url, cosmos=settings.cosmos_options(), retention_days=settings.retention_days)
    queue = ContentQueue(settings)
    worker = None
    try:
        worker = Worker(_connect(settings, store), store, queue, settings.queue_max_dequeues, threads)
        idle = 1.0
        while not stop.is_set():
            received = queue.receive(RECEIVE, settings.queue_visibility_timeout)
            if not received:
                if drain and queue.depth()[0] == 0:
                    break
                stop.wait(idle)
                idle = min(idle * 2, 30.0)
                continue
            idle = 1.0
            report = worker.handle(received)
            total.add(report)
            (on_batch or (lambda r: log.info("%s", r.summary())))(report)
            if report.fatal:
                break
    finally:
        if worker is not None:
            worker.close()
        queue.close()
        store.close()
    return total


class _Delivered:
    """The messages of Azure Functions' queue trigger: the runtime deletes one when the function returns and
    delivers it again when the function raises; sending a copy (requeue, poison) goes through our queue."""

    def __init__(self, queue: ContentQueue):
        self.queue = queue

    def delete(self, message: Received) -> None:
        pass

    def requeue(self, message: Received, delay: int) -> None:
        self.queue.send([message.text or ""], delay)

    def poison(self, message: Received) -> None:
        self.queue.copy_to_poison(message)


class MessageLeft(RuntimeError):
    """Raised to Azure Functions so that it delivers the message again later."""


_function_worker: Worker | None = None
_function_lock = threading.Lock()


def handle_one(settings: Settings, text: str, dequeue_count: int, message_id: str = "") -> WorkReport:
    """One message as Azure Functions delivers it (already decoded): the same handling as the CLI worker's. The
    store, queue, API session and parser are opened by the first invocation and kept by the Functions process.
    Raises MessageLeft when the message must come back (its blob is retrying)."""
    global _function_worker
    with _function_lock:
        if _function_worker is None:
            store = open_store(settings.store_url, cosmos=settings.cosmos_options(),
                               retention_days=settings.retention_days)
            _function_worker = Worker(_connect(settings, store), store, _Delivered(ContentQueue(settings)),
                                      settings.queue_max_dequeues, threads=1)
    report = _function_worker.handle([Received(message_id, "", dequeue_count, text, encode(text))])
    if report.left:
        raise MessageLeft(f"content is retrying ({'; '.join(report.errors)[:300]}); delivered again later")
    return report
