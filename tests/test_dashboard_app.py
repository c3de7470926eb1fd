"""Every page through Streamlit's AppTest: filters change the query, watch-lists upload (and bad files are
refused), the graph is given count-weighted and escaped JSON, Sync now runs the real sync."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.access import Access
from dashboard.filters import View
from dashboard.untrusted import WORD_JOINER
from eventstore.model import utc_text
from eventstore.sqlite import SqliteStore
from simulator.tenant import ATTACKER_IP, HOSTILE

from .conftest import fill_store

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dashboard", "app.py")


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory, demo_like_tenant):
    path = str(tmp_path_factory.mktemp("dash") / "filled.db")
    with SqliteStore(path) as store:
        fill_store(store, demo_like_tenant)
    return path


@pytest.fixture
def app(filled_db, tmp_path, monkeypatch):
    """A fresh copy of the filled store per test (watch-lists are saved in it), fresh caches, no tenant."""
    path = str(tmp_path / "audit.db")
    shutil.copy(filled_db, path)
    for key in list(os.environ):
        if key.startswith(("O365_", "AUDIT_", "COSMOS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AUDIT_STORE", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)  # no .env from the repo
    real = st.get_option  # listening as .streamlit/config.toml says: on loopback only
    monkeypatch.setattr(st, "get_option", lambda name: "127.0.0.1" if name == "server.address" else real(name))
    st.cache_resource.clear()

    def make(page: str | None = "explore", **params) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        if page:
            at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    yield make
    st.cache_resource.clear()


def graph_json(at: AppTest) -> dict:
    components = [c for c in at.get("component_instance") if c.proto.component_name == "streamlit_agraph.agraph"]
    assert len(components) == 1, "the Explore page must draw exactly one graph"
    data = json.loads(json.loads(components[0].proto.json_args)["data"])
    # the two invisible marks at the frame's corners are not entities
    return {**data, "nodes": [n for n in data["nodes"] if not n["id"].startswith("frame:")]}


def sources(at: AppTest) -> str:
    """The Markdown the page sent to the browser, as written."""
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success")
                     for e in getattr(at, kind))


def texts(at: AppTest) -> str:
    """What the analyst reads: the Markdown with its escapes resolved."""
    return re.sub(r"\\(.)", r"\1", sources(at)).replace(WORD_JOINER, "")


def finished(runner, seconds: float) -> None:
    """Wait (at most `seconds`) for a background job of the dashboard's to end."""
    deadline = time.monotonic() + seconds
    while runner.state.running and time.monotonic() < deadline:
        time.sleep(0.2)


def test_explore_draws_a_count_weighted_capped_graph_and_says_so(app):
    at = app()
    data = graph_json(at)
    nodes = data["nodes"]
    assert 0 < len(nodes) <= 150
    assert "showing" in texts(at) and "of" in texts(at)
    counts = [int(n["title"].split(" events")[0].replace(",", "")) for n in nodes]
    sizes = [n["size"] for n in nodes]
    ranked = sorted(zip(counts, sizes))
    assert ranked[-1][1] > ranked[0][1], "the busiest entity must be drawn larger than the quietest"
    assert all(n["physics"] is False for n in nodes) and all("x" in n and "y" in n for n in nodes)
    assert "DEMO" in texts(at)


def test_cap_and_relationship_come_from_the_url(app):
    at = app(cap="20", relationship="IP → user")
    nodes = graph_json(at)["nodes"]
    assert len(nodes) == 20
    assert at.selectbox(key="f_relationship").value == "IP → user"


def test_case_sensitive_user_filter_with_hint_then_switch(app):
    at = app(user="megan.bowen@contoso.com")
    assert "differs only by case" in texts(at)
    hint = [d.value for d in at.main.dataframe if "differs only by case" in d.value.columns]
    assert hint and "Megan.Bowen@contoso.com" in set(hint[0]["differs only by case"]), "above the page, not below"
    at.toggle(key="f_case_sensitive").set_value(False).run()
    nodes = graph_json(at)["nodes"]
    assert any(n["id"] == "user:Megan.Bowen@contoso.com" for n in nodes)
    assert at.query_params["case_sensitive"] == "0", "the URL carries the view"


def test_ip_filter_takes_a_cidr_and_refuses_garbage(app):
    at = app(ip="198.51.100.0/24", operation="UserLoginFailed")
    ids = {n["id"] for n in graph_json(at)["nodes"]}
    assert f"ip:{ATTACKER_IP}" in ids
    at.text_input(key="f_ip").set_value("198.51.100.999").run()
    assert "not an IP address" in texts(at)
    assert not at.exception


