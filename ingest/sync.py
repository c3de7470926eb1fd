"""One sync pass, per content type: plan windows from the checkpoint → list every page → fetch the new
blobs with bounded parallelism → normalize → store → advance the checkpoint, only once the window's
events are durably stored. Killing the process at any moment and running again converges on the
same events: blobs are stored atomically with their events, events dedupe on their Id, and an
unfinished window is simply listed again.

A pass always ends with a report, never with a traceback: a bad answer is one recorded error for its window
or blob (a blob whose answer stays unusable for MAX_BLOB_ATTEMPTS passes is recorded lost), trouble with one
content type is that content type's recorded error, and only a refusal every request would get (no
permission, wrong tenant, no token) ends the pass early — recorded on every content type it left unsynced."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone

from eventstore import EventStore, StoreError
from eventstore.model import retention_start, utc_text

from . import redact
from .api import (
    ActivityApi,
    ApiError,
    BadAnswer,
    ContentBlob,
    FatalApiError,
    Interrupted,
    InvalidNextPage,
    RetriesExhausted,
    SubscriptionNeeded,
    WindowRejected,
)
from .auth import AuthError
from .blobs import MAX_BLOB_ATTEMPTS, Outcome, Parser, fetch_decoded, outcome
from .feedstate import BlobRecord, Checkpoint, FeedState
from .normalize import Decoded
from .settings import Settings
from .source import Part, Progress, Report, Source, run
from .windows import plan_windows
from .workspace import audit_log_left_out

log = logging.getLogger("ingest.sync")
LEASE = "sync"
LEASE_SECONDS = 120.0
BATCH_ROWS = 5000  # events per write transaction


class SyncAlreadyRunning(RuntimeError):
    pass


class _Stopped(Exception):
    """A stop was asked for (or the lease was lost) mid-window: the window's checkpoint must not advance."""


class _PassGuard:
    """Holds the store's sync lease for the whole pass, renewing it from a thread of its own (so a long listing,
    a throttled wait or a slow write can never let it lapse), and turns a person's stop or the loss of the
    lease into the pass's stop: `pass_stop` ends every wait and request in flight."""

    def __init__(self, store: EventStore, owner: str, user_stop: threading.Event, pass_stop: threading.Event):
        self.store, self.owner, self.user_stop, self.pass_stop = store, owner, user_stop, pass_stop
        self.lost = threading.Event()
        self._renewed = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.25):
            if self.user_stop.is_set():
                self.pass_stop.set()
            since = time.monotonic() - self._renewed
            if since < LEASE_SECONDS / 4:
                continue
            try:
                held = self.store.try_lease(LEASE, self.owner, LEASE_SECONDS)
            except Exception as error:  # noqa: BLE001 - a store hiccup: try again until the lease would lapse
                log.warning("could not renew the sync lease: %s", error)
                held = since < LEASE_SECONDS * 0.75
            else:
                if held:
                    self._renewed = time.monotonic()
            if not held:
                log.error("another sync took over this store's sync lease; this pass stops")
                self.lost.set()
                self.pass_stop.set()
                return

    def check(self) -> None:
        """Before saving anything that depends on holding the lease (a checkpoint)."""
        if self.lost.is_set():
            raise SyncAlreadyRunning("Another sync took over the store's sync lease.")

    def close(self) -> None:
        self._done.set()
        self._thread.join()


