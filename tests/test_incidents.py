"""Incidents: each planted story of the simulated tenant is exactly one incident holding the rules it should, a
benign week gives none, joining as events arrive ends where joining everything at once does with the same ids, a
merge keeps the older id and says so; the report opens offline in Chromium and asks nothing of the network, its STIX
bundle parses; the command line prints them."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.ipinfo import IpInfo
from dashboard.report import write
from detect.incidents import Correlator, incident_id
from detect.leads import Lead, LeadEngine
from detect.rules import TACTICS
from simulator import SimulatedTenant
from simulator.tenant import ATTACKER_IP, NETWORKS, TRAVELLER_IP

from .conftest import fill_store, week_start
from .test_browser import CHROMIUM, LAUNCH_ARGS
from .test_leads import dashboard_cli, engine_for

STORIES = {  # the rules each planted story must bring together, and nothing else
    "takeover": {"password-spray", "success-after-failures", "new-country", "hosting-network", "inbox-rule-hide",
                 "download-volume", "privileged-role"},
    "consent": {"app-consent", "app-credentials"},
    "travel": {"impossible-travel", "new-country", "security-info", "mailbox-forwarding", "audit-off"},
    "guessing": {"brute-force"},
    "leaver": {"deletion-volume"},
}
# The victim's sign-in from the attacker's address is also travel faster than possible when their sign-in before it
# was recent enough, which depends on the hour the simulated tenant starts: it may join the takeover, nothing else.
MAY_JOIN = {"takeover": {"impossible-travel"}}


@pytest.fixture(scope="module")
def demo_incidents(tmp_path_factory):
    tenant = SimulatedTenant(week_start(), seed=7, events_per_week=30_000)  # the DEMO tenant
    store, index, engine = engine_for(tmp_path_factory.mktemp("incidents"), tenant)
    correlator = Correlator(index, store)
    yield tenant, store, index, engine, correlator.correlate(engine.leads())
    index.close()
    store.close()


def test_each_story_is_one_incident_and_none_is_merged_with_another(demo_incidents):
    tenant, _, _, engine, incidents = demo_incidents
    found = [{lead.rule for lead in incident.leads} for incident in incidents]
    told = [next((story for story, rules in STORIES.items() if rules <= each <= rules | MAY_JOIN.get(story, set())),
                 None) for each in found]
    assert sorted(filter(None, told)) == sorted(STORIES) and None not in told, found
    takeover = next(i for i in incidents if "password-spray" in {lead.rule for lead in i.leads})
    assert takeover.main == (tenant.victim.upn, ATTACKER_IP) and takeover.severity == "critical"
    assert takeover.chain.index("credential-access") < takeover.chain.index("privilege-escalation")
    assert len(takeover.chain) == 5
    assert any(j["entity"] == ATTACKER_IP and "account takeover" not in j["why"] for j in takeover.joins)
    assert all(j["why"].startswith("joined by the ") for j in takeover.joins), "every join is explained"
    travel = next(i for i in incidents if "security-info" in {lead.rule for lead in i.leads})
    assert travel.main[1] == TRAVELLER_IP, "the admin's office addresses are everyday: they join nothing"
    assert incidents[0] is takeover, "the most severe, with the most stages, first"


def test_a_benign_week_gives_no_incident(tmp_path):
    tenant = SimulatedTenant(week_start(), seed=11, events_per_week=30_000, stories=False)
    store, index, engine = engine_for(tmp_path, tenant)
    try:
        assert Correlator(index, store).correlate(engine.leads()) == []
    finally:
        index.close()
        store.close()


def test_joining_as_events_arrive_ends_where_joining_everything_does_with_the_same_ids(tmp_path):
    from dashboard.index import ActivityIndex
    from eventstore.sqlite import SqliteStore

    tenant = SimulatedTenant(week_start(), seed=7, events_per_week=6_000)
    (tmp_path / "whole").mkdir()
    whole_store, whole_index, whole = engine_for(tmp_path / "whole", tenant)
    store = SqliteStore(str(tmp_path / "audit.db"))
    index = ActivityIndex(store, str(tmp_path / "audit.db.index"), ipinfo=IpInfo(networks_text=NETWORKS))
    engine, correlator = LeadEngine(index, store), Correlator(index, store)
    try:
        now = datetime.now(timezone.utc)
        for hours in range(7 * 24, -1, -12):  # half a day at a time, as syncs bring them
            fill_store(store, tenant, now - timedelta(hours=hours))
            index.refresh()
            index.wait()
            engine.update()
            step = correlator.correlate(engine.leads())
        full = Correlator(whole_index, whole_store).correlate(whole.leads())

        def groups(incidents):
            return {incident.id: sorted(lead.id for lead in incident.leads) for incident in incidents}

        def explained(incidents):
            return {incident.id: sorted(json.dumps(join, sort_keys=True) for join in incident.joins)
                    for incident in incidents}

        assert groups(step) == groups(full) and len(full) >= 4
        assert explained(step) == explained(full), "every join explained as joining everything at once does"
        assert correlator._kept[0], "the later steps went on from the leads already judged for good"
    finally:
        for thing in (index, store, whole_index, whole_store):
            thing.close()


def lead(ident: str, first: str, users=(), ips=(), rule="r", minutes=5) -> Lead:
    last = (datetime.fromisoformat(first) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Lead(ident, rule, "medium", rule, rule, first + "Z", last, list(users), list(ips), 1, {},
                tactic="persistence")


def test_a_merge_keeps_the_older_id_and_records_the_merge(tmp_path):
    from eventstore.sqlite import SqliteStore

    with SqliteStore(str(tmp_path / "a.db")) as store:
        correlator = Correlator(None, store)  # no index: nothing counts as everyday here
        a = lead("a", "2026-11-30T01:00:00", users=["x@c.com"])
        b = lead("b", "2026-11-30T02:00:00", ips=["198.51.100.7"])
        assert {i.id for i in correlator.correlate([a, b])} == {incident_id("a"), incident_id("b")}
        c = lead("c", "2026-11-30T03:00:00", users=["x@c.com"], ips=["198.51.100.7"])  # both: one attack after all
        (merged,) = correlator.correlate([a, b, c])
        assert merged.id == incident_id("a"), "the older incident's id stays"
        assert [m["id"] for m in merged.merged] == [incident_id("b")]
        far = lead("d", "2026-12-03T03:00:00", users=["x@c.com"])  # the same account, days later: another matter
        assert len(correlator.correlate([a, b, c, far])) == 2
        correlator.decide(merged.id, "ana@contoso.com", "active", "ana@contoso.com", "calling the user")
        again = next(i for i in correlator.correlate([a, b, c, far]) if i.id == merged.id)
        assert again.case["status"] == "active" and again.case["history"][0]["by"] == "ana@contoso.com"
        with pytest.raises(ValueError):
            correlator.decide(merged.id, "ana@contoso.com", "solved")


def test_the_report_opens_offline_asks_nothing_of_the_network_and_its_indicators_parse(demo_incidents, tmp_path):
    import stix2
    from playwright.sync_api import sync_playwright

    tenant, store, index, _, incidents = demo_incidents
    takeover = incidents[0]
    files = write(index, takeover, TACTICS, "DEMO tenant (simulated)")
    path = tmp_path / "report.html"
    path.write_text(files.html, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(files.csv)))
    assert {"ipv4-addr", "user-account"} <= {r["type"] for r in rows}
    assert any(r["value"] == ATTACKER_IP and "RO" in r["context"] for r in rows), "the address with its country"
    bundle = stix2.parse(files.stix, allow_custom=False)
    patterns = [o.pattern for o in bundle.objects if o.type == "indicator"]
    assert f"[ipv4-addr:value = '{ATTACKER_IP}']" in patterns and any(o.type == "report" for o in bundle.objects)
    requests, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_timeout(500)
        text = page.inner_text("body")
        assert takeover.id in text and tenant.victim.upn in text and "Credential access (TA0006)" in text
        assert page.locator("svg").count() >= 2, "the timeline and the graph, drawn in the file"
        browser.close()
    assert [u for u in requests if not u.startswith("file:")] == [], "nothing is fetched from anywhere"
    assert dialogs == [], "audit text in the report ran nothing"


def test_the_command_line_lists_incidents_and_writes_a_report(demo_incidents, tmp_path):
    tenant, store, _, _, incidents = demo_incidents
    done = dashboard_cli(store, tmp_path, "incidents", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"id", "title", "severity", "status", "first_seen", "last_seen", "users", "ips", "apps", "leads", "rules",
            "tactics", "events", "summary"} <= set(lines[0])
    assert lines[0]["id"] == incidents[0].id and tenant.victim.upn in lines[0]["users"]
    out = tmp_path / "handover.html"
    written = dashboard_cli(store, tmp_path, "report", lines[0]["id"], "--out", str(out), "--indicators")
    assert written.returncode == 0 and out.exists() and (tmp_path / "handover.stix.json").exists(), written.stderr
    missing = dashboard_cli(store, tmp_path, "report", "INC-NOPE", "--out", str(out))
    assert missing.returncode == 2 and "There is no incident" in missing.stderr
