"""A content blob's way from the feed into the store, the same for a sync pass and a queue worker: fetched, parsed
in the helper process, and what the answer means for the blob — kept, lost, fetched again, or left for later —
decided here, once, for both."""
from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from . import redact
from .api import ActivityApi, ApiError, BadAnswer, BlobUnavailable, ContentBlob, Interrupted, RetriesExhausted
from .feedstate import BlobRecord, FeedState
from .normalize import Decoded, NotRecords
from .parse_worker import exit_with_parent, parse

log = logging.getLogger("ingest.blobs")
MAX_BLOB_ATTEMPTS = 3  # passes (or deliveries) in which a blob's answer may be unusable before it is recorded lost


class BrokenContent(BadAnswer):
    """A blob whose JSON breaks part-way: fetched again; if it never comes whole, the records before the break are
    what is kept."""

    def __init__(self, decoded: Decoded):
        super().__init__(f"the content's {decoded.broken}", "MALFORMED")
        self.decoded = decoded


class Parser:
    """The helper process that parses and encodes content, started again when it dies: the work it held then fails
    with BrokenProcessPool (for the caller to do again later) and the next submission goes to a new process."""

    def __init__(self):
        self._lock = threading.Lock()  # the feed's fetchers and the workspace's tables submit from threads
        self._pool = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        # "spawn": a fork of this threaded process could inherit a lock held by another thread
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent,
                                   initargs=(os.getpid(),))
        _widen_pipes(pool)
        return pool

    def submit(self, fn: Callable, /, *args) -> Future:
        with self._lock:
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool:  # it died since the last submission
                self._pool.shutdown(wait=False)
                self._pool = self._start()
                return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Pipes of 1 MB (Linux's most without privilege) to and from the helper, in place of 64 kB: a blob and its
    rows (~150 kB and ~250 kB) then cross in one read and one write, not one per 64 kB, each waiting for the
    interpreter lock in a process where fetch threads, the writer and the hand-over take turns. 7 % of a sync's
    time (`bench/ingest.py`). A tuning of the pool's own pipes: where they or the call are not there, it is
    skipped."""
    try:
        pipes = (pool._call_queue._writer, pool._result_queue._reader)
        for pipe in pipes:
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        pass


PIPE_BYTES = 1 << 20


def fetch_decoded(api: ActivityApi, parser: Parser, blob: ContentBlob, encode: Callable) -> Decoded:
    """Fetch a blob, then parse it in the helper process, its rows encoded there by `encode` (the store's: parsing
    and encoding are CPU-bound Python; in this process they would compete with the writes for the interpreter
    lock). No local judgement of expiry: only the service's AF20051
    says a blob is gone (our clock, or its, may be wrong). Raises BrokenContent for JSON that breaks part-way."""
    body = api.fetch_blob(blob.content_uri)
    try:
        decoded = parser.submit(parse, body, blob.content_type, blob.created, encode).result()
    except NotRecords as wrong:
        raise BadAnswer(f"the content is not a JSON array of records ({wrong})", "MALFORMED") from None
    if decoded.broken:
        raise BrokenContent(decoded)
    return decoded


def blob_record(blob: ContentBlob, error: ApiError) -> BlobRecord:
    """How a blob that could not be had is recorded (lost, or retrying: the feed's state decides)."""
    return BlobRecord(blob.content_id, blob.content_type, blob.created, blob.expiration, 0, "lost",
                      error.code or "ERROR", redact.short(str(error), 300))


def kept_record(blob: ContentBlob, code: str, notes: str) -> BlobRecord:
    """How a blob whose records are kept is recorded: an error code says what had to be repaired or skipped."""
    return BlobRecord(blob.content_id, blob.content_type, blob.created, blob.expiration, error_code=code,
                      error_message=redact.short(notes.strip("; "), 300))


@dataclass
class Outcome:
    """What one fetch means for its blob. `kind`:
    - "keep": store `rows` with `record` (clean, repaired, or — `given_up` — kept as far as its JSON could be read);
    - "lost": recorded lost (the service says it is gone; or — `given_up` — its answers stayed unusable);
    - "retry": an unusable answer, recorded with its attempts: fetch it again later;
    - "later": trouble that is not the blob's (throttling outlasted every retry, the parser died): nothing
      recorded;
    - "stopped": a stop was asked for mid-fetch.
    A refusal every request would get (FatalApiError, AuthError) and a service clock that cannot be believed
    (ClockSkew) are raised: they end more than this blob."""

    kind: str
    why: str = ""
    record: BlobRecord | None = None
    rows: list = field(default_factory=list)
    given_up: bool = False


def outcome(api: ActivityApi, feed: FeedState, blob: ContentBlob, fetched: Future) -> Outcome:
    """Decide, and record in the feed's state, what the finished fetch `fetched` of `blob` means."""
    try:
        decoded = fetched.result()
    except BlobUnavailable as lost:
        api.check_clock()  # "expired" from a service whose clock is off proves nothing
        log.warning("%s: content %s lost (%s): %s", blob.content_type, blob.content_id, lost.code, lost)
        feed.record_lost(blob_record(blob, lost))
        return Outcome("lost", str(lost))
    except BadAnswer as bad:
        kept = feed.record_failure(blob_record(blob, bad), MAX_BLOB_ATTEMPTS)
        log.warning("%s: content %s: %s (%s, attempt %d of %d)", blob.content_type, blob.content_id, bad,
                    kept.status, kept.attempts, MAX_BLOB_ATTEMPTS)
        if kept.status != "lost":
            return Outcome("retry", str(bad))
        if isinstance(bad, BrokenContent):  # never whole: keep what can be read, say what cannot
            return Outcome("keep", str(bad), kept_record(blob, "PARTIAL", f"{bad}; {bad.decoded.notes}"),
                           bad.decoded.rows, given_up=True)
        return Outcome("lost", str(bad), given_up=True)
    except RetriesExhausted as gave_up:
        return Outcome("later", str(gave_up))
    except BrokenProcessPool:
        return Outcome("later", "the helper process that parses content ended unexpectedly")
    except Interrupted:
        return Outcome("stopped")
    return Outcome("keep", decoded.notes, kept_record(blob, "REPAIRED" if decoded.notes else "", decoded.notes),
                   decoded.rows)