def test_hostile_strings_reach_the_graph_as_typed_and_inert(app):
    at = app(relationship="user → file", text="onerror")
    nodes = graph_json(at)["nodes"]
    hostile = [n for n in nodes if n["id"].startswith("file:") and "onerror" in n["id"]]
    assert hostile, "the simulated tenant plants a hostile file name"
    for node in hostile:
        assert node["label"].startswith("<img"), "the canvas shows the attacker's name as typed, not its escape"
        assert not re.search(r"<[A-Za-z/!?]", node["title"]), "the tooltip, which the component parses, opens no tag"
        assert "<\u200bimg" in node["title"] and node["title"][0].isdigit()


def test_applications_go_by_their_names_with_the_id_in_the_tooltip(app):
    consented = "7f1e0c55-8a1b-4d7e-9b3a-6c2d1e0f9a44"  # story 2's app, named in its consent record
    at = app(user=consented, relationship="user → IP")
    (node,) = [n for n in graph_json(at)["nodes"] if n["id"] == f"user:{consented}"]
    assert node["label"] == "PDF Converter Online" and f"application id {consented}" in node["title"]
    at = app(relationship="user → operation → target", operation="UserLoggedIn", cap=10)
    (signed_into,) = [n for n in graph_json(at)["nodes"] if n["id"] == "object:00000003-0000-0000-c000-000000000000"]
    assert signed_into["label"] == "Microsoft Graph", "a first-party application, from the list kept as data"


def upload(at: AppTest, name: str, data: bytes, list_name: str = "admins") -> AppTest:
    at.file_uploader(key="wl_upload").upload(name, data, "text/csv")
    at.text_input(key="wl_name").set_value(list_name)
    at.button[[b.label for b in at.button].index("Save watch-list")].click()
    return at.run()


def test_watchlist_upload_restrict_and_highlight(app):
    at = app("watchlists")
    at = upload(at, "adminlist.csv", b"UserId\nBen.Lauer@contoso.com\nnobody@contoso.com\n")
    assert "Saved" in texts(at) and "2 accounts" in texts(at).replace("**", "")
    assert at.text_input(key="wl_name").value == "", "the next upload does not inherit this one's name"
    again = upload(at, "other.csv", b"UserId\nsomeone@contoso.com\n")
    assert "exists already. Nothing was changed" in texts(again)
    from dashboard import services

    assert services.watchlists()["admins"].accounts == ("Ben.Lauer@contoso.com", "nobody@contoso.com")
    assert "1** entries matched nothing" in texts(at) or "1 entries matched nothing" in texts(at).replace("**", "")

    at = app(watchlist="admins", watch_mode="restrict")
    ids = {n["id"] for n in graph_json(at)["nodes"]}
    users = {i for i in ids if i.startswith("user:")}
    assert users == {"user:Ben.Lauer@contoso.com"}, "restrict keeps only events of listed entities"
    assert f"ip:{ATTACKER_IP}" in ids  # the compromised admin signed in from the spraying IP

    at = app(watchlist="admins", watch_mode="highlight")
    nodes = graph_json(at)["nodes"]
    assert nodes[0]["id"] == "user:Ben.Lauer@contoso.com" and nodes[0]["borderWidth"] > 1
    assert len({n["id"] for n in nodes if n["id"].startswith("user:")}) > 1


@pytest.mark.parametrize("data", [b"", b"\x00\x01binary", b"UserId\n=HYPERLINK(\"http://x\",\"y\")\n",
                                  ",".join(["c"] * 3000).encode(), "Jos\xe9".encode("latin-1")],
                         ids=["empty", "binary", "formula", "columns", "latin1"])
def test_bad_watchlist_files_change_nothing(app, data):
    at = upload(app("watchlists"), "bad.csv", data, "bad")
    assert at.error and "Nothing was changed" in at.error[0].value
    assert "No watch-lists yet" in texts(at)


def test_events_page_lists_newest_first_and_shows_json(app):
    at = app("events", operation="New-InboxRule")
    assert "events match" in texts(at)
    frame = at.dataframe[0].value
    assert list(frame["time"]) == sorted(frame["time"], reverse=True)
    assert set(frame["operation"]) == {"New-InboxRule"}


