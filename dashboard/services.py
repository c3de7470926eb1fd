"""What the pages use instead of touching the store: settings, the store and its on-disk index (opened
once per process), watch-lists, and the background Sync now runner."""
from __future__ import annotations

import collections
import io
import logging
import threading
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pandas as pd
import streamlit as st

from detect.incidents import Correlator, Incident
from detect.leads import Lead, LeadEngine
from detect.rules import load as load_rules
from eventstore import ActivityQuery, EventStore, Filter, StoreError, open_store
from eventstore.export import write_csv
from eventstore.model import utc_text
from ingest import redact
from ingest.backfill import GraphHistory, backfill_summary
from ingest.feedstate import FeedState
from ingest.settings import Settings, SettingsError, load_settings
from ingest.source import Combined, Progress, Report, run
from ingest.status import IngestStatus
from ingest.status import ingest_status as status_of
from ingest.sync import Feed, SyncAlreadyRunning
from ingest.workspace import Workspace

from . import report
from .access import ROLES, Access, AccessDenied, role_from_claims, sign_in_age
from .filters import FilterInputError
from .graph import Graph, describe_nodes
from .index import ActivityIndex, Watch
from .ipinfo import ip_sources
from .watchlist import WatchList, WatchListError, check_name

log = logging.getLogger("dashboard")


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    redact.install_log_scrubber()  # Sync now runs the ingest in this process: what peers echo stays out of logs
    logging.getLogger("msal").setLevel(logging.CRITICAL)
    loaded = load_settings()
    if loaded.proxy_role not in ROLES:
        raise SettingsError(f"DASHBOARD_PROXY_ROLE must be one of {', '.join(ROLES)}, not {loaded.proxy_role!r}.")
    return loaded


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_problem() -> str:
    """Why this server must not serve data, or "": it listens beyond loopback with nobody signing people in."""
    address = st.get_option("server.address") or "all interfaces"
    if address in LOOPBACK or settings().proxy_header or settings().signin_client_id:
        return ""
    return (f"This dashboard listens on {address}, beyond this machine, and nobody signs people in: it serves no "
            "audit data like that. Configure sign-in with Entra ID (DASHBOARD_CLIENT_ID and the rest: README, "
            "Sign-in and roles), or put an authenticating proxy in front (App Service authentication, oauth2-proxy) "
            "and set DASHBOARD_PROXY_HEADER to the header that names the signed-in user, or listen on 127.0.0.1 "
            "only (STREAMLIT_SERVER_ADDRESS=127.0.0.1).")


def access() -> Access:
    """Who this session is, read on the server every time it is asked (never from what the page sent back)."""
    s = settings()
    if s.signin_client_id:
        user = st.user
        if not user.is_logged_in:
            return Access("", None, "sign-in", signed_in=False)
        age = sign_in_age(user, time.time())
        if age is None or age > s.session_hours * 3600:  # the roles it carries may have been taken away since
            return Access("", None, "sign-in", signed_in=False,
                          why=f"Your sign-in is more than {s.session_hours} hours old (DASHBOARD_SESSION_HOURS): "
                              "sign in again, so that your roles are read afresh.")
        name = str(user.get("preferred_username") or user.get("email") or user.get("name") or "signed-in user")
        return Access(redact.short(name, 200), role_from_claims(user.get("roles")), "sign-in")
    if s.proxy_header:
        named = st.context.headers.get_all(s.proxy_header)
        if len(named) > 1:  # a copy the browser sent, beside the proxy's: neither can be believed
            return Access("", None, "proxy", why=f"The request named its user more than once (the header "
                                                 f"{s.proxy_header}): refused. The proxy in front of this dashboard "
                                                 "must remove copies of it that clients send.")
        name = (named[0] if named else "").strip()
        return Access(redact.short(name, 200), s.proxy_role if name else None, "proxy")
    return Access("local user", ROLES[-1], "local")  # loopback only: the person at this machine


def require(action: str) -> Access:
    """The session's access, or AccessDenied: every action that changes or takes data asks this first."""
    who = access()
    who.require(action)
    return who


