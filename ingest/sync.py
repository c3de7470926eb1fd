"""One sync pass, per content type: plan windows from the checkpoint → list every page → fetch the new
blobs with bounded parallelism → normalize → store → advance the checkpoint, only once the window's
events are durably stored. Killing the process at any moment and running again converges on the
same events: blobs are stored atomically with their events, events dedupe on their Id, and an
unfinished window is simply listed again."""
from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from eventstore import EventStore, open_store
from eventstore.model import BlobRecord, utc_text

from .api import (
    ActivityApi,
    ApiError,
    BlobUnavailable,
    ContentBlob,
    FatalApiError,
    InvalidNextPage,
    SubscriptionNeeded,
    WindowRejected,
)
from .auth import TokenProvider, build_session
from .settings import Settings
from .parse_worker import decode_blob, exit_with_parent
from .windows import plan_windows

log = logging.getLogger("ingest.sync")
LEASE = "sync"
LEASE_SECONDS = 120.0
BATCH_ROWS = 5000  # events per write transaction


class SyncAlreadyRunning(RuntimeError):
    pass


@dataclass
class Progress:
    content_type: str
    window: int  # 1-based
    windows: int
    blobs_done: int
    blobs_total: int
    events_new: int  # so far, this content type, this pass


@dataclass
class ContentTypeResult:
    content_type: str
    windows: int = 0
    blobs_listed: int = 0
    blobs_skipped: int = 0  # already stored by an earlier pass
    blobs_stored: int = 0
    blobs_lost: int = 0
    events_seen: int = 0
    events_new: int = 0
    error: str = ""


@dataclass
class SyncReport:
    demo: bool
    results: list[ContentTypeResult] = field(default_factory=list)
    pruned: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(not r.error for r in self.results)

    @property
    def events_new(self) -> int:
        return sum(r.events_new for r in self.results)

    def summary(self) -> str:
        parts = [f"{r.content_type}: +{r.events_new} events ({r.blobs_stored} blobs"
                 f"{f', {r.blobs_lost} lost' if r.blobs_lost else ''})" + (f" ERROR {r.error}" if r.error else "")
                 for r in self.results]
        return f"{'DEMO ' if self.demo else ''}sync {'done' if self.ok else 'finished with errors'} in " \
               f"{self.seconds:.1f} s: " + "; ".join(parts)


