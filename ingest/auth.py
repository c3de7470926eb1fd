"""Tokens for the Management Activity API via MSAL's client-credentials flow (secret or certificate),
and the one HTTPS session every request goes through."""
from __future__ import annotations

import atexit
import functools
import os
import tempfile
import threading

import msal
import requests
from requests.adapters import HTTPAdapter

from .settings import Settings


class AuthError(RuntimeError):
    """Entra ID did not give us a token. The message says why and what to check; it holds no secret."""


class _Session(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE override a session's `verify`; with O365_CA_BUNDLE set, our
    combined bundle must win while proxies still come from the environment."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is not True and verify in (None, True):
            merged["verify"] = self.verify
        return merged


@functools.lru_cache(maxsize=8)
def _combined_bundle(extra_ca: str) -> str:
    """The CAs requests would trust anyway, plus the extra ones, in one file (one per process: `run` builds a
    session every pass)."""
    import certifi

    base = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    handle, path = tempfile.mkstemp(prefix="o365-ca-", suffix=".pem")
    with os.fdopen(handle, "wb") as out:
        for source in (base, extra_ca):
            if os.path.isfile(source):
                with open(source, "rb") as f:
                    out.write(f.read().rstrip(b"\n") + b"\n")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path


def build_session(ca_bundle: str = "", pool_size: int = 16) -> requests.Session:
    session = _Session()
    if ca_bundle:
        session.verify = _combined_bundle(ca_bundle)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "O365ActivityGraph/1.0"
    return session


def _certificate_credential(path: str) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    with open(path, "rb") as f:
        pem = f.read()
    try:
        certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE"):])
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise AuthError("O365_CLIENT_CERT must be a PEM file holding the certificate and its unencrypted "
                        "private key.") from None
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"private_key": key_pem, "thumbprint": certificate.fingerprint(hashes.SHA1()).hex()}  # noqa: S303


class TokenProvider:
    """Caches the token (MSAL does) and can drop it when the API says it is no longer good."""

    def __init__(self, settings: Settings, session: requests.Session):
        credential = _certificate_credential(settings.client_cert) if settings.client_cert else settings.client_secret
        self._scopes = [f"{settings.api_url}/.default"]
        self._lock = threading.Lock()
        self._tenant = settings.tenant_id
        try:
            self._app = msal.ConfidentialClientApplication(
                settings.client_id, client_credential=credential, authority=f"{settings.login_url}/{settings.tenant_id}",
                http_client=session, instance_discovery=False, token_cache=msal.TokenCache())
        except (ValueError, requests.RequestException) as exc:
            raise AuthError(f"Cannot reach the Entra ID login endpoint {settings.login_url}: "
                            f"{_without_secrets(str(exc), settings)}. Check O365_LOGIN_URL / O365_CLOUD, the network "
                            "and O365_CA_BUNDLE.") from None
        self._settings = settings

    def token(self) -> str:
        with self._lock:
            try:
                result = self._app.acquire_token_for_client(scopes=self._scopes)
            except (ValueError, requests.RequestException) as exc:
                raise AuthError(f"Cannot get a token from {self._settings.login_url}: "
                                f"{_without_secrets(str(exc), self._settings)}") from None
        if "access_token" in result:
            return result["access_token"]
        description = _without_secrets(str(result.get("error_description") or result.get("error")), self._settings)
        raise AuthError(f"Entra ID refused the app's credentials for tenant {self._tenant}: {description.splitlines()[0]}"
                        f"{_auth_hint(description)}")

    def invalidate(self) -> None:
        """Forget the cached token so the next call asks Entra ID for a new one."""
        with self._lock:
            self._app.remove_tokens_for_client()


def _auth_hint(description: str) -> str:
    if "AADSTS7000215" in description or "AADSTS7000222" in description:
        return " — check O365_CLIENT_SECRET (wrong or expired)."
    if "AADSTS700016" in description:
        return " — check O365_CLIENT_ID and that the app is registered in this tenant."
    if "AADSTS90002" in description:
        return " — check O365_TENANT_ID."
    if "AADSTS700027" in description:
        return " — the certificate in O365_CLIENT_CERT is not the one uploaded to the app registration."
    return ""


def _without_secrets(text: str, settings: Settings) -> str:
    for secret in (settings.client_secret,):
        if secret:
            text = text.replace(secret, "***")
    return text