def exporter(what: str, make):
    """A download button's data: the role is checked now, in the page's run (where the session is known), and
    `make` runs when the button is pressed — on another thread, as Streamlit calls it — and is recorded then."""
    who = require("export")

    def produce():
        try:
            content = make()
        except Exception as error:  # noqa: BLE001 - Streamlit would drop it: the file says it instead of nothing
            log.exception("export failed: %s", what)
            reason = redact.short(str(error) or type(error).__name__, 300)
            record(who, "export failed", redact.short(f"{what}: {reason}", 1000))
            return (f"The export failed: {reason}. Nothing was written past this line: try again, or narrow the "
                    "filters.\n")
        record(who, "export", redact.short(what, 1000))
        return content

    return produce


def record(who: Access, action: str, detail: str) -> None:
    """One entry in the dashboard's activity log (a store that may not be written logs it instead)."""
    try:
        store().record_activity(who.name, action, detail)
    except StoreError as error:
        log.warning("activity not recorded in the store (%s): %s %s %s", error, who.name, action, detail)


@st.cache_resource(show_spinner=False)
def store() -> EventStore:
    """The store, opened once per process after a quick check of its state tables (StoreError says what to do
    if it is damaged or cannot be reached)."""
    s = settings()
    opened = open_store(s.store_url, cosmos=s.cosmos_options(), retention_days=s.retention_days)
    problem = opened.check()
    if problem:
        opened.close()
        raise StoreError(problem)
    return opened


REFRESH_SECONDS = 1.0  # the store is asked what changed at most this often, however many times a page asks


@st.cache_resource(show_spinner=False)
def _index() -> ActivityIndex:
    """The on-disk index beside the store (IndexBusy when another dashboard process serves it)."""
    s = settings()
    return ActivityIndex(store(), s.index_file, s.index_memory, ip_sources(s))


def ip_problems() -> list[str]:
    """IP sources the settings name that could not be used (the index places addresses without them)."""
    ipinfo = _index().ipinfo
    return list(ipinfo.problems) if ipinfo is not None else []


LEADS_EVERY = 30  # seconds between looks for new leads while nobody is looking at a page


@st.cache_resource(show_spinner=False)
def rules() -> tuple:
    """(the detection rules, the tactics): the built-in ones and the operator's (RuleError says what is wrong)."""
    return load_rules(settings().detect_rules_dir)


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.stopped.set())
def _leads() -> LeadEngine:
    """The lead engine, and a thread that keeps it up with the store, so leads exist before anyone asks."""
    engine = LeadEngine(_index(), store(), rules()[0])

    def keep_up() -> None:
        while True:
            try:
                engine.index.refresh(max_age=REFRESH_SECONDS)
                if engine.update():
                    _correlator().correlate(engine.leads())
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("looking for leads failed")
            if engine.stopped.wait(LEADS_EVERY):
                return

    threading.Thread(target=keep_up, name="leads", daemon=True).start()
    return engine


@st.cache_resource(show_spinner=False)
def _correlator() -> Correlator:
    return Correlator(_index(), store(), timedelta(hours=settings().incident_gap_hours))


def incidents() -> list[Incident]:
    """Every incident (leads joined into one investigation each), open ones first, most severe and newest first."""
    return _correlator().correlate(leads()[0])


def decide_incident(incident: str, status: str | None = None, owner: str | None = None, note: str = "") -> str | None:
    """Set an incident's status or owner, or add a note; returns why not when this person may not."""
    try:
        who = require("manage incidents")
    except AccessDenied as denied:
        return str(denied)
    if read_only():
        return "This dashboard reads the store with a read-only key, so it cannot keep decisions on incidents."
    try:
        _correlator().decide(incident, who.name, status, owner, note)
    except ValueError as error:
        return str(error)
    said = "; ".join(part for part in (f"status {status}" if status else "", f"owner {owner}" if owner else "",
                                       f"note: {note[:200]}" if note.strip() else "") if part)
    record(who, "incident updated", f"{incident}: {said}")
    return None


def incident_graph(incident: Incident) -> Graph:
    """The incident's accounts, addresses and targets over its span ±1 hour with everything they did (not only
    what the leads matched), so the aftermath is in view."""
    edges_of = report.incident_edges(index(), incident)
    return Graph() if edges_of.empty else report.incident_graph(edges_of, incident, describe)


def incident_events(incident: Incident, limit: int = 500) -> list:
    """The evidence: the events of its leads, newest first."""
    return report.evidence(index(), incident, limit)


