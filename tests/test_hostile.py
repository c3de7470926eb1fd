"""The ingest against a hostile or broken peer (a compromised proxy, a bug at the service, a TLS-inspecting
middlebox, an attacker), played by the HTTPS simulator's scripted answers and by listeners elsewhere on
loopback: the token stays home, one bad answer is one recorded error, every answer and request is bounded,
nothing secret is logged or stored, and a wrong clock costs no content."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from eventstore import sqlite as sqlite_store
from eventstore.sqlite import SqliteStore
from ingest import api as api_module
from ingest import sync as sync_module
from ingest.feedstate import CONTENT_TYPES, FeedState
from ingest.sync import SyncAlreadyRunning
from simulator.hostile import Elsewhere, deeply_nested, echo_request, html_page, huge_blob, json_answer, trickle
from simulator.server import Answer, error_answer

from .conftest import ground_truth, stored_ids
from .test_cli import cli_env, run_cli
from .test_sync import assert_matches_ground_truth, sync

SHAREPOINT = "contentType=Audit.SharePoint"
TWO_TYPES = "Audit.SharePoint,DLP.All"


def results(report) -> dict:
    return {r.name: r for r in report.parts}


def feed_path(env) -> str:
    return f"/api/v1.0/{env['O365_TENANT_ID']}/activity/feed"


def listing_item(uri: str, content_id: str = "20260101000000$evil$sharepoint$1$x") -> dict:
    return {"contentType": "Audit.SharePoint", "contentId": content_id, "contentUri": uri,
            "contentCreated": "2026-11-27T10:00:00.000Z", "contentExpiration": "2026-12-04T10:00:00.000Z"}


def converge(service, env, make_settings, store, passes: int = 1) -> None:
    """With the peer well-behaved again, the next pass(es) end exactly at the tenant's ground truth."""
    service.unscript()
    for _ in range(passes):
        report, _ = sync(make_settings(env), store)
    assert report.ok, report.summary()
    assert_matches_ground_truth(service, store)


# --- 1. the bearer token goes to the configured origin over HTTPS, or nowhere -------------------------------
@pytest.mark.parametrize("via", ["contentUri", "NextPageUri"])
@pytest.mark.parametrize("where", ["another port", "plain http", "another host name"])
def test_the_token_never_leaves_the_configured_origin(simulator, make_settings, store, via, where):
    service, env = simulator(page_size=2)
    elsewhere = {"another port": Elsewhere(service.tls_files), "plain http": Elsewhere()}.get(where)
    port = env["O365_API_URL"].rsplit(":", 1)[1]
    base = elsewhere.url if elsewhere else f"https://localhost:{port}"  # the very same server, by another name
    if via == "contentUri":
        answer = json_answer([listing_item(f"{base}{feed_path(env)}/audit/20260101000000$evil$sharepoint$1$x")])
    else:
        answer = json_answer([], headers={"NextPageUri": f"{base}{feed_path(env)}/subscriptions/content?"
                                                         "contentType=Audit.SharePoint&nextPage=x$1"})
    service.script(SHAREPOINT, answer, times=1000)

    report, _ = sync(make_settings(env, O365_CONTENT_TYPES=TWO_TYPES), store)

    if elsewhere:
        assert elsewhere.seen == [], "nothing at all may be sent to an address outside the configured API"
        elsewhere.stop()
    assert not [r for r in service.api_requests() if "evil" in r.path or r.query.get("nextPage") == "x$1"]
    by_type = results(report)
    assert not by_type["DLP.All"].error and by_type["DLP.All"].added > 0, "the other content type synced"
    assert "refused to send the token" in by_type["Audit.SharePoint"].error
    assert "refused to send the token" in FeedState(store).checkpoint("Audit.SharePoint").last_error
    if via == "contentUri":
        (issue,) = FeedState(store).issues()
        assert (issue.status, issue.error_code) == ("retrying", "UNTRUSTED_ADDRESS")
    assert FeedState(store).checkpoint("Audit.SharePoint").listed_until is None, "nothing unread may be checkpointed"


