"""Sync: per content type, what has been synced and what was lost; Sync now, with progress; the history backfilled
from Microsoft Graph, and a backfill to start; how far the Log Analytics workspace is read, when it is."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pandas as pd
import streamlit as st

from dashboard import services, ui
from dashboard.untrusted import markdown
from ingest.demo import PLANTED_LOSS

settings = services.settings()
st.header("Sync" + (" — DEMO tenant" if settings.demo else ""))
if settings.demo:
    st.warning("DEMO mode: the events come from a simulated tenant running inside this app, through the same "
               "client code a real tenant uses (MSAL, HTTPS, paging, retries). Set O365_TENANT_ID, O365_CLIENT_ID "
               "and O365_CLIENT_SECRET (or O365_CLIENT_CERT) to sync your own tenant.", icon="🧪")


@st.fragment(run_every=1)
def status_panel() -> None:
    runner = services.background_sync()
    state = runner.state
    # refused on the server anyway: what a role or a read-only store cannot do is not offered
    why_not = ("Sync now needs the Admin role; the background sync keeps the store up to date."
               if not services.access().can("sync") else services.READ_ONLY_SYNC if services.read_only() else "")
    if st.button("Sync now", type="primary", disabled=state.running or bool(why_not), key="sync_page_button"):
        # kept until the next press: this panel redraws every second
        st.session_state["sync_refused"] = runner.start() or ""
        state = runner.state
    if why_not:
        st.caption(markdown(why_not))
    if st.session_state.get("sync_refused"):
        st.info(markdown(st.session_state["sync_refused"]))
    if state.running:
        ui.progress(state.progress, "Starting: getting a token and listing content…")
    elif state.error:
        st.error(f"The last Sync now did not finish: {markdown(state.error)}")
    elif state.report:
        (st.success if state.report.ok else st.warning)(markdown(state.report.summary(), limit=2000))
    if len(runner.history) > 1:
        st.caption("Sync now, this dashboard's recent passes (newest first)")
        st.dataframe(pd.DataFrame([{"finished (UTC)": f"{past.finished:%Y-%m-%d %H:%M:%S}",
                                    "new events": past.report.added if past.report else None,
                                    "result": past.report.summary() if past.report else past.error}
                                   for past in runner.history]), hide_index=True, width="stretch")

    status = services.ingest_status()
    stats, issues = status.stats, status.issues
    rows = []
    for cp in status.checkpoints:
        rows.append({"content type": cp.content_type,
                     "listed until (UTC)": cp.listed_until.strftime("%Y-%m-%d %H:%M") if cp.listed_until else "never",
                     "last success": ui.ago(cp.last_success),
                     "events stored": stats.per_content_type.get(cp.content_type, 0),
                     **({"blobs queued": status.queued[cp.content_type]} if any(status.queued.values()) else {}),
                     "blobs lost": sum(1 for b in issues if b.content_type == cp.content_type and b.status == "lost"),
                     "last error": cp.last_error})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")  # a table shows text as text
    if status.feed_left_out:
        st.caption(markdown(status.feed_left_out))
    st.caption(f"{stats.events:,} events in {markdown(status.description)} · from {stats.first_time or '-'} to "
               f"{stats.last_time or '-'}")
    if issues:
        st.subheader("Content that could not be stored whole")
        if settings.demo and any(b.status == "lost" for b in issues):
            st.info(PLANTED_LOSS, icon="🧪")
        st.caption("Recorded, so the sync goes on. lost: AF20051 = expired before it was fetched, AF20050 = unknown "
                   "to the API, POISON = its queue message failed every delivery (see the poison queue), or an "
                   "answer that stayed unusable. retrying: fetched again by the next pass. "
                   "stored: kept, with what had to be repaired or skipped.")
        st.dataframe(pd.DataFrame([{"status": b.status, "content type": b.content_type, "created": b.content_created,
                                    "code": b.error_code, "attempts": b.attempts, "message": b.error_message,
                                    "content id": b.content_id} for b in issues]), hide_index=True, width="stretch")


status_panel()
for problem in services.ip_problems():  # where addresses are: a source the operator named that cannot be used
    st.warning(markdown(problem))


@st.fragment(run_every=2)
def backfill_panel() -> None:
    st.subheader("History before the feed's 7 days")
    st.caption("Backfilled from Microsoft Graph's audit log queries (Purview keeps 180 days; the app needs "
               "AuditLogsQuery.Read.All), in queries sized to the tenant's volume, each record stored once. "
               "`python -m ingest backfill` does the same from a terminal.")
    runner = services.background_backfill()
    state = runner.state
    summary = services.backfill_state()
    if summary["windows"]:
        counts = " · ".join(f"{n:,} {what}" for what, n in sorted(summary["windows"].items()))
        st.markdown(f"{markdown(summary['from'][:10])} – {markdown(summary['to'][:10])}: {counts} · "
                    f"{summary['records']:,} records, {summary['added']:,} new to the store")
        if summary["unusable"]:
            st.warning(f"{summary['unusable']:,} record(s) Microsoft Graph returned could not be used (no auditData "
                       "object, or an Id that is not text) and were skipped.")
        if summary["gaps"]:
            st.warning(f"{len(summary['gaps'])} time window(s) could not be had whole (below). Run the backfill "
                       "again to retry them.")
            st.dataframe(pd.DataFrame(summary["gaps"]), hide_index=True, width="stretch")
    else:
        st.caption("No backfill yet.")
    ui.job(state, "Starting: getting a Microsoft Graph token…")
    if services.access().can("backfill") and not services.read_only():
        today = datetime.now(timezone.utc).date()
        left, right, go = st.columns([2, 2, 1], vertical_alignment="bottom")
        since = left.date_input("From (UTC)", today - timedelta(days=180), min_value=today - timedelta(days=180),
                                max_value=today, key="backfill_since")
        until = right.date_input("To (UTC)", today, min_value=today - timedelta(days=180), max_value=today,
                                 key="backfill_until")
        if go.button("Backfill", disabled=state.running, key="backfill_button", width="stretch"):
            start = datetime.combine(since, time.min, timezone.utc)
            end = min(datetime.combine(until, time.min, timezone.utc) + timedelta(days=1), datetime.now(timezone.utc))
            refused = runner.start(start, end) if start < end else "The range must run forward."
            if refused:
                st.info(markdown(refused))


@st.fragment(run_every=2)
def workspace_panel() -> None:
    tables = services.ingest_status().workspace
    if not (tables or settings.workspace_id or settings.demo):
        return
    st.subheader("Log Analytics workspace")
    st.caption("Read from the workspace Microsoft Sentinel fills (`python -m ingest run --source workspace`), by "
               "when each row arrived there, so late rows are read by the next run"
               + (" — in DEMO mode, the simulated tenant's." if settings.demo else "."))
    if tables:
        st.dataframe(pd.DataFrame([{"table": t["table"], "read from": t["from"], "read until": t["read_until"],
                                    "records": t["records"], "new": t["added"], "unusable": t["unusable"],
                                    "last success": t["last_success"], "error": t["last_error"]} for t in tables]),
                     hide_index=True, width="stretch")
        for table in tables:
            if table["last_error"]:
                st.warning(markdown(f"{table['table']}: {table['last_error']} — the next run tries again."))
    runner = services.background_workspace()
    state = runner.state
    ui.job(state, "Starting: getting a Log Analytics token…")
    if services.access().can("sync") and not services.read_only():
        if st.button("Read the workspace now", disabled=state.running, key="workspace_button"):
            refused = runner.start()
            if refused:
                st.info(markdown(refused))


backfill_panel()
workspace_panel()
