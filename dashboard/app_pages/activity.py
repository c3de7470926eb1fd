"""Activity log (admins): who saved, renamed or deleted a watch-list, ran Sync now or exported events, and when. All
of it stays reachable however many entries someone adds: filters by person, action and day, pages, and a download of
every entry that matches."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pandas as pd
import streamlit as st

from dashboard import services
from eventstore import ActivityQuery
from eventstore.model import utc_text

PAGE = 100
COLUMNS = ["time (UTC)", "who", "action", "detail"]
ANYONE, ANY = "(anyone)", "(any action)"

st.header("Activity log")
st.caption("What people did in this dashboard, newest first, kept in the event store so every dashboard on it "
           "shares it.")
people, actions = services.activity_facets()
if not people:
    st.info("Nothing yet: watch-list changes, lead reviews, Sync now and exports appear here.")
    st.stop()
who_box, action_box, since_box, until_box = st.columns([3, 3, 2, 2])
who = who_box.selectbox("Person", [ANYONE, *people], key="act_who")
action = action_box.selectbox("Action", [ANY, *actions], key="act_action")
since = since_box.date_input("From (UTC day)", value=None, key="act_since")
until = until_box.date_input("To (UTC day, included)", value=None, key="act_until")


def day_start(day) -> str:
    return utc_text(datetime.combine(day, time(), timezone.utc)) if day else ""


query = ActivityQuery("" if who == ANYONE else who, "" if action == ANY else action, day_start(since),
                      day_start(until and until + timedelta(days=1)))
total = services.activity(query, 0)[0]
pages = max(1, -(-total // PAGE))
if st.session_state.get("act_page", 1) > pages:  # the filters changed under a later page
    st.session_state["act_page"] = 1
page = st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="act_page")
_, entries = services.activity(query, PAGE, (page - 1) * PAGE)
if not entries:
    st.info("No entry matches these filters.")
    st.stop()
st.caption(f"{total:,} entr{'y' if total == 1 else 'ies'} match · {(page - 1) * PAGE + 1:,}–"
           f"{(page - 1) * PAGE + len(entries):,} shown, newest first")
st.dataframe(pd.DataFrame(entries, columns=COLUMNS), hide_index=True, width="stretch")  # a table shows text as text
st.download_button(f"Download all {total:,} as CSV", services.activity_export(query, COLUMNS),
                   "dashboard-activity.csv", "text/csv")
