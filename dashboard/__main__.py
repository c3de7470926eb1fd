"""`python -m dashboard [streamlit options]`: the dashboard, with sign-in configured from the same environment
variables (or .env) as everything else. Streamlit reads sign-in settings from a secrets file; this writes one,
readable by this user only, in a private temporary folder (never in the repository), then runs Streamlit."""
from __future__ import annotations

import json
import os
import sys
import tempfile

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


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"The configuration has a problem: {error}")
    command = [sys.executable, "-m", "streamlit", "run", APP, *sys.argv[1:]]
    if settings.signin_client_id:
        command += ["--secrets.files", secrets_file(settings)]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