def test_store_that_cannot_be_opened_is_explained_without_a_traceback(app, monkeypatch, tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("AUDIT_STORE", f"sqlite:///{blocker}/audit.db")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "cannot be used" in texts(at)


def test_bad_setting_is_explained(app, monkeypatch):
    monkeypatch.setenv("O365_TENANT_ID", "not-a-guid")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "O365_TENANT_ID" in texts(at)


def test_sync_now_runs_the_real_sync_and_refuses_a_second(app, simulator, monkeypatch, tmp_path):
    _, env = simulator()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("O365_MAX_REQUESTS_PER_MINUTE", "60000")
    monkeypatch.setenv("AUDIT_STORE", f"sqlite:///{tmp_path / 'fresh.db'}")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "No events are stored yet" in texts(at)
    at.switch_page("app_pages/sync.py").run()
    at.button(key="sync_page_button").click().run()
    from dashboard import services

    runner = services.background_sync()
    assert runner.start() is not None or not runner.state.running, "a second concurrent run must be refused"
    finished(runner, 60)
    at.run()
    assert runner.state.report is not None and runner.state.report.ok, runner.state.error
    assert "sync done" in texts(at)
    stored = runner.state.report.added
    assert services.index().count(__import__("eventstore").Filter()) == stored > 0
    # a second pass finds nothing new: what the first stored is still on the page
    at.button(key="sync_page_button").click().run()
    finished(runner, 60)
    at.run()
    assert runner.state.report.added == 0
    passes = at.dataframe[0].value
    assert list(passes["new events"]) == [0, stored], "the earlier pass's report is kept below the latest"


def test_the_workspace_is_read_from_the_sync_page_and_its_tables_shown(app):
    """DEMO mode: the simulated tenant's workspace, read by the same runner as Sync now, shown as the feed is."""
    at = app("sync")
    assert "Log Analytics workspace" in [h.value for h in at.subheader]
    at.button(key="workspace_button").click().run()
    from dashboard import services

    runner = services.background_workspace()
    finished(runner, 120)
    at.run()
    assert runner.state.report is not None and runner.state.report.ok, runner.state.error or runner.state.report
    assert runner.state.report.added > 0 and "DEMO workspace read done" in texts(at)
    (tables,) = [d.value for d in at.dataframe if "read until" in d.value.columns]
    assert set(tables["table"]) == {"OfficeActivity", "SigninLogs", "AuditLogs"} and (tables["records"] > 0).all()


def test_sync_now_error_is_shown_in_plain_words(app, simulator, monkeypatch, tmp_path):
    _, env = simulator(roles=())  # the app lacks ActivityFeed.Read
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/sync.py").run()
    at.button(key="sync_page_button").click().run()
    from dashboard import services

    runner = services.background_sync()
    finished(runner, 30)
    at.run()
    assert "ActivityFeed.Read" in texts(at) and "Traceback" not in texts(at)


def test_hostile_values_in_the_planted_set_exist():
    assert any("onerror" in h for h in HOSTILE) and "javascript:alert(1)" in HOSTILE


# --- hostile or odd input: refused in words, never rendered as markup, never a crash ------------------------
CRAFTED = "[Session expired](https://evil.example/login) ![t](https://evil.example/t.png)"


@pytest.mark.parametrize("field", ["ip", "record_type"])
def test_a_crafted_link_is_shown_as_text(app, field):
    at = app(**{field: CRAFTED})
    assert not at.exception
    assert "[Session expired](https://evil.example/login)" in texts(at), "the analyst sees what was in the URL"
    assert "](" not in sources(at) and "https://" not in sources(at), "… and no Markdown link can come of it"
    assert "Fix the filter in the sidebar" in texts(at) and "evil\\.example" in at.warning[0].value, \
        "the reason is also where the analyst looks, not only below the fold of the sidebar"


def test_the_view_survives_navigation_and_each_page_shows_only_the_filters_it_applies(app):
    at = app(ip=ATTACKER_IP, relationship="IP → user")
    at.number_input(key="f_cap").set_value(100).run()
    nodes = {n["id"] for n in graph_json(at)["nodes"]}
    assert at.query_params["cap"] == "100"
    at.switch_page("app_pages/leads.py").run()
    assert "f_ip" not in {w.key for w in at.text_input}, "Leads applies no filter, so it shows none"
    assert "ip" not in at.query_params and "cap" not in at.query_params
    at.switch_page("app_pages/watchlists.py").run()
    assert {w.key for w in at.text_input} & {"f_ip", "f_user"} == set(), "Watch-lists honours the time span only"
    assert at.selectbox(key="f_period").value == "last 7 days"
    at.switch_page("app_pages/explore.py").run()
    assert at.number_input(key="f_cap").value == 100 and at.text_input(key="f_ip").value == ATTACKER_IP
    assert at.query_params["cap"] == "100" and {n["id"] for n in graph_json(at)["nodes"]} == nodes, \
        "the same graph as before leaving, and the URL says so"


def test_a_link_with_fixed_times_shows_the_same_events_tomorrow(app):
    at = app(ip=ATTACKER_IP)
    fixed = next(c.value for c in at.code if "period=custom" in c.value)
    params = dict(p.split("=", 1) for p in fixed.split("?", 1)[1].split("&"))
    assert "start" in params and "end" in params and params["ip"] == ATTACKER_IP
    view = View.from_params({k: [v.replace("%3A", ":")] for k, v in params.items()})
    moving = View(ip=ATTACKER_IP).to_filter()
    assert view.to_filter().start == moving.start and view.to_filter().end >= moving.start + timedelta(days=7)
    assert view.to_filter(datetime.now(timezone.utc) + timedelta(days=1)) == view.to_filter(), "it does not drift"


def test_a_custom_range_out_of_this_world_is_refused(app):
    at = app("events", period="custom", start="2024-01-01", end="9999-12-31")
    assert not at.exception
    assert "The custom range must run forward" in texts(at)
    at = app("watchlists", period="custom", start="2026-11-20", end="2026-11-01")  # a page that honours the span
    assert "The custom range must run forward" in texts(at)


def test_a_watch_list_the_url_names_that_no_longer_exists_shows_nothing_filtered_by_it(app):
    at = app(watchlist="gone", watch_mode="restrict")
    assert not at.exception
    assert "'gone' in this view no longer exists" in texts(at)
    assert not [c for c in at.get("component_instance")], "no graph that would pretend to be restricted"


def test_a_ten_thousand_entry_watch_list_matches_in_one_go(app, demo_like_tenant):
    from simulator.tenant import ATTACKER_IP

    listed = [u.upn for u in demo_like_tenant.users[:5]] + [f"nobody{n}@contoso.com" for n in range(4_000)] + \
        [f"10.{n // 250}.{n % 250}.1" for n in range(5_990)] + [ATTACKER_IP, "198.51.100.0/24", "203.0.113.0/24"]
    at = upload(app("watchlists"), "big.csv", ("\n".join(listed) + "\n").encode(), "big")
    assert "Saved" in texts(at), texts(at)
    began = time.perf_counter()
    at = app("watchlists")
    print(f"\nwatch-lists page with a {len(listed):,}-entry list: {time.perf_counter() - began:.2f} s")
    since = utc_text(View().to_filter().start)
    with SqliteStore(os.environ["AUDIT_STORE"].removeprefix("sqlite:///")) as store:
        active = {row.user_id for row in store.iter_events() if row.time >= since}
    quiet_users = sum(1 for user in listed[:5] if user not in active)
    assert f"{4_000 + 5_990 + quiet_users:,} entries matched nothing" in texts(at).replace("**", "")
    at = app(watchlist="big", watch_mode="restrict")
    ids = {n["id"] for n in graph_json(at)["nodes"]}
    assert f"ip:{ATTACKER_IP}" in ids and {f"user:{u}" for u in listed[:5]} & ids


def test_the_sync_page_lists_blobs_that_are_retrying_lost_or_repaired(app, tmp_path, monkeypatch):
    from ingest.feedstate import BlobRecord, FeedState

    path = str(tmp_path / "audit.db")
    with SqliteStore(path) as store:
        feed = FeedState(store)
        feed.record_failure(BlobRecord("b$1", "Audit.Exchange", "2026-11-27T10:00:00Z", "2026-12-04T10:00:00Z",
                                       error_code="MALFORMED", error_message=CRAFTED), give_up_after=3)
        feed.record_lost(BlobRecord("b$2", "Audit.Exchange", "2026-11-27T11:00:00Z", "2026-12-04T11:00:00Z",
                                    status="lost", error_code="POISON", error_message="failed 5 deliveries"))
        feed.record_queued([BlobRecord("b$3", "DLP.All", "2026-11-27T12:00:00Z", "2026-12-04T12:00:00Z")])
    at = app("sync")
    frames = [d.value for d in at.dataframe if "status" in d.value.columns]
    assert frames and set(frames[0]["status"]) == {"retrying", "lost"}, "a queued blob is not an issue"
    assert "POISON" in set(frames[0]["code"])
    (per_type,) = [d.value for d in at.dataframe if "content type" in d.value.columns and "blobs queued" in
                   d.value.columns]
    assert dict(zip(per_type["content type"], per_type["blobs queued"]))["DLP.All"] == 1, "the workers' backlog"
    assert CRAFTED in set(frames[0]["message"]), "a table cell shows the peer's text as text"


def test_a_large_backlog_is_indexed_in_the_background_with_progress(app, monkeypatch):
    from dashboard import index as index_module
    from dashboard import services

    monkeypatch.setattr(index_module, "INLINE", 10)  # the demo store stands in for a store of millions
    monkeypatch.setattr(index_module, "BATCH", 500)
    at = app()
    (progress,) = at.get("progress")
    assert "Building the dashboard's index from the store" in progress.proto.text, "progress, not an empty page"
    services._index().wait()
    at.run()
    assert graph_json(at)["nodes"], "the graph once the index is built"


def test_on_cosmos_with_a_read_only_key_the_dashboard_follows_the_store_and_changes_nothing(
        app, cosmos_server, demo_like_tenant, monkeypatch, tmp_path):
    from dashboard import services
    from eventstore import Filter

    writer = cosmos_server.store(database="dashboard-ro")
    fill_store(writer, demo_like_tenant, now=demo_like_tenant.start + timedelta(days=3))
    for name, value in cosmos_server.env("dashboard-ro").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COSMOS_KEY", cosmos_server.read_only_key)
    monkeypatch.setenv("DASHBOARD_INDEX", str(tmp_path / "cosmos.index"))
    at = app()
    assert graph_json(at)["nodes"]
    assert services._index().count(Filter()) == writer.stats().events
    fill_store(writer, demo_like_tenant)  # the ingest goes on storing; the next interaction shows it, each event once
    time.sleep(services.REFRESH_SECONDS)
    at.run()
    assert services._index().count(Filter()) == writer.stats().events > 0

    at.switch_page("app_pages/watchlists.py").run()
    assert any("read-only Cosmos DB key" in info.value for info in at.info)
    assert not at.get("file_uploader"), "no upload offered where nothing can be saved"
    at.switch_page("app_pages/sync.py").run()
    assert at.button(key="sync_page_button").disabled and "cannot sync" in shown(at), "not offered, said in words"
    assert not services.background_sync().state.running
    writer.close()


# --- sign-in and roles (st.user as Entra ID's ID token gives it; the real flow is in test_signin.py) ----------
SIGN_IN = {"DASHBOARD_CLIENT_ID": "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a", "DASHBOARD_CLIENT_SECRET": "s" * 24,
           "DASHBOARD_COOKIE_SECRET": "c" * 40, "DASHBOARD_TENANT_ID": "7c3e9a51-2b4d-4f6e-8a1c-3d5f7b9e1a2c"}


def signed_in(monkeypatch, roles, page: str | None = None, username: str = "vic@contoso.com",
              hours_ago: float = 0.5) -> AppTest:
    for name, value in SIGN_IN.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(APP, default_timeout=60)
    if roles is not None:
        at.user = {"is_logged_in": True, "preferred_username": username, "name": username, "roles": roles,
                   "iat": int(time.time() - hours_ago * 3600)}
    else:
        at.user = {"is_logged_in": False}
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def shown(at: AppTest) -> str:
    return " ".join(e.value for kind in ("markdown", "caption", "info", "error", "header", "warning") for e in
                    getattr(at, kind))


def test_without_signing_in_nothing_is_shown_but_the_sign_in(app, monkeypatch):
    at = signed_in(monkeypatch, None)
    assert [b.label for b in at.button] == ["Sign in with Microsoft"]
    assert not at.get("component_instance") and not at.dataframe, "no graph, no table before sign-in"


def test_someone_with_no_role_is_asked_to_get_one(app, monkeypatch):
    at = signed_in(monkeypatch, [])
    assert "Ask your admin for access" in shown(at)
    assert not at.get("component_instance") and not at.dataframe


def test_a_viewer_browses_and_is_refused_changes_on_the_server(app, monkeypatch):
    at = signed_in(monkeypatch, ["Viewer"], "explore")
    assert graph_json(at)["nodes"] and "👤 vic" in shown(at) and "(Viewer)" in shown(at)
    at.session_state["f_node"] = graph_json(at)["nodes"][0]["id"]
    at.run()
    at.text_input(key="add_new_name").input("forged")
    at.button(key="add_to_watchlist").click().run()  # inside a popover the viewer cannot open: a forged click
    assert "need the Analyst role" in shown(at)
    from dashboard import services

    assert services.store().watchlists() == {}, "nothing was saved"
    at.switch_page("app_pages/watchlists.py").run()
    assert "need the Analyst role" in shown(at) or "Analyst role" in shown(at)
    assert not at.get("file_uploader")
    at.switch_page("app_pages/sync.py").run()
    assert at.button(key="sync_page_button").disabled and "Sync now needs the Admin role" in shown(at)
    assert at.button(key="sidebar_sync").disabled, "no Sync now a Viewer could press"
    assert not services.background_sync().state.running


def test_a_sign_in_older_than_the_session_allows_must_be_made_again(app, monkeypatch):
    """Roles live in the sign-in cookie: a role taken away in Entra ID must stop working within the session's age."""
    at = signed_in(monkeypatch, ["Admin"], hours_ago=9)
    assert "more than 8 hours old" in " ".join(m.value for m in at.markdown) + shown(at)
    assert [b.label for b in at.button] == ["Sign in with Microsoft"] and not at.dataframe
    monkeypatch.setenv("DASHBOARD_SESSION_HOURS", "12")
    st.cache_resource.clear()
    assert "(Admin)" in shown(signed_in(monkeypatch, ["Admin"], hours_ago=9)), "within the hours set"


def test_an_analyst_changes_watch_lists_and_the_admin_reads_who_did(app, monkeypatch):
    at = signed_in(monkeypatch, ["Analyst"], "watchlists", username="ana@contoso.com")
    at.get("file_uploader")[0].upload("admins.csv", b"account\nAdeleV@contoso.com\n", "text/csv")
    at.text_input(key="wl_name").input("admins")
    at.button[0].click().run()
    assert "Last changed by ana" in shown(at)

    admin = signed_in(monkeypatch, ["Admin"], "activity", username="ada@contoso.com")
    (log,) = [d.value for d in admin.dataframe]
    assert list(log["who"][:1]) == ["ana@contoso.com"] and list(log["action"][:1]) == ["watch-list saved"]


def test_an_entry_pushed_down_by_a_flood_of_exports_is_found_by_action_person_and_page(app, monkeypatch):
    admin = signed_in(monkeypatch, ["Admin"], "watchlists", username="ada@contoso.com")
    from dashboard import services

    services.store().save_watchlist("admins", '{"accounts": [], "networks": []}')
    admin.run()
    admin.button(key="delete_admins").click().run()
    for i in range(1005):  # a Viewer's scripted exports
        services.store().record_activity("vic@contoso.com", "export", f"events.csv #{i}")
    admin.switch_page("app_pages/activity.py").run()
    assert "1,006 entries match" in shown(admin) and admin.number_input(key="act_page").max == 11
    admin.number_input(key="act_page").set_value(11).run()
    (page,) = [d.value for d in admin.dataframe]
    assert len(page) == 6 and list(page["action"])[-1] == "watch-list deleted", "the oldest entry, on the last page"
    admin.selectbox(key="act_action").select("watch-list deleted").run()
    (found,) = [d.value for d in admin.dataframe]
    assert list(found["who"]) == ["ada@contoso.com"] and list(found["detail"]) == ["admins"]
    assert admin.number_input(key="act_page").value == 1, "a page past the end goes back to the first"


def test_renaming_a_watch_list_never_deletes_or_overwrites_one(app):
    at = app("watchlists")
    from dashboard import services

    for name, account in (("admins", "AdeleV@contoso.com"), ("vips", "MeganB@contoso.com")):
        services.store().save_watchlist(name, json.dumps({"accounts": [account], "networks": []}))
    at.run()
    for new, refusal in (("admins ", "is its name already"), ("vips", "exists already")):
        at.text_input(key="rename_admins").input(new)
        at.button(key="do_rename_admins").click().run()
        assert refusal in " ".join(e.value for e in at.error)
        saved = services.watchlists()
        assert saved["admins"].accounts == ("AdeleV@contoso.com",) and saved["vips"].accounts == ("MeganB@contoso.com",)
    at.text_input(key="rename_admins").input("admins-2026")
    at.button(key="do_rename_admins").click().run()
    assert set(services.watchlists()) == {"admins-2026", "vips"}
    assert services.store().activity(limit=1)[1][0][2:] == ("watch-list renamed", "admins → admins-2026")


def test_listening_beyond_loopback_without_sign_in_serves_nothing(app, monkeypatch):
    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda name: "0.0.0.0" if name == "server.address" else real(name))
    at = app()
    assert "listens on 0.0.0.0" in shown(at) and "DASHBOARD_PROXY_HEADER" in shown(at)
    assert not at.get("component_instance")
    monkeypatch.setenv("DASHBOARD_PROXY_HEADER", "X-MS-CLIENT-PRINCIPAL-NAME")
    st.cache_resource.clear()
    at = app()
    assert "did not say who you are" in shown(at), "a proxy that names nobody lets nobody in"


