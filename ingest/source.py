"""The seam every source of audit records goes through: the live feed (ingest.sync), Microsoft Graph's history
(ingest.backfill) and a Log Analytics workspace (ingest.workspace).

A source plans its work from its own cursor in the store and fetches; its records become event rows through the
one normalization (ingest.normalize) and are stored through the store's one dedupe on the record Id. While it runs
it says how far it is in one `Progress` shape, and it ends with one `Report`; the CLI, the Sync page and the
Functions app read them the same way for every source. `run` is the one runner: it opens the store, points a DEMO
run at the simulated tenant, connects, turns a refusal at connecting into the report's `fatal` (recorded where
status shows it), lets a person's stop reach every request in flight, and times the run."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from eventstore import EventStore, open_store

from .api import ApiError
from .auth import AuthError
from .demo import tenant_settings
from .settings import Settings

T = TypeVar("T")


@dataclass
class Progress:
    source: str  # "feed", "backfill", "workspace"
    part: str  # the content type or table it is on ("" when it works on all at once)
    done: int  # units of work (blobs, query windows) finished...
    total: int  # ... of those planned so far (0: not known yet)
    records: int  # records read, so far this run
    added: int  # ... of which new to the store
    detail: str = ""  # where it is, in words ("window 2 of 7", "3 running at Microsoft", "read until …")

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def text(self) -> str:
        unit = SOURCES[self.source].unit
        where = f"{self.part}: " if self.part else ""
        detail = f"{self.detail}, " if self.detail else ""
        return f"{where}{detail}{self.done:,}/{self.total:,} {unit}, {self.records:,} records, {self.added:,} new"


@dataclass
class Part:
    """What a run did for one content type or table (the backfill's query windows are one part)."""

    name: str
    units: int = 0  # blobs or query windows this run had to do
    done: int = 0  # ... of which finished (stored, or recorded lost)
    records: int = 0  # records read
    added: int = 0  # new to the store
    unusable: int = 0  # read but not storable (not a record, no usable time or Id): counted, never stored
    lost: int = 0  # blobs recorded lost (expired, unknown to the API, or unusable pass after pass)
    retrying: int = 0  # blobs unusable this run; fetched again by the next
    queued: int = 0  # blobs sent to the workers' queue (queue fan-out)
    gaps: list[str] = field(default_factory=list)  # spans that could not be had whole: "start – end (why)"
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.gaps


@dataclass
class Report:
    source: str
    demo: bool = False
    since: str = ""  # the span asked for, when the source reads one (UTC text)
    until: str = ""
    parts: list[Part] = field(default_factory=list)
    waiting: int = 0  # units not done when it stopped (interrupted, or a budget spent): the next run resumes them
    fatal: str = ""  # why the run ended early: every request would have been refused
    note: str = ""  # what else the person should know
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.fatal and not self.waiting and all(p.ok for p in self.parts)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.parts)

    @property
    def added(self) -> int:
        return sum(p.added for p in self.parts)

    @property
    def unusable(self) -> int:
        return sum(p.unusable for p in self.parts)

    @property
    def units(self) -> int:
        return sum(p.units for p in self.parts)

    @property
    def done(self) -> int:
        return sum(p.done for p in self.parts)

    @property
    def gaps(self) -> list[str]:
        return [gap for p in self.parts for gap in p.gaps]

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def summary(self) -> str:
        kind = SOURCES[self.source]
        text = (f"{'DEMO ' if self.demo else ''}{kind.verb} {'done' if self.ok else 'finished with errors'} in "
                f"{self.seconds:.1f} s" + (f" ({self.since} – {self.until})" if self.since else "") + ": ")
        text += "; ".join(_part_summary(p, kind.unit) for p in self.parts) or "nothing to do"
        if self.waiting:
            text += f"; {self.waiting:,} {kind.unit} still to do (run it again: it resumes)"
        if self.fatal:
            text += f"; stopped: {self.fatal}"
        if self.note:
            text += f". {self.note}"
        return text


def _part_summary(p: Part, unit: str) -> str:
    if p.queued:
        counts = [f"{p.queued:,} blobs queued"]
    elif p.records or p.lost or p.retrying or p.unusable:
        counts = [f"{p.added:,} new to the store of {p.records:,} read ({p.done:,} of {p.units:,} {unit} done)"]
    else:
        counts = ["nothing new"]
    counts += [f"{n:,} {what}" for n, what in ((p.lost, "lost"), (p.retrying, "to retry")) if n]
    if p.unusable:
        counts.append(f"{p.unusable:,} could not be used (not a record, or no usable time or Id)")
    text = f"{p.name}: " + ", ".join(counts)
    if p.gaps:
        text += f"; {len(p.gaps)} span(s) could not be had whole: " + "; ".join(p.gaps[:5])
    return text + (f" — ERROR {p.error}" if p.error else "")


