"""Events: the filtered events as a table, newest first; a row opens its full JSON. Pages are keyset pages
(time, position), so paging deep into tens of millions of events costs what the first page does: Older and
Newer step through them, and "Jump to" starts at any moment."""
from __future__ import annotations

from datetime import datetime, time, timezone

import streamlit as st

from dashboard import services, ui
from dashboard.pages_common import event_downloads, page_start, show_events

cur, index = page_start("Events", "events")

total = services.count(cur.filter, cur.watch)
a, b, c = st.columns([1, 1, 1])
size = a.selectbox("Rows per page", [25, 50, 100, 250], index=1, key="events_page_size")
day = b.date_input("Jump to (UTC)", value=None, key="events_jump_day", help="Show events from this moment back")
moment = c.time_input("at", value=time(23, 59), key="events_jump_time", step=60)

# the keys of the pages walked so far (None: the newest); a new view, page size or jump starts again
view = (cur.filter, cur.watch, size, day, moment)
if st.session_state.get("events_view") != view:
    start = (datetime.combine(day, moment, tzinfo=timezone.utc).replace(second=59), 2**62) if day else None
    st.session_state.events_view, st.session_state.events_pages = view, [start]
pages = st.session_state.events_pages

summary_column, link_column = st.columns([5, 1])
summary_column.caption(f"{total:,} events match · newest first · times in UTC · page {len(pages):,}"
                       + (" (from the jump)" if pages[0] is not None else ""))
with link_column:
    ui.links(cur)
following = show_events(index, cur.filter, cur.watch, key="events_table", limit=size, after=pages[-1])



def _newest() -> None:
    st.session_state.events_view = None
    st.session_state.events_jump_day = None


left, middle, right, _ = st.columns([1, 1, 1, 3])
left.button("⟨ Newer", disabled=len(pages) == 1, width="stretch", on_click=pages.pop)
middle.button("Older ⟩", disabled=following is None, width="stretch", on_click=pages.append, args=(following,))
right.button("Newest", disabled=pages == [None], width="stretch", on_click=_newest)

event_downloads(index, cur.filter, cur.watch)