def test_a_copied_link_reopens_the_selected_node_and_the_timeline_choice(app):
    at = app(ip=ATTACKER_IP, operation="UserLoginFailed", node=f"ip:{ATTACKER_IP}", stack_by="operation")
    assert "Selected IP" in [h.value for h in at.subheader]
    assert at.selectbox(key="f_stack_by").value == "operation"
    assert at.query_params["node"] == f"ip:{ATTACKER_IP}" and at.query_params["stack_by"] == "operation"


def test_find_a_node_by_name_opens_its_panel(app):
    at = app()
    target = next(n for n in graph_json(at)["nodes"] if n["id"].startswith("user:"))
    at.selectbox(key="find_node").select(target["id"]).run()
    assert "Selected user" in [h.value for h in at.subheader]
    assert at.query_params["node"] == target["id"], "the URL names the node found"


def test_a_case_sensitive_watch_list_restrict_that_misses_lower_case_activity_says_so(app):
    at = app("watchlists")
    at.get("file_uploader")[0].upload("admins.csv", b"account\nMEGAN.BOWEN@CONTOSO.COM\n", "text/csv")
    at.text_input(key="wl_name").input("shouting")
    at.button[0].click().run()
    at = app(watchlist="shouting", watch_mode="restrict")
    assert "match the watch-list's accounts exactly" in texts(at) and "differs only by case" in texts(at)
    hint = [d.value for d in at.dataframe if "differs only by case" in d.value.columns]
    assert hint and "Megan.Bowen@contoso.com" in set(hint[0]["differs only by case"])