@dataclass(frozen=True)
class SourceKind:
    name: str
    verb: str  # what its summary calls a run
    unit: str  # what its progress counts
    parts: str  # what its parts are


SOURCES = {kind.name: kind for kind in (SourceKind("feed", "sync", "blobs", "content types"),
                                        SourceKind("backfill", "backfill", "windows", "parts"),
                                        SourceKind("workspace", "workspace read", "queries", "tables"))}


class Combined:
    """The progress of a run of several parts (the feed's content types, one after another; the workspace's tables,
    at once), said as one: fed each part's progress as it comes, it gives the parts' sums and how many are finished."""

    def __init__(self):
        self._latest: dict[str, Progress] = {}
        self._lock = threading.Lock()

    def __call__(self, p: Progress) -> Progress:
        with self._lock:  # the parts report from threads of their own
            self._latest[p.part] = p
            parts = list(self._latest.values())
        if len(parts) == 1:
            return p
        finished = sum(0 < part.total == part.done for part in parts)
        return Progress(p.source, "", sum(part.done for part in parts), sum(part.total for part in parts),
                        sum(part.records for part in parts), sum(part.added for part in parts),
                        f"{finished} of {len(parts)} {SOURCES[p.source].parts} finished")


class Source:
    """One source of audit records. A subclass says what it reads (`parts`), how it connects to its service
    (`connect`: a client whose `stop` event ends every request in flight) and how one run goes (`run_with`);
    `record_refusal` keeps a refusal at connecting where status shows it."""

    kind: str = ""

    def parts(self, settings: Settings) -> tuple[str, ...]:
        return ()

    def connect(self, settings: Settings):
        raise NotImplementedError

    def run_with(self, client, store: EventStore, settings: Settings,
                 progress: Callable[[Progress], None]) -> Report:
        raise NotImplementedError

    def check(self, settings: Settings) -> str:
        """Why this source cannot run with these settings ("" when it can)."""
        return ""

    def record_refusal(self, store: EventStore, settings: Settings, message: str) -> None:
        pass


def at_once(calls: Sequence[Callable[[], T]], answered: threading.Event, refused: Callable[[Future], bool],
            name: str) -> list[Future]:
    """Run `calls` at once (a source's parts: the service's answers are what they wait on), the first alone until
    the service has answered (`answered`) or it has ended: a refusal every request would get (`refused(first)`)
    is then met, and said, once, and the rest never start. Returns the futures of those that ran, in order."""
    with ThreadPoolExecutor(max(1, len(calls)), thread_name_prefix=name) as pool:
        started = [pool.submit(calls[0])] if calls else []
        while started and not started[0].done() and not answered.wait(0.05):
            pass
        if started and not (started[0].done() and refused(started[0])):
            started += [pool.submit(call) for call in calls[1:]]
    return started


@contextmanager
def _relayed(stop: threading.Event | None, client_stop: threading.Event):
    """A person's stop, passed on to the client while the run lasts: it ends every wait and request in flight."""
    done = threading.Event()

    def relay() -> None:
        while not done.wait(0.25):
            if stop.is_set():
                client_stop.set()
                return

    watcher = threading.Thread(target=relay, name="stop-relay", daemon=True) if stop is not None else None
    if watcher:
        watcher.start()
    try:
        yield
    finally:
        done.set()
        if watcher:
            watcher.join()


def run(source: Source, settings: Settings, store: EventStore | None = None, *,
        progress: Callable[[Progress], None] | None = None, stop: threading.Event | None = None) -> Report:
    """One run of `source`: what `python -m ingest sync|backfill`, the Sync page and the Functions timer call.
    Raises StoreError when the store cannot be opened (and whatever the source says cannot wait, e.g. a sync
    already running); every other failure is in the report."""
    began = time.monotonic()
    own_store = store is None
    store = store or open_store(settings.store_url, cosmos=settings.cosmos_options(),
                                retention_days=settings.retention_days)
    try:
        settings = tenant_settings(settings, store)
        report = Report(source.kind, settings.demo, fatal=source.check(settings))
        if not report.fatal:
            try:
                client = source.connect(settings)
            except (AuthError, ApiError) as refused:  # no token, so nothing can be read
                report.fatal = str(refused)
            else:
                with _relayed(stop, client.stop):
                    report = source.run_with(client, store, settings, progress or (lambda p: None))
        if report.fatal and not report.parts:
            report.parts = [Part(name, error=report.fatal) for name in source.parts(settings)]
            source.record_refusal(store, settings, report.fatal)
    finally:
        if own_store:
            store.close()
    report.demo, report.seconds = settings.demo, time.monotonic() - began
    return report
