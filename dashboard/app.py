"""Entry point: `streamlit run dashboard/app.py`. Opens the store once per process, draws the shared
sidebar, then runs the chosen page."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import streamlit as st  # noqa: E402

from dashboard import services, ui  # noqa: E402
from dashboard.index import IndexBusy  # noqa: E402
from dashboard.untrusted import markdown  # noqa: E402
from eventstore import StoreError  # noqa: E402
from ingest.settings import SettingsError  # noqa: E402


def main() -> None:
    st.set_page_config(page_title="O365 Activity Graph", page_icon="🕸️", layout="wide")

    try:
        settings = services.settings()
        index = services.index()
    except SettingsError as error:
        st.error(f"The configuration has a problem: {markdown(error)}")
        st.caption("Fix the environment variable (or the .env file) and restart the dashboard. The README lists "
                   "every setting.")
        st.stop()
    except IndexBusy as error:
        st.error(markdown(error))
        st.stop()
    except StoreError as error:
        st.error(f"The event store cannot be used. {markdown(error)}")
        st.caption("Check AUDIT_STORE (and for Cosmos DB: COSMOS_ENDPOINT, COSMOS_KEY, the network), then reload.")
        st.stop()

    st.session_state["current"] = ui.sidebar(settings, index)
    pages = st.navigation([
        st.Page("app_pages/explore.py", title="Explore", icon="🕸️", default=True),
        st.Page("app_pages/events.py", title="Events", icon="📋"),
        st.Page("app_pages/watchlists.py", title="Watch-lists", icon="👁️"),
        st.Page("app_pages/sync.py", title="Sync", icon="🔄"),
    ])
    pages.run()


# Sync now parses in a helper process; where this script is the main module (AppTest), that process imports it
# as __mp_main__, and must not run the dashboard.
if __name__ != "__mp_main__":
    main()