def test_downloads_are_named_by_their_span_and_filters_and_excel_holds_text_only(app):
    at = app("events", ip=ATTACKER_IP, operation="UserLoginFailed")
    names = {b.proto.label: b for b in at.get("download_button")}
    assert set(names) >= {"Events as CSV", "Events as Excel", "Events as JSONL"}
    from dashboard import services
    from dashboard.filters import View, file_name
    from dashboard.pages_common import _exporter
    from eventstore.export import write_xlsx

    flt = View(ip=ATTACKER_IP, operation=("UserLoginFailed",)).to_filter()
    assert file_name("events", flt, "xlsx").endswith(f"_ip-{ATTACKER_IP}_op-UserLoginFailed.xlsx")
    book = _exporter("Excel", write_xlsx, True, services.index(), flt, None)()
    import zipfile
    import io as _io

    with zipfile.ZipFile(_io.BytesIO(book)) as opened:
        sheet = opened.read("xl/worksheets/sheet1.xml").decode()
        shared = opened.read("xl/sharedStrings.xml").decode()
    assert "<f>" not in sheet and 't="s"' in sheet, "every cell a string, no formula"
    assert "UserLoginFailed" in shared and ATTACKER_IP in shared
    (entry, *_) = services.store().activity()[1]
    assert entry[2] == "export" and entry[3].startswith("events as Excel: ") and " UTC; " in entry[3]
    assert entry[3].endswith(f"IP {ATTACKER_IP}; operation UserLoginFailed; case-sensitive"), "what, in words"