def incident_files(incident: Incident) -> report.Files:
    """The report (HTML), and the indicators as CSV and STIX 2.1 (recorded when downloaded)."""
    return report.write(index(), incident, rules()[1], settings().tenant_label, describe)


LEADS_WAIT = 5.0  # seconds a page waits for a look in progress (a first look at a large store takes minutes)


def leads_looking() -> tuple[int, int, str] | None:
    """While the detections look through events: (detections done, of all, what they look through)."""
    return _leads().looking


def leads() -> tuple[list[Lead], bool]:
    """(every lead, most severe and newest first; whether a look for more is still going on). Brought up to date
    with the store first, unless another look is already on: then what is stored, at once."""
    index()
    engine = _leads()
    looking = engine.update(wait=LEADS_WAIT) is None
    return engine.leads(), looking


def review_lead(lead_id: str, note: str, reviewed: bool = True) -> str | None:
    """Mark a lead reviewed (or open again); returns why not when this person may not."""
    try:
        who = require("review leads")
    except AccessDenied as denied:
        return str(denied)
    if read_only():
        return "This dashboard reads the store with a read-only key, so it cannot keep review marks."
    _leads().review(lead_id, who.name, note, reviewed)
    record(who, "lead reviewed" if reviewed else "lead reopened", f"{lead_id}: {note[:200]}")
    return None


@st.cache_data(max_entries=64, show_spinner=False)
def _places(addresses, version) -> pd.DataFrame:
    return _index().places(list(addresses))


def places(addresses) -> pd.DataFrame:
    """country, owner, lat, lon of these addresses (those the IP sources know)."""
    return _places(tuple(sorted(addresses)), index().version)


@st.cache_data(max_entries=4, show_spinner=False)
def _consented_applications(version) -> dict[str, str]:
    return report.consented_applications(_index())


def describe(nodes) -> None:
    """Give graph nodes what people recognise them by (graph.describe_nodes): places and application names."""
    addresses = [node.value for node in nodes if node.kind == "ip"]
    placed = {p.client_ip: (p.country, p.owner, p.asn) for p in places(addresses).itertuples()} if addresses else {}
    describe_nodes(nodes, placed, _consented_applications(index().version))


def index() -> ActivityIndex:
    """The index, brought up to date with the store (cheap when nothing changed): a finished sync shows
    up on the next interaction, no restart needed. A large backlog (a first build) is copied in the
    background; `index().catching` says how far it got."""
    ix = _index()
    ix.refresh(max_age=REFRESH_SECONDS)
    return ix


# Aggregates the pages ask for again and again (each click reruns the page): cached per filter and per
# index version, so a finished sync (a new version) is never answered from an old result.
@st.cache_data(max_entries=64, show_spinner=False)
def _count(flt, watch, version) -> int:
    return _index().count(flt, watch)


@st.cache_data(max_entries=64, show_spinner=False)
def _edges(flt, chain, watch, version):
    return _index().edges(flt, chain, watch)


@st.cache_data(max_entries=64, show_spinner=False)
def _timeline(flt, stack_by, watch, version):
    return _index().timeline(flt, stack_by, watch)


@st.cache_data(max_entries=256, show_spinner=False)
def _summary(flt, entity, watch, related, top, version) -> dict:
    return _index().entity_summary(flt, dict(entity), watch, related, top)


def entity_summary(flt, entity: dict[str, str], watch=None, related=("user", "ip", "operation"), top: int = 5) -> dict:
    return _summary(flt, tuple(entity.items()), watch, tuple(related), top, index().version)


@st.cache_data(max_entries=4, show_spinner=False)
def _oldest_days(version) -> float:
    oldest = _index().sql("SELECT min(ts) AS t FROM ev", [])["t"][0]
    if pd.isna(oldest):
        return 0.0
    return (datetime.now(timezone.utc).replace(tzinfo=None) - oldest).total_seconds() / 86400


def oldest_days() -> float:
    """How many days back the indexed events reach."""
    return _oldest_days(index().version)


def count(flt, watch=None) -> int:
    return _count(flt, watch, index().version)


def edges(flt, chain: tuple[str, ...], watch=None):
    return _edges(flt, chain, watch, index().version)


def timeline(flt, stack_by: str, watch=None):
    return _timeline(flt, stack_by, watch, index().version)


