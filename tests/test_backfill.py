"""Backfill from Microsoft Graph's audit log queries, against the simulator's: the history equals its ground truth
exactly; overlap with the live feed is stored once; killed at random moments it resumes exactly without submitting
a running query twice; queries over the record limit are split; 429, 503, failed and cancelled queries are ridden
out; a missing permission says so once."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from eventstore.model import retention_start, utc_text
from eventstore.sqlite import SqliteStore
from ingest import backfill
from ingest.auditquery import AuditQueryApi
from ingest.backfill import Backfill, plan, run_backfill
from ingest.sync import run_sync
from simulator import SimulatedTenant
from simulator.auditsearch import AuditSearchConfig
from simulator.server import error_answer

from .conftest import stored_ids, week_start
from .test_cli import cli_env, run_cli

DAYS = 30


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(backfill, "POLL_FIRST", 0.2)
    monkeypatch.setattr(backfill, "POLL_MAX", 1.0)


def small_tenant(**extra) -> SimulatedTenant:
    return SimulatedTenant(week_start(), seed=5, events_per_week=1_400, blob_minutes=120, **extra)


def history_ids(service, since: datetime, until: datetime) -> set[str]:
    now = service.now()
    return {r["Id"] for r in service.tenant.history(since, min(until, now - timedelta(minutes=30)), now)}


def span(service, days: int = DAYS) -> tuple[datetime, datetime]:
    until = service.now().replace(second=0, microsecond=0)
    return until - timedelta(days=days), until


def test_the_plan_is_one_query_per_utc_day_until_the_volume_is_known():
    since = datetime(2026, 5, 1, 13, 30, tzinfo=timezone.utc)
    windows = plan(since, since + timedelta(days=2))
    assert [(w.start, w.end) for w in windows] == [
        ("2026-05-01T13:30:00Z", "2026-05-02T00:00:00Z"), ("2026-05-02T00:00:00Z", "2026-05-03T00:00:00Z"),
        ("2026-05-03T00:00:00Z", "2026-05-03T13:30:00Z")]
    assert len({w.name for w in windows}) == 3


def test_queries_are_sized_to_the_tenants_volume_and_skip_what_an_earlier_run_planned():
    day = timedelta(days=1)
    assert backfill.window_length(None) == day, "nothing stored yet: a day at a time"
    assert backfill.window_length(200) == 30 * day, "a small tenant: a month per query"
    assert backfill.window_length(100_000) == 5 * day
    assert backfill.window_length(1_000_000) == day / 2, "5,000 seats: half-days, each under the record limit"
    assert backfill.window_length(10_000_000) == timedelta(minutes=45)
    since = datetime(2026, 5, 1, 13, 30, tzinfo=timezone.utc)
    halves = plan(since, since + day, length=day / 2)
    assert [(w.start, w.end) for w in halves] == [
        ("2026-05-01T13:30:00Z", "2026-05-02T00:00:00Z"), ("2026-05-02T00:00:00Z", "2026-05-02T12:00:00Z"),
        ("2026-05-02T12:00:00Z", "2026-05-02T13:30:00Z")]
    around = plan(since, since + 10 * day, length=30 * day, covered=[(since + 2 * day, since + 3 * day)])
    assert [(w.start, w.end) for w in around] == [("2026-05-01T13:30:00Z", "2026-05-03T13:30:00Z"),
                                                  ("2026-05-04T13:30:00Z", "2026-05-11T13:30:00Z")]


def test_after_the_live_feed_a_small_tenants_history_takes_a_few_queries_and_equals_the_truth(simulator,
                                                                                             make_settings, store):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    settings = make_settings(env)
    assert run_sync(settings, store).ok  # the feed's week: the store now knows the tenant's volume
    from_feed = set(stored_ids(store))
    since, until = span(service, 60)
    report = run_backfill(settings, store, since, until)
    assert report.ok, report.summary()
    assert len(service.audit.queries) <= 4, "two months of a small tenant in a few queries, not 61"
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == from_feed | history_ids(service, since, until)


def test_a_backfill_equals_the_history_exactly_through_limits_throttling_and_failures(simulator, make_settings,
                                                                                     store):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(
        seconds=0.3, record_limit=400, fail_every=13, cancel_every=17, throttle_every=9, unavailable_every=23))
    since, until = span(service)
    report = run_backfill(make_settings(env), store, since, until)
    assert report.ok, report.summary()
    truth = history_ids(service, since, until)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == truth and len(truth) > 3_000
    queries = list(service.audit.queries.values())
    ended = Counter(q["_ends"] for q in queries)
    assert ended["failed"] and ended["cancelled"], "failed and cancelled queries were submitted again"
    assert report.units > DAYS + 1, "days over the record limit were split"
    statuses = Counter(r.status for r in service.log if r.path.startswith("/graph/"))
    assert statuses[429] and statuses[503], "throttling and unavailability were ridden out"


def test_overlap_with_the_live_feed_is_stored_once(simulator, make_settings, store):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    settings = make_settings(env)
    assert run_sync(settings, store).ok
    from_feed = set(stored_ids(store))
    since, until = span(service, 12)
    report = run_backfill(settings, store, since, until)
    assert report.ok, report.summary()
    ids = stored_ids(store)
    truth = history_ids(service, since, until)
    assert len(ids) == len(set(ids)) == len(from_feed | truth)
    assert len(from_feed & truth) > 1_000 and report.added == len(truth - from_feed)


def test_killed_at_random_moments_it_resumes_exactly_and_never_submits_a_running_query_twice(simulator, tmp_path):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=1.5, record_limit=400))
    since, until = span(service, 20)
    environment = cli_env(tmp_path, env)
    command = [sys.executable, "-m", "ingest", "backfill", "--since", since.isoformat(), "--until", until.isoformat()]
    rng = random.Random(3)
    for _ in range(4):
        process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with SqliteStore(str(tmp_path / "audit.db")) as store:
        ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == history_ids(service, since, until)
    submitted = Counter(q["displayName"] for q in service.audit.queries.values() if q["_ends"] == "succeeded")
    assert submitted and max(submitted.values()) == 1, [name for name, n in submitted.items() if n > 1]


def test_status_reports_the_backfill(simulator, tmp_path):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    since, until = span(service, 3)
    environment = cli_env(tmp_path, env)
    subprocess.run([sys.executable, "-m", "ingest", "backfill", "--since", since.isoformat()], cwd=tmp_path,
                   env=environment, check=True, capture_output=True, timeout=300)
    status = subprocess.run([sys.executable, "-m", "ingest", "status", "--json"], cwd=tmp_path, env=environment,
                            check=True, capture_output=True, text=True, timeout=120)
    state = json.loads(status.stdout)["backfill"]
    assert state["windows"] == {"done": 4} and state["records"] == len(history_ids(service, since, until))


def test_a_range_past_the_retention_is_said_at_the_start(simulator, tmp_path):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    done = run_cli(tmp_path, env, "backfill", "--days", "5", AUDIT_RETENTION_DAYS=2)
    lines = done.stderr.splitlines()
    said = next(n for n, line in enumerate(lines) if "The store keeps 2 days (AUDIT_RETENTION_DAYS)" in line)
    assert said < next(n for n, line in enumerate(lines) if "windows done" in line), "before the work, not after"
    assert done.returncode == 0, done.stderr[-2000:]


def test_finished_queries_are_paged_several_at_once_and_a_refusal_stops_every_pager(simulator, make_settings, store):
    service, env = simulator(small_tenant(), latency=0.02, audit_search=AuditSearchConfig(seconds=0.2, page_size=40))
    since, until = span(service, 6)
    settings = make_settings(env)
    service.script("/records", error_answer(403, "Authorization_RequestDenied"), times=1)  # consent withdrawn
    refused = run_backfill(settings, store, since, until)
    assert refused.fatal and refused.summary().count("AuditLogsQuery.Read.All") == 1 and refused.waiting
    pages = [r.path for r in service.log if r.path.endswith("/records")]
    assert len(pages) < 4 * 7, "the other pagers stopped rather than read on"
    report = run_backfill(settings, store, since, until)
    assert report.ok, report.summary()
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) and set(ids) == history_ids(service, since, until)
    order = [r.path.split("/")[-2] for r in service.log if r.path.endswith("/records")][len(pages):]
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches > len(set(order)), "pages of different queries were read in turn, not one query after another"


@pytest.mark.parametrize("roles, expected", [
    (("ActivityFeed.Read",), "AuditLogsQuery.Read.All"),
    (("ActivityFeed.Read", "AuditLog.Read.All"), "AuditLog.Read.All rather than AuditLogsQuery.Read.All"),
])
def test_a_missing_permission_is_said_once_in_plain_words(simulator, make_settings, store, roles, expected):
    service, env = simulator(small_tenant(), roles=roles, audit_search=AuditSearchConfig(seconds=0.2))
    since, until = span(service, 2)
    report = run_backfill(make_settings(env), store, since, until)
    assert expected in report.summary() and "Traceback" not in report.summary()
    assert stored_ids(store) == []
    if not report.fatal:
        assert report.done == 3, "the queries ran: they just found nothing"


@pytest.mark.parametrize("elsewhere", [
    "https://evil.example/steal?next=1",
    "http://{host}/graph/v1.0/security/auditLog/queries/{query}/records?$skiptoken=1",
], ids=["other-host", "plain-http"])
def test_a_next_page_elsewhere_is_refused_and_the_window_is_given_up(simulator, make_settings, store, monkeypatch,
                                                                     elsewhere):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    real = service.audit.page

    def hostile(query_id, params, base, roles):
        page = real(query_id, params, base, roles)
        page["@odata.nextLink"] = elsewhere.format(host=env["GRAPH_API_URL"].split("/")[2], query=query_id)
        return page

    monkeypatch.setattr(service.audit, "page", hostile)
    monkeypatch.setattr(backfill, "GIVE_UP_AFTER", 1)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    assert report.gaps and "refused to send the token" in report.summary(), report.summary()
    assert not any("evil" in r.path or "skiptoken=1" in str(r.query) for r in service.log), "nothing went there"
    monkeypatch.setattr(service.audit, "page", real)  # the proxy is gone: running again tries the gaps again
    again = run_backfill(make_settings(env), store, since, until)
    assert again.ok and set(stored_ids(store)) == history_ids(service, since, until), again.summary()


def test_a_window_over_the_limit_at_its_smallest_is_reported_as_a_gap(simulator, make_settings, store):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2, record_limit=100))
    since, until = span(service, 2)  # the leaver's 400 deletions in 25 minutes: over 100 in any 15 minutes
    report = run_backfill(make_settings(env), store, since, until)
    assert report.gaps and "over the record limit even at 15 minutes" in report.summary() and not report.ok


def test_the_backfill_brings_exactly_the_days_the_store_keeps(simulator, make_settings, store):
    """Retention keeps whole UTC days: the backfill starts at the first of them, not a day later."""
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    until = service.now()
    report = run_backfill(make_settings(env, AUDIT_RETENTION_DAYS=5), store, until - timedelta(days=40), until)
    horizon = retention_start(datetime.now(timezone.utc), 5)
    assert "the store keeps 5 days" in report.summary() and report.since == utc_text(horizon), report.summary()
    assert store.prune(horizon) == 0, "nothing was brought that retention drops at once"
    assert set(stored_ids(store)) == history_ids(service, horizon, until), "the oldest day kept is backfilled too"


def test_the_backfill_class_resumes_a_lost_submission_by_its_name(simulator, make_settings, store):
    """A run that died between submitting and hearing the id: the next finds the query by its name."""
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.5))
    settings = make_settings(env)
    since, until = span(service, 1)
    api = AuditQueryApi.connect(settings)
    first = plan(since, until)[0]
    api.submit(first.name, *first.span)  # submitted, but the answer "lost"
    first.state = "submitting"
    Backfill(api, store).save(first)
    report = Backfill(api, store).run(since, until)
    assert report.ok and Counter(q["displayName"] for q in service.audit.queries.values())[first.name] == 1


def test_a_query_id_that_would_bend_the_next_address_is_refused(simulator, make_settings, store, monkeypatch):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    real = service.audit.submit
    monkeypatch.setattr(service.audit, "submit", lambda body, base: {**real(body, base), "id": "../../steal?x="})
    monkeypatch.setattr(backfill, "GIVE_UP_AFTER", 1)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    assert len(report.gaps) == report.units >= 1 and "without a usable id" in report.summary(), "every window"
    assert not any("steal" in r.path for r in service.log)


def test_a_next_page_that_repeats_is_a_gap_that_a_later_run_fills(simulator, make_settings, store, monkeypatch):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2, page_size=20))
    real, first_link = service.audit.page, {}

    def looping(query_id, params, base, roles):  # a proxy that answers every next page with the same link
        page = real(query_id, params, base, roles)
        if page.get("@odata.nextLink"):
            page["@odata.nextLink"] = first_link.setdefault(query_id, page["@odata.nextLink"])
        return page

    monkeypatch.setattr(service.audit, "page", looping)
    monkeypatch.setattr(backfill, "GIVE_UP_AFTER", 1)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    assert report.gaps and "points back to a page already read" in report.summary(), report.summary()
    pages = [r for r in service.log if r.path.endswith("/records")]
    assert len(pages) <= 3 * len(first_link), "the loop was seen at once, not followed"
    monkeypatch.setattr(service.audit, "page", real)
    again = run_backfill(make_settings(env), store, since, until)
    assert again.ok and set(stored_ids(store)) == history_ids(service, since, until), again.summary()


def test_the_pages_of_one_query_are_bounded(simulator, make_settings, store, monkeypatch):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2, page_size=5))
    monkeypatch.setattr(backfill, "PAGES_PER_QUERY", 4)
    monkeypatch.setattr(backfill, "GIVE_UP_AFTER", 1)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    assert report.gaps and "go on past 4 pages" in report.summary(), report.summary()
    pages = Counter(r.path.split("/")[-2] for r in service.log if r.path.endswith("/records"))
    assert max(pages.values()) == 4, "no query was read past the cap"


def test_records_the_backfill_cannot_use_are_counted_and_nothing_is_stored_under_an_invented_id(
        simulator, make_settings, store, monkeypatch, tmp_path):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    real = service.audit.page
    odd = [{"id": "a", "auditData": "text"}, {"id": "b", "auditData": ["a", "list"]}, {"id": "c", "auditData": None},
           "not an object", 7, {"id": "d", "auditData": {"Id": {"x": 1}, "Operation": "FileAccessed"}},
           {"id": "e", "auditData": {"Id": ["x"], "Operation": "FileAccessed"}}]

    def with_odd_records(query_id, params, base, roles):
        page = real(query_id, params, base, roles)
        if "$skiptoken" not in params:
            page["value"] = odd + page["value"]
        return page

    monkeypatch.setattr(service.audit, "page", with_odd_records)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    queries = len(service.audit.queries)
    assert report.unusable == len(odd) * queries and "could not be used" in report.summary(), report.summary()
    ids = stored_ids(store)
    assert set(ids) == history_ids(service, since, until), "every usable record, and nothing else"
    assert not any("{" in i or "[" in i for i in ids)
    status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)
    assert status["backfill"]["unusable"] == report.unusable


def test_a_refused_token_is_not_called_a_missing_permission(simulator, make_settings, store):
    service, env = simulator(small_tenant(), audit_search=AuditSearchConfig(seconds=0.2))
    service.script("/graph/", error_answer(401, "InvalidAuthenticationToken", "Access token validation failure."),
                   times=100)
    since, until = span(service, 1)
    report = run_backfill(make_settings(env), store, since, until)
    assert "did not accept the app's token (HTTP 401" in report.fatal and "AuditLogsQuery" not in report.fatal
    assert "GRAPH_API_URL" in report.fatal