class _Syncer:
    def __init__(self, api: ActivityApi, store: EventStore, owner: str, workers: int,
                 progress: Callable[[Progress], None] | None, stop: threading.Event, parser: Executor):
        self.api, self.store, self.owner, self.workers, self.parser = api, store, owner, workers, parser
        self.progress = progress or (lambda p: None)
        self.stop = stop
        self._lease_renewed = time.monotonic()

    def renew_lease(self, force: bool = False) -> None:
        if force or time.monotonic() - self._lease_renewed > LEASE_SECONDS / 4:
            if not self.store.try_lease(LEASE, self.owner, LEASE_SECONDS):
                raise SyncAlreadyRunning("Another sync took over the store's sync lease.")
            self._lease_renewed = time.monotonic()

    def list_window(self, content_type: str, start: datetime, end: datetime) -> list[ContentBlob]:
        for _ in range(3):
            try:
                return list(self.api.list_content(content_type, start, end))
            except SubscriptionNeeded:
                log.info("%s: no active subscription; starting it", content_type)
                self.api.start_subscription(content_type)
            except InvalidNextPage:
                log.warning("%s: the page chain broke; listing the window again from its start", content_type)
        raise ApiError(f"{content_type}: could not list {utc_text(start)}–{utc_text(end)} after 3 tries")

    def fetch(self, blob: ContentBlob) -> list:
        """Runs in a worker thread: fetch, then parse in the helper process (parsing is CPU-bound Python;
        in this process it would compete with the writes for the interpreter lock)."""
        if blob.expiration <= utc_text(self.api.server_now()):
            raise BlobUnavailable(f"content {blob.content_id} expired at {blob.expiration} before it was fetched",
                                  "AF20051")
        body = self.api.fetch_blob(blob.content_uri)
        try:
            return self.parser.submit(decode_blob, body, blob.content_type, blob.created).result()
        except ValueError:
            raise BlobUnavailable(f"content {blob.content_id} is not a JSON array of records", "MALFORMED") from None

    def sync_content_type(self, content_type: str) -> ContentTypeResult:
        result = ContentTypeResult(content_type)
        checkpoint = self.store.get_checkpoint(content_type)
        for attempt in range(2):
            plan = plan_windows(checkpoint.listed_until, self.api.server_now())
            if plan.gap:
                log.warning("%s: content announced %s–%s is older than the API keeps (7 days) and was not synced",
                            content_type, utc_text(plan.gap[0]), utc_text(plan.gap[1]))
            try:
                listed = [(end, self.list_window(content_type, start, end)) for start, end in plan.windows]
                break
            except WindowRejected as rejected:
                # The service's clock is now known from its Date header: plan once more with it.
                if attempt:
                    raise
                log.warning("%s: window refused (%s); clock skew %.0f s, planning again", content_type,
                            rejected.code, self.api.clock_skew)
        self.fetch_windows(content_type, listed, checkpoint, result)
        checkpoint.last_success = datetime.now(timezone.utc)
        checkpoint.last_error = ""
        self.store.save_checkpoint(checkpoint)
        return result

    def fetch_windows(self, content_type: str, listed: list[tuple[datetime, list[ContentBlob]]],
                      checkpoint, result: ContentTypeResult) -> None:
        """Fetch the new blobs of every listed window in one stream (no pause between windows). The
        checkpoint moves past a window only once each of its blobs is stored or recorded lost, and never
        past an earlier window that is still unfinished."""
        remaining, todo = [], []
        for number, (_, blobs) in enumerate(listed):
            known = self.store.known_blob_ids(content_type, (b.content_id for b in blobs))
            fresh = [b for b in blobs if b.content_id not in known]
            result.blobs_listed += len(blobs)
            result.blobs_skipped += len(blobs) - len(fresh)
            remaining.append(len(fresh))
            todo.extend((number, blob) for blob in fresh)
        complete = done = 0  # windows [0, complete) are checkpointed; blobs settled so far
        batch: list[tuple[int, BlobRecord, list]] = []
        batched_rows = 0

        def settle(numbers: list[int], added: int = 0) -> None:
            nonlocal complete, done
            for number in numbers:
                remaining[number] -= 1
            done += len(numbers)
            checkpoint.events_stored += added
            while complete < len(listed) and remaining[complete] == 0:
                checkpoint.listed_until = listed[complete][0]
                complete += 1
                result.windows += 1
            self.store.save_checkpoint(checkpoint)
            self.renew_lease()
            self.progress(Progress(content_type, min(complete + 1, len(listed)), len(listed), done, len(todo),
                                   result.events_new))

        def flush() -> None:
            nonlocal batch, batched_rows
            if batch:
                added = self.store.store_blobs([(record, rows) for _, record, rows in batch])
                result.events_new += added
                result.blobs_stored += len(batch)
                settle([number for number, _, _ in batch], added)
                batch, batched_rows = [], 0

        settle([])  # windows with nothing new are done already
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"fetch-{content_type}")
        try:
            queue = iter(todo)
            pending: dict = {}

            def submit_next() -> None:
                item = next(queue, None)
                if item is not None and not self.stop.is_set():
                    pending[pool.submit(self.fetch, item[1])] = item

            for _ in range(self.workers * 2):  # bounded: at most this many blobs in memory
                submit_next()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    number, blob = pending.pop(future)
                    try:
                        rows = future.result()
                    except BlobUnavailable as lost:
                        log.warning("%s: content %s lost (%s): %s", content_type, blob.content_id, lost.code, lost)
                        self.store.record_lost_blob(BlobRecord(blob.content_id, content_type, blob.created,
                                                               blob.expiration, 0, "lost", lost.code, str(lost)))
                        result.blobs_lost += 1
                        settle([number])
                    else:
                        batch.append((number, BlobRecord(blob.content_id, content_type, blob.created,
                                                         blob.expiration), rows))
                        batched_rows += len(rows)
                        result.events_seen += len(rows)
                    submit_next()
                # one transaction for several blobs: a random-key index costs a page write per row per commit
                if batched_rows >= BATCH_ROWS or not pending:
                    flush()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        flush()
        if done < len(todo):
            raise _Stopped()