@st.cache_data(max_entries=64, show_spinner=False)
def _values(column, start_day, version) -> list:
    return _index().values(column, Filter(start=start_day))


def values(column: str, flt: Filter) -> list:
    """Filter choices for a column: the values in the view's days, most frequent first."""
    start = flt.start.replace(hour=0, minute=0, second=0, microsecond=0) if flt and flt.start else None
    return _values(column, start, index().version)


# --- watch-lists ---------------------------------------------------------------------------------
def watchlists() -> dict[str, WatchList]:
    return {name: WatchList.from_json(name, payload) for name, payload in store().watchlists().items()}


def ingest_status() -> IngestStatus:
    """What the Sync page shows (as `python -m ingest status` says it): at most 5 s old (the page redraws every
    second, and on Cosmos DB every count is a priced query), and asked again as soon as a Sync now starts or ends."""
    state = background_sync().state
    return _ingest_status(store().description, (state.started, state.running))


@st.cache_data(ttl=5, show_spinner=False)
def _ingest_status(store_name: str, sync_key: tuple) -> IngestStatus:
    return status_of(store(), settings())


def last_synced(content_types: tuple[str, ...]) -> datetime | None:
    """When the live feed last finished a pass without an error, for any of these content types."""
    return max((cp.last_success for cp in FeedState(store()).checkpoints(content_types) if cp.last_success),
               default=None)


READ_ONLY = ("This dashboard reads the store with a read-only Cosmos DB key: watch-lists can be used here but are "
             "saved, renamed and deleted where the read-write key is (a dashboard configured with it).")
READ_ONLY_SYNC = ("This dashboard reads the store with a read-only Cosmos DB key, so it cannot sync: the ingest "
                  "(`python -m ingest run`, or enqueue and workers) keeps the store up to date with the read-write "
                  "key.")


def read_only() -> bool:
    return store().read_only


def save_watchlist(watchlist: WatchList, action: str = "watch-list saved", detail: str = "") -> None:
    who = require("manage watch-lists")
    stamped = replace(watchlist, changed_by=who.name, changed_at=utc_text(datetime.now(timezone.utc)))
    store().save_watchlist(watchlist.name, stamped.to_json())
    record(who, action, detail or f"{watchlist.name}: {len(watchlist.accounts):,} accounts, "
                                  f"{len(watchlist.networks):,} IP entries")


def rename_watchlist(old: str, new: str) -> str:
    """Rename a watch-list; returns why not, if it cannot be (nothing is changed then). Never onto itself (saving
    the new name and deleting the old would delete it) nor onto another list (it would be overwritten)."""
    require("manage watch-lists")
    try:
        new = check_name(new)
    except WatchListError as error:
        return str(error)
    saved = watchlists()
    if old not in saved:
        return f"The watch-list {old!r} no longer exists (renamed or deleted meanwhile)."
    if new == old:
        return f"{new!r} is its name already: nothing was changed."
    if new in saved:
        return f"A watch-list named {new!r} exists already: choose another name, or delete that one first."
    current = saved[old]
    save_watchlist(WatchList(new, current.accounts, current.networks), "watch-list renamed", f"{old} → {new}")
    store().delete_watchlist(old)
    return ""


def delete_watchlist(name: str) -> None:
    who = require("manage watch-lists")
    store().delete_watchlist(name)
    record(who, "watch-list deleted", name)


def activity(query: ActivityQuery, limit: int | None, offset: int = 0) -> tuple[int, list[tuple[str, str, str, str]]]:
    """(how many entries match, a page of them, newest first; limit None: all)."""
    require("read the activity log")
    return store().activity(query, limit, offset)


def activity_export(query: ActivityQuery, columns: list[str]):
    """A download button's data: every entry that matches, as CSV (the download is itself recorded)."""
    require("read the activity log")

    def make() -> str:
        out = io.StringIO()
        write_csv(store().activity(query, None)[1], out, columns)
        return out.getvalue()

    described = ", ".join(f"{name} {value}" for name, value in vars(query).items() if value) or "all of it"
    return exporter(f"the activity log ({described})", make)


def activity_facets() -> tuple[list[str], list[str]]:
    """(people, actions) the activity log can be filtered by."""
    require("read the activity log")
    return store().activity_facets()



