"""Sign-in with Entra ID for real: `python -m dashboard` (Streamlit's st.login, Authlib) against the simulated
tenant's OpenID Connect endpoints, in Chromium. People pick an account on the simulator's sign-in page; ID tokens
that are tampered with, expired, for another app or from another issuer are refused; no secret or token shows in
the page or its address, and none stays on disk after the dashboard stops. PKCE is used although the provider's
metadata, like Entra ID's, does not list it; the provider's CA is trusted through O365_CA_BUNDLE alone (a
TLS-inspecting proxy's case). An authenticating proxy's header sent twice (a forged copy beside the proxy's) is
refused."""
from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import threading

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
    # the simulator's CA only in O365_CA_BUNDLE, as behind a TLS-inspecting proxy: sign-in must trust it too
    environment = cli_env(workdir, env, DASHBOARD_CLIENT_ID=signin.client_id,
                          DASHBOARD_CLIENT_SECRET=signin.client_secret, DASHBOARD_COOKIE_SECRET=cookie_secret,
                          DASHBOARD_REDIRECT_URI=signin.redirect_uris[0])
    environment.pop("SSL_CERT_FILE", None)
    url = f"http://localhost:{port}"
    process = serve([sys.executable, "-m", "dashboard", "--server.port", str(port), "--server.address", "127.0.0.1"],
                    ROOT, environment, url)
    (private,) = glob.glob(os.path.join(tempfile.gettempdir(), f"o365-dashboard-{process.pid}-*"))
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert {stat.S_IMODE(os.stat(os.path.join(private, name)).st_mode) for name in os.listdir(private)} == {0o600}
    yield url, signin, (signin.client_secret, cookie_secret, env["O365_CLIENT_SECRET"])
    process.terminate()
    output = process.communicate(timeout=20)[0]
    server.stop()
    for secret in (signin.client_secret, cookie_secret, env["O365_CLIENT_SECRET"]):
        assert secret not in output, "a secret reached the dashboard's log"
    assert not os.path.exists(private), "the secrets' folder outlived the dashboard"


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
    url, signin, secret_values = signin_dashboard
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
    viewer.get_by_role("link", name="Sync").click()
    viewer.get_by_text("Sync now needs the Admin role").wait_for(timeout=30_000)
    assert all(button.is_disabled() for button in viewer.get_by_role("button", name="Sync now").all()), \
        "no Sync now a Viewer could press, on any page"
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
        admin.get_by_role("button", name="Events as CSV").click(timeout=30_000)
    span = r"\d{4}-\d\d-\d\dT\d{4}"
    assert re.fullmatch(rf"events_{span}_{span}\.csv", download.value.suggested_filename), "its span in its name"
    admin.get_by_role("link", name="Activity log").click(timeout=30_000)
    admin.get_by_text("UTC; case-sensitive").first.wait_for(state="attached", timeout=30_000)  # the export, in words
    admin.get_by_role("button", name="Sign out").click()
    admin.get_by_role("button", name="Sign in with Microsoft").wait_for(timeout=30_000)

    nobody = sign_in(browser, url, "Nora Norole")
    nobody.get_by_text("Ask your admin for access").wait_for(timeout=30_000)
    assert signin.pkce and set(signin.pkce) == {"S256"}, "every authorization asked for a code with PKCE (S256)"


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


class HeaderAppendingProxy:
    """An authenticating proxy in miniature: in front of the dashboard, it adds its own header naming the user to
    every request (the websocket's upgrade included) and passes everything else through as it is."""

    def __init__(self, upstream_port: int, header: str, user: str):
        self.upstream, self.line = upstream_port, f"{header}: {user}\r\n".encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the dashboard has stopped
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                first, _, rest = head.partition(b"\r\n")
                server.sendall(first + b"\r\n" + rest + b"\r\n" + self.line + b"\r\n")
                if b"upgrade: websocket" in head.lower():
                    server.sendall(buffered)
                    return self._pipe(client, server)
                length = next((int(v) for k, _, v in (h.partition(b":") for h in rest.split(b"\r\n"))
                               if k.strip().lower() == b"content-length"), 0)
                while len(buffered) < length:
                    buffered += client.recv(65536)
                server.sendall(buffered[:length])
                buffered = buffered[length:]
        except OSError:
            return

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_a_proxy_header_sent_twice_names_nobody(tmp_path, browser, demo_like_tenant):
    header = "X-MS-CLIENT-PRINCIPAL-NAME"
    shutil.copytree(os.path.join(ROOT, ".streamlit"), tmp_path / ".streamlit")
    with SqliteStore(str(tmp_path / "audit.db")) as store:
        fill_store(store, demo_like_tenant)
    port = free_port()
    process = serve([sys.executable, "-m", "dashboard", "--server.port", str(port), "--server.address", "127.0.0.1"],
                    ROOT, cli_env(tmp_path, {}, DASHBOARD_PROXY_HEADER=header, DASHBOARD_PROXY_ROLE="Analyst",
                                  DASHBOARD_INDEX=str(tmp_path / "proxy.index")), f"http://127.0.0.1:{port}")
    proxy = HeaderAppendingProxy(port, header, "vic.viewer@contoso.com")
    try:
        honest = browser.new_context().new_page()
        honest.goto(f"http://127.0.0.1:{proxy.port}")
        honest.get_by_text("(Analyst)").wait_for(timeout=60_000)  # named by the proxy: let in with its role
        forged = browser.new_context(extra_http_headers={header: "ada.admin@contoso.com"}).new_page()
        forged.goto(f"http://127.0.0.1:{proxy.port}")
        forged.get_by_text("named its user more than once").wait_for(timeout=60_000)
        assert forged.get_by_text("(Analyst)").count() == 0
        assert forged.get_by_role("link", name="Explore").count() == 0, "no page for a request nobody vouches for"
    finally:
        proxy.close()
        process.terminate()
        process.communicate(timeout=20)
