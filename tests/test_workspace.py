"""The workspace source (a Log Analytics workspace that Microsoft Sentinel fills), against the simulator's query
API: a week equals what the tables received, exactly; a record the feed also brought is stored once; late rows are
read by the run after they arrive; a result over the row limit or called partial is not trusted but split; 429s
are ridden out; a missing permission is said once; and the DEMO stories raise the same leads from the workspace as
from the feed."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from dashboard.index import ActivityIndex
from dashboard.ipinfo import IpInfo
from detect.leads import LeadEngine
from eventstore.sqlite import SqliteStore
from ingest import backfill, workspace
from ingest.backfill import run_backfill
from ingest.normalize import content_type_of, normalize
from ingest.status import ingest_status
from ingest.sync import run_sync
from ingest.workspace import LogAnalyticsApi, WorkspaceReader, run_workspace, workspace_summary
from simulator import SimulatedTenant, WorkspaceConfig
from simulator.auditsearch import AuditSearchConfig
from simulator.tenant import NETWORKS
from simulator.workspace import ROWS, ingested_at, table_of

from .conftest import fill_store, stored_ids, week_start
from .test_cli import run_cli


def received(service, until: datetime, tables=workspace.TABLES) -> dict[str, dict]:
    """The ground truth: id → original audit record, for every row the tables received from a week ago (see
    week_ago) to `until`."""
    now, since = service.now(), week_ago(service)
    found = {}
    for record in service.tenant.history(since - timedelta(days=3), now, now):
        table = table_of(record)
        if table in tables and since <= ingested_at(record) < min(until, now):
            found[ROWS[table](record).get("OfficeId") or ROWS[table](record)["Id"]] = record
    return found


def read_until(store) -> datetime:
    ends = {t["read_until"] for t in workspace_summary(store)}
    assert len(ends) == 1, ends
    return datetime.fromisoformat(ends.pop().replace("Z", "+00:00"))


def week_ago(service) -> datetime:
    return service.tenant.start - timedelta(days=1)


def test_a_week_from_the_workspace_equals_what_its_tables_received_and_reads_as_the_feed_does(
        simulator, make_settings, store):
    service, env = simulator()
    report = run_workspace(make_settings(env), store, week_ago(service))
    assert report.ok, report.summary()
    truth = received(service, read_until(store))
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == set(truth) and len(truth) > 2_000
    assert Counter(table_of(r) for r in truth.values()).keys() == {"OfficeActivity", "SigninLogs", "AuditLogs"}
    for row in store.iter_events():  # what every page, lead and graph reads of an event: as if the feed brought it
        original = truth[row.id]
        expected = normalize({**original, "Id": row.id}, content_type_of(original), "")
        assert row[:-1] == expected[:-1], (row, original)
    assert report.records == len(ids) and report.added == len(ids)


def test_a_record_the_feed_also_brought_is_stored_once(simulator, make_settings, store):
    service, env = simulator()
    settings = make_settings(env)
    assert run_sync(settings, store).ok
    from_feed = set(stored_ids(store))
    report = run_workspace(replace(settings, workspace_tables=("OfficeActivity",)), store, week_ago(service))
    assert report.ok, report.summary()
    from_workspace = set(received(service, read_until(store), ("OfficeActivity",)))
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == len(from_feed | from_workspace)
    assert len(from_feed & from_workspace) > 1_000 and report.added == len(from_workspace - from_feed)


def test_sign_ins_the_feed_brings_are_not_read_again_from_the_workspace(simulator, make_settings, store):
    """The Entra ID tables' ids are not the audit log's: on a store whose feed syncs Audit.AzureActiveDirectory they
    are left out, said once, and the sign-ins stay one each; without that content type they are read."""
    service, env = simulator()
    settings = make_settings(env)
    assert run_sync(settings, store).ok
    sign_ins = Counter(e.operation for e in store.iter_events())["UserLoggedIn"]
    report = run_workspace(settings, store, week_ago(service))
    assert report.ok and [p.name for p in report.parts] == ["OfficeActivity"], report.summary()
    assert "SigninLogs and AuditLogs not read" in report.summary() and "O365_CONTENT_TYPES" in report.summary()
    assert Counter(e.operation for e in store.iter_events())["UserLoggedIn"] == sign_ins > 100
    others = tuple(c for c in settings.content_types if c != workspace.ENTRA_CONTENT_TYPE)
    without = replace(settings, content_types=others)
    report = run_workspace(without, store, week_ago(service))
    assert [p.name for p in report.parts] == ["OfficeActivity", "SigninLogs", "AuditLogs"] and not report.note
    assert report.part("SigninLogs").added > 100


def test_sign_ins_the_workspace_brought_are_not_taken_again_from_the_audit_log(simulator, make_settings, store,
                                                                               monkeypatch):
    """The other way round: once the workspace brought the sign-ins, the feed and the Graph backfill leave
    Audit.AzureActiveDirectory out and say why; with the Entra ID tables out of WORKSPACE_TABLES the feed syncs it."""
    monkeypatch.setattr(backfill, "POLL_FIRST", 0.2)
    service, env = simulator(audit_search=AuditSearchConfig(seconds=0.2))
    settings = make_settings(env)
    assert run_workspace(settings, store, week_ago(service)).ok

    def entra_events() -> int:
        return store.stats([workspace.ENTRA_CONTENT_TYPE]).per_content_type.get(workspace.ENTRA_CONTENT_TYPE, 0)

    from_workspace = entra_events()
    report = run_sync(settings, store)
    assert report.ok and workspace.ENTRA_CONTENT_TYPE not in [p.name for p in report.parts], report.summary()
    assert "Audit.AzureActiveDirectory left out" in report.summary() and "WORKSPACE_TABLES" in report.summary()
    until = service.now().replace(second=0, microsecond=0)
    report = run_backfill(settings, store, until - timedelta(days=10), until)
    assert report.ok and report.added > 0 and "Audit.AzureActiveDirectory left out" in report.summary()
    assert entra_events() == from_workspace > 100
    assert "Audit.AzureActiveDirectory left out" in ingest_status(store, settings).feed_left_out  # status says it too
    report = run_sync(replace(settings, workspace_tables=("OfficeActivity",)), store)
    assert report.part(workspace.ENTRA_CONTENT_TYPE).added > 100 and not report.note, report.summary()


def test_rows_that_arrive_late_are_read_by_the_next_run(simulator, make_settings, store):
    first = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    service, env = simulator(frozen_at=first)
    api = LogAnalyticsApi.connect(make_settings(env))
    assert WorkspaceReader(api, store, clock=lambda: first).run(week_ago(service)).ok
    before = set(stored_ids(store))
    service.config.frozen_at = later = first + timedelta(days=1)
    assert WorkspaceReader(api, store, clock=lambda: later).run().ok  # from the cursor
    truth = received(service, later - workspace.SETTLE)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == set(truth)
    late = {i for i in set(ids) - before if truth[i]["CreationTime"] + "Z" < (first - workspace.SETTLE).isoformat()
            .replace("+00:00", "Z")}
    assert late, "rows that happened before the first run but arrived after it were read by the second"


def test_a_result_over_the_row_limit_or_called_partial_is_split_and_429s_are_ridden_out(simulator, make_settings,
                                                                                      store, monkeypatch):
    monkeypatch.setattr(workspace, "ROW_LIMIT", 400)  # an answer this long may have been cut: not trusted
    service, env = simulator(workspace=WorkspaceConfig(row_limit=700, throttle_every=7))  # past 700: partial
    report = run_workspace(make_settings(env), store, week_ago(service))
    assert report.ok, report.summary()
    truth = received(service, read_until(store))
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == set(truth)
    days = (read_until(store) - week_ago(service)) / timedelta(days=1)
    assert report.units > 3 * days + 10, "days over the limit were halved and read again"
    statuses = Counter(r.status for r in service.log if r.path.startswith("/loganalytics/"))
    assert statuses[429], "throttling was ridden out"


def test_a_missing_permission_is_said_once_in_plain_words(simulator, make_settings, store):
    service, env = simulator(roles=("ActivityFeed.Read",))  # no Log Analytics Reader on the workspace
    report = run_workspace(make_settings(env), store, week_ago(service))
    assert "Log Analytics Reader" in report.fatal and "Traceback" not in report.summary()
    assert sum(1 for r in service.log if r.path.startswith("/loganalytics/")) == 1, "said once, not per table"
    assert stored_ids(store) == []


def test_the_command_line_reads_the_workspace_and_status_shows_how_far(simulator, tmp_path):
    # the tenant's clock stands still before what the command line reads up to: a second run has nothing new to find
    # whatever minute it starts in
    _, env = simulator(frozen_at=datetime.now(timezone.utc).replace(second=0, microsecond=0) - workspace.SETTLE
                       - timedelta(minutes=2))
    done = run_cli(tmp_path, env, "backfill", "--source", "workspace", "--days", "9")
    assert done.returncode == 0, done.stderr
    again = run_cli(tmp_path, env, "sync", "--source", "workspace")
    assert again.returncode == 0 and "workspace read done" in again.stderr, again.stderr
    assert " 0 new to the store" in again.stderr or again.stderr.count("nothing new") == 3, "read before: not again"
    status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)["workspace"]
    assert {t["table"] for t in status} == {"OfficeActivity", "SigninLogs", "AuditLogs"}
    assert all(t["spans"] == 1 and t["added"] > 0 for t in status)
    text = run_cli(tmp_path, env, "status").stdout
    assert "workspace SigninLogs: read" in text
    refused = run_cli(tmp_path, {**env, "WORKSPACE_ID": "not-a-guid"}, "sync", "--source", "workspace")
    assert refused.returncode == 2 and "WORKSPACE_ID must be a GUID" in refused.stderr


def _leads(store, folder) -> dict[str, set]:
    index = ActivityIndex(store, str(folder / "audit.db.index"), ipinfo=IpInfo(networks_text=NETWORKS))
    index.refresh()
    index.wait()
    engine = LeadEngine(index, store)
    engine.update()
    found = {}
    for lead in engine.leads():
        found.setdefault(lead.rule, set()).add((frozenset(lead.users), frozenset(lead.ips)))
    index.close()
    return found


def test_the_demo_stories_raise_the_same_leads_from_the_workspace_as_from_the_feed(simulator, make_settings,
                                                                                   tmp_path):
    tenant = SimulatedTenant(week_start(), seed=7, events_per_week=30_000)  # the DEMO tenant
    service, env = simulator(tenant)
    (tmp_path / "feed").mkdir()
    (tmp_path / "workspace").mkdir()
    with SqliteStore(str(tmp_path / "feed" / "audit.db")) as feed:
        fill_store(feed, tenant, service.now())
        from_feed = _leads(feed, tmp_path / "feed")
    with SqliteStore(str(tmp_path / "workspace" / "audit.db")) as store:
        assert run_workspace(make_settings(env), store, week_ago(service)).ok
        from_workspace = _leads(store, tmp_path / "workspace")
    assert len(from_feed) >= 12
    assert from_workspace == from_feed


def test_rows_that_cannot_be_used_are_counted_and_the_rest_stored(simulator, make_settings, store):
    from simulator.server import Answer

    service, env = simulator()
    good = {"TimeGenerated": "2026-11-30T10:00:00Z", "OfficeId": "1b0e8c5e-good", "Operation": "FileDownloaded",
            "UserId": "<img src=x onerror=alert(1)>@contoso.com", "OfficeWorkload": "SharePoint"}
    columns = list(good)
    rows = [list(good.values()),
            [good["TimeGenerated"], {"x": 1}, "FileDownloaded", "a@contoso.com", "SharePoint"],  # an Id not text
            ["yesterday", "id-2", "FileDownloaded", "a@contoso.com", "SharePoint"],  # no time
            ["2026-11-30T10:00:00Z", "id-3"],  # shorter than the columns
            "not a row"]
    body = json.dumps({"tables": [{"name": "PrimaryResult", "columns": [{"name": c, "type": "string"}
                                                                        for c in columns], "rows": rows}]})
    service.script("/loganalytics/", Answer(200, body.encode()), times=1)
    settings = replace(make_settings(env), workspace_tables=("OfficeActivity",))
    report = run_workspace(settings, store, service.now() - timedelta(hours=6))
    assert report.ok and report.unusable == 4, report.summary()
    assert "could not be used" in report.summary()
    [event] = [e for e in store.iter_events() if e.id == "1b0e8c5e-good"]
    assert event.user_id == good["UserId"], "attacker-controlled text is kept as it was, as text"


def test_a_workspace_only_set_up_reads_with_the_hosts_managed_identity(simulator, tmp_path):
    """No app registration: the host's managed identity (as App Service and Functions serve it) gets the token."""
    service, env = simulator()
    no_app = {k: v for k, v in env.items() if k not in ("O365_CLIENT_ID", "O365_CLIENT_SECRET")}
    identity = {"WORKSPACE_CREDENTIAL": "managed-identity", "IDENTITY_ENDPOINT": f"{env['O365_API_URL']}/msi/token",
                "IDENTITY_HEADER": service.config.identity_header, "REQUESTS_CA_BUNDLE": env["O365_CA_BUNDLE"]}

    done = run_cli(tmp_path, no_app, "sync", "--source", "workspace", **identity)
    assert done.returncode == 0, done.stderr[-2000:]
    with SqliteStore(str(tmp_path / "audit.db")) as store:
        assert len(stored_ids(store)) > 1_000
    paths = Counter(r.path for r in service.log)
    assert paths["/msi/token"] >= 1 and not any(p.endswith("/oauth2/v2.0/token") for p in paths), paths

    feed = run_cli(tmp_path, no_app, "sync", **identity)  # the feed has no identity to use: said, not a traceback
    assert feed.returncode == 2 and "O365_CLIENT_ID is not set" in feed.stderr and "Traceback" not in feed.stderr

    refused = run_cli(tmp_path, no_app, "sync", "--source", "workspace", **{**identity, "IDENTITY_HEADER": "wrong"})
    assert refused.returncode == 2 and "Azure identity gave no token" in refused.stderr, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr and service.config.identity_header not in refused.stderr
