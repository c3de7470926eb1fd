"""python -m ingest sync | run | enqueue | worker | status [--json] | export | check | subscribe | simulate

Log lines go to stderr; `export` and `status --json` write only data to stdout."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from eventstore import StoreError, open_store
from eventstore.export import write_csv, write_jsonl
from eventstore.model import parse_utc, retention_start, utc_text

from . import redact
from .api import ActivityApi, ApiError, FatalApiError
from .auth import AuthError
from .backfill import GraphHistory, backfill_summary
from .demo import tenant_settings
from .queues import QueueError
from .settings import Settings, SettingsError, load_settings
from .source import SOURCES, Combined, Progress, Source, run
from .status import ingest_status
from .sync import Feed, SyncAlreadyRunning
from .workspace import Workspace

log = logging.getLogger("ingest")
EXIT_OK, EXIT_PARTIAL, EXIT_FATAL = 0, 1, 2


FULL_CHECK_EVERY = timedelta(days=1)  # `run` reads the whole store for damage this often
_CHECKED_KEY = "integrity.full_check"


def _open(settings: Settings, check: str = ""):
    """The configured store. With `check` — "state" (its small tables: milliseconds), "full" (everything) or
    "daily" (full once a day, else state) — it is refused (StoreError, saying what to do) when the integrity
    check finds damage: before a sync writes into it, before an export stops half-way."""
    store = open_store(settings.store_url, cosmos=settings.cosmos_options(), retention_days=settings.retention_days)
    try:
        if check == "daily":
            last = store.get_meta(_CHECKED_KEY)
            due = last is None or datetime.now(timezone.utc) - datetime.fromisoformat(last) >= FULL_CHECK_EVERY
            check = "full" if due else "state"
        problem = store.check(full=check == "full") if check else ""
        if problem:
            raise StoreError(problem)
        if check == "full":
            store.set_meta(_CHECKED_KEY, datetime.now(timezone.utc).isoformat())
    except StoreError:
        store.close()
        raise
    return store


class _ProgressPrinter:
    """Any source's progress: a live line on a terminal; otherwise (logs, containers) a structured line when a part
    is finished, and every LOG_EVERY seconds while one takes long (a backfill's queries take hours)."""

    LOG_EVERY = 30.0

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self._last, self._said = 0.0, None
        self._combined = Combined()  # the live line is the whole run's, not its latest part's

    def __call__(self, p: Progress) -> None:
        now, finished = time.monotonic(), p.done == p.total
        if self.tty:
            p = self._combined(p)
            if now - self._last < 0.1 and p.done and not finished:
                return
            filled = 24 * p.done // max(1, p.total)
            self.stream.write(f"\r{SOURCES[p.source].verb} [{'#' * filled}{'.' * (24 - filled)}] {p.text()} ")
            self.stream.flush()
        elif (finished and (p.part, p.detail, p.done) != self._said) or now - self._last >= self.LOG_EVERY:
            self._said = (p.part, p.detail, p.done)
            log.info("progress source=%s part=%s %s=%d/%d records=%d new=%d %s", p.source, p.part or "-",
                     SOURCES[p.source].unit, p.done, p.total, p.records, p.added, p.detail)
        else:
            return
        self._last = now

    def end(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")


def _one_pass(settings: Settings, args, stop: threading.Event, check: str = "state"):
    with _open(settings, check) as store:
        if args.command == "enqueue":
            from .fanout import run_enqueue

            report = run_enqueue(settings, store, stop=stop)
            (log.info if report.ok else log.error)("%s", report.summary())
        else:
            source = Workspace() if getattr(args, "source", "feed") == "workspace" else Feed(args.workers)
            report = _run(source, settings, store, stop)
    return report


def _run(source: Source, settings: Settings, store, stop: threading.Event):
    """One run of a source from the terminal: its progress as it goes, its summary at the end."""
    printer = _ProgressPrinter()
    report = run(source, settings, store, progress=printer, stop=stop)
    printer.end()
    (log.info if report.ok else log.error)("%s", report.summary())
    return report


def cmd_sync(settings: Settings, args, stop: threading.Event) -> int:
    if getattr(args, "loop", False):
        return cmd_run(settings, args, stop)
    report = _one_pass(settings, args, stop)
    return EXIT_FATAL if report.fatal else EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_run(settings: Settings, args, stop: threading.Event) -> int:
    log.info("%s: %s every %d s until stopped (SIGTERM or Ctrl-C)", settings.tenant_label,
             "queueing new content" if args.command == "enqueue" else "syncing", settings.sync_interval)
    while not stop.is_set():
        try:
            _one_pass(settings, args, stop, "daily")
            if settings.demo and args.command == "run" and args.source == "feed":
                _demo_history(settings, stop)
        except (StoreError, SyncAlreadyRunning) as error:
            # a later pass may succeed (disk freed, store back, the other sync done)
            log.error("sync pass failed: %s", error)
        except Exception as error:  # noqa: BLE001 - whatever one pass hit, the next one tries again
            log.debug("details", exc_info=True)
            log.error("sync pass failed unexpectedly (%s): %s", type(error).__name__, redact.short(str(error)))
        stop.wait(settings.sync_interval)
    log.info("stopped cleanly")
    return EXIT_OK


def _demo_history(settings: Settings, stop: threading.Event) -> None:
    """The DEMO tenant backfills its history by itself, once (as a team would right after installing)."""
    from .demo import DEMO_BACKFILL_DAYS

    with _open(settings) as store:
        if backfill_summary(store)["windows"]:
            return
        until = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        log.info("DEMO: backfilling the simulated tenant's last %d days from its Microsoft Graph audit log",
                 DEMO_BACKFILL_DAYS)
        report = run(GraphHistory(until - timedelta(days=DEMO_BACKFILL_DAYS), until), settings, store, stop=stop)
    (log.info if report.ok else log.warning)("%s", report.summary())


def cmd_worker(settings: Settings, args, stop: threading.Event) -> int:
    from .fanout import run_worker

    log.info("%s: working on the queue %s%s", settings.tenant_label, settings.queue_name,
             " until it is empty" if args.drain else " until stopped (SIGTERM or Ctrl-C)")
    report = run_worker(settings, stop=stop, drain=args.drain, threads=args.threads)
    (log.error if report.fatal else log.info)("worker done: %s", report.summary())
    return EXIT_FATAL if report.fatal else EXIT_OK


def _day(text: str, name: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError:
        raise SettingsError(f"--{name} must be a date or time such as 2026-06-01 or 2026-06-01T12:00, not {text!r}.") \
            from None


def cmd_backfill(settings: Settings, args, stop: threading.Event) -> int:
    until = _day(args.until, "until") if args.until else datetime.now(timezone.utc).replace(second=0, microsecond=0)
    since = _day(args.since, "since") if args.since else until - timedelta(days=args.days)
    if not since < until:
        raise SettingsError("--since must be before --until.")
    if args.source == "workspace":
        return _workspace_backfill(settings, args, since, stop)
    log.info("%s: backfilling %s – %s from Microsoft Graph's audit log (%s)", settings.tenant_label, _iso(since),
             _iso(until), "the simulated tenant's, on this machine" if settings.demo else settings.graph_url)
    horizon = retention_start(datetime.now(timezone.utc), settings.retention_days)
    if since < horizon:  # said now, not only in the summary at the end
        log.warning("The store keeps %d days (AUDIT_RETENTION_DAYS): the backfill starts at %s, not %s. Set "
                    "AUDIT_RETENTION_DAYS=180 to keep the whole history.", settings.retention_days, _iso(horizon),
                    _iso(since))
    with _open(settings, "state") as store:
        report = _run(GraphHistory(since, until, tuple(args.service or ())), settings, store, stop)
    return EXIT_FATAL if report.fatal else EXIT_OK if report.ok else EXIT_PARTIAL


def _workspace_backfill(settings: Settings, args, since: datetime, stop: threading.Event) -> int:
    """What the workspace holds that arrived since `since` and was not read yet (it reads up to a few minutes ago:
    --until is for the Graph backfill)."""
    log.info("%s: reading the Log Analytics workspace %s from %s (%s)", settings.tenant_label,
             settings.workspace_id or "(simulated)", _iso(since), "the simulated tenant's, on this machine"
             if settings.demo else settings.workspace_url)
    with _open(settings, "state") as store:
        report = _run(Workspace(since), settings, store, stop)
    return EXIT_FATAL if report.fatal else EXIT_OK if report.ok else EXIT_PARTIAL


def _iso(moment: datetime | None) -> str | None:
    return utc_text(moment) if moment else None


def status_data(settings: Settings) -> dict:
    with _open(settings) as store:
        return {"tenant": settings.tenant_label, "demo": settings.demo, **ingest_status(store, settings).as_json()}


def cmd_status(settings: Settings, args, stop) -> int:
    data = status_data(settings)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    out = sys.stdout
    out.write(f"{data['tenant']} · {data['store']} · {data['events']:,} events "
              f"({data['first_event'] or '-'} … {data['last_event'] or '-'})"
              f"{' · a sync is running' if data['sync_running'] else ''}\n")
    out.write(f"{'content type':<28}{'listed until':<22}{'last success':<22}{'events':>10}{'queued':>8}{'lost':>6}"
              "  error\n")
    for ct in data["content_types"]:
        out.write(f"{ct['content_type']:<28}{ct['listed_until'] or 'never':<22}{ct['last_success'] or 'never':<22}"
                  f"{ct['events_stored']:>10,}{ct['blobs_queued']:>8,}{ct['blobs_lost']:>6}  {ct['last_error']}\n")
    if data["feed_left_out"]:
        out.write(f"{data['feed_left_out']}.\n")
    backfill = data["backfill"]
    if backfill["windows"]:
        states = ", ".join(f"{n} {state}" for state, n in sorted(backfill["windows"].items()))
        out.write(f"backfill {backfill['from']} … {backfill['to']}: {states}; {backfill['records']:,} records, "
                  f"{backfill['added']:,} new" + (f", {backfill['unusable']:,} unusable (skipped: no auditData object, "
                                                  "or an Id that is not text)" if backfill["unusable"] else "") + "\n")
        for gap in backfill["gaps"]:
            out.write(f"backfill gap: {gap['from']} … {gap['to']} ({gap['error']})\n")
    for table in data["workspace"]:
        spans = f" in {table['spans']} spans" if table["spans"] > 1 else ""
        unusable = f", {table['unusable']:,} unusable" if table["unusable"] else ""
        out.write(f"workspace {table['table']}: read {table['from']} … {table['read_until']} (by arrival){spans}; "
                  f"{table['records']:,} records, {table['added']:,} new{unusable}  {table['last_error']}\n")
    for blob in data["lost_blobs"] + data["blob_issues"]:
        out.write(f"{blob['status']}: {blob['content_type']} {blob['content_id']} ({blob['code']}) "
                  f"{blob['message']}\n")
    if data["demo"] and data["lost_blobs"]:
        from .demo import PLANTED_LOSS

        out.write(f"{PLANTED_LOSS}\n")
    return EXIT_OK


def cmd_export(settings: Settings, args, stop) -> int:
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        with _open(settings, "full") as store:
            write = write_jsonl if args.format == "jsonl" else write_csv
            count = write(store.iter_events(), out)
    finally:
        if args.output:
            out.close()
    log.info("exported %d events%s", count, f" to {args.output}" if args.output else "")
    return EXIT_OK


def cmd_check(settings: Settings, args, stop) -> int:
    began = time.monotonic()
    with _open(settings, "full") as store:
        log.info("%s: no damage found (checked in %.1f s)", store.description, time.monotonic() - began)
    return EXIT_OK


def cmd_subscribe(settings: Settings, args, stop) -> int:
    with _open(settings) as store:
        api = ActivityApi.connect(tenant_settings(settings, store))
        for content_type in settings.content_types:
            api.start_subscription(content_type)
        for subscription in api.list_subscriptions():
            sys.stdout.write(f"{subscription.get('contentType')}: {subscription.get('status')}\n")
    return EXIT_OK


def cmd_simulate(settings: Settings, args, stop: threading.Event) -> int:
    from simulator import Faults, SimulatedTenant, SimulatorConfig, start_simulator

    start = datetime.fromisoformat(args.start) if args.start else \
        datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=7, hours=-1)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    tenant = SimulatedTenant(start, seed=args.seed, events_per_week=args.events, blob_minutes=args.blob_minutes)
    if args.warm:
        held = tenant.warm(datetime.now(timezone.utc))
        log.info("pre-generated %.0f MB of content blobs", held / 1e6)
    config = SimulatorConfig(page_size=args.page_size, quota_requests=args.rate_limit, latency=args.latency,
                             faults=Faults(throttle_every=args.throttle_every, retry_after=1))
    server, env = start_simulator(tenant, config, port=args.port)
    lines = "".join(f"{k}={v}\n" for k, v in env.items())
    if args.env_file:
        with open(args.env_file, "w") as f:
            f.write(lines)
    log.info("simulated tenant (seed %d, ~%d events/week since %s) on %s — press Ctrl-C to stop",
             args.seed, args.events, start.isoformat(), env["O365_API_URL"])
    sys.stdout.write("# point the client at the simulated tenant with these settings:\n" + lines)
    sys.stdout.flush()
    stop.wait()
    server.stop()
    return EXIT_OK


SOURCE_HELP = ("feed: the Management Activity API (default); workspace: a Log Analytics workspace that Microsoft "
               "Sentinel fills (WORKSPACE_ID)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Sync Microsoft 365 audit events from the "
                                     "Office 365 Management Activity API into the event store.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("sync", "one catch-up pass over every content type; exit 0 when done"),
                            ("run", "sync every O365_SYNC_INTERVAL seconds until SIGTERM or Ctrl-C")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--workers", type=int, default=4, help="blobs fetched and parsed in parallel (default 4)")
        p.add_argument("--source", choices=("feed", "workspace"), default="feed", help=SOURCE_HELP)
    p = sub.add_parser("enqueue", help="queue fan-out: list new content and queue one message per blob for the "
                                       "workers (QUEUE_CONNECTION_STRING); the checkpoint follows what they finish")
    p.add_argument("--loop", action="store_true", help="again every O365_SYNC_INTERVAL seconds until stopped")
    p = sub.add_parser("worker", help="queue fan-out: fetch, normalize and store the queued blobs; run as many as "
                                      "you like, on as many machines")
    p.add_argument("--drain", action="store_true", help="stop once the queue is empty (else run until stopped)")
    p.add_argument("--threads", type=int, default=4, help="blobs fetched at once (default 4)")
    p = sub.add_parser("backfill", help="history beyond the feed's 7 days, from Microsoft Graph's audit log queries "
                                        "(up to 180 days; needs AuditLogsQuery.Read.All); resumes where it stopped")
    p.add_argument("--days", type=int, default=180, help="how far back from now (default 180)")
    p.add_argument("--since", help="from this UTC date or time instead (e.g. 2026-06-01)")
    p.add_argument("--until", help="to this UTC date or time (default: now)")
    p.add_argument("--service", action="append", help="only this service (Exchange, SharePoint, "
                                                        "AzureActiveDirectory, …); repeat for several")
    p.add_argument("--source", choices=("graph", "workspace"), default="graph",
                   help="graph: Microsoft Graph's audit log queries (default); workspace: what a Log Analytics "
                        "workspace (WORKSPACE_ID) received since --since / --days and was not read yet")
    p = sub.add_parser("status", help="checkpoints, last success, events stored and lost blobs per content type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("export", help="every stored event: the original record per line (jsonl) or a CSV table")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", help="file to write (default: standard output)")
    sub.add_parser("check", help="check the whole store for damage (reads all of it); exit 2 and say what to do "
                                 "if there is any")
    sub.add_parser("subscribe", help="start the subscriptions for the configured content types and list them")
    p = sub.add_parser("simulate", help="run the simulated tenant (HTTPS fake of the API and token endpoint)")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--events", type=int, default=30_000, help="events per simulated week (default 30000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", help="first day of the simulated tenant, ISO time (default: 7 days ago)")
    p.add_argument("--blob-minutes", type=int, default=60, help="minutes between content blobs per type")
    p.add_argument("--page-size", type=int, default=100, help="content items per listing page")
    p.add_argument("--rate-limit", type=int, default=2000, help="requests per minute before AF429")
    p.add_argument("--throttle-every", type=int, default=0, help="answer every Nth request with AF429")
    p.add_argument("--latency", type=float, default=0.0, help="seconds each request takes (a real network)")
    p.add_argument("--env-file", help="also write the client settings to this file")
    p.add_argument("--warm", action="store_true", help="generate every blob before serving (benchmarks)")
    return parser


COMMANDS = {"sync": cmd_sync, "run": cmd_run, "backfill": cmd_backfill, "enqueue": cmd_sync, "worker": cmd_worker,
            "status": cmd_status,
            "export": cmd_export, "check": cmd_check,
            "subscribe": cmd_subscribe, "simulate": cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a sync hands every blob between threads three times (fetched, parsed, stored): the interpreter's default 5 ms
    # between thread switches leaves the parser and the writer waiting on the fetchers' lock
    sys.setswitchinterval(0.0005)
    redact.install_log_scrubber()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MSAL logs what a peer answered, with a traceback, and our AuthError already says it in plain words
    logging.getLogger("msal").setLevel(logging.CRITICAL)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = load_settings()
        if settings.demo and args.command != "simulate":
            log.warning("DEMO mode: no O365_TENANT_ID is set, so a simulated tenant stands in. "
                        "Nothing here comes from a real Microsoft 365 tenant.")
        return COMMANDS[args.command](settings, args, stop)
    except (SettingsError, StoreError, AuthError, FatalApiError, SyncAlreadyRunning, QueueError) as error:
        log.error("%s", error)
        return EXIT_FATAL
    except ApiError as error:
        log.error("%s", error)
        return EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())
