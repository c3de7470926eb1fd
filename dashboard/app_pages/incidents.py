"""Incidents: the leads of one attack joined into one investigation — what happened, in order, on one graph with its
aftermath, with the evidence, the team's decision and a report to hand over."""
from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import services, ui
from dashboard.filters import View
from dashboard.graph_view import draw
from dashboard.pages_common import detections_looking, page_start
from dashboard.untrusted import markdown
from detect.incidents import STATUSES, Incident, in_order
from eventstore.entities import KINDS
from eventstore.model import parse_utc

BADGE = {"critical": "🟣 critical", "high": "🔴 high", "medium": "🟠 medium", "low": "🟡 low"}
cur, _ = page_start("Incidents", "the incidents")
rules, tactics = services.rules()
incidents = services.incidents()
if services.leads_looking() is not None:
    detections_looking("incidents")
can_decide = services.access().can("manage incidents") and not services.read_only()


def _chain(incident: Incident) -> str:
    return " → ".join(f"{tactics[t].name} ({tactics[t].attack})" for t in incident.chain if t in tactics)


def _open(incident_id: str) -> None:
    st.session_state["incident"] = incident_id


def _explore(incident: Incident) -> None:
    """Explore on the incident's accounts over its span ±1 hour, everything they did."""
    start = parse_utc(incident.first_seen).replace(tzinfo=None, second=0) - timedelta(hours=1)
    end = parse_utc(incident.last_seen).replace(tzinfo=None, second=0) + timedelta(hours=1, minutes=1)
    ui.apply_view(View(period="custom", start=start, end=end, user=", ".join(incident.entities("users")),
                       relationship="user → IP → operation", cap=100))
    st.session_state["open_explore"] = True


if st.session_state.pop("open_explore", False):
    st.switch_page("app_pages/explore.py")
if "incident" not in st.session_state and st.query_params.get("incident"):  # a copied link names one
    st.session_state["incident"] = st.query_params["incident"]
chosen = next((i for i in incidents if i.id == st.session_state.get("incident")), None)
if chosen is None:
    st.session_state.pop("incident", None)
    st.query_params.pop("incident", None)
    open_ones = [i for i in incidents if not i.status.startswith("closed")]
    st.markdown(f"**{len(open_ones):,}** open of {len(incidents):,} incidents · each joins the leads of one attack "
                "(a shared account, address, application or target, at most "
                f"{services.settings().incident_gap_hours} hours apart) · most severe and newest first")
    if not incidents:
        st.success("No incidents: the detections found nothing in the stored events.")
    show_closed = st.toggle("Closed too", key="incidents_closed")
    for incident in incidents:
        if incident.status.startswith("closed") and not show_closed:
            continue
        with st.container(border=True):
            text, action = st.columns([6, 1], vertical_alignment="center")
            with text:
                st.markdown(f"**{BADGE.get(incident.severity, incident.severity)}** · `{incident.id}` · "
                            f"{markdown(incident.status)} · {markdown(incident.case.get('owner', '') or 'no owner')}")
                st.markdown(markdown(incident.title, 600))
                st.caption(f"{_chain(incident)} · {len(incident.leads)} lead(s) · {incident.events:,} events · "
                           f"{len(incident.entities('users')):,} account(s) · {len(incident.entities('ips')):,} "
                           "address(es)")
            action.button("Open", key=f"incident_{incident.id}", on_click=_open, args=(incident.id,), type="primary",
                          width="stretch")
    st.stop()

# --- one incident ---------------------------------------------------------------------------------------------------
incident = chosen
st.query_params["incident"] = incident.id  # the URL names it: a link opens it
st.button("← All incidents", on_click=st.session_state.pop, args=("incident", None))
st.subheader(f"{incident.id}: {markdown(incident.title, 400)}")
st.markdown(f"**{BADGE.get(incident.severity, incident.severity)}** · status **{markdown(incident.status)}** · owner "
            f"{markdown(incident.case.get('owner', '') or 'nobody yet')} · {len(incident.leads)} leads · "
            f"{incident.events:,} events")
st.markdown(f"Tactics (MITRE ATT&CK): {markdown(_chain(incident)) or '—'}")

c1, c2, c3, c4 = st.columns(4)  # each file is written when its button is pressed
c1.download_button("Report (HTML)", services.exporter(f"incident report {incident.id}",
                                                      lambda: services.incident_files(incident).html),
                   f"{incident.id}.html", "text/html", type="primary", width="stretch",
                   help="One self-contained file: it opens offline and prints well")