class FeedPass:
    """One pass over the live feed: its listing (shared with enqueue) and its fetching, within the pass's lease."""

    def __init__(self, api: ActivityApi, store: EventStore, workers: int,
                 progress: Callable[[Progress], None] | None, guard: _PassGuard):
        self.api, self.feed, self.workers, self.guard = api, FeedState(store), workers, guard
        self.progress = progress or (lambda p: None)
        self.parser = Parser()

    def close(self) -> None:
        self.parser.shutdown()

    def list_window(self, content_type: str, start: datetime, end: datetime) -> list[ContentBlob]:
        for _ in range(3):
            try:
                return list(self.api.list_content(content_type, start, end))
            except SubscriptionNeeded:
                log.info("%s: no active subscription; starting it", content_type)
                self.api.start_subscription(content_type)
            except InvalidNextPage:
                log.warning("%s: the page chain broke; listing the window again from its start", content_type)
        raise BadAnswer(f"could not list {utc_text(start)}–{utc_text(end)} after 3 tries")

    def list_windows(self, content_type: str, checkpoint: Checkpoint,
                     errors: list[str]) -> list[tuple[datetime, list[ContentBlob] | None]]:
        """(end, blobs) for each window to sync, in order; blobs is None where the listing's answer was unusable
        (the checkpoint stops there, later windows are still fetched). Throttling that outlasts every retry ends
        the listing: the windows listed so far are still fetched."""
        for attempt in range(2):
            self.api.check_clock()
            plan = plan_windows(checkpoint.listed_until, self.api.server_now())
            if plan.gap:
                log.warning("%s: content announced %s–%s is older than the API keeps (7 days) and was not synced",
                            content_type, utc_text(plan.gap[0]), utc_text(plan.gap[1]))
            listed: list[tuple[datetime, list[ContentBlob] | None]] = []
            try:
                for start, end in plan.windows:
                    try:
                        listed.append((end, self.list_window(content_type, start, end)))
                    except BadAnswer as bad:
                        log.error("%s: listing %s–%s failed: %s", content_type, utc_text(start), utc_text(end), bad)
                        errors.append(f"listing {utc_text(start)}–{utc_text(end)}: {bad}")
                        listed.append((end, None))
                    except RetriesExhausted as gave_up:
                        errors.append(str(gave_up))
                        return listed
                return listed
            except WindowRejected as rejected:
                # The service's clock is now known from its Date header: plan once more with it.
                if attempt:
                    raise
                log.warning("%s: window refused (%s); clock skew %.0f s, planning again", content_type,
                            rejected.code, self.api.clock_skew)
        return []

    def fetch(self, blob: ContentBlob) -> Decoded:
        return fetch_decoded(self.api, self.parser, blob, self.feed.store.encode)

    def sync_content_type(self, content_type: str) -> Part:
        result = Part(content_type)
        checkpoint = self.feed.checkpoint(content_type)
        errors: list[str] = []
        listed = self.list_windows(content_type, checkpoint, errors)
        self.fetch_windows(content_type, listed, checkpoint, result, errors)
        result.error = redact.short("; ".join(errors), 600)
        checkpoint.last_error = result.error
        if not errors:
            checkpoint.last_success = datetime.now(timezone.utc)
        self.guard.check()
        self.feed.save(checkpoint)
        return result

    def fetch_windows(self, content_type: str, listed: list[tuple[datetime, list[ContentBlob] | None]],
                      checkpoint: Checkpoint, result: Part, errors: list[str]) -> None:
        """Fetch the new blobs of every listed window in one stream (no pause between windows). The
        checkpoint moves past a window only once each of its blobs is stored or recorded lost, and never
        past an earlier window that is still unfinished (or could not be listed)."""
        remaining, todo, queued = [], [], set()
        for number, (_, blobs) in enumerate(listed):
            if blobs is None:
                remaining.append(-1)  # never settles this pass
                continue
            known = self.feed.known_ids(content_type, (b.content_id for b in blobs)) | queued
            fresh = list({b.content_id: b for b in blobs if b.content_id not in known}.values())
            queued.update(b.content_id for b in fresh)  # listed twice (a broken listing): fetched once
            remaining.append(len(fresh))
            todo.extend((number, blob) for blob in fresh)
        complete = done = 0  # windows [0, complete) are checkpointed; blobs settled so far
        batch: list[tuple[int, BlobRecord, list]] = []
        batched_rows = 0
        trouble: list[str] = []  # why fetching stopped early (throttling, a parser that died)
        retrying: list[str] = []  # why blobs gave an unusable answer this pass (fetched again next pass)
        given_up: list[str] = []  # ... for the last time: recorded lost (or kept up to where its JSON broke)

        def settle(numbers: list[int]) -> None:
            nonlocal complete, done
            for number in numbers:
                remaining[number] -= 1
            done += len(numbers)
            while complete < len(listed) and remaining[complete] == 0:
                checkpoint.listed_until = listed[complete][0]
                complete += 1
            result.done = done
            self.guard.check()
            self.feed.save(checkpoint)
            self.progress(Progress("feed", content_type, done, len(todo), result.records, result.added,
                                   f"window {min(complete + 1, len(listed))} of {len(listed)}"))

        writer = ThreadPoolExecutor(1, thread_name_prefix=f"store-{content_type}")
        writing: tuple | None = None  # (future, window numbers) of the batch being stored

        def stored() -> None:
            """Wait for the batch being stored; only then do its blobs count as settled (checkpoint included)."""
            nonlocal writing
            if writing is not None:
                future, numbers = writing
                writing = None
                result.added += future.result()
                settle(numbers)

        def flush() -> None:
            # one batch is stored while the next is fetched: the store's SQL and compression run outside the
            # interpreter lock, alongside the fetching and parsing; at most two batches are held in memory
            nonlocal batch, batched_rows, writing
            stored()
            if batch:
                writing = (writer.submit(self.feed.store_blobs, [(record, rows) for _, record, rows in batch]),
                           [number for number, _, _ in batch])
                batch, batched_rows = [], 0

        def keep(number: int, record: BlobRecord, rows: list) -> None:
            nonlocal batched_rows
            batch.append((number, record, rows))
            batched_rows += len(rows)
            result.records += len(rows)

        result.units = len(todo)
        settle([])  # windows with nothing new are done already
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"fetch-{content_type}")
        fatal: BaseException | None = None
        try:
            queue = iter(todo)
            pending: dict = {}

            def submit_next() -> None:
                item = next(queue, None)
                if item is not None and not self.api.stop.is_set() and not trouble and fatal is None:
                    pending[pool.submit(self.fetch, item[1])] = item

            for _ in range(self.workers * 2):  # bounded: at most this many blobs in memory
                submit_next()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    number, blob = pending.pop(future)
                    try:
                        settled = outcome(self.api, self.feed, blob, future)
                    except (FatalApiError, AuthError) as refused:
                        fatal = fatal or refused
                        settled = Outcome("stopped")
                    if settled.given_up:
                        given_up.append(settled.why)
                    if settled.kind == "keep":
                        keep(number, settled.record, settled.rows)
                    elif settled.kind == "lost":
                        result.lost += 1
                        settle([number])
                    elif settled.kind == "retry":
                        retrying.append(settled.why)
                    elif settled.kind == "later":
                        if not trouble:  # the first says why fetching stopped early
                            trouble.append(settled.why)
                    submit_next()
                # one transaction for several blobs: a random-key index costs a page write per row per commit
                if batched_rows >= BATCH_ROWS or not pending:
                    flush()
            flush()
            stored()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)  # a write in flight ends before the pass does
        if fatal is not None:
            raise fatal
        errors.extend(trouble)
        result.retrying = len(retrying)
        if retrying:
            errors.append(f"{len(retrying)} blob(s) gave an unusable answer ({retrying[0]}); fetched again next pass")
        if given_up:
            errors.append(f"{len(given_up)} blob(s) given up after {MAX_BLOB_ATTEMPTS} passes of unusable answers "
                          f"({given_up[0]}): recorded lost, or kept as far as they could be read")
        if self.api.stop.is_set() and done < len(todo):
            raise _Stopped()


