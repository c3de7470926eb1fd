"""An HTTPS fake of the Entra ID token endpoint and the Office 365 Management Activity API, faithful to
the contract in management-activity-api.md §8: validation order auth → tenant → content type → window,
contentCreated windows (inclusive start, exclusive end, ≤ 24 h, ≤ 7 days back), NextPageUri paging, opaque
'$' content ids, expiring blobs, AF error codes, throttling as 403 or 429, clock skew in the Date header.
It is the test double and the demo tenant at once."""
from __future__ import annotations

import base64
import email.utils
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from .auditsearch import QUERY_ROLE, AuditSearch, AuditSearchConfig, GraphError
from .signin import SignIn
from .tenant import CONTENT_TYPES, SimulatedTenant, parse_content_id
from .workspace import READER_ROLE, Workspace, WorkspaceConfig, WorkspaceError

SHARED_PUBLISHER = "00000000-0000-0000-0000-000000000000"
_TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


@dataclass
class Faults:
    """Trouble the simulated service makes on purpose. Counters are per API request (token calls excluded)."""

    throttle_every: int = 0  # every Nth request answers AF429 (alternating HTTP 403 and 429)
    retry_after: int | None = None  # seconds, sent with AF429 when set
    error_every: int = 0  # every Nth request answers AF50000 (HTTP 500)
    unavailable_every: int = 0  # every Nth request answers HTTP 503 with no body code
    # every Nth listing request answers an empty page whose NextPageUri names the page just asked for (the service
    # does this while a page is not ready)
    empty_page_every: int = 0


@dataclass
class SimulatorConfig:
    tenant_id: str = "7c3e9a51-2b4d-4f6e-8a1c-3d5f7b9e1a2c"
    client_id: str = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    client_cert_thumbprint: str = ""  # hex SHA-1; when set, a certificate assertion is accepted
    client_cert_pem: str = ""  # path to the PEM the assertion must be signed with
    roles: tuple[str, ...] = ("ActivityFeed.Read", "ActivityFeed.ReadDlp", QUERY_ROLE, READER_ROLE)
    # the host's managed identity, as Azure App Service / Functions serve it on IDENTITY_ENDPOINT (/msi/token)
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    page_size: int = 100
    token_lifetime: int = 3599
    quota_requests: int = 2000  # per publisher, per quota_seconds: then AF429
    quota_seconds: float = 60.0
    clock_skew: float = 0.0  # seconds the service's clock runs ahead of this machine's
    frozen_at: datetime | None = None  # tests: the service's clock stands still here (plus clock_skew)
    next_page_header: str = "NextPageUri"
    latency: float = 0.0  # seconds each API request takes, as over a real network to a real service
    faults: Faults = field(default_factory=Faults)
    audit_search: AuditSearchConfig = field(default_factory=AuditSearchConfig)  # Microsoft Graph's audit queries
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)  # Sentinel's Log Analytics workspace


@dataclass(frozen=True)
class Request:
    """What a scripted answer may look at (an echoing proxy repeats it)."""
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class Answer:
    """One scripted answer: what a broken service, a proxy or an attacker might send instead of the real one.
    `body` is bytes, or a function of the Request giving bytes or an iterator of chunks (sent chunked)."""
    status: int = 200
    body: bytes | Callable[[Request], bytes | Iterable[bytes]] = b""
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    trickle: float = 0.0  # seconds between single bytes of the whole response, headers included


def error_answer(status: int, code: str, message: str = "", headers: dict | None = None) -> Answer:
    """An answer shaped like the service's own errors."""
    payload = {"error": {"code": code, "message": message or f"Injected {code or status}"}} if code else \
        {"Message": message or "Injected error"}
    return Answer(status, json.dumps(payload).encode(), headers or {})


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict
    status: int
    code: str
    publisher: str | None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _parse_time(text: str) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ApiError(400, "AF20002", f"Invalid time {text!r}. Use YYYY-MM-DD, YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS.")