def test_a_download_that_fails_says_so_in_the_file_and_the_log(app):
    from dashboard import services
    from eventstore import StoreError

    app()  # the app's environment: this store, no sign-in

    def broken():
        raise StoreError("the disk holding the event store is full")

    content = services.exporter("events as CSV", broken)()
    assert content.startswith("The export failed: the disk holding the event store is full")
    (entry, *_) = services.store().activity()[1]
    assert entry[2] == "export failed" and "disk" in entry[3]


# --- Leads ---------------------------------------------------------------------------------------------------
def test_a_lead_opens_explore_on_exactly_its_events(app):
    at = app("leads")
    spray = [c for c in at.main.markdown if "Password spray from" in c.value]
    assert spray and "40 accounts" in spray[0].value
    from dashboard import services

    lead = next(x for x in services.leads()[0] if x.rule == "password-spray")
    at.button(key=f"open_{lead.id}").click().run()  # the page switches to Explore
    assert at.query_params["ip"] == ATTACKER_IP and at.query_params["period"] == "custom"
    assert f"{lead.events:,} events · showing" in texts(at), "Explore counts exactly the lead's events"
    assert f"ip:{ATTACKER_IP}" in {n["id"] for n in graph_json(at)["nodes"]}


def test_an_analyst_marks_a_lead_reviewed_and_a_viewer_cannot(app, monkeypatch):
    viewer = signed_in(monkeypatch, ["Viewer"], page="leads")
    from dashboard import services

    lead = services.leads()[0][0]
    viewer.button(key=f"review_{lead.id}").click().run()  # inside a popover the viewer cannot open: forged
    assert "need the Analyst role" in shown(viewer)
    assert not next(x for x in services.leads()[0] if x.id == lead.id).reviewed

    analyst = signed_in(monkeypatch, ["Analyst"], page="leads", username="ana@contoso.com")
    analyst.text_input(key=f"note_{lead.id}").input("known pen test")
    analyst.button(key=f"review_{lead.id}").click().run()
    mark = next(x for x in services.leads()[0] if x.id == lead.id).reviewed
    assert mark["by"] == "ana@contoso.com" and mark["note"] == "known pen test"
    assert f"open_{lead.id}" not in {b.key for b in analyst.button}, "a reviewed lead leaves the default list"
    assert analyst.session_state[f"review_pop_{lead.id}"] is False, "its popover closed, not left open on the next"
    assert "Marked reviewed" in shown(analyst) + " ".join(s.value for s in analyst.success)
    analyst.button(key="undo_review").click().run()
    assert not next(x for x in services.leads()[0] if x.id == lead.id).reviewed, "undone"
    assert f"open_{lead.id}" in {b.key for b in analyst.button}


