"""Entry point: `streamlit run dashboard/app.py`. Opens the store once per process, draws the shared
sidebar, then runs the chosen page."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import streamlit as st  # noqa: E402

from dashboard import services, ui  # noqa: E402
from dashboard.access import AccessDenied  # noqa: E402
from dashboard.filters import ALL_FIELDS, FILTER_FIELDS, SPAN_FIELDS  # noqa: E402
from detect.rules import RuleError  # noqa: E402
from dashboard.index import IndexBusy  # noqa: E402
from dashboard.untrusted import markdown  # noqa: E402
from eventstore import StoreError  # noqa: E402
from ingest.settings import SettingsError  # noqa: E402


def main() -> None:
    st.set_page_config(page_title="O365 Activity Graph", page_icon="🕸️", layout="wide")

    try:
        settings = services.settings()
        services.rules()
        index = services.index()
    except RuleError as error:
        st.error(f"A detection rule cannot be used: {markdown(error)}")
        st.caption("Fix the rules file it names (DETECT_RULES_DIR) and restart the dashboard.")
        st.stop()
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

    exposed = services.exposure_problem()
    if exposed:
        st.error(exposed)
        st.stop()
    who = services.access()
    if not who.signed_in:
        st.header("O365 Activity Graph")
        st.write(who.why or f"Sign in with your organization's account to see the audit trail of "
                            f"{settings.tenant_label}.")
        if st.button("Sign in with Microsoft", type="primary"):
            st.login()
        st.stop()
    if not who.can("view"):
        st.header("Ask your admin for access")
        st.write(who.why or ("You are signed in, but this dashboard has no role for you." if who.name else
                             "The authenticating proxy in front of this dashboard did not say who you are."))
        st.caption(f"An admin gives you the Viewer, Analyst or Admin role. Signed in as: {markdown(who.name) or '-'}")
        if who.how == "sign-in" and st.button("Sign out"):
            st.logout()
        st.stop()

    ui.identity(who)
    # each page with the view's fields it shows and applies: a filter never reaches a page that ignores it
    pages = {
        st.Page("app_pages/incidents.py", title="Incidents", icon="🧯", default=True): (),
        st.Page("app_pages/leads.py", title="Leads", icon="🚩"): (),
        st.Page("app_pages/explore.py", title="Explore", icon="🕸️"): ALL_FIELDS,
        st.Page("app_pages/events.py", title="Events", icon="📋"): FILTER_FIELDS,
        st.Page("app_pages/watchlists.py", title="Watch-lists", icon="👁️"): SPAN_FIELDS,
        st.Page("app_pages/sync.py", title="Sync", icon="🔄"): (),
    }
    if who.can("read the activity log"):
        pages[st.Page("app_pages/activity.py", title="Activity log", icon="🧾")] = ()
    chosen = st.navigation(list(pages))
    honours = next(fields for page, fields in pages.items() if page.url_path == chosen.url_path)
    st.session_state["current"] = ui.sidebar(settings, index, honours, chosen.url_path or "incidents")
    try:
        chosen.run()
    except AccessDenied as denied:  # a request the page would not have offered: refused on the server
        st.error(markdown(denied))


# Sync now parses in a helper process; where this script is the main module (AppTest), that process imports it
# as __mp_main__, and must not run the dashboard.
if __name__ != "__mp_main__":
    main()
