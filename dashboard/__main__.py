"""`python -m dashboard [streamlit options]`: the dashboard, with sign-in configured from the same environment
variables (or .env) as everything else. Streamlit reads sign-in settings from a secrets file; this writes one,
readable by this user only, in a private temporary folder (never in the repository), runs Streamlit, and removes the
folder when Streamlit stops (a folder left by a run that was killed is removed by the next). With O365_CA_BUNDLE,
every outbound connection of the dashboard trusts those CAs too: sign-in's as well as the sync's.

`python -m dashboard leads [--json] [--all] [--since TIME]`: the current leads, for a person or a scheduler."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ingest import redact
from ingest.settings import SettingsError, load_settings

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
FOLDER_PREFIX = "o365-dashboard-"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _private(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    return path


def secrets_file(settings, folder: str) -> str:
    """The [auth] section Streamlit's st.login reads, for Entra ID (OpenID Connect, authorization code with PKCE:
    asked for explicitly, since Entra's metadata does not list code_challenge_methods_supported and Streamlit
    would otherwise leave it out)."""
    metadata = f"{settings.login_url.rstrip('/')}/{settings.signin_tenant}/v2.0/.well-known/openid-configuration"
    return _private(folder, "secrets.toml", (
        f"[auth]\nredirect_uri = {_toml(settings.signin_redirect_uri)}\n"
        f"cookie_secret = {_toml(settings.signin_cookie_secret)}\n"
        f"client_id = {_toml(settings.signin_client_id)}\nclient_secret = {_toml(settings.signin_client_secret)}\n"
        f"server_metadata_url = {_toml(metadata)}\n"
        "[auth.client_kwargs]\nscope = \"openid profile email\"\nprompt = \"select_account\"\n"
        "code_challenge_method = \"S256\"\n"))


def ca_file(settings, folder: str) -> str:
    """The CAs every TLS client of the dashboard trusts (SSL_CERT_FILE: sign-in's HTTP client reads it): those it
    would trust anyway, and O365_CA_BUNDLE's."""
    import certifi

    parts = []
    for source in (os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where(),
                   settings.ca_bundle):
        with open(source, encoding="utf-8", errors="replace") as f:
            parts.append(f.read().rstrip("\n") + "\n")
    return _private(folder, "ca.pem", "".join(parts))


def _remove_stale_folders() -> None:
    """Folders of earlier runs that were killed before they could remove theirs (their process is gone)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}*")):
        pid = os.path.basename(folder)[len(FOLDER_PREFIX):].split("-")[0]
        if pid.isdigit() and os.stat(folder).st_uid == os.getuid() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(settings, argv: list[str]) -> int:
    """Streamlit in a child process, with what it needs written in a private folder removed when it stops."""
    _remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")  # 0700
    try:
        command = [sys.executable, "-m", "streamlit", "run", APP, *argv]
        environment = dict(os.environ)
        if settings.signin_client_id:
            command += ["--secrets.files", secrets_file(settings, folder)]
        if settings.ca_bundle:
            environment["SSL_CERT_FILE"] = ca_file(settings, folder)
        child = subprocess.Popen(command, env=environment)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda number, _: child.send_signal(number))
        return child.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def leads(settings, argv: list[str]) -> int:
    """Bring the leads up to date (when no dashboard serves this store's index: it keeps them up to date itself)
    and print them, not-yet-reviewed ones by default; one JSON object per line with --json."""
    import argparse

    from eventstore import StoreError, open_store

    from .index import ActivityIndex, IndexBusy
    from .ipinfo import ip_sources
    from .leads import LeadEngine

    parser = argparse.ArgumentParser(prog="python -m dashboard leads", description=leads.__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object per lead and line")
    parser.add_argument("--all", action="store_true", help="reviewed leads too")
    parser.add_argument("--since", default="", help="only leads last seen at or after this UTC time (ISO 8601)")
    args = parser.parse_args(argv)
    try:
        store = open_store(settings.store_url, cosmos=settings.cosmos_options(), retention_days=settings.retention_days)
    except StoreError as error:
        print(f"The event store cannot be opened: {error}", file=sys.stderr)
        return 1
    with store:
        try:
            index = ActivityIndex(store, settings.index_file, settings.index_memory, ip_sources(settings))
        except IndexBusy:
            index = None
            print("A dashboard serves this store's index and keeps the leads up to date: these are the leads it "
                  "stored.", file=sys.stderr)
        engine = LeadEngine(index, store)
        if index is not None:
            index.refresh()
            index.wait()
            engine.update()
            index.close()
        since = args.since.replace(" ", "T").rstrip("Z")
        found = [lead for lead in engine.leads() if (args.all or not lead.reviewed) and
                 lead.last_seen.rstrip("Z") >= since]
    try:
        _print(found, args.json)
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stderr.close()
    return 0


def _print(found, as_json: bool) -> None:
    for lead in found:
        if as_json:
            print(json.dumps(lead.line(), ensure_ascii=False))
        else:
            # audit text on one line, without the control characters a terminal would obey
            print(f"{lead.severity:6}  {lead.last_seen}  {redact.short(lead.summary, 400)}")
    if not as_json:
        print(f"{len(found)} lead(s)", file=sys.stderr)


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"The configuration has a problem: {error}")
    if sys.argv[1:2] == ["leads"]:
        sys.exit(leads(settings, sys.argv[2:]))
    sys.exit(serve(settings, sys.argv[1:]))


if __name__ == "__main__":
    main()
