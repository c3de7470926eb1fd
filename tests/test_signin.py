"""Sign-in with Entra ID for real: `python -m dashboard` (Streamlit's st.login, Authlib) against the simulated
tenant's OpenID Connect endpoints, in Chromium. People pick an account on the simulator's sign-in page; ID tokens
that are tampered with, expired, for another app or from another issuer are refused; no secret or token shows in
the page or its address."""
from __future__ import annotations

import os
import secrets
import shutil
import sys

import pytest

from eventstore.sqlite import SqliteStore

from .conftest import fill_store
from .test_browser import CHROMIUM, LAUNCH_ARGS, ROOT, free_port, serve
from .test_cli import cli_env


@pytest.fixture(scope="module")
def signin_dashboard(tmp_path_factory, demo_like_tenant):
    from simulator import SimulatorConfig, start_simulator

    workdir = tmp_path_factory.mktemp("signin")
    shutil.copytree(os.path.join(ROOT, ".streamlit"), workdir / ".streamlit")
    with SqliteStore(str(workdir / "audit.db")) as store:
        fill_store(store, demo_like_tenant)
    server, env = start_simulator(demo_like_tenant, SimulatorConfig(), tls_dir=str(workdir / "tls"))
    signin = server.service.signin
    port = free_port()
    signin.redirect_uris = (f"http://localhost:{port}/oauth2callback",)
    cookie_secret = secrets.token_urlsafe(32)
    environment = cli_env(workdir, env, DASHBOARD_CLIENT_ID=signin.client_id,
                          DASHBOARD_CLIENT_SECRET=signin.client_secret, DASHBOARD_COOKIE_SECRET=cookie_secret,
                          DASHBOARD_REDIRECT_URI=signin.redirect_uris[0], SSL_CERT_FILE=env["O365_CA_BUNDLE"])
    url = f"http://localhost:{port}"
    process = serve([sys.executable, "-m", "dashboard", "--server.port", str(port), "--server.address", "127.0.0.1"],
                    ROOT, environment, url)
    yield url, signin, (signin.client_secret, cookie_secret, env["O365_CLIENT_SECRET"])
    process.terminate()
    output = process.communicate(timeout=20)[0]
    server.stop()
    for secret in (signin.client_secret, cookie_secret, env["O365_CLIENT_SECRET"]):
        assert secret not in output, "a secret reached the dashboard's log"


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: run `bash tests/install-test-tools.sh` (or `make test`).")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


def sign_in(browser, url: str, person: str):
    """A fresh browser profile signs in as `person` (a name on the simulator's account picker)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, ignore_https_errors=True)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.get_by_role("link", name=person).click(timeout=30_000)
    page.wait_for_url(f"{url}/**", timeout=30_000)
    return page


def test_each_role_sees_what_it_may_do(signin_dashboard, browser):
    url, _, secret_values = signin_dashboard
    viewer = sign_in(browser, url, "Vic Viewer")
    try:
        viewer.get_by_text("(Viewer)").wait_for(timeout=30_000)
    finally:
        viewer.screenshot(path=os.path.join(ROOT, "artifacts", "screenshots", "signin-viewer.png"))
    viewer.get_by_role("link", name="Watch-lists").click()
    viewer.get_by_text("Your role lets you use watch-lists").wait_for(timeout=30_000)
    assert viewer.locator('input[type="file"]').count() == 0
    assert viewer.get_by_role("link", name="Activity log").count() == 0
    assert viewer.get_by_role("button", name="Sync now").first.is_disabled()
    content = viewer.content() + viewer.url
    assert not any(value in content for value in secret_values), "a secret in the page or its address"
    assert "code=" not in viewer.url and "id_token" not in content

    analyst = sign_in(browser, url, "Ana Analyst")
    analyst.get_by_text("(Analyst)").wait_for(timeout=30_000)
    analyst.get_by_role("link", name="Watch-lists").click()
    analyst.locator('input[type="file"]').first.wait_for(state="attached", timeout=30_000)

    admin = sign_in(browser, url, "Ada Admin")
    admin.get_by_role("link", name="Events").click(timeout=30_000)
    with admin.expect_download(timeout=60_000) as download:
        admin.get_by_role("button", name="Download CSV").click(timeout=30_000)
    assert download.value.suggested_filename == "events.csv"
    admin.get_by_role("link", name="Activity log").click(timeout=30_000)
    admin.get_by_text("events as CSV").first.wait_for(state="attached", timeout=30_000)  # the export, recorded
    admin.get_by_role("button", name="Sign out").click()
    admin.get_by_role("button", name="Sign in with Microsoft").wait_for(timeout=30_000)

    nobody = sign_in(browser, url, "Nora Norole")
    nobody.get_by_text("Ask your admin for access").wait_for(timeout=30_000)


@pytest.mark.parametrize("fault", ["signature", "expired", "audience", "issuer"])
def test_a_bad_id_token_signs_nobody_in(signin_dashboard, browser, fault):
    url, signin, _ = signin_dashboard
    signin.fault = fault
    try:
        page = sign_in(browser, url, "Ada Admin")
        page.wait_for_timeout(3000)
        assert page.get_by_text("(Admin)").count() == 0, f"signed in with a token ({fault})"
        assert page.get_by_role("link", name="Explore").count() == 0
    finally:
        signin.fault = ""
