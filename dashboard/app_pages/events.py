"""Events: the filtered events as a table, newest first, paged in the index; a row opens its full JSON."""
from __future__ import annotations

import streamlit as st

from dashboard import services
from dashboard.pages_common import EXPORT_LIMIT, events_csv, events_jsonl, page_start, show_events

cur, index = page_start("Events", "events")

total = services.count(cur.filter, cur.watch)
a, b = st.columns([1, 3])
size = a.selectbox("Rows per page", [25, 50, 100, 250], index=1, key="events_page_size")
pages = max(1, -(-total // size))
number = b.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, key="events_page")
st.caption(f"{total:,} events match · newest first · times in UTC")
show_events(index, cur.filter, cur.watch, key="events_table", limit=size, offset=(number - 1) * size)

c, d = st.columns(2)
c.download_button("Download CSV", lambda: events_csv(index, cur.filter, cur.watch), "events.csv", "text/csv",
                  help=f"The normalized columns; formula-like cells are neutralized. At most {EXPORT_LIMIT:,} events.")
d.download_button("Download JSONL", lambda: events_jsonl(index, cur.filter, cur.watch), "events.jsonl",
                  "application/jsonl", help=f"The original records, one per line. At most {EXPORT_LIMIT:,} events.")
