"""Backfill: the history the Management Activity API no longer has (it keeps 7 days), from Microsoft Graph's audit
log query API (Purview keeps 180 days), into the same store through the same normalization, each record once.

The range is planned into queries sized to the tenant's volume (about half the record limit each: 30 days for a
small tenant, half a day for 5,000 seats; a day while the store knows no volume yet), for the time no earlier run
planned. Each query's progress is a document in the store (kind "backfill"), written before and after every step,
so the backfill can be killed at any moment and run again: a query still running at Microsoft is resumed by its id
(a submission whose answer was lost is found by its display name), never submitted twice; a page is stored before
its position is, and the store keeps each record Id once. A query that stops at the record limit is split in two
and each half queried again; a window given up is tried again by the next run. Submissions stay under the
tenant's budget (per 24 hours and in flight)."""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from eventstore import EventStore
from eventstore.model import parse_utc, retention_start, uncovered, utc_text

from .api import BadAnswer, FatalApiError, Interrupted
from .auditquery import AuditQueryApi
from .auth import AuthError
from .normalize import UnusableId, content_type_of, normalize
from .settings import Settings
from .source import Part, Progress, Report, Source, run
from .workspace import audit_log_left_out

log = logging.getLogger("ingest.backfill")
KIND = "backfill"
SUBMISSIONS_PER_DAY = 150  # the tenant's baseline is about 200 per rolling 24 h: leave room for other tools
IN_FLIGHT = 10  # the tenant allows about 50 queued or running
PAGERS = 4  # finished queries paged at once
PAGES_PER_QUERY = 5000  # a query's records come in pages of up to 1,000: past this, the chain is a fault
GIVE_UP_AFTER = 3  # failed or cancelled runs of one window
RECORD_LIMIT = 1_000_000  # about as many records as one query returns (then it says isRecordCountLimitExceeded)
SMALLEST = timedelta(minutes=15)  # a window over the record limit is split down to this
POLL_FIRST, POLL_MAX = 1.0, 60.0  # seconds between looks at running queries, growing while nothing changes


@dataclass
class Window:
    """One query's worth of history, and how far it got. `state`: planned → submitting → running → paging → done;
    or split (its halves carry on), or gave_up (a gap, reported)."""

    name: str  # also the query's displayName, so a lost submission can be found
    start: str
    end: str
    services: list[str] = field(default_factory=list)
    state: str = "planned"
    query_id: str = ""
    submitted_at: str = ""
    next_link: str = ""
    records: int = 0  # read
    added: int = 0  # new to the store
    unusable: int = 0  # read but not storable (no auditData object, an Id that is not text): counted, not stored
    pages: int = 0  # of the query being paged now
    attempts: int = 0  # runs that failed or were cancelled
    error: str = ""
    partial: bool = False  # over the record limit even at the smallest split: records past the limit are missing

    @property
    def span(self) -> tuple[datetime, datetime]:
        return parse_utc(self.start), parse_utc(self.end)


def window_name(start: datetime, end: datetime, services: tuple[str, ...] = ()) -> str:
    return f"o365-activity-graph backfill {utc_text(start)}..{utc_text(end)}" + \
        (f" {','.join(services)}" if services else "")


