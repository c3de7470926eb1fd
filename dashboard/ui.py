"""The sidebar every page shares: tenant and freshness, Sync now, and the filters the page honours (mirrored in the
URL). The analyst's view is one state, kept in the session across pages — a page that does not draw a control does
not lose its value — and read by the pages with `current()`."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from urllib.parse import urlencode

import streamlit as st

from eventstore import Filter
from ingest.settings import Settings
from ingest.source import Progress

from . import services, untrusted
from .access import Access
from .filters import LIST_FIELDS, SPAN_FIELDS, WATCH_MODES, FilterInputError, View, periods
from .index import ActivityIndex, Watch

_KEY = "f_"  # widget keys are f_<View field>
_VIEW = "view"  # the whole view, kept across pages: Streamlit drops a widget's key when a page does not draw it
_DRAWN = "view_drawn"  # the fields whose controls the last run drew
PAGE_PARAMS = {"incidents": ("incident",)}  # a page's own place in its URL (the incident open), beside the view


@dataclass
class Current:
    view: View  # the whole view, as the analyst left it on every page
    filter: Filter | None  # what this page applies; None when a filter value is unusable: `problem` says why
    watch: Watch | None
    problem: str = ""  # Markdown-safe
    honours: tuple[str, ...] = ()  # the view's fields this page shows and applies


def apply_view(view: View) -> None:
    """Make this the analyst's view, every control included. Safe in a button's on_click callback (before widgets
    exist)."""
    st.session_state[_VIEW] = view
    for f in fields(View):
        st.session_state[_KEY + f.name] = _widget_value(view, f.name)


def _widget_value(view: View, name: str):
    value = getattr(view, name)
    return list(value) if name in LIST_FIELDS else value


def _current_view() -> View:
    """The view as this run starts: the controls the last page drew carry the analyst's latest changes; every
    other field keeps the kept view's value, and its control (forgotten, or reset, by Streamlit and the browser
    when a page did not draw it) is set back to it."""
    kept, drawn, values = st.session_state[_VIEW], st.session_state.get(_DRAWN, ()), {}
    for f in fields(View):
        key = _KEY + f.name
        if f.name in drawn and key in st.session_state:
            value = st.session_state[key]
            values[f.name] = tuple(value) if f.name in LIST_FIELDS else value
        else:
            values[f.name] = getattr(kept, f.name)
            st.session_state[key] = _widget_value(kept, f.name)
    return View(**values)


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def identity(who: Access) -> None:
    """Who this session is, on every page; and through what, when it is a proxy that said so."""
    how = {"proxy": " · named by the authenticating proxy in front of this dashboard",
           "local": " · on this machine, no sign-in"}.get(who.how, "")
    left, right = st.sidebar.columns([3, 2])
    left.caption(f"👤 {untrusted.markdown(who.name)} ({who.role}){how}")
    if who.how == "sign-in" and right.button("Sign out", key="sign_out", width="stretch"):
        st.logout()


def tenant_banner(settings: Settings) -> None:
    if settings.demo:
        st.sidebar.warning("**DEMO tenant** — simulated data, not your Microsoft 365 tenant. "
                           "Set O365_TENANT_ID and the app credentials to use yours.", icon="🧪")
    else:
        st.sidebar.caption(f"Tenant `{settings.tenant_id}`")


@st.fragment(run_every=10)
def _sync_status(settings: Settings) -> None:
    """When the last sync finished, and a running one's progress: redrawn by itself, so it never goes stale."""
    last = services.last_synced(settings.content_types)
    state = services.background_sync().state
    line = f"{'DEMO · ' if settings.demo else ''}synced {ago(last)}"
    if state.running:
        p = state.progress
        line += f" · syncing {p.part} {p.done}/{p.total}" if p else " · syncing…"
    looking = services.leads_looking()
    if looking:
        line += f" · looking for leads ({looking[0]}/{looking[1]} detections)"
    st.caption(line)


