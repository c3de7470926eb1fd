"""`python -m dashboard [streamlit options]`: the dashboard, with sign-in configured from the same environment
variables (or .env) as everything else. Streamlit reads sign-in settings from a secrets file; this writes one,
readable by this user only, in a private temporary folder (never in the repository), then runs Streamlit.

`python -m dashboard leads [--json] [--all] [--since TIME]`: the current leads, for a person or a scheduler."""
from __future__ import annotations

import json
import os
import sys
import tempfile

from ingest import redact
from ingest.settings import SettingsError, load_settings

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def secrets_file(settings) -> str:
    """The [auth] section Streamlit's st.login reads, for Entra ID (OpenID Connect, authorization code + PKCE)."""
    folder = tempfile.mkdtemp(prefix="o365-dashboard-")  # 0700
    path = os.path.join(folder, "secrets.toml")
    metadata = f"{settings.login_url.rstrip('/')}/{settings.signin_tenant}/v2.0/.well-known/openid-configuration"
    text = (f"[auth]\nredirect_uri = {_toml(settings.signin_redirect_uri)}\n"
            f"cookie_secret = {_toml(settings.signin_cookie_secret)}\n"
            f"client_id = {_toml(settings.signin_client_id)}\nclient_secret = {_toml(settings.signin_client_secret)}\n"
            f"server_metadata_url = {_toml(metadata)}\n"
            "[auth.client_kwargs]\nscope = \"openid profile email\"\nprompt = \"select_account\"\n")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    return path


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
    command = [sys.executable, "-m", "streamlit", "run", APP, *sys.argv[1:]]
    if settings.signin_client_id:
        command += ["--secrets.files", secrets_file(settings)]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