def test_an_ip_shows_where_it_is_and_the_view_filters_by_country(app):
    at = app(country="RO", relationship="IP → user")
    nodes = graph_json(at)["nodes"]
    ips = [n for n in nodes if n["id"].startswith("ip:")]
    assert [n["id"] for n in ips] == [f"ip:{ATTACKER_IP}"], "only the address in Romania"
    assert ips[0]["label"].split("\n")[1].startswith("RO · Example Cloud"), "its place, under its name"
    assert "RO · AS64510 · Example Cloud Hosting" in ips[0]["title"], "its network's number in the tooltip"
    assert "RO" in at.multiselect(key="f_country").options and at.query_params["country"] in (["RO"], "RO")


def test_an_admin_backfills_history_from_the_sync_page(app):
    from dashboard import services

    at = app("sync")
    assert "No backfill yet" in texts(at)
    today = datetime.now(timezone.utc).date()
    at.date_input(key="backfill_since").set_value(today - timedelta(days=10))
    at.date_input(key="backfill_until").set_value(today - timedelta(days=9))
    at.button(key="backfill_button").click().run()
    runner = services.background_backfill()
    finished(runner, 120)
    report = runner.state.report
    assert report is not None and report.ok and report.records > 100, runner.state.error or report.summary()
    at.run()
    assert f"{report.records:,} records" in texts(at) and f"{report.done} done" in texts(at) and report.done


