"""Pieces more than one page draws: the empty state, an events table with its JSON, CSV/JSONL exports."""
from __future__ import annotations

import io
import json

import pandas as pd
import streamlit as st

from eventstore import Filter
from eventstore.export import write_csv, write_jsonl, write_xlsx

from . import services
from .filters import file_name, in_words
from .index import ActivityIndex, Watch

TABLE_COLUMNS = ["time", "operation", "user_id", "client_ip", "workload", "result_status", "file_name", "object_id",
                 "user_agent"]
EXPORT_LIMIT = 100_000


def page_start(title: str, what: str):
    """A page's header, then (current view, index) — or a stop with the reason when there is nothing to show."""
    from . import ui

    cur = ui.current()
    index = services.index()
    st.header(title)
    if cur.filter is None:
        st.warning(f"Fix the filter in the sidebar to see {what}: {cur.problem}")
        st.stop()
    if index.catching is not None:
        _indexing()
        st.stop()
    if index.version[0] == 0:
        empty_state()
        st.stop()
    return cur, index


@st.fragment(run_every=1)
def _indexing() -> None:
    """While the index is built (or copies a long backlog), say how far it got; draw the page when done."""
    catching = services.index().catching
    if catching is None:
        st.rerun(scope="app")
    what = "Building the dashboard's index from the store" if catching.rebuild else "Indexing newly synced events"
    if catching.total:
        st.progress(min(1.0, catching.done / catching.total),
                    text=f"{what}: {catching.done:,} of {catching.total:,} events. The page appears when it is done.")
    else:
        st.progress(0.5, text=f"{what}: {catching.done:,} events so far. The page appears when it is done.")


def empty_state() -> None:
    settings = services.settings()
    st.info("No events are stored yet.")
    st.markdown(
        "- Click **Sync now** in the sidebar"
        + (" to load the simulated **DEMO** tenant (about 30,000 events of one week)." if settings.demo else
           " to fetch your tenant's audit events.")
        + "\n- Or run `python -m ingest sync` (one pass) or `python -m ingest run` (keeps syncing).\n"
        "- A new subscription can take up to 12 hours before Microsoft 365 delivers its first events.")
    _wait_for_data()


@st.fragment(run_every=3)
def _wait_for_data() -> None:
    """Reload the page by itself as soon as the first events arrive."""
    if services.index().version[0] > 0:
        st.rerun(scope="app")
    state = services.background_sync().state
    if state.running and state.progress:
        st.caption(f"Syncing {state.progress.text()}…")


@st.fragment(run_every=2)
def detections_looking(what: str) -> None:
    """How far the detections are through the stored events; the page is drawn again, whole, when they are done."""
    progress = services.leads_looking()
    if progress is None:
        st.rerun(scope="app")
    done, total, through = progress
    st.progress(done / max(1, total), text=f"⏳ Looking through {through}: {done} of {total} detections done. The "
                                           f"{what} below are those found so far; this page adds the rest by itself.")


def related_table(title: str, frame: pd.DataFrame) -> None:
    if not frame.empty:
        st.caption(title)
        st.dataframe(frame.rename(columns={"value": title.split()[-1], "n": "events"}), hide_index=True,
                     width="stretch", height=min(35 * (len(frame) + 1) + 3, 215))


def show_events(index: ActivityIndex, flt: Filter, watch: Watch | None, key: str, limit: int = 50,
                after: tuple | None = None) -> tuple | None:
    """A page of matching events, newest first, continuing after the key `after`; selecting a row shows its full
    JSON (as text, never markup). Returns the key that the next page continues after (None at the end)."""
    keys = index.page(flt, watch, limit=limit, after=after)
    rows = services.store().events_at([position for _, position in keys])
    if not rows:
        st.caption("No events.")
        return None
    frame = pd.DataFrame([r._asdict() for r in rows])
    event = st.dataframe(frame[TABLE_COLUMNS], hide_index=True, width="stretch", key=key,
                         on_select="rerun", selection_mode="single-row", height=min(35 * (len(rows) + 1) + 3, 900))
    chosen = event.selection.rows if event is not None else []
    if chosen:
        st.caption("The original record, as the API sent it")
        st.json(json.loads(rows[chosen[0]].raw), expanded=True)
    return keys[-1] if len(keys) == limit else None


# what the events download as: (button, kind in words, extension, MIME type, writer, whether the writer makes bytes)
EVENT_FILES = (("CSV", "CSV", "csv", "text/csv", write_csv, False),
               ("Excel", "Excel", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                write_xlsx, True),
               ("JSONL", "JSON Lines", "jsonl", "application/jsonl", write_jsonl, False))


def event_downloads(index: ActivityIndex, flt: Filter, watch: Watch | None, columns=None) -> None:
    """The matching events as CSV, Excel (the normalized columns; formula-like CSV cells neutralized, Excel's all
    text) and JSON Lines (the original records), each file named by its span and filters, made when pressed."""
    for column, (label, kind, extension, mime, write, binary) in zip(columns or st.columns(len(EVENT_FILES)),
                                                                    EVENT_FILES):
        column.download_button(f"Events as {label}", _exporter(kind, write, binary, index, flt, watch),
                               file_name("events", flt, extension), mime, key=f"download_{extension}",
                               help=f"At most {EXPORT_LIMIT:,} events, newest first.")


def _exporter(kind: str, write, binary: bool, index: ActivityIndex, flt: Filter, watch: Watch | None):
    def make():
        out = io.BytesIO() if binary else io.StringIO()
        write(index.events(flt, watch, EXPORT_LIMIT), out)
        return out.getvalue()

    return services.exporter(f"events as {kind}: {in_words(flt)}", make)