def _record_error(feed: FeedState, content_type: str, message: str) -> None:
    try:
        checkpoint = feed.checkpoint(content_type)
        checkpoint.last_error = redact.short(message, 600)
        feed.save(checkpoint)
    except StoreError as error:  # a full disk or a store that is down: the log and the report still say it
        log.error("%s: could not record the error in the store: %s", content_type, error)


def sync_once(api: ActivityApi, store: EventStore, content_types: tuple[str, ...], *, retention_days: int,
              workers: int = 4, progress: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None, step: Callable[["FeedPass", str], Part] | None = None) -> Report:
    """One catch-up pass over every content type. Raises SyncAlreadyRunning if another process holds the
    store's sync lease; everything else that goes wrong is in the report (and in each content type's
    checkpoint, for status and the Sync page). `step` does one content type in place of fetching its blobs here
    (ingest.fanout queues them for the workers)."""
    stop = stop or threading.Event()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    holder = store.lease_holder(LEASE)
    if holder and _died_on_this_host(holder):  # a killed sync must not block the next one for minutes
        log.warning("taking over the sync lease of %s, which is no longer running", holder)
        store.release_lease(LEASE, holder)
    if not store.try_lease(LEASE, owner, LEASE_SECONDS):
        raise SyncAlreadyRunning(f"A sync is already running ({store.lease_holder(LEASE) or 'another process'}); "
                                 "wait for it to finish.")
    report = Report("feed")
    guard = _PassGuard(store, owner, stop, api.stop)
    syncer = FeedPass(api, store, workers, progress, guard)
    try:
        for content_type in content_types:
            if report.fatal or api.stop.is_set():
                report.parts.append(Part(content_type, error=report.fatal or "not synced: stopped"))
                if report.fatal:
                    _record_error(FeedState(store), content_type, report.fatal)
                continue
            report.parts.append(_sync_one(syncer, content_type, report, step or FeedPass.sync_content_type))
        if not api.stop.is_set():
            try:
                pruned = store.prune(retention_start(datetime.now(timezone.utc), retention_days))
                if pruned:
                    log.info("pruned %d events older than %d days", pruned, retention_days)
            except StoreError as error:
                log.error("retention prune failed: %s", error)
    finally:
        guard.close()
        syncer.close()
        try:
            store.release_lease(LEASE, owner)
        except StoreError as error:
            log.error("could not release the sync lease (it lapses by itself in %.0f s): %s", LEASE_SECONDS, error)
    return report