def add_to_watchlist(name: str, kind: str, value: str) -> str:
    """Add a graph node (a user or an IP) to a watch-list, creating it if needed; returns what happened."""
    try:
        name = check_name(name)
    except WatchListError as error:
        return str(error)
    if kind not in ("user", "ip"):
        return "Only users and IP addresses can go on a watch-list."
    current = watchlists().get(name, WatchList(name, (), ()))
    if kind == "user":
        updated = WatchList(name, tuple(dict.fromkeys(current.accounts + (value,))), current.networks)
    else:
        updated = WatchList(name, current.accounts, tuple(dict.fromkeys(current.networks + (value,))))
    save_watchlist(updated)
    return f"Added to {name} ({updated.size} entries)."


def watch_for(name: str, mode: str) -> Watch | None:
    """The watch-list a view names, as the index applies it; FilterInputError when it no longer exists (a view
    that says "restrict" must not quietly show everything)."""
    if not name:
        return None
    wl = watchlists().get(name)
    if wl is None:
        raise FilterInputError(f"The watch-list {name!r} in this view no longer exists (deleted or renamed). "
                               "Choose another one, or none.")
    return Watch(wl.accounts, wl.networks, restrict=mode == "restrict")


# --- Sync now -----------------------------------------------------------------------------------
@dataclass
class SyncState:
    running: bool = False
    started: datetime | None = None
    finished: datetime | None = None
    progress: Progress | None = None
    report: Report | None = None
    error: str = ""


class BackgroundJob:
    """Runs one of ingest's own jobs (a sync, a backfill) in a thread, so the page stays usable; one at a time per
    process, and the store's lease keeps a sync to one at a time across processes (e.g. with `python -m ingest
    run`)."""

    def __init__(self, action: str, label: str, source):
        self.action, self.label, self.source = action, label, source  # source(*args) -> the ingest Source to run
        self._lock = threading.Lock()
        self.state = SyncState()
        # every finished run, newest first: a later pass that found nothing new does not hide what an earlier
        # one stored
        self.history: collections.deque[SyncState] = collections.deque(maxlen=10)

    def start(self, *args) -> str | None:
        """Start it; returns why not if one is already running (or this person or dashboard may not)."""
        if read_only():
            return READ_ONLY_SYNC
        try:
            who = require(self.action)
        except AccessDenied as denied:
            return str(denied)
        with self._lock:
            if self.state.running:
                return f"A {self.label} is already running (started {self.state.started:%H:%M:%S} UTC)."
            self.state = SyncState(running=True, started=datetime.now(timezone.utc))
        threading.Thread(target=self._run, args=args, name=self.action, daemon=True).start()
        record(who, self.label, "started" + (f": {' – '.join(str(a) for a in args)}" if args else ""))
        return None

    def _run(self, *args) -> None:
        combined = Combined()  # one bar for the whole run, whichever part spoke last

        def progress(p: Progress) -> None:
            self.state.progress = combined(p)

        try:
            self.state.report = run(self.source(*args), settings(), store(), progress=progress)
        except SyncAlreadyRunning as error:
            self.state.error = f"{error} The background sync (python -m ingest run) may be running it."
        except StoreError as error:
            self.state.error = str(error)
        except Exception as error:  # noqa: BLE001 - shown in plain words; details go to the log only
            log.error("%s failed: %s", self.label, "".join(traceback.format_exception(error)))
            self.state.error = (f"The {self.label} stopped unexpectedly ({type(error).__name__}). See the "
                                "dashboard's log.")
        finally:
            self.state.finished = datetime.now(timezone.utc)
            self.state.running = False
            self.history.appendleft(self.state)


@st.cache_resource(show_spinner=False)
def background_sync() -> BackgroundJob:
    return BackgroundJob("sync", "sync now", Feed)


@st.cache_resource(show_spinner=False)
def background_backfill() -> BackgroundJob:
    return BackgroundJob("backfill", "backfill", GraphHistory)


@st.cache_resource(show_spinner=False)
def background_workspace() -> BackgroundJob:
    return BackgroundJob("sync", "workspace read", Workspace)


def backfill_state() -> dict:
    """The backfill's windows by state, the range covered, records, gaps (as `python -m ingest status` says)."""
    return backfill_summary(store())
