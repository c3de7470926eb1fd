"""Watch-lists: upload (adminlist.csv and the like), preview what matched, rename, delete, choose one."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from dashboard import services, ui
from dashboard.index import Watch
from dashboard.untrusted import markdown
from dashboard.watchlist import WatchListError, parse_watchlist

cur = ui.current()
index = services.index()
st.header("Watch-lists")
st.caption("A CSV with one column of accounts or IPs (with or without a header), or columns named UserId, UPN, "
           "Email, IP or ClientIP. IPv4/IPv6 addresses and CIDR ranges. UTF-8 (with or without BOM), `,` or `;`. "
           "Saved in the event store, so everyone using it sees them.")

can_manage = services.access().can("manage watch-lists") and not services.read_only()
if services.read_only():
    st.info(services.READ_ONLY)
    submitted = False
elif not can_manage:
    st.info("Your role lets you use watch-lists, not change them: uploading, renaming and deleting need the "
            "Analyst role.")
    submitted = False
else:
    saved_now = st.session_state.pop("wl_saved", "")
    if saved_now:  # the next upload starts empty, not with this one's name
        st.session_state["wl_name"], st.session_state["wl_replace"] = "", False
        st.success(saved_now)
    with st.form("upload"):
        upload = st.file_uploader("Watch-list file", type=["csv", "txt"], key="wl_upload")
        name = st.text_input("Name", key="wl_name", placeholder="admins")
        replace_existing = st.checkbox("Replace the watch-list of that name, if there is one", key="wl_replace")
        submitted = st.form_submit_button("Save watch-list")
if submitted:
    if upload is None:
        st.error("Choose a file first.")
    else:
        try:
            parsed = parse_watchlist(name or upload.name.rsplit(".", 1)[0], upload.getvalue())
        except WatchListError as error:
            st.error(f"{markdown(error)} Nothing was changed.")
        else:
            if parsed.name in services.watchlists() and not replace_existing:
                st.error(f"A watch-list named {markdown(parsed.name)} exists already. Nothing was changed: tick "
                         "*Replace the watch-list of that name* to replace it, or choose another name.")
            else:
                services.save_watchlist(parsed)
                st.session_state["wl_last_saved"] = parsed.name
                st.session_state["wl_saved"] = (f"Saved **{len(parsed.accounts):,} accounts and "
                                                f"{len(parsed.networks):,} IP entries** as the watch-list shown below.")
                st.rerun()

saved = services.watchlists()
if not saved:
    st.info("No watch-lists yet." + (" Upload one above." if can_manage else ""))
    st.stop()

for wl in saved.values():
    with st.expander(f"{markdown(wl.name, 80)} · {wl.size:,} entries",
                     expanded=wl.name == st.session_state.get("wl_last_saved")):
        if cur.filter is not None:
            matched, unmatched = index.watch_matches(Watch(wl.accounts, wl.networks), cur.filter)
            if wl.changed_by:
                st.caption(f"Last changed by {markdown(wl.changed_by)} at {markdown(wl.changed_at)}")
            st.markdown(f"**{len(wl.accounts):,}** accounts and **{len(wl.networks):,}** IP entries read · "
                        f"**{matched:,}** events in the current filters involve them · "
                        f"**{len(unmatched):,}** entries matched nothing")
            if unmatched:
                st.dataframe(pd.DataFrame({"matched nothing": sorted(unmatched)}), hide_index=True, height=150)
        if can_manage:
            a, b, c = st.columns([2, 1, 1])
            new_name = a.text_input("Rename to", key=f"rename_{wl.name}", label_visibility="collapsed",
                                    placeholder="new name")
            if b.button("Rename", key=f"do_rename_{wl.name}"):
                refused = services.rename_watchlist(wl.name, new_name)
                if refused:
                    st.error(markdown(refused))
                else:
                    st.rerun()
            if c.button("Delete", key=f"delete_{wl.name}"):
                services.delete_watchlist(wl.name)
                st.rerun()
        st.button("Use in the filters", key=f"use_{wl.name}", on_click=ui.apply_view,
                  args=(replace(cur.view, watchlist=wl.name),))
