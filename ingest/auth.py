"""Tokens for the Management Activity API via MSAL's client-credentials flow (secret or certificate). MSAL
talks to Entra ID through our own session (ingest/http.py), so the credential can only go to O365_LOGIN_URL."""
from __future__ import annotations

import threading

import msal
import requests
from msal.exceptions import MsalError

from . import redact
from .settings import Settings, azure_credential

# MSAL's own failures when an answer is not what it expects (HTML, deep or broken JSON, a missing field)
_MSAL_FAILURES = (MsalError, ValueError, KeyError, TypeError, RecursionError, RuntimeError,
                  requests.RequestException)


class AuthError(RuntimeError):
    """Entra ID did not give us a token. The message says why and what to check; it holds no secret."""


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

    def __init__(self, settings: Settings, session: requests.Session, resource: str = ""):
        """`resource`: whose token (default the Management Activity API; the backfill's is Microsoft Graph)."""
        if not settings.client_id:
            raise AuthError("O365_CLIENT_ID is not set: only the workspace source can run on the host's Azure "
                            "identity (WORKSPACE_CREDENTIAL=managed-identity); the live feed and the backfill need "
                            "the app registration's O365_CLIENT_ID and O365_CLIENT_SECRET or O365_CLIENT_CERT.")
        credential = _certificate_credential(settings.client_cert) if settings.client_cert else settings.client_secret
        self._scopes = [f"{resource or settings.api_url}/.default"]
        self._lock = threading.Lock()
        self._tenant = settings.tenant_id
        try:
            self._app = msal.ConfidentialClientApplication(
                settings.client_id, client_credential=credential,
                authority=f"{settings.login_url}/{settings.tenant_id}",
                http_client=session, instance_discovery=False, token_cache=msal.TokenCache())
        except _MSAL_FAILURES as exc:
            raise AuthError(f"Cannot reach the Entra ID login endpoint {settings.login_url}: {_why(exc)}. Check "
                            "O365_LOGIN_URL / O365_CLOUD, the network and O365_CA_BUNDLE.") from None
        self._settings = settings

    def token(self) -> str:
        with self._lock:
            try:
                result = self._app.acquire_token_for_client(scopes=self._scopes)
            except _MSAL_FAILURES as exc:
                raise AuthError(f"Cannot get a token from {self._settings.login_url}: {_why(exc)}") from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            redact.remember(token)  # a peer that echoes the request must not get it into a log
            return token
        error = result.get("error_description") or result.get("error") if isinstance(result, dict) else result
        description = redact.short(str(error), 300)
        raise AuthError(f"Entra ID refused the app's credentials for tenant {self._tenant}: {description}"
                        f"{_auth_hint(description)}")

    def invalidate(self) -> None:
        """Forget the cached token so the next call asks Entra ID for a new one."""
        with self._lock:
            self._app.remove_tokens_for_client()


class AzureIdentityTokens:
    """Tokens of the host's Azure identity (azure-identity: a managed identity on Azure, a developer's `az login`
    elsewhere), for a source read without an app registration. azure-identity caches and renews them itself."""

    def __init__(self, resource: str):
        self._scope, self._credential = f"{resource}/.default", azure_credential()

    def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._credential.get_token(self._scope).token
        except ClientAuthenticationError as refused:  # no identity here, or it was refused
            raise AuthError(f"The host's Azure identity gave no token for {self._scope}: "
                            f"{redact.short(str(refused).splitlines()[0] if str(refused) else '', 300)} — "
                            "WORKSPACE_CREDENTIAL=managed-identity needs a managed identity (or `az login`) with "
                            "the Log Analytics Reader role on the workspace.") from None
        redact.remember(token)
        return token

    def invalidate(self) -> None:
        """Nothing to drop: a token refused by the service is not made good by asking again at once."""


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


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "its answer is nested too deeply to be JSON from Entra ID"
    if isinstance(exc, (ValueError, KeyError, TypeError)) and not isinstance(exc, requests.RequestException):
        return f"its answer is not what Entra ID sends ({redact.short(str(exc), 120)})"
    return redact.short(str(exc), 300)

