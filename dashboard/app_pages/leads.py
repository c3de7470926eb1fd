"""Leads: what to look at first. Built-in detections over the stored events, most severe and newest first; each
opens Explore on exactly its events, and can be marked reviewed with a note."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import services, ui
from dashboard.filters import View
from dashboard.pages_common import detections_looking, page_start
from dashboard.untrusted import markdown

BADGE = {"high": "🔴 high", "medium": "🟠 medium", "low": "🟡 low"}
SHOWN = 50  # leads drawn per page view; the rest are counted

cur, _ = page_start("Leads", "the leads")
all_leads, looking = services.leads()
can_review = services.access().can("review leads") and not services.read_only()


def _open(view_params: dict) -> None:
    ui.apply_view(View.from_params({k: v if isinstance(v, list) else [v] for k, v in view_params.items()}))
    st.session_state["open_explore"] = True


def _review(lead_id: str, reviewed: bool = True) -> None:
    # the note as typed now (the button's arguments were fixed when the page was last drawn)
    refused = services.review_lead(lead_id, st.session_state.get(f"note_{lead_id}", "") if reviewed else "", reviewed)
    if refused:
        st.session_state["lead_refused"] = refused
        return
    st.session_state[f"review_pop_{lead_id}"] = False  # closed: the next lead moves up under the cursor
    st.session_state["lead_changed"] = (lead_id, reviewed)


if st.session_state.pop("open_explore", False):
    st.switch_page("app_pages/explore.py")
if "lead_refused" in st.session_state:
    st.error(markdown(st.session_state.pop("lead_refused")))
changed = st.session_state.get("lead_changed")
if changed:
    lead_id, reviewed = changed
    what = next((lead.summary for lead in all_leads if lead.id == lead_id), "the lead")
    said, undo = st.columns([5, 1], vertical_alignment="center")
    said.success(f"{'Marked reviewed' if reviewed else 'Reopened'}: {markdown(what, 200)}")
    if undo.button("Undo", key="undo_review", width="stretch", disabled=not can_review):
        _review(lead_id, not reviewed)
        st.session_state.pop("lead_changed", None)
        st.rerun()

left, middle, right = st.columns([2, 2, 1])
severities = left.multiselect("Severity", list(BADGE), default=["high", "medium", "low"], key="leads_severity")
rules, tactics = services.rules()
titles = {rule.name: rule.title for rule in rules}
rules = middle.multiselect("Rule", list(titles), format_func=titles.get, key="leads_rules", placeholder="all rules")
show_reviewed = right.toggle("Reviewed too", key="leads_reviewed")
chosen = [lead for lead in all_leads if lead.severity in severities and (not rules or lead.rule in rules)
          and (show_reviewed or not lead.reviewed)]
open_count = sum(1 for lead in all_leads if not lead.reviewed)
st.markdown(f"**{len(chosen):,}** shown · {open_count:,} not reviewed of {len(all_leads):,} leads · "
            + ("looked for again as events arrive" if not looking else "more may come: the detections are looking"))

if looking:
    detections_looking("leads")

if not all_leads and not looking:
    st.success("No leads: none of the built-in detections (below) found anything in the stored events.")
for lead in chosen[:SHOWN]:
    with st.container(border=True):
        top, buttons = st.columns([5, 2])
        with top:
            st.markdown(f"**{BADGE.get(lead.severity, lead.severity)}** · {markdown(lead.summary, 400)}")
            st.caption(f"{lead.events:,} event{'s' * (lead.events != 1)} · {len(lead.users):,} user(s) · "
                       f"{len(lead.ips):,} IP(s) · first {lead.first_seen[:16].replace('T', ' ')} · last "
                       f"{lead.last_seen[:16].replace('T', ' ')} UTC")
            if lead.reviewed:
                st.caption(f"✔ reviewed by {markdown(lead.reviewed.get('by', ''), 80)} at "
                           f"{markdown(lead.reviewed.get('at', ''), 30)}: {markdown(lead.reviewed.get('note', ''))}")
        with buttons:
            st.button("Open in Explore", key=f"open_{lead.id}", on_click=_open, args=(lead.view,), type="primary",
                      width="stretch", help="The graph of exactly this lead's events")
            if lead.reviewed:
                st.button("Reopen", key=f"reopen_{lead.id}", disabled=not can_review, width="stretch",
                          on_click=_review, args=(lead.id, False))
            else:
                # keyed by the lead: its open state stays with this lead, not with the card's place on the page
                with st.popover("Mark reviewed", width="stretch", disabled=not can_review, key=f"review_pop_{lead.id}",
                                on_change="rerun"):
                    st.text_input("Note", key=f"note_{lead.id}", placeholder="e.g. known pen test; ticket 4711")
                    st.button("Save", key=f"review_{lead.id}", on_click=_review, args=(lead.id,))
        with st.expander("Who and where"):
            st.dataframe(pd.DataFrame({"users": pd.Series(lead.users, dtype=str)}), hide_index=True, width="stretch",
                         height=min(35 * (len(lead.users) + 1) + 3, 215))
            st.dataframe(pd.DataFrame({"IPs": pd.Series(lead.ips, dtype=str)}), hide_index=True, width="stretch",
                         height=min(35 * (len(lead.ips) + 1) + 3, 215))
if len(chosen) > SHOWN:
    st.caption(f"The {SHOWN} most severe and newest are shown; narrow by severity or rule to see the rest.")

with st.expander("The detections, and why each matters"):
    st.dataframe(pd.DataFrame([{"detection": rule.title, "severity": rule.severity,
                                "tactic (MITRE ATT&CK)": f"{tactics[rule.tactic].name} ({tactics[rule.tactic].attack})",
                                "why": rule.why} for rule in rules]), hide_index=True, width="stretch")
    st.caption("Rules, thresholds and lists are data in detect/rules.toml; add your own in DETECT_RULES_DIR.")