c2.download_button("Indicators (CSV)", services.exporter(f"incident indicators {incident.id} (CSV)",
                                                         lambda: services.incident_files(incident).csv),
                   f"{incident.id}-indicators.csv", "text/csv", width="stretch")
c3.download_button("Indicators (STIX 2.1)", services.exporter(f"incident indicators {incident.id} (STIX 2.1)",
                                                              lambda: services.incident_files(incident).stix),
                   f"{incident.id}-stix.json", "application/json", width="stretch")
c4.button("Open in Explore", on_click=_explore, args=(incident,), width="stretch",
          help="Its accounts over its span ±1 hour, everything they did")

st.markdown("#### What happened, in order")
rows = []
for lead in in_order(incident.leads):
    who = lead.users[0] if len(lead.users) == 1 else f"{len(lead.users)} accounts"
    where = lead.ips[0] if len(lead.ips) == 1 else f"{len(lead.ips)} addresses" if lead.ips else ""
    rows.append({"step": f"{lead.first_seen[11:16]} {lead.step or lead.title}", "start": parse_utc(lead.first_seen),
                 "end": parse_utc(lead.last_seen) + timedelta(minutes=1), "who": who, "from": where,
                 "rule": lead.title, "tactic": tactics[lead.tactic].name if lead.tactic in tactics else "",
                 "events": lead.events, "what": lead.summary[:300]})
frame = pd.DataFrame(rows)
order = list(frame["step"])
chart = alt.Chart(frame).mark_bar(cornerRadius=3, height=16).encode(
    x=alt.X("start:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%b %d %H:%M")),
    x2="end:T",
    y=alt.Y("step:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
    color=alt.Color("tactic:N", title="tactic"),
    tooltip=[alt.Tooltip("utcyearmonthdatehoursminutes(start):T", title="from (UTC)", format="%Y-%m-%d %H:%M"),
             "who:N", "from:N", "rule:N", "tactic:N", "events:Q", "what:N"],
).properties(height=40 + 30 * len(frame))
st.altair_chart(chart, width="stretch")  # audit text goes in as data: Vega draws it as text

st.markdown("#### Its accounts, addresses and targets, ±1 hour, everything they did")
graph = services.incident_graph(incident)
if graph.nodes:
    draw(graph)
    legend = " ".join(f"<span style='color:{KINDS[k].color}'>{KINDS[k].symbol}</span> {KINDS[k].label}"
                      for k in dict.fromkeys(n.kind for n in graph.nodes))
    st.markdown(legend + " · <span style='color:#ffd400'>◯</span> the incident's own · size: events",
                unsafe_allow_html=True)  # our own fixed text only
if incident.joins:
    with st.expander("Why these leads are one incident", expanded=False):
        for join in incident.joins:
            st.markdown("- " + markdown(join["why"], 400))
        for merge in incident.merged:
            st.markdown(f"- {markdown(merge['id'])} was merged into it at {markdown(merge['at'])}")

st.markdown("#### The team's decision")
history = incident.case.get("history", [])
for entry in history[-10:]:
    said = "; ".join(f"{key} {entry[key]}" for key in ("status", "owner", "note") if key in entry)
    st.caption(f"{markdown(entry.get('at', ''))} · {markdown(entry.get('by', ''))}: {markdown(said, 600)}")
if can_decide:
    with st.form(f"decide_{incident.id}", clear_on_submit=True):
        a, b = st.columns(2)
        status = a.selectbox("Status", STATUSES, index=STATUSES.index(incident.status))
        owner = b.text_input("Owner", value=incident.case.get("owner", ""))
        note = st.text_area("Note", placeholder="what was found, what was done")
        if st.form_submit_button("Save"):
            refused = services.decide_incident(incident.id, status, owner, note)
            if refused:
                st.error(markdown(refused))
            else:
                st.rerun()
else:
    st.caption("Changing the status, the owner or adding notes needs the Analyst role.")

st.markdown("#### Evidence")
events = services.incident_events(incident)
st.dataframe(pd.DataFrame([{"time": row.time, "lead": rule, "operation": row.operation, "user": row.user_id,
                            "address": row.client_ip, "target": row.object_id, "file": row.file_name}
                           for row, rule in events]), hide_index=True, width="stretch")  # a table shows text as text