def progress(p: Progress | None, starting: str) -> None:
    """A running ingest job's progress bar, the same for every source."""
    st.progress(p.fraction if p else 0.0, text=untrusted.markdown(p.text()) if p else starting)


def job(state, starting: str) -> None:
    """A background ingest job (services.BackgroundJob) as it stands: its progress while it runs, then how its last
    run ended (its summary, or why it could not run)."""
    if state.running:
        progress(state.progress, starting)
    elif state.error or state.report:
        said = st.success if state.report is not None and state.report.ok else st.warning
        said(untrusted.markdown(state.error or state.report.summary(), limit=2000))


def _sync_box(settings: Settings) -> None:
    runner = services.background_sync()
    state = runner.state
    left, right = st.sidebar.columns([3, 2])
    with left:
        _sync_status(settings)
    with st.sidebar:
        _new_events_notice(services.index().version)
    if right.button("Sync now", key="sidebar_sync", disabled=state.running or not services.access().can("sync"),
                    width="stretch"):
        refused = runner.start()
        if refused:
            st.sidebar.info(untrusted.markdown(refused))
        else:
            st.toast("Sync started — see the Sync page for progress.")


@st.fragment(run_every=15)
def _new_events_notice(shown: tuple[int, int]) -> None:
    """When a sync (Sync now, or `python -m ingest run` in the background) has stored events since this page
    was drawn, offer to show them, rather than redrawing under the analyst's hands."""
    if services.index().version != shown and st.button("New events synced — show them", type="primary",
                                                              key="show_new_events", width="stretch"):
        st.rerun(scope="app")


def sidebar(settings: Settings, index: ActivityIndex, honours: tuple[str, ...], page: str = "") -> Current:
    """The shared sidebar, with the controls of the view's fields that this page honours (`honours`); `page` (its
    URL path) keeps its own parameters in the URL."""
    if _VIEW not in st.session_state:  # a shared URL sets the view once, at the start of a session
        apply_view(View.from_params({key: st.query_params.get_all(key) for key in st.query_params}))
    view = _current_view()
    st.session_state[_VIEW], st.session_state[_DRAWN] = view, honours

    st.sidebar.title("O365 Activity Graph")
    tenant_banner(settings)
    _sync_box(settings)
    if "period" in honours:
        _filters(st.sidebar, "user" in honours)
    own = {key: st.query_params.get(key) for key in PAGE_PARAMS.get(page, ()) if key in st.query_params}
    st.query_params.from_dict({**view.only(honours).to_params(), **own})
    applied = view.only(honours)
    try:
        flt = applied.to_filter()
        watch = services.watch_for(applied.watchlist, applied.watch_mode)
    except FilterInputError as error:
        problem = untrusted.markdown(error)  # it quotes what was typed, or what a crafted link put in the URL
        st.sidebar.error(problem)
        return Current(view, None, None, problem, honours)
    if "user" in honours:
        _case_hint(index, applied, flt, watch)
    return Current(view, flt, watch, honours=honours)