def _sync_one(syncer: FeedPass, content_type: str, report: Report, step) -> Part:
    """One content type; whatever goes wrong becomes its result's error, recorded in its checkpoint (and, when
    every request would be refused, the report's `fatal`)."""
    try:
        return step(syncer, content_type)
    except (_Stopped, Interrupted):
        return Part(content_type, error="stopped before the window finished")
    except (FatalApiError, AuthError) as refused:
        if syncer.api.stop.is_set():  # e.g. the token request was interrupted by the stop
            return Part(content_type, error="stopped before the window finished")
        report.fatal = error = str(refused)
    except SyncAlreadyRunning as taken:
        return Part(content_type, error=str(taken))
    except (ApiError, StoreError) as failed:  # this content type failed for now; the others may still work
        error = redact.short(str(failed), 600)
    except Exception as unexpected:  # noqa: BLE001 - a bug or a case nobody foresaw: recorded, the pass goes on
        log.debug("details", exc_info=True)
        error = f"unexpected error ({type(unexpected).__name__}): {redact.short(str(unexpected), 200)}"
    log.error("%s: %s", content_type, error)
    _record_error(syncer.feed, content_type, error)
    return Part(content_type, error=error)


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


class Feed(Source):
    """The live feed: the Management Activity API's last 7 days, per content type. `step` does one content type in
    place of fetching its blobs here (ingest.fanout queues them for the workers)."""

    kind = "feed"

    def __init__(self, workers: int = 4, step: Callable[[FeedPass, str], Part] | None = None):
        self.workers, self.step = workers, step

    def parts(self, settings: Settings) -> tuple[str, ...]:
        return settings.content_types

    def connect(self, settings: Settings) -> ActivityApi:
        return ActivityApi.connect(settings)

    def run_with(self, api: ActivityApi, store: EventStore, settings: Settings, progress) -> Report:
        left_out, why = audit_log_left_out(settings, store)
        content_types = tuple(c for c in settings.content_types if c not in left_out)
        report = sync_once(api, store, content_types, retention_days=settings.retention_days,
                           workers=self.workers, progress=progress, step=self.step)
        report.note = why if content_types != settings.content_types else ""
        return report

    def record_refusal(self, store: EventStore, settings: Settings, message: str) -> None:
        for content_type in settings.content_types:
            _record_error(FeedState(store), content_type, message)


def run_sync(settings: Settings, store: EventStore | None = None, *, progress: Callable[[Progress], None] | None = None,
             stop: threading.Event | None = None, workers: int = 4, step=None) -> Report:
    """What `python -m ingest sync` and the dashboard's Sync now button both call (and, with the step of
    ingest.fanout, `python -m ingest enqueue`). Raises SyncAlreadyRunning, or StoreError when the store cannot be
    opened; every other failure is in the report."""
    return run(Feed(workers, step), settings, store, progress=progress, stop=stop)