def test_the_client_secret_never_leaves_the_configured_login_origin(simulator, make_settings, store):
    service, env = simulator()
    elsewhere = Elsewhere(service.tls_files)
    tenant = env["O365_TENANT_ID"]
    service.script("openid-configuration", json_answer({
        "issuer": f"{env['O365_LOGIN_URL']}/{tenant}/v2.0", "token_endpoint": f"{elsewhere.url}/{tenant}/token",
        "authorization_endpoint": f"{elsewhere.url}/{tenant}/authorize"}), times=10)
    report, _ = sync(make_settings(env), store)
    assert "not the configured service" in report.fatal
    assert elsewhere.seen == [], "the client secret must not be posted to another origin"
    elsewhere.stop()


def test_a_redirect_is_not_followed(simulator, make_settings, store):
    service, env = simulator()
    elsewhere = Elsewhere(service.tls_files)
    service.script("/audit/", Answer(302, b"", {"Location": f"{elsewhere.url}/steal"}), times=1)
    report, _ = sync(make_settings(env), store)
    assert elsewhere.seen == []
    assert any(b.error_code == "REDIRECT" and b.status == "retrying" for b in FeedState(store).issues())
    assert "to retry" in report.summary()
    elsewhere.stop()
    converge(service, env, make_settings, store)


# --- 2. one malformed answer is one recorded error; the pass goes on ---------------------------------------
BAD_LISTINGS = {
    "an HTML page": html_page(),
    "a JSON object": json_answer({"value": []}),
    "items without the fields": json_answer([{"contentId": 5}, "x"]),
    "dates that are not dates": json_answer([{**listing_item("https://x/"), "contentCreated": "soon"}]),
    "nesting 100,000 deep": deeply_nested(),
}


@pytest.mark.parametrize("answer", BAD_LISTINGS.values(), ids=BAD_LISTINGS.keys())
def test_a_broken_listing_is_that_content_types_error(simulator, make_settings, store, answer):
    service, env = simulator()
    service.script(SHAREPOINT, answer, times=1000)
    report, _ = sync(make_settings(env, O365_CONTENT_TYPES=TWO_TYPES), store)
    by_type = results(report)
    assert by_type["Audit.SharePoint"].error and "listing" in by_type["Audit.SharePoint"].error
    assert FeedState(store).checkpoint("Audit.SharePoint").last_error == by_type["Audit.SharePoint"].error
    assert FeedState(store).checkpoint("Audit.SharePoint").listed_until is None
    assert not by_type["DLP.All"].error and by_type["DLP.All"].added > 0
    converge(service, env, make_settings, store)


TRANSIENT = {
    "Retry-After: soon": error_answer(429, "AF429", headers={"Retry-After": "soon"}),
    "Retry-After: an HTTP date in -0000": error_answer(403, "AF429",
                                                       headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}),
    "a Date header in -0000": error_answer(503, "", headers={"Date": "Wed, 21 Oct 2015 07:28:00 -0000"}),
    "an error body nested 100,000 deep": deeply_nested(status=500),
    "an HTML 502 from a proxy": html_page(502, "Bad gateway"),
}


