"""The simulated tenant's sign-in for people (OpenID Connect authorization code flow, as Entra ID runs it for the
dashboard's app registration): discovery (shared with the client-credentials endpoint), an authorize page where
the browser picks one of the tenant's people, the token endpoint's authorization_code grant with PKCE, and the
signing keys. ID tokens carry Entra's claims, app roles included. `fault` makes the next tokens wrong in one way
(a bad signature, expired, another audience, another issuer) for the tests of the client's checks."""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass(frozen=True)
class Person:
    name: str
    username: str
    roles: tuple[str, ...]


PEOPLE = (
    Person("Ada Admin", "ada.admin@contoso.com", ("Admin",)),
    Person("Ana Analyst", "ana.analyst@contoso.com", ("Analyst",)),
    Person("Vic Viewer", "vic.viewer@contoso.com", ("Viewer",)),
    Person("Nora Norole", "nora.norole@contoso.com", ()),
)


@dataclass
class _Grant:
    person: Person
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    expires: float


@dataclass
class SignIn:
    client_id: str = "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"  # the dashboard's app registration
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    redirect_uris: tuple[str, ...] = ()  # registered; empty accepts any http://localhost or 127.0.0.1 one
    people: tuple[Person, ...] = PEOPLE
    fault: str = ""  # "", "signature", "expired", "audience", "issuer"

    def __post_init__(self):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self.pkce: list[str] = []  # each authorization code's code_challenge_method ("" without PKCE), for the tests

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self._kid, "use": "sig", "alg": "RS256"}]}

    def _registered(self, redirect_uri: str) -> bool:
        if self.redirect_uris:
            return redirect_uri in self.redirect_uris
        return redirect_uri.startswith(("http://localhost:", "http://127.0.0.1:"))

    def authorize_page(self, base: str, tenant: str, query: dict[str, str]) -> tuple[int, str]:
        """The account picker, or the error page Entra ID shows for a request it cannot honour."""
        if query.get("client_id") != self.client_id:
            return 400, _page("AADSTS700016: the application was not found in this tenant.")
        if not self._registered(query.get("redirect_uri", "")):
            return 400, _page("AADSTS50011: the redirect URI does not match the ones registered for the app.")
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            return 400, _page("AADSTS900144: response_type=code and the openid scope are required.")
        links = "".join(
            f'<li><a class="person" href="{html.escape(base)}/{html.escape(tenant)}/oauth2/v2.0/authorize/pick?'
            f'{html.escape(urlencode({**query, "person": n}))}">{html.escape(p.name)} '
            f'<small>{html.escape(p.username)} · {html.escape(", ".join(p.roles) or "no role")}</small></a></li>'
            for n, p in enumerate(self.people))
        return 200, _page(f"<h1>Pick an account</h1><p>Simulated tenant: nothing here is a real identity.</p>"
                          f"<ul>{links}</ul>", raw=True)

    def pick(self, query: dict[str, str]) -> str:
        """The redirect back to the app after a person was picked (an authorization code)."""
        status, _ = self.authorize_page("", "", query)
        if status != 200 or not query.get("person", "").isdigit() or int(query["person"]) >= len(self.people):
            raise ValueError("invalid request")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.pkce.append(query.get("code_challenge_method", "") if query.get("code_challenge") else "")
            self._grants[code] = _Grant(self.people[int(query["person"])], query["client_id"], query["redirect_uri"],
                                        query.get("nonce", ""), query.get("code_challenge", ""), time.time() + 120)
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"

    def token(self, issuer: str, form: dict[str, str], authorization: str) -> tuple[int, dict]:
        """The authorization_code grant: client authenticated (basic or post), code once, PKCE checked."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.expires < time.time() or grant.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "AADSTS70008: the code is invalid or expired."}
        if grant.challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "AADSTS501481: PKCE verification failed."}
        return 200, {"token_type": "Bearer", "expires_in": 3599, "scope": "openid profile email",
                     "access_token": secrets.token_urlsafe(32), "id_token": self._id_token(issuer, grant)}

    def _id_token(self, issuer: str, grant: _Grant) -> str:
        now = int(time.time())
        person = grant.person
        claims = {"iss": issuer, "aud": grant.client_id, "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0",
                  "sub": hashlib.sha256(person.username.encode()).hexdigest()[:43], "oid": str(uuid.uuid5(
                      uuid.NAMESPACE_URL, person.username)), "name": person.name, "preferred_username": person.username,
                  "email": person.username, "nonce": grant.nonce}
        if person.roles:
            claims["roles"] = list(person.roles)
        if self.fault == "expired":
            claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
        elif self.fault == "audience":
            claims["aud"] = "00000000-0000-0000-0000-000000000000"
        elif self.fault == "issuer":
            claims["iss"] = "https://login.example.net/other/v2.0"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.fault == "signature" else self._key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self._kid})


def _page(body: str, raw: bool = False) -> str:
    content = body if raw else f"<h1>Sign-in failed</h1><p>{html.escape(body)}</p>"
    return f"<!doctype html><html><head><title>Sign in</title></head><body>{content}</body></html>"