class SimulatedService:
    """The state behind the HTTPS front: subscriptions, tokens, quotas, faults, and a request log."""

    def __init__(self, tenant: SimulatedTenant, config: SimulatorConfig | None = None):
        self.tenant = tenant
        self.config = config or SimulatorConfig()
        self.signin = SignIn()  # people signing in to the dashboard (OpenID Connect)
        self.subscriptions: dict[str, str] = {}  # content type → "enabled" | "disabled"
        self.tokens: dict[str, tuple[str, float, tuple[str, ...], str]] = {}  # tenant, expiry, roles, audience
        self.log: deque[RequestRecord] = deque(maxlen=200_000)  # answered requests
        self.started: deque[str] = deque(maxlen=200_000)  # paths of requests as they arrive (a trickle takes long)
        self.window_violations = 0
        self._scripted: list[list] = []  # [path fragment, Answer, times left]
        self._counter = 0
        self._listings = 0
        self._quota: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.base_url = ""
        self.audit = AuditSearch(tenant, self.config.audit_search, self.now)
        self.workspace = Workspace(tenant, self.config.workspace, self.now)
        self.tls_files: tuple[str, str] = ("", "")  # the server's certificate and key (a test's other listeners)

    # --- controls for tests -------------------------------------------------------------------
    def now(self) -> datetime:
        base = self.config.frozen_at or datetime.now(timezone.utc)
        return base + timedelta(seconds=self.config.clock_skew)

    def script(self, path_contains: str, answer: Answer, times: int = 1) -> None:
        """The next `times` requests (token endpoint included) whose path and query contain `path_contains`
        (e.g. "/audit/" or "contentType=DLP.All") get `answer` instead of the real one."""
        with self._lock:
            self._scripted.append([path_contains, answer, times])

    def inject(self, path_contains: str, status: int, code: str, times: int = 1, headers: dict | None = None) -> None:
        """The next `times` requests whose path contains `path_contains` answer this service error."""
        self.script(path_contains, error_answer(status, code, headers=headers), times)

    def unscript(self) -> None:
        with self._lock:
            self._scripted.clear()

    def scripted(self, target: str) -> Answer | None:
        with self._lock:
            for entry in self._scripted:
                if entry[0] in target and entry[2] > 0:
                    entry[2] -= 1
                    return entry[1]
        return None

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def api_requests(self) -> list[RequestRecord]:
        return [r for r in list(self.log) if r.path.startswith("/api/")]

    # --- token endpoint -----------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> dict:
        return {"issuer": f"{self.base_url}/{tenant}/v2.0",
                "authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code"], "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "profile", "email"],
                # like Entra ID's v2.0 metadata, it does not list code_challenge_methods_supported (PKCE works anyway)
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"]}

    def issue_token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict]:
        def oauth_error(status: int, error: str, description: str) -> tuple[int, dict]:
            return status, {"error": error, "error_description": description}

        if tenant != self.config.tenant_id:
            return oauth_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "AADSTS70003: only client_credentials here.")
        if form.get("client_id") != self.config.client_id:
            return oauth_error(400, "unauthorized_client",
                               f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found.")
        if not self._client_authenticated(tenant, form):
            return oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        audiences = {f"{self.base_url}/.default": "feed", f"{self.base_url}/graph/.default": "graph",
                     f"{self.base_url}/loganalytics/.default": "workspace"}
        audience = audiences.get(" ".join(form.get("scope", "").split()[:1]))
        if audience is None:
            return oauth_error(400, "invalid_scope", f"AADSTS70011: The scope must be one of {', '.join(audiences)}.")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = (tenant, time.time() + self.config.token_lifetime, self.config.roles, audience)
        return 200, {"token_type": "Bearer", "expires_in": self.config.token_lifetime,
                     "ext_expires_in": self.config.token_lifetime, "access_token": token}

    def managed_identity_token(self, query: dict[str, str], header: str) -> tuple[int, dict]:
        """A token for the host's managed identity, as App Service's identity endpoint gives it (api-version
        2019-08-01: the resource in the query, the X-IDENTITY-HEADER secret, expires_on in epoch seconds)."""
        if not secrets.compare_digest(header, self.config.identity_header):
            return 401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER is missing or wrong."}
        audiences = {self.base_url: "feed", f"{self.base_url}/graph": "graph",
                     f"{self.base_url}/loganalytics": "workspace"}
        audience = audiences.get(query.get("resource", "").rstrip("/"))
        if query.get("api-version") != "2019-08-01" or audience is None:
            return 400, {"statusCode": 400, "message": f"Unknown resource or api-version: {query!r:.200}"}
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = (self.config.tenant_id, time.time() + self.config.token_lifetime, self.config.roles,
                                  audience)
        return 200, {"access_token": token, "expires_on": str(int(time.time()) + self.config.token_lifetime),
                     "resource": query["resource"], "token_type": "Bearer", "client_id": self.config.client_id}

    def _client_authenticated(self, tenant: str, form: dict[str, str]) -> bool:
        if "client_secret" in form:
            return secrets.compare_digest(form["client_secret"], self.config.client_secret)
        assertion = form.get("client_assertion")
        if not assertion or not self.config.client_cert_pem:
            return False
        import jwt
        from cryptography import x509

        with open(self.config.client_cert_pem, "rb") as f:
            pem = f.read()
        certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE"):])
        try:
            header = jwt.get_unverified_header(assertion)
            thumbprint = base64.urlsafe_b64decode(header.get("x5t", "") + "==").hex()
            if thumbprint != self.config.client_cert_thumbprint:
                return False
            claims = jwt.decode(assertion, certificate.public_key(), algorithms=["RS256", "PS256"],
                                audience=f"{self.base_url}/{tenant}/oauth2/v2.0/token")
        except (jwt.PyJWTError, ValueError):
            return False
        return claims.get("iss") == self.config.client_id == claims.get("sub")

    # --- the API ------------------------------------------------------------------------------
    def _grant(self, authorization: str, audience: str) -> tuple[str, tuple[str, ...]]:
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        with self._lock:
            grant = self.tokens.get(token)
        if grant is None or grant[1] < time.time() or grant[3] != audience:
            raise ApiError(401, "", "Authorization has been denied for this request.")
        return grant[0], grant[2]

    def _admit(self, authorization: str, audience: str, body: bytes, bad_body: str) -> tuple[tuple, dict | None]:
        """A JSON API's request let in: the token's roles (401 without a token for `audience`), after the configured
        latency, and its JSON body (an object, or None; `bad_body` is the service's code for one that is not JSON)."""
        _, roles = self._grant(authorization, audience)
        if self.config.latency:
            time.sleep(self.config.latency)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            raise ApiError(400, bad_body, "The body is not JSON.") from None
        return roles, payload if isinstance(payload, dict) else None

    def handle_graph(self, method: str, path: str, query: dict[str, str], body: bytes,
                     authorization: str) -> tuple[int, object, dict]:
        """/graph/{v1.0|beta}/security/auditLog/queries[/{id}[/records]]"""
        parts = path.split("/")
        if len(parts) < 6 or parts[2] not in ("v1.0", "beta") or parts[3:6] != ["security", "auditLog", "queries"]:
            raise ApiError(404, "ResourceNotFound", "Resource not found for the segment.")
        roles, payload = self._admit(authorization, "graph", body, "BadRequest")
        base = f"{self.base_url}/graph/{parts[2]}/security/auditLog/queries"
        try:
            status, answer = self.audit.handle(method, parts[6:], query, payload, roles, base)
        except GraphError as error:
            raise ApiError(error.status, error.code, error.message, error.headers) from None
        return status, answer, {}

    def handle_workspace(self, method: str, path: str, body: bytes, authorization: str) -> tuple[int, object, dict]:
        """/loganalytics/v1/workspaces/{id}/query"""
        parts = path.split("/")
        if parts[2:4] != ["v1", "workspaces"]:
            raise ApiError(404, "PathNotFoundError", "The requested path does not exist.")
        roles, payload = self._admit(authorization, "workspace", body, "BadArgumentError")
        try:
            return 200, self.workspace.handle(method, parts[4:], payload, roles), {}
        except WorkspaceError as error:
            raise ApiError(error.status, error.code, error.message, error.headers) from None

    def handle_api(self, method: str, path: str, query: dict[str, str], authorization: str) -> tuple[int, object, dict]:
        parts = path.split("/")  # ['', 'api', 'v1.0', tenant, 'activity', 'feed', ...]
        if len(parts) < 7 or parts[1:3] != ["api", "v1.0"] or parts[4:6] != ["activity", "feed"]:
            raise ApiError(404, "", "Not found")
        tenant, rest = parts[3], parts[6:]

        # 1. auth
        token_tenant, roles = self._grant(authorization, "feed")
        if "ActivityFeed.Read" not in roles:
            raise ApiError(401, "AF10001", "The permission set (ActivityFeed.Read) sent in the request does not "
                                            "include the expected permission.")
        # 2. tenant
        try:
            uuid.UUID(tenant)
        except ValueError:
            raise ApiError(400, "AF20013", f"The tenant ID {tenant!r} is not a valid GUID.") from None
        if tenant != token_tenant:
            raise ApiError(403, "AF20010", "The tenant ID passed in the URL does not match the token.")
        if tenant != self.config.tenant_id:
            raise ApiError(400, "AF20011", "Specified tenant ID does not exist in the system.")
        self._trouble(path, query.get("PublisherIdentifier") or SHARED_PUBLISHER)
        if self.config.latency:
            time.sleep(self.config.latency)

        if rest[:1] == ["audit"] and len(rest) == 2:
            return self._blob(rest[1])
        if rest[:1] == ["subscriptions"] and len(rest) == 2:
            action = rest[1]
            if action == "list" and method == "GET":
                return 200, [{"contentType": ct, "status": s, "webhook": None} for ct, s in self.subscriptions.items()], {}
            content_type = self._content_type(query)
            if action == "start" and method == "POST":
                if self.subscriptions.get(content_type) == "enabled":
                    raise ApiError(400, "AF20024", "The subscription is already enabled. No property change.")
                self.subscriptions[content_type] = "enabled"
                return 200, {"contentType": content_type, "status": "enabled", "webhook": None}, {}
            if action == "stop" and method == "POST":
                self.subscriptions[content_type] = "disabled"
                return 200, None, {}
            if action == "content" and method == "GET":
                return self._content(tenant, content_type, query)
        raise ApiError(404, "", "Not found")

    def _trouble(self, path: str, publisher: str) -> None:
        faults = self.config.faults
        with self._lock:
            self._counter += 1
            n = self._counter
            window = self._quota.setdefault(publisher, deque())
            now = time.monotonic()
            while window and window[0] < now - self.config.quota_seconds:
                window.popleft()
            window.append(now)
            over_quota = len(window) > self.config.quota_requests
        if over_quota or (faults.throttle_every and n % faults.throttle_every == 0):
            headers = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            raise ApiError(403 if n % 2 else 429, "AF429",
                           f"Too many requests. Method=GetBlob, PublisherId={publisher}", headers)
        if faults.error_every and n % faults.error_every == 0:
            raise ApiError(500, "AF50000", "An internal error occurred. Retry the request.")
        if faults.unavailable_every and n % faults.unavailable_every == 0:
            raise ApiError(503, "", "Service Unavailable")

    @staticmethod
    def _content_type(query: dict[str, str]) -> str:
        content_type = query.get("contentType", "")
        if content_type not in CONTENT_TYPES:
            raise ApiError(400, "AF20020", f"The content type {content_type!r} is invalid.")
        return content_type

    def _content(self, tenant: str, content_type: str, query: dict[str, str]) -> tuple[int, object, dict]:
        status = self.subscriptions.get(content_type)
        if status is None:
            raise ApiError(400, "AF20022", "No subscription found for the specified content type.")
        if status != "enabled":
            raise ApiError(400, "AF20023", "The subscription was disabled by the tenant.")
        now = self.now()
        start_text, end_text = query.get("startTime"), query.get("endTime")
        if bool(start_text) != bool(end_text):
            raise ApiError(400, "AF20001", "startTime and endTime must both be given, or neither.")
        if start_text:
            start, end = _parse_time(start_text), _parse_time(end_text)
        else:
            end = now.replace(microsecond=0)
            start = end - timedelta(hours=24)
        if not start < end or end - start > timedelta(hours=24) or start < now - timedelta(days=7):
            self.window_violations += 1
            raise ApiError(400, "AF20055", "Start time and end time must both be specified (or both omitted) and "
                                           "must be less than or equal to 24 hours apart, with the start time no "
                                           "more than 7 days in the past.")
        blobs = self.tenant.blobs_created(content_type, start, end, now)
        offset = 0
        if "nextPage" in query:
            token = query["nextPage"]
            head, _, number = token.partition("$")
            if not number.isdigit() or int(number) >= len(blobs) or \
                    head != blobs[int(number)].created.strftime("%Y%m%d%H%M%S%f"):
                raise ApiError(400, "AF20031", "Invalid nextPage Input.")
            offset = int(number)
        api = f"{self.base_url}/api/v1.0/{tenant}/activity/feed"

        def link(number: int) -> dict:
            token = f"{blobs[number].created.strftime('%Y%m%d%H%M%S%f')}${number}"
            # Like the real service: the next page's address does not repeat PublisherIdentifier.
            return {self.config.next_page_header: (
                f"{api}/subscriptions/content?contentType={content_type}&startTime={quote(start_text or '')}"
                f"&endTime={quote(end_text or '')}&nextPage={quote(token, safe='$')}")}

        with self._lock:
            self._listings += 1
            not_ready = bool(self.config.faults.empty_page_every) and \
                self._listings % self.config.faults.empty_page_every == 0
        if not_ready and offset < len(blobs):
            return 200, [], link(offset)
        page = blobs[offset: offset + self.config.page_size]
        body = [{"contentType": content_type, "contentId": b.content_id, "contentUri": f"{api}/audit/{b.content_id}",
                 "contentCreated": b.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "contentExpiration": b.expiration.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} for b in page]
        following = offset + self.config.page_size
        return 200, body, link(following) if following < len(blobs) else {}

    def _blob(self, content_id: str) -> tuple[int, object, dict]:
        parsed = parse_content_id(content_id)
        if parsed is None:
            raise ApiError(400, "AF20052", "Content ID in the request is invalid.")
        content_type, index = parsed
        blob = self.tenant.blob(content_type, index)
        now = self.now()
        if blob.content_id != content_id or blob.listed_from > now:
            raise ApiError(404, "AF20050", "The specified content does not exist.")
        if blob.expiration <= now:
            raise ApiError(404, "AF20051", "The content requested has expired.")
        return 200, self.tenant.blob_json(content_type, index), {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    service: SimulatedService  # set on the subclass made per server

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms a response
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # the request log is kept as data, not printed
        pass

    def date_time_string(self, timestamp=None):
        return email.utils.formatdate(self.service.now().timestamp(), usegmt=True)

    def _send(self, status: int, body: object, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        self._send_answer(Answer(status, data, headers or {}))

    def _send_answer(self, answer: Answer, request: Request | None = None) -> None:
        body = answer.body(request) if callable(answer.body) else answer.body
        streamed = not isinstance(body, bytes)
        head = [f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('Error',))[0]}",
                f"Server: {self.server_version}", f"Date: {self.date_time_string()}",
                f"Content-Type: {answer.content_type}"]
        head.append("Transfer-Encoding: chunked" if streamed else f"Content-Length: {len(body)}")
        head.extend(f"{name}: {value}" for name, value in answer.headers.items())
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), answer.trickle)
        if not streamed:
            self._write(body, answer.trickle)
            return
        for chunk in body:
            if chunk:
                self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk), answer.trickle)
        self._write(b"0\r\n\r\n", answer.trickle)

    def _write(self, data: bytes, trickle: float) -> None:
        if not trickle:
            self.wfile.write(data)
            return
        for i in range(len(data)):  # a peer that holds a request open by sending one byte at a time
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(trickle)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        service = self.service
        service.started.append(url.path)
        status, code = 200, ""
        try:
            answer = service.scripted(self.path)
            if answer is not None:
                status = answer.status
                self._send_answer(answer, Request(method, url.path, query, dict(self.headers.items()), body))
            elif url.path.endswith("/v2.0/.well-known/openid-configuration") and method == "GET":
                self._send(200, service.openid_configuration(url.path.split("/")[1]))
            elif url.path.endswith("/oauth2/v2.0/token") and method == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                tenant = url.path.split("/")[1]
                if form.get("grant_type") == "authorization_code" and tenant == service.config.tenant_id:
                    status, answer = service.signin.token(f"{service.base_url}/{tenant}/v2.0", form,
                                                          self.headers.get("Authorization", ""))
                else:
                    status, answer = service.issue_token(tenant, form)
                self._send(status, answer)
            elif url.path.endswith("/oauth2/v2.0/authorize") and method == "GET":
                status, page = service.signin.authorize_page(service.base_url, url.path.split("/")[1], query)
                self._send_answer(Answer(status, page.encode(), content_type="text/html; charset=utf-8"))
            elif url.path.endswith("/oauth2/v2.0/authorize/pick") and method == "GET":
                try:
                    status = 302
                    self._send_answer(Answer(302, b"", {"Location": service.signin.pick(query)}))
                except ValueError:
                    status = 400
                    self._send(400, {"error": "invalid_request"})
            elif url.path == "/msi/token" and method == "GET":
                status, answer = service.managed_identity_token(query, self.headers.get("X-IDENTITY-HEADER", ""))
                self._send(status, answer)
            elif url.path.endswith("/discovery/v2.0/keys") and method == "GET":
                self._send(200, service.signin.jwks())
            elif url.path.startswith("/loganalytics/"):
                status, answer, headers = service.handle_workspace(method, url.path, body,
                                                                   self.headers.get("Authorization", ""))
                self._send(status, answer, headers)
            elif url.path.startswith("/graph/"):
                status, answer, headers = service.handle_graph(method, url.path, query, body,
                                                               self.headers.get("Authorization", ""))
                self._send(status, answer, headers)
            else:
                status, answer, headers = service.handle_api(method, url.path, query,
                                                             self.headers.get("Authorization", ""))
                self._send(status, answer, headers)
        except ApiError as error:
            status, code = error.status, error.code
            payload = {"error": {"code": error.code, "message": error.message}} if error.code else \
                {"Message": error.message}
            self._send(error.status, payload, error.headers)
        except OSError:  # the client hung up (or was made to): nothing more to say to it
            self.close_connection = True
        service.log.append(RequestRecord(method, url.path, query, status, code, query.get("PublisherIdentifier")))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # a client that hangs up mid-response (a killed sync, a closed pool) is normal here
        pass


class SimulatorServer:
    """Serves a SimulatedService over HTTPS on loopback, in a background thread."""

    def __init__(self, service: SimulatedService, cert_path: str, key_path: str):
        self.service = service
        handler = type("Handler", (_Handler,), {"service": service})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.tls_files = service.tls_files = (cert_path, key_path)
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> str:
        self._httpd.server_address = ("127.0.0.1", port)
        self._httpd.server_bind()
        self._httpd.server_activate()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.tls_files)
        # the handshake happens in the request thread, so a slow client never stalls accept()
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        host, port = self._httpd.server_address[:2]
        self.service.base_url = f"https://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="simulator", daemon=True)
        self._thread.start()
        return self.service.base_url

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