def window_length(events_per_day: float | None) -> timedelta:
    """How much time one query asks for: about half the record limit's worth of the tenant's volume, so that few
    queries hit the limit (each that does is spent, then split) and few submissions are used — whole days up to
    30, or a day halved until it fits. A day when the volume is not known yet (nothing stored)."""
    target = RECORD_LIMIT / 2
    if not events_per_day:
        return timedelta(days=1)
    if events_per_day <= target:
        return timedelta(days=max(1, min(30, int(target // events_per_day))))
    length = timedelta(days=1)
    while events_per_day * (length / timedelta(days=1)) > target and length / 2 >= SMALLEST:
        length /= 2
    return length


def events_per_day(store: EventStore) -> float | None:
    """The tenant's volume as the store knows it (the live feed's week, and what earlier backfills brought)."""
    stats = store.stats()
    if not stats.events or not stats.first_time or not stats.last_time:
        return None
    days = (parse_utc(stats.last_time) - parse_utc(stats.first_time)) / timedelta(days=1)
    return stats.events / max(1.0, days)


def plan(since: datetime, until: datetime, services: tuple[str, ...] = (), length: timedelta = timedelta(days=1),
         covered: list[tuple[datetime, datetime]] = ()) -> list[Window]:
    """Windows of `length` on a grid from the UTC midnight of `since` (the first and last partial), oldest first,
    for the time no window of an earlier run `covered` already."""
    windows, origin = [], datetime.combine(since.date(), datetime.min.time(), timezone.utc)
    for start, end in uncovered(since, until, covered):
        while start < end:
            step = min(end, origin + ((start - origin) // length + 1) * length)
            windows.append(Window(window_name(start, step, services), utc_text(start), utc_text(step),
                                  list(services)))
            start = step
    return windows


def rows_of(page: list) -> tuple[list, int]:
    """A page of Graph audit records → event rows (auditData through the one normalization), and how many could
    not be used (not an object, no auditData object, an Id that is not text): counted, never stored."""
    rows, unusable = [], 0
    for item in page:
        record = item.get("auditData") if isinstance(item, dict) else None
        if not isinstance(record, dict):
            unusable += 1
            continue
        if not record.get("Id") and isinstance(item.get("id"), str):
            record = {**record, "Id": item["id"]}
        created = item.get("createdDateTime")
        try:
            fallback = utc_text(parse_utc(created)) if isinstance(created, str) else ""
        except ValueError:
            fallback = ""
        try:
            rows.append(normalize(record, content_type_of(record), fallback or "1970-01-01T00:00:00Z"))
        except UnusableId:
            unusable += 1
    return rows, unusable


class Backfill:
    def __init__(self, api: AuditQueryApi, store: EventStore, *, stop: threading.Event | None = None,
                 progress: Callable[[Progress], None] | None = None, clock=None, leave_out: tuple[str, ...] = ()):
        self.api, self.store = api, store
        self.leave_out = leave_out  # content types whose records another source brings
        self.stop = stop or api.stop
        self.progress = progress or (lambda p: None)
        self.now = clock or (lambda: datetime.now(timezone.utc))
        self.windows: dict[str, Window] = {}

    # --- state, in the store --------------------------------------------------------------------
    def load(self) -> None:
        for key, payload in self.store.documents(KIND).items():
            try:
                self.windows[key] = Window(**json.loads(payload))
            except (TypeError, ValueError):
                log.warning("a backfill record in the store cannot be read; that window is planned again")

    def save(self, *windows: Window) -> None:
        self.store.put_documents(KIND, {w.name: json.dumps(asdict(w)) for w in windows})

    # --- the run --------------------------------------------------------------------------------
    def run(self, since: datetime, until: datetime, services: tuple[str, ...] = ()) -> Report:
        self.load()
        earlier = self._in_range(since, until, services)
        retried = [w for w in earlier if w.state == "gave_up"]  # a gap: running again is how it is tried again
        for window in retried:
            window.state, window.attempts = "planned", 0
        covered = [w.span for w in earlier]
        fresh = plan(since, until, services, window_length(events_per_day(self.store)), covered)
        for window in fresh:
            self.windows[window.name] = window
        self.save(*fresh, *retried)
        report = Report("backfill", since=utc_text(since), until=utc_text(until))
        wait, pagers = POLL_FIRST, _Pagers(self._page)
        try:
            while not self.stop.is_set():
                mine = self._in_range(since, until, services)
                if all(w.state in ("done", "split", "gave_up") for w in mine):
                    break
                free = [w for w in mine if w.name not in pagers.busy.values()]  # a pager's window is its alone
                moved = self._submit(free) + self._poll(free) + pagers.collect() + pagers.start(mine)
                self._tell(mine)
                if not moved:
                    if self._budget_spent() and not pagers.busy and not any(w.state == "running" for w in mine):
                        report.note = (f"The day's budget of {SUBMISSIONS_PER_DAY} query submissions is spent: run "
                                       "it again later, it resumes")
                        break
                    if pagers.busy:
                        pagers.wait(wait)  # a pager that finishes wakes the loop
                    elif self.stop.wait(wait):
                        break
                    wait = min(POLL_MAX, wait * 2)
                else:
                    wait = POLL_FIRST
        except FatalApiError as refused:
            report.fatal = str(refused)
        except Interrupted:
            pass
        finally:
            pagers.close()
        mine = self._in_range(since, until, services)
        leaves = [w for w in mine if w.state != "split"]
        report.parts = [Part(
            ", ".join(services) or "Microsoft Graph audit log", units=len(leaves),
            done=sum(1 for w in leaves if w.state == "done"), records=sum(w.records for w in leaves),
            added=sum(w.added for w in leaves), unusable=sum(w.unusable for w in leaves),
            gaps=[f"{w.start} – {w.end} ({w.error})" for w in leaves if w.state == "gave_up" or w.partial])]
        report.waiting = sum(1 for w in leaves if w.state not in ("done", "gave_up"))
        if report.done and not report.records and not report.fatal:
            report.note = ("Microsoft Graph returned no records at all. If the app has AuditLog.Read.All rather than "
                           "AuditLogsQuery.Read.All, that is why: since April 2026 it returns none")
        return report

    def _in_range(self, since: datetime, until: datetime, services: tuple[str, ...]) -> list[Window]:
        low, high = utc_text(since), utc_text(until)
        return sorted((w for w in self.windows.values() if w.start >= low and w.end <= high and
                       tuple(w.services) == tuple(services)), key=lambda w: (w.start, w.end))

    def _tell(self, mine: list[Window]) -> None:
        leaves = [w for w in mine if w.state != "split"]
        self.progress(Progress("backfill", "", sum(1 for w in leaves if w.state in ("done", "gave_up")), len(leaves),
                               sum(w.records for w in leaves), sum(w.added for w in leaves),
                               f"{sum(1 for w in leaves if w.state == 'running')} running at Microsoft"))

    def _budget_spent(self) -> bool:
        day_ago = utc_text(self.now() - timedelta(days=1))
        return sum(1 for w in self.windows.values() if w.submitted_at >= day_ago) >= SUBMISSIONS_PER_DAY

    def _submit(self, mine: list[Window]) -> int:
        moved = 0
        for window in mine:
            if window.state not in ("planned", "submitting"):
                continue
            if sum(1 for w in self.windows.values() if w.state == "running") >= IN_FLIGHT or self._budget_spent():
                break
            if window.state == "submitting":  # the last run died between asking and hearing: ask Microsoft
                alive = [q for q in self.api.find(window.name) if q.get("status") not in ("failed", "cancelled")]
                if alive and _usable_id(alive[0].get("id")):
                    window.query_id, window.state = alive[0]["id"], "running"
                    self.save(window)
                    moved += 1
                    continue
            window.state, window.submitted_at = "submitting", utc_text(self.now())
            self.save(window)  # before the request: a crash now is resolved by the name, not by a second query
            start, end = window.span
            try:
                query = self.api.submit(window.name, start, end, tuple(window.services))
            except BadAnswer as refused:
                self._failed(window, str(refused))
                continue
            if not _usable_id(query.get("id")):  # it goes into the next request's path
                self._failed(window, "the submitted query came back without a usable id")
                continue
            window.query_id, window.state, window.next_link = query["id"], "running", ""
            self.save(window)
            moved += 1
        return moved

    def _failed(self, window: Window, why: str) -> None:
        window.attempts += 1
        window.error = why[:300]
        window.state = "gave_up" if window.attempts >= GIVE_UP_AFTER else "planned"
        window.query_id = window.next_link = ""
        window.pages = 0
        self.save(window)
        log.warning("backfill %s–%s: %s%s", window.start, window.end, why,
                    "; given up" if window.state == "gave_up" else "; it is submitted again")

    def _poll(self, mine: list[Window]) -> int:
        moved = 0
        for window in mine:
            if window.state != "running":
                continue
            try:
                query = self.api.get(window.query_id)
            except BadAnswer as refused:
                if refused.status == 404:  # gone at Microsoft: ask again
                    self._failed(window, "the query is no longer known to Microsoft Graph")
                    moved += 1
                continue
            status = query.get("status")
            if status in ("notStarted", "running"):
                continue
            moved += 1
            if status != "succeeded":
                self._failed(window, f"the query ended {_said(status)}")
            elif query.get("isRecordCountLimitExceeded") is True and self._split(window):
                pass
            else:
                window.state = "paging"
                self.save(window)
        return moved

    def _split(self, window: Window) -> bool:
        """Two halves in its place, each queried again (False when it is already as small as it gets)."""
        start, end = window.span
        if end - start <= SMALLEST:
            window.error = "over the record limit even at 15 minutes: the records past the limit are missing"
            window.partial = True
            return False
        middle = start + (end - start) / 2
        halves = [Window(window_name(a, b, tuple(window.services)), utc_text(a), utc_text(b), list(window.services))
                  for a, b in ((start, middle), (middle, end))]
        window.state = "split"
        for half in halves:
            self.windows[half.name] = half
        self.save(*halves, window)
        log.info("backfill %s–%s hit the record limit: split in two", window.start, window.end)
        return True

    def _page(self, window: Window, halt: threading.Event) -> None:
        """Page one finished query into the store (in a pager's thread), until its last page, a bad answer, or a
        halt; what ends it for every query (a refusal, an interruption) halts the other pagers too."""
        followed: set[str] = set()  # links read by this pager (a longer cycle across runs meets the page cap)
        try:
            while window.state == "paging" and not self.stop.is_set() and not halt.is_set():
                try:
                    page, link = self.api.records(window.query_id, window.next_link)
                except BadAnswer as refused:
                    self._failed(window, str(refused))
                    break
                rows, unusable = rows_of(page)
                rows = [r for r in rows if r.content_type not in self.leave_out]
                window.added += self.store.store_events(rows) if rows else 0  # first the events, then the position
                window.records += len(rows)
                window.unusable += unusable
                window.pages += 1
                if unusable:
                    log.warning("backfill %s–%s: %d record(s) could not be used (no auditData object, or an Id that "
                                "is not text): skipped", window.start, window.end, unusable)
                if link and (link == window.next_link or link in followed):
                    self._failed(window, "the query's next page points back to a page already read")
                    break
                if link and window.pages >= PAGES_PER_QUERY:
                    self._failed(window, f"the query's records go on past {PAGES_PER_QUERY:,} pages")
                    break
                followed.add(link)
                window.next_link = link
                if not link:
                    window.state = "done"
                self.save(window)
        except BaseException:
            halt.set()
            raise


class _Pagers:
    """Finished queries paged PAGERS at a time — a page is a round trip of a second or more at Microsoft — while
    the loop goes on submitting and polling the others."""

    def __init__(self, page: Callable[[Window, threading.Event], None]):
        self.page, self.halt = page, threading.Event()
        self.pool = futures.ThreadPoolExecutor(PAGERS, thread_name_prefix="backfill-page")
        self.busy: dict[futures.Future, str] = {}  # → the name of the window being paged

    def start(self, windows: list[Window]) -> int:
        started = 0
        for window in windows:
            if len(self.busy) >= PAGERS:
                break
            if window.state == "paging" and window.name not in self.busy.values():
                self.busy[self.pool.submit(self.page, window, self.halt)] = window.name
                started += 1
        return started

    def collect(self) -> int:
        """How many pagers have finished since the last look; raises what ended one, if anything did."""
        finished = [future for future in self.busy if future.done()]
        for future in finished:
            del self.busy[future]
            future.result()
        return len(finished)

    def wait(self, seconds: float) -> None:
        futures.wait(self.busy, timeout=seconds, return_when=futures.FIRST_COMPLETED)

    def close(self) -> None:
        self.halt.set()
        self.pool.shutdown(wait=True)


def _usable_id(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9-]{1,100}", value) is not None


def _said(status) -> str:
    return repr(status)[:40] if not isinstance(status, str) else status[:40]


def backfill_summary(store: EventStore) -> dict:
    """The backfill's windows by state, the range they cover, the records they brought, and the gaps."""
    windows = [Window(**json.loads(p)) for p in store.documents(KIND).values()]
    leaves = [w for w in windows if w.state != "split"]
    counts: dict[str, int] = {}
    for window in leaves:
        counts[window.state] = counts.get(window.state, 0) + 1
    return {"windows": counts, "from": min((w.start for w in leaves), default=None),
            "to": max((w.end for w in leaves), default=None), "records": sum(w.records for w in leaves),
            "added": sum(w.added for w in leaves), "unusable": sum(w.unusable for w in leaves),
            "gaps": [{"from": w.start, "to": w.end, "error": w.error} for w in leaves
                     if w.state == "gave_up" or w.partial]}


class GraphHistory(Source):
    """The history the live feed no longer has, `since` – `until`, from Microsoft Graph's audit log queries (only
    `services` when given). The range is kept within the store's retention (older events would be pruned at once)."""

    kind = "backfill"

    def __init__(self, since: datetime, until: datetime, services: tuple[str, ...] = ()):
        self.since, self.until, self.services = since, until, services

    def connect(self, settings: Settings) -> AuditQueryApi:
        return AuditQueryApi.connect(settings)

    def run_with(self, api: AuditQueryApi, store: EventStore, settings: Settings, progress) -> Report:
        horizon = retention_start(datetime.now(timezone.utc), settings.retention_days)
        since = max(self.since, horizon)
        left_out, why = audit_log_left_out(settings, store)
        try:
            report = Backfill(api, store, progress=progress, leave_out=left_out).run(since, self.until, self.services)
        except AuthError as refused:
            report = Report(self.kind, since=utc_text(since), until=utc_text(self.until), fatal=str(refused))
        started = (f"Started at {utc_text(horizon)}, not {utc_text(self.since)}: the store keeps "
                   f"{settings.retention_days} days (AUDIT_RETENTION_DAYS)") if since > self.since else ""
        report.note = ". ".join(note for note in (started, report.note, why) if note)
        return report


def run_backfill(settings: Settings, store: EventStore, since: datetime, until: datetime,
                 services: tuple[str, ...] = (), *, progress=None, stop: threading.Event | None = None) -> Report:
    """What `python -m ingest backfill` and the dashboard both call."""
    return run(GraphHistory(since, until, services), settings, store, progress=progress, stop=stop)