def _filters(sb, all_of_them: bool) -> None:
    """The time controls, and with `all_of_them` every other filter and the watch-list."""
    chosen_period = st.session_state.get(_KEY + "period", "last 7 days")
    sb.selectbox("Time", list(dict.fromkeys(periods(services.oldest_days()) + [chosen_period])), key=_KEY + "period",
                 help="Longer ranges appear once the store holds older events (see Sync: history)")
    if st.session_state.get(_KEY + "period") == "custom":
        sb.datetime_input("From (UTC)", key=_KEY + "start", step=60, format="YYYY-MM-DD")
        sb.datetime_input("To (UTC; empty: now)", key=_KEY + "end", step=60, format="YYYY-MM-DD")
    if not all_of_them:
        return
    sb.text_input("User (UPN; several: comma separated)", key=_KEY + "user", placeholder="megan.b@contoso.com")
    sb.toggle("Aa  case-sensitive", key=_KEY + "case_sensitive",
              help="On (the default), values match exactly as a Cosmos DB query does: megan.b@contoso.com does not "
                   "match Megan.B@contoso.com. Off: case is ignored.")
    sb.text_input("IP address or CIDR range", key=_KEY + "ip", placeholder="198.51.100.0/24")
    sb.text_input("Text in user agent, target, site, file or application", key=_KEY + "text")
    with sb.expander("More filters"):
        for name, column, label in (("workload", "workload", "Workload"), ("operation", "operation", "Operation"),
                                    ("result_status", "result_status", "Result status"),
                                    ("content_type", "content_type", "Content type"),
                                    ("record_type", "record_type", "Record type")):
            chosen = list(st.session_state.get(_KEY + name, []))
            options = [str(v) for v in services.values(column, _days_of_view())]
            st.multiselect(label, sorted(set(options) | set(chosen)), key=_KEY + name)
        for name, label in (("country", "Country of the IP"), ("owner", "Network owner of the IP")):
            chosen = list(st.session_state.get(_KEY + name, []))
            options = services.values(name, _days_of_view())
            st.multiselect(label, sorted(set(options) | set(chosen)), key=_KEY + name,
                           help="Where the address is and who owns its network, from the IP sources (offline)")

    names = sorted(services.watchlists())
    chosen = st.session_state.get(_KEY + "watchlist", "")
    sb.selectbox("Watch-list", [""] + sorted(set(names) | ({chosen} - {""})), key=_KEY + "watchlist",
                 format_func=lambda n: n or "(none)")
    sb.radio("Watch-list mode", WATCH_MODES, key=_KEY + "watch_mode", horizontal=True,
             help="restrict: only events that involve a listed account or IP. highlight: listed ones are ringed "
                  "in the graph and listed first.")


def _days_of_view() -> Filter:
    """The time range of the view as the widgets stand (a filter value may still be unusable)."""
    try:
        return st.session_state[_VIEW].only(SPAN_FIELDS).to_filter()
    except FilterInputError:
        return Filter()


def _case_hint(index: ActivityIndex, view: View, flt: Filter, watch: Watch | None) -> None:
    """When a case-sensitive filter misses much — the user filter, or a watch-list that restricts the view — because
    the log has values that differ only by case, say so above the page, where the analyst is looking."""
    if not flt.case_sensitive:
        return
    for wanted, what in ((flt.user_id, "this user"),
                         (watch.accounts if watch is not None and watch.restrict else (), "the watch-list's accounts")):
        if not wanted:
            continue
        variants = index.case_variants("user_id", tuple(wanted), flt)
        if variants.empty:
            continue
        matched, missed = index.count(flt, watch), int(variants["n"].sum())
        if matched > 20 and missed < matched:
            continue
        st.info(f"{'No events match' if matched == 0 else f'{matched:,} events match'} {what} exactly; "
                f"{missed:,} more have an account that differs only by case (below). Turn off "
                "**Aa case-sensitive** in the sidebar to include them.")
        # audit values go in a table, never into markdown
        st.dataframe(variants.rename(columns={"value": "differs only by case", "n": "events"}), hide_index=True,
                     width="stretch", height=min(35 * (len(variants) + 1) + 3, 180))


def current() -> Current:
    return st.session_state["current"]


def links(cur: Current) -> None:
    """Links to what this page shows: as the view moves (opened tomorrow, "last 7 days" means tomorrow's), and
    pinned to the times it covers now, for a ticket or a colleague."""
    base = st.context.url or ""
    view = cur.view.only(cur.honours)
    with st.popover("🔗 Link to this view"):
        for words, shown in (("As it moves:", view), ("At these times (for a ticket or a colleague):", view.pinned())):
            st.caption(words)
            st.code(f"{base}?{urlencode(shown.to_params(), doseq=True)}", language=None, wrap_lines=True)