@pytest.mark.parametrize("answer", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_odd_but_transient_answers_cost_a_retry_not_events(simulator, make_settings, store, answer):
    service, env = simulator()
    service.script("/audit/", answer, times=2)
    service.script("subscriptions/content", answer, times=1)
    report, _ = sync(make_settings(env), store)
    assert report.ok, report.summary()
    assert_matches_ground_truth(service, store)


BAD_BLOBS = {
    "an HTML page": html_page(),
    "a JSON object": json_answer({"error": "nope"}),
    "nesting 100,000 deep": deeply_nested(),
    "an unknown refusal": error_answer(418, "AF99999", "I'm a teapot"),
}


@pytest.mark.parametrize("answer", BAD_BLOBS.values(), ids=BAD_BLOBS.keys())
def test_a_broken_blob_is_retried_next_pass_then_recorded_lost(simulator, make_settings, store, answer):
    service, env = simulator()
    settings = make_settings(env, O365_CONTENT_TYPES=TWO_TYPES)
    service.script("/audit/", answer, times=1000)  # every blob, every pass: the worst case
    for attempt in range(1, sync_module.MAX_BLOB_ATTEMPTS + 1):
        report, _ = sync(settings, store)
        issues = FeedState(store).issues()
        assert issues and all(b.attempts == attempt for b in issues if b.status in ("retrying", "lost")
                              and b.error_code != "AF20051")
        assert FeedState(store).checkpoint("Audit.SharePoint").last_error
    # after the last attempt: recorded lost — or, for a JSON array that breaks part-way, stored with what could be
    # read before the break (here: nothing) and a note that says where it broke
    assert all(b.status == "lost" or (b.status, b.error_code) == ("stored", "PARTIAL")
               for b in FeedState(store).issues())
    report, _ = sync(settings, store)
    assert report.ok, "lost blobs are settled: the checkpoint moves on and the error clears"
    assert FeedState(store).checkpoint("Audit.SharePoint").listed_until is not None


def test_one_bad_blob_does_not_hold_up_the_others(simulator, make_settings, store):
    service, env = simulator()
    service.script("/audit/", html_page(), times=1)
    report, _ = sync(make_settings(env), store)
    retrying = [b for b in FeedState(store).issues() if b.status == "retrying"]
    assert len(retrying) == 1 and sum(r.retrying for r in report.parts) == 1
    expected, _ = ground_truth(service)
    assert len(stored_ids(store)) > 0.9 * len(expected), "every other blob was stored in the same pass"
    converge(service, env, make_settings, store)


def test_an_html_error_from_the_token_endpoint_is_recorded_for_every_content_type(simulator, make_settings, store):
    service, env = simulator()
    service.script("/oauth2/v2.0/token", html_page(500, "Internal Server Error"), times=1000)
    report, _ = sync(make_settings(env), store)
    assert "Cannot get a token" in report.fatal
    assert all("Cannot get a token" in cp.last_error for cp in FeedState(store).checkpoints(CONTENT_TYPES))
    converge(service, env, make_settings, store)


def test_a_full_disk_is_the_content_types_error_and_loses_nothing(simulator, make_settings, store_path, monkeypatch):
    service, env = simulator()
    with SqliteStore(store_path) as sized:
        pages = sized._conn().execute("PRAGMA page_count").fetchone()[0]
    opened = sqlite_store._connect

    def capped(path):  # every connection, whichever thread writes the events: the file can grow 3 pages (SQLITE_FULL)
        conn = opened(path)
        conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        return conn

    monkeypatch.setattr(sqlite_store, "_connect", capped)
    with SqliteStore(store_path) as store:
        report, _ = sync(make_settings(env), store)
    assert not report.ok and any("is full" in r.error for r in report.parts), report.summary()
    monkeypatch.setattr(sqlite_store, "_connect", opened)
    with SqliteStore(store_path) as store:
        converge(service, env, make_settings, store)


def test_a_hostile_peer_gets_no_traceback_and_run_goes_on(simulator, tmp_path):
    """As an operator sees it: `sync` exits 1 with the error in status; `run` survives the bad pass and
    syncs once the peer behaves."""
    service, env = simulator()
    service.script(SHAREPOINT, html_page(), times=1000)
    result = run_cli(tmp_path, env, "sync", O365_CONTENT_TYPES=TWO_TYPES)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    status = json.loads(run_cli(tmp_path, env, "status", "--json", O365_CONTENT_TYPES=TWO_TYPES).stdout)
    errors = {c["content_type"]: c["last_error"] for c in status["content_types"]}
    assert "not JSON" in errors["Audit.SharePoint"] and not errors["DLP.All"]

    process = subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=tmp_path,
                               env=cli_env(tmp_path, env, O365_SYNC_INTERVAL=1, O365_CONTENT_TYPES=TWO_TYPES),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert process.poll() is None, "run must survive a failed pass"
        service.unscript()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads(run_cli(tmp_path, env, "status", "--json", O365_CONTENT_TYPES=TWO_TYPES).stdout)
            if all(c["last_success"] and not c["last_error"] for c in status["content_types"]):
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in stderr
    assert all(c["last_success"] and not c["last_error"] for c in status["content_types"]), status


# --- 3. bounds: size, pages, time, and a stop that acts at once --------------------------------------------
def peak_mb(process: subprocess.Popen) -> float:
    """The largest high-water RSS of a process and its children (the parsing helper), read from /proc until it
    ends. (Its rusage would not do: a child inherits its parent's high-water mark at fork, and pytest is large.)"""
    import psutil

    peaks: dict[int, int] = {}
    while process.poll() is None:
        try:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.Error:
            break
        for member in tree:
            try:
                with open(f"/proc/{member.pid}/status") as status:
                    kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                continue
            peaks[member.pid] = max(peaks.get(member.pid, 0), kb)
        time.sleep(0.05)
    return max(peaks.values(), default=0) / 1024


def test_a_blob_larger_than_the_limit_is_refused_with_bounded_memory(simulator, tmp_path):
    service, env = simulator()
    service.script("/audit/", huge_blob(1 << 30), times=1)  # one 1 GB blob, streamed by the peer
    with open(tmp_path / "stderr", "w") as log:  # a file, not a pipe: nothing waits on a full buffer
        process = subprocess.Popen([sys.executable, "-m", "ingest", "sync"], cwd=tmp_path,
                                   env=cli_env(tmp_path, env), stdout=subprocess.DEVNULL, stderr=log)
        peak = peak_mb(process)
    assert process.wait() == 1 and "Traceback" not in (tmp_path / "stderr").read_text()
    status = json.loads(run_cli(tmp_path, env, "status", "--json").stdout)
    (issue,) = [b for b in status["blob_issues"] if b["code"] == "TOO_LARGE"]
    assert issue["status"] == "retrying" and "limit" in issue["message"]
    assert 0 < peak < 400, f"{peak:.0f} MB for a blob refused at 50 MB"


def test_a_next_page_that_points_back_is_not_followed_forever(simulator, make_settings, store, monkeypatch):
    monkeypatch.setattr(api_module, "EMPTY_PAGE_WAIT", 0.01)
    service, env = simulator()

    def same_page(request):
        return b"[]"

    loop = Answer(200, same_page, {"NextPageUri": f"{env['O365_API_URL']}{feed_path(env)}/subscriptions/content?"
                                                  "contentType=Audit.SharePoint&nextPage=again"})
    service.script(SHAREPOINT, loop, times=100_000)
    report, _ = sync(make_settings(env, O365_CONTENT_TYPES=TWO_TYPES), store)
    assert "points back" in results(report)["Audit.SharePoint"].error
    assert "empty 6 times in a row" in results(report)["Audit.SharePoint"].error, "read again a bounded number of times"
    assert len([r for r in service.log if "Audit.SharePoint" in str(r.query)]) < 100
    converge(service, env, make_settings, store)


def test_a_trickling_answer_ends_at_the_request_deadline(simulator, make_settings, store):
    service, env = simulator()
    service.script("/audit/", trickle(json_answer([]), 0.3), times=1)
    report, _ = sync(make_settings(env, O365_REQUEST_TIMEOUT=3), store)
    (slow,) = [b for b in FeedState(store).issues() if b.error_code == "TOO_SLOW"]
    assert slow.status == "retrying" and "3 s" in slow.error_message
    converge(service, env, make_settings, store)


def test_sigterm_interrupts_a_request_in_flight_at_once(simulator, tmp_path):
    service, env = simulator()
    service.script("/audit/", trickle(json_answer([]), 0.5), times=1000)  # every blob holds its request open
    process = subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=tmp_path, env=cli_env(tmp_path, env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [path for path in service.started if "/audit/" in path]:
            time.sleep(0.1)
        time.sleep(1)  # the blobs' answers are trickling in now
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, stderr = process.communicate(timeout=20)  # the read timeout alone would hold it for minutes
        print(f"\nSIGTERM to exit with requests in flight: {time.monotonic() - began:.1f} s")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped cleanly" in stderr and "Traceback" not in stderr


# --- 4. secrets a peer echoes are not logged, stored or shown ------------------------------------------------
def test_secrets_echoed_by_a_peer_go_nowhere(simulator, tmp_path):
    service, env = simulator()
    secret = env["O365_CLIENT_SECRET"]
    service.script("/oauth2/v2.0/token", echo_request(200, code=""), times=1)  # a proxy page echoing the form
    first = run_cli(tmp_path, env, "sync", O365_CONTENT_TYPES="DLP.All")
    assert "Cannot get a token" in first.stderr
    service.script("/audit/", echo_request(400), times=2)  # an API error repeating the bearer token
    service.script(SHAREPOINT, echo_request(400), times=1)
    second = run_cli(tmp_path, env, "sync", O365_CONTENT_TYPES=TWO_TYPES)
    status = run_cli(tmp_path, env, "status", "--json", O365_CONTENT_TYPES=TWO_TYPES).stdout
    text = run_cli(tmp_path, env, "status", O365_CONTENT_TYPES=TWO_TYPES).stdout
    tokens = list(service.tokens)
    assert tokens, "the second sync got tokens, so the echo had one to repeat"
    assert "The request is invalid: Authorization: Bearer ***" in status, "the peer's message is kept, scrubbed"
    for output in (first.stderr, second.stderr, status, text):
        assert secret not in output
        assert not any(token in output for token in tokens)


# --- 6. a wrong clock is an error to report, never a reason to give content up ------------------------------
def test_a_clock_eight_days_off_loses_nothing(simulator, make_settings, store):
    service, env = simulator(clock_skew=8 * 86400)
    report, _ = sync(make_settings(env), store)
    assert not report.ok and all("clock" in r.error for r in report.parts), report.summary()
    assert FeedState(store).issues() == [], "nothing may be recorded lost on the word of a clock that is off"
    assert all(cp.listed_until is None for cp in FeedState(store).checkpoints(CONTENT_TYPES))
    assert not [r for r in service.api_requests() if "/audit/" in r.path]
    service.config.clock_skew = 0
    converge(service, env, make_settings, store)


# --- 7. the lease is renewed during every long step ----------------------------------------------------------
def test_a_long_listing_keeps_the_lease(simulator, make_settings, store, store_path, monkeypatch):
    monkeypatch.setattr(sync_module, "LEASE_SECONDS", 1.0)
    service, env = simulator(page_size=1, latency=0.15)  # listing alone takes several lease periods
    settings = make_settings(env, O365_CONTENT_TYPES="Audit.SharePoint")
    outcome = {}
    first = threading.Thread(target=lambda: outcome.update(report=sync(settings, store)[0]))
    first.start()
    time.sleep(2.5)
    from eventstore.sqlite import SqliteStore

    with SqliteStore(store_path) as other:
        with pytest.raises(SyncAlreadyRunning):
            sync(settings, other)
    first.join()
    assert outcome["report"].ok, outcome["report"].summary()
    expected, _ = ground_truth(service, ["Audit.SharePoint"])
    assert set(stored_ids(store)) == expected