def test_the_sync_page_shows_how_far_the_workspace_is_read(app):
    from dashboard import services
    from ingest.workspace import Cursor, save_cursor

    at = app("sync")
    assert "Log Analytics workspace" not in texts(at), "said only where a workspace is read"
    save_cursor(services.store(), Cursor("SigninLogs", [["2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"]], 1_234,
                                         1_200, last_error="**HTTP 500** <b>x</b>"))
    services._ingest_status.clear()  # the page's status is up to 5 s old: not wait for it
    at.run()
    [table] = [frame.value for frame in at.dataframe if "table" in frame.value.columns]
    row = table.to_dict("records")[0]
    assert (row["table"], row["read until"], row["records"], row["new"]) == \
        ("SigninLogs", "2026-12-01T00:00:00Z", 1_234, 1_200)
    assert any(r"\*\*HTTP 500\*\*" in w.value and "next run tries again" in w.value for w in at.warning), \
        "an error is shown as text, never Markdown"


# --- Incidents ---------------------------------------------------------------------------------------------------
def incident_of(rule: str):
    from dashboard import services

    return next(i for i in services.incidents() if rule in {lead.rule for lead in i.leads})


def test_incidents_come_first_one_per_story_with_its_tactic_chain(app):
    at = app(None)
    assert at.main.header[0].value == "Incidents", "the first page"
    from dashboard import services

    found = services.incidents()
    by_rules = [sorted({lead.rule for lead in incident.leads}) for incident in found]
    assert {"download-volume", "hosting-network", "inbox-rule-hide", "password-spray", "privileged-role",
            "success-after-failures"} <= set(next(r for r in by_rules if "password-spray" in r)), "story 1, whole"
    assert sum("password-spray" in r or "privileged-role" in r for r in by_rules) == 1, "in one incident, not two"
    first = found[0]
    assert "password-spray" in {lead.rule for lead in first.leads} and first.severity == "critical", \
        "the most severe first, the one spanning most tactics of those; three tactics or more raise it"
    assert "password spray → account takeover" in first.title.lower() and "from 198.51.100.9" in first.title
    # (initial access may come first: the victim's sign-in from the attacker's address is also travel faster than
    # possible when their sign-in before it was recent enough, which depends on the hour the tenant starts)
    assert first.chain.index("credential-access") < first.chain.index("privilege-escalation") and len(first.chain) >= 5
    assert any("Credential access (TA0006)" in c.value for c in at.caption)


def test_an_incident_shows_its_aftermath_on_one_graph_and_a_viewer_cannot_change_it(app, monkeypatch, tmp_path):
    story = incident_of("password-spray")
    victim = next(lead.users[0] for lead in story.leads if lead.rule == "success-after-failures")
    guest = next(t for lead in story.leads if lead.rule == "privileged-role" for t in lead.targets)
    at = app(None, incident=story.id)
    nodes = {n["id"] for n in graph_json(at)["nodes"]}
    assert {f"user:{victim}", f"ip:{ATTACKER_IP}"} <= nodes, "the victim and the attacker's address"
    assert f"object:{guest}" in nodes, "and the new administrator, on the same graph"
    assert at.query_params["incident"] == story.id, "the URL names the incident open"
    st.cache_resource.clear()  # settings read afresh: sign-in is configured from here on
    viewer = signed_in(monkeypatch, ["Viewer"])
    viewer.session_state["incident"] = story.id
    viewer.run()
    assert "needs the Analyst role" in shown(viewer) and not any(f.key for f in viewer.get("form"))
    from dashboard import services

    monkeypatch.setattr(services, "access", lambda: Access("vic", "Viewer", "sign-in"))
    assert "need the Analyst role" in services.decide_incident(story.id, "closed: benign"), "refused on the server"
