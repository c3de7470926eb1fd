"""Activity log (admins): who saved, renamed or deleted a watch-list, ran Sync now or exported events, and when."""
from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from dashboard import services
from eventstore.export import write_csv

st.header("Activity log")
st.caption("What people did in this dashboard, newest first, kept in the event store so every dashboard on it "
           "shares it.")
entries = services.activity()
if not entries:
    st.info("Nothing yet: watch-list changes, Sync now and exports appear here.")
    st.stop()
COLUMNS = ["time (UTC)", "who", "action", "detail"]
st.dataframe(pd.DataFrame(entries, columns=COLUMNS), hide_index=True, width="stretch")  # a table shows text as text
out = io.StringIO()
write_csv(entries, out, COLUMNS)
st.download_button("Download CSV", out.getvalue(), "dashboard-activity.csv", "text/csv")