class _Stopped(Exception):
    """Stop was asked for mid-window: the window's checkpoint must not advance."""


def sync_once(api: ActivityApi, store: EventStore, content_types: tuple[str, ...], *, retention_days: int,
              demo: bool = False, workers: int = 4, progress: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None) -> SyncReport:
    """One catch-up pass over every content type. Raises SyncAlreadyRunning if another process holds
    the store's sync lease, FatalApiError when retrying cannot help (the message says what to fix)."""
    stop = stop or threading.Event()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    holder = store.lease_holder(LEASE)
    if holder and _died_on_this_host(holder):  # a killed sync must not block the next one for minutes
        log.warning("taking over the sync lease of %s, which is no longer running", holder)
        store.release_lease(LEASE, holder)
    if not store.try_lease(LEASE, owner, LEASE_SECONDS):
        raise SyncAlreadyRunning(f"A sync is already running ({store.lease_holder(LEASE) or 'another process'}); "
                                 "wait for it to finish.")
    began = time.monotonic()
    report = SyncReport(demo)
    # "spawn": a fork of this threaded process could inherit a lock held by another thread
    parser = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent,
                                 initargs=(os.getpid(),))
    syncer = _Syncer(api, store, owner, workers, progress, stop, parser)
    try:
        for content_type in content_types:
            if stop.is_set():
                break
            try:
                report.results.append(syncer.sync_content_type(content_type))
            except _Stopped:
                report.results.append(ContentTypeResult(content_type, error="stopped before the window finished"))
            except FatalApiError as fatal:
                _record_error(store, content_type, str(fatal))
                raise
            except ApiError as error:  # this content type failed for now; the others may still work
                log.error("%s: %s", content_type, error)
                _record_error(store, content_type, str(error))
                report.results.append(ContentTypeResult(content_type, error=str(error)))
        report.pruned = store.prune(datetime.now(timezone.utc) - timedelta(days=retention_days))
    finally:
        parser.shutdown(wait=True, cancel_futures=True)
        store.release_lease(LEASE, owner)
    report.seconds = time.monotonic() - began
    return report


def _died_on_this_host(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _record_error(store: EventStore, content_type: str, message: str) -> None:
    checkpoint = store.get_checkpoint(content_type)
    checkpoint.last_error = message
    store.save_checkpoint(checkpoint)


def connect(settings: Settings, store: EventStore, stop: threading.Event | None = None,
            on_retry: Callable[[str], None] | None = None, backoff_base: float = 1.0) -> ActivityApi:
    """An ActivityApi for these settings; in demo mode, for the simulated tenant (started on first use)."""
    if settings.demo:
        from .demo import demo_settings

        settings = demo_settings(settings, store)
    session = build_session(settings.ca_bundle)
    return ActivityApi(settings, session, TokenProvider(settings, session), stop=stop, backoff_base=backoff_base,
                       on_retry=on_retry or (lambda message: log.warning("%s", message)))


def run_sync(settings: Settings, store: EventStore | None = None, *, progress: Callable[[Progress], None] | None = None,
             stop: threading.Event | None = None, workers: int = 4) -> SyncReport:
    """What `python -m ingest sync` and the dashboard's Sync now button both call."""
    own_store = store is None
    store = store or open_store(settings.store_url, cosmos=settings.cosmos_options(),
                                retention_days=settings.retention_days)
    try:
        api = connect(settings, store, stop)
        return sync_once(api, store, settings.content_types, retention_days=settings.retention_days,
                         demo=settings.demo, workers=workers, progress=progress, stop=stop)
    finally:
        if own_store:
            store.close()
