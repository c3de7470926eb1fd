"""The sync against the HTTPS simulator, through the real msal and requests: every rule of the API contract,
every error path, and the promise: no event lost, none stored twice."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from eventstore.sqlite import SqliteStore
from ingest import api as api_module
from ingest.api import ActivityApi
from ingest.auth import AuthError
from ingest.feedstate import CONTENT_TYPES, FeedState
from ingest.source import Combined, Progress
from ingest.sync import SyncAlreadyRunning, sync_once
from simulator import Faults, SimulatedTenant
from simulator.tls import make_client_certificate

from .conftest import ground_truth, stored_ids, week_start


def sync(settings, store, **kwargs):
    api = ActivityApi.connect(settings, backoff_base=0.01)
    return sync_once(api, store, settings.content_types, retention_days=settings.retention_days, **kwargs), api


def assert_matches_ground_truth(service, store):
    expected_ids, expected_lost = ground_truth(service)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == expected_ids, \
        f"missing {len(expected_ids - set(ids))}, unexpected {len(set(ids) - expected_ids)}"
    assert {b.content_id for b in FeedState(store).issues() if b.status == "lost"} == expected_lost


def test_full_sync_matches_the_tenant_and_follows_the_contract(simulator, make_settings, store):
    service, env = simulator(page_size=2)
    report, _ = sync(make_settings(env), store)
    assert report.ok, report.summary()
    assert_matches_ground_truth(service, store)
    requests = service.api_requests()
    assert all(r.publisher == env["O365_TENANT_ID"] for r in requests), "PublisherIdentifier missing somewhere"
    assert any("nextPage" in r.query for r in requests), "the simulator paged, so the client must have followed"
    assert any("/audit/" in r.path for r in requests)
    assert service.window_violations == 0
    assert set(service.subscriptions.values()) == {"enabled"}  # AF20022 → subscription started
    # the tenant really does duplicate records across blobs: dedupe was exercised
    tenant = service.tenant
    total = sum(len(tenant.records(ct, b.index)) for ct in service.subscriptions
                for b in tenant.blobs_created(ct, tenant.start - timedelta(hours=2), service.now(), service.now())
                if b.expiration > service.now())
    assert total > len(stored_ids(store))


def test_second_pass_adds_nothing_and_fetches_no_blob_again(simulator, make_settings, store):
    service, env = simulator()
    sync(make_settings(env), store)
    before = len(service.api_requests())
    report, _ = sync(make_settings(env), store)
    assert report.added == 0
    again = service.api_requests()[before:]
    assert not [r for r in again if "/audit/" in r.path], "stored blobs must be skipped by content id"


def test_next_page_url_header_of_older_docs_is_followed_too(simulator, make_settings, store):
    service, env = simulator(page_size=2, next_page_header="NextPageUrl")
    report, _ = sync(make_settings(env), store)
    assert report.ok
    assert_matches_ground_truth(service, store)


def test_an_empty_page_that_names_itself_is_read_again_not_called_a_loop(simulator, make_settings, store,
                                                                         monkeypatch):
    """The service answers an empty page whose NextPageUri is the page just read while the next is not ready."""
    monkeypatch.setattr(api_module, "EMPTY_PAGE_WAIT", 0.01)
    service, env = simulator(page_size=2, faults=Faults(empty_page_every=2))
    report, _ = sync(make_settings(env), store)
    assert report.ok, report.summary()
    assert_matches_ground_truth(service, store)
    asked = [tuple(sorted(r.query.items())) for r in service.api_requests() if r.path.endswith("/content")]
    assert len(asked) > len(set(asked)), "the same page was asked for again"


@pytest.mark.parametrize("faults", [
    Faults(throttle_every=3, retry_after=0),  # AF429 as HTTP 403 and 429, with Retry-After
    Faults(throttle_every=4),  # AF429 without Retry-After: exponential backoff
    Faults(error_every=5, unavailable_every=7),  # AF50000 as 500, and 503
], ids=["throttled-retry-after", "throttled-backoff", "server-errors"])
def test_transient_trouble_costs_time_not_events(simulator, make_settings, store, faults):
    service, env = simulator(faults=faults)
    report, _ = sync(make_settings(env), store)
    assert report.ok, report.summary()
    assert_matches_ground_truth(service, store)
    assert any(r.code in ("AF429", "AF50000") or r.status == 503 for r in service.api_requests())


@pytest.mark.parametrize("pace, throttled", [(480, False), (60000, True)], ids=["paced", "unpaced"])
def test_pacing_keeps_requests_under_the_quota(simulator, make_settings, store, pace, throttled):
    # a quota of 10 requests per second stands in for 2,000 per minute, to keep the test short
    tenant = SimulatedTenant(week_start(), seed=3, events_per_week=500, blob_minutes=720)
    service, env = simulator(tenant, quota_requests=10, quota_seconds=1.0, faults=Faults(retry_after=1))
    report, _ = sync(make_settings(env, O365_MAX_REQUESTS_PER_MINUTE=pace, O365_CONTENT_TYPES="DLP.All"), store)
    assert report.ok
    assert any(r.code == "AF429" for r in service.api_requests()) is throttled
    ids, _ = tenant.expected_ids("DLP.All", service.now() - timedelta(days=7), service.now(), service.now())
    assert set(stored_ids(store)) == ids


def test_expired_token_is_refreshed_once(simulator, make_settings, store):
    service, env = simulator()
    service.inject("/audit/", 401, "", times=1)  # a 401 with no AF code: the token expired
    report, _ = sync(make_settings(env), store)
    assert report.ok
    assert_matches_ground_truth(service, store)
    service.revoke_tokens()  # every cached token is now unknown to the service
    report, _ = sync(make_settings(env), store)
    assert report.ok


def test_missing_permission_stops_the_pass_with_a_clear_message(simulator, make_settings, store):
    service, env = simulator(roles=())
    report, _ = sync(make_settings(env), store)
    assert "ActivityFeed.Read" in report.fatal and not report.ok
    assert len(service.api_requests()) == 1, "every request would be refused the same way: the pass stops"
    for checkpoint in FeedState(store).checkpoints(CONTENT_TYPES):  # recorded for every content type it left unsynced
        assert "ActivityFeed.Read" in checkpoint.last_error


def test_wrong_secret_is_an_auth_error_that_does_not_echo_it(simulator, make_settings, store):
    _, env = simulator()
    wrong = "Wr0ng-S3cret-value-123"
    report, _ = sync(make_settings({**env, "O365_CLIENT_SECRET": wrong}), store)
    assert "O365_CLIENT_SECRET" in report.fatal
    assert wrong not in report.summary()
    assert all(wrong not in cp.last_error for cp in FeedState(store).checkpoints(CONTENT_TYPES))


def test_certificate_credential(simulator, make_settings, store, tmp_path):
    pem = str(tmp_path / "app.pem")
    thumbprint = make_client_certificate(pem)
    service, env = simulator(client_cert_pem=pem, client_cert_thumbprint=thumbprint)
    settings = make_settings({k: v for k, v in env.items() if k != "O365_CLIENT_SECRET"}, O365_CLIENT_CERT=pem)
    report, _ = sync(settings, store)
    assert report.ok
    assert_matches_ground_truth(service, store)


def test_extra_ca_is_trusted_even_with_requests_ca_bundle_set(simulator, make_settings, store, monkeypatch):
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # as this machine (and many proxies' users) do
    service, env = simulator()
    report, _ = sync(make_settings(env), store)
    assert report.ok
    without_ca = {k: v for k, v in env.items() if k != "O365_CA_BUNDLE"}
    with pytest.raises(AuthError, match="Cannot"):
        sync(make_settings(without_ca), store)


def test_broken_page_chain_restarts_the_window(simulator, make_settings, store):
    service, env = simulator(page_size=4)
    service.inject("subscriptions/content", 400, "AF20031", times=1)
    report, _ = sync(make_settings(env), store)
    assert report.ok
    assert_matches_ground_truth(service, store)


def test_service_clock_ahead_is_detected_from_the_date_header(simulator, make_settings, store):
    service, env = simulator(clock_skew=20 * 60)  # our first window would start > 7 days back for the service
    report, api = sync(make_settings(env), store)
    assert report.ok
    assert api.clock_skew == pytest.approx(20 * 60, abs=30)
    assert_matches_ground_truth(service, store)


def test_late_announced_content_is_caught_by_the_overlap(simulator, make_settings, store):
    tenant = SimulatedTenant(week_start(), seed=5, events_per_week=2_000, blob_minutes=2, late_listing_rate=0.5)
    # The tenant's time moves on by 20 minutes between the passes (its clock, not a skew: a service clock 30 min
    # off is refused); late blobs, created before the first pass and announced after it, turn up in the second.
    began = datetime.now(timezone.utc) - timedelta(minutes=20)
    service, env = simulator(tenant, quota_requests=100_000, frozen_at=began)
    settings = make_settings(env, O365_CONTENT_TYPES="Audit.SharePoint")
    sync(settings, store)
    after = began + timedelta(minutes=20)
    late = [b for b in tenant.blobs_created("Audit.SharePoint", began - timedelta(hours=1), after, after)
            if b.created < began < b.listed_from]
    assert late, "the test needs blobs announced late across the two passes"
    service.config.frozen_at = began + timedelta(minutes=20)
    report, _ = sync(settings, store)
    assert report.ok
    expected, _ = ground_truth(service, ["Audit.SharePoint"])
    assert set(stored_ids(store)) == expected


def test_expired_and_unknown_blobs_are_recorded_lost_and_the_sync_goes_on(simulator, make_settings, store):
    service, env = simulator()
    service.inject("/audit/", 404, "AF20050", times=1)
    report, _ = sync(make_settings(env), store)
    lost = [b for b in FeedState(store).issues() if b.status == "lost"]
    assert {b.error_code for b in lost} >= {"AF20050", "AF20051"}
    assert sum(r.lost for r in report.parts) == len(lost)
    assert report.ok  # a lost blob is reported, not a failure of the pass


def test_already_enabled_subscription_is_success(simulator, make_settings, store):
    service, env = simulator()
    api = ActivityApi.connect(make_settings(env))
    api.start_subscription("Audit.Exchange")
    api.start_subscription("Audit.Exchange")  # AF20024
    assert service.subscriptions["Audit.Exchange"] == "enabled"


def test_retention_prunes_old_events(simulator, make_settings, store):
    service, env = simulator()
    sync(make_settings(env, AUDIT_RETENTION_DAYS=3), store)
    oldest = store.stats().first_time  # retention works in whole UTC days: the cutoff's day is kept
    assert oldest >= (service.now() - timedelta(days=3)).strftime("%Y-%m-%dT00:00:00Z")
    assert oldest < (service.now() - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")


def test_one_sync_at_a_time(simulator, make_settings, store):
    _, env = simulator()
    assert store.try_lease("sync", "someone-else", 60)
    with pytest.raises(SyncAlreadyRunning):
        sync(make_settings(env), store)


def test_reader_in_another_connection_sees_consistent_growing_counts(simulator, make_settings, store_path):
    service, env = simulator(faults=Faults(throttle_every=5, retry_after=0))
    counts, errors = [], []
    done = threading.Event()

    def read():
        with SqliteStore(store_path) as reader:
            while not done.is_set():
                try:
                    counts.append(reader.stats().events)
                except Exception as exc:  # noqa: BLE001 - any error here is the failure we look for
                    errors.append(exc)

    with SqliteStore(store_path) as writer:
        thread = threading.Thread(target=read)
        thread.start()
        try:
            sync(make_settings(env), writer)
        finally:
            done.set()
            thread.join()
        assert not errors
        assert counts == sorted(counts), "a reader saw the count go backwards"
        assert len(set(counts)) > 1, "the reader should have seen the sync progress"
        assert_matches_ground_truth(service, writer)


def test_a_runs_parts_show_as_one_progress():
    """The Sync page's bar and the terminal's line are the whole run's, not whichever content type spoke last."""
    combined = Combined()
    assert combined(Progress("feed", "Audit.Exchange", 3, 10, 300, 290)).part == "Audit.Exchange"  # one so far
    whole = combined(Progress("feed", "DLP.All", 5, 5, 20, 20))
    assert (whole.done, whole.total, whole.records, whole.added) == (8, 15, 320, 310)
    assert whole.text() == "1 of 2 content types finished, 8/15 blobs, 320 records, 310 new"
    assert combined(Progress("feed", "Audit.Exchange", 10, 10, 900, 880)).fraction == 1.0


def test_a_helper_process_killed_mid_sync_loses_nothing_and_a_new_one_takes_the_rest(simulator, make_settings,
                                                                                     store):
    """The helper that parses content dies (killed, out of memory): what it held waits for the next pass, a new
    helper parses the rest of this one, and after the next pass the store equals the tenant."""
    service, env = simulator()
    settings = make_settings(env)
    killed: list[int] = []

    def helpers() -> list[psutil.Process]:
        return [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]

    def kill_the_helper(progress: Progress) -> None:
        if not killed and progress.done >= 10:
            for helper in helpers():
                helper.kill()
                killed.append(helper.pid)

    first, _ = sync(settings, store, progress=kill_the_helper)
    assert killed and first.part(CONTENT_TYPES[0]).done >= 10, first.summary()
    assert all(first.part(ct).added for ct in CONTENT_TYPES[1:]), first.summary()
    assert sync(settings, store)[0].ok
    assert_matches_ground_truth(service, store)
