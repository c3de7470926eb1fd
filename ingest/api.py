"""ActivityApi: the Management Activity API's operations, with every rule of the contract in one place:
PublisherIdentifier on every call, NextPageUri followed verbatim, AF codes turned into typed errors,
backoff on throttling and server trouble, one token refresh on 401, pacing under the tenant quota."""
from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import requests

from eventstore.model import parse_utc, utc_text

from .auth import TokenProvider
from .settings import Settings

# What to tell a person when the API refuses for a reason retrying cannot fix.
FATAL_HINTS = {
    "AF10001": "The app lacks the ActivityFeed.Read permission: in Entra ID, give the app registration the "
               "Office 365 Management APIs application permissions ActivityFeed.Read (and ActivityFeed.ReadDlp "
               "for DLP.All), then grant admin consent.",
    "AF20001": "A required parameter is missing (a bug in this client: please report it).",
    "AF20002": "A parameter is invalid (a bug in this client: please report it).",
    "AF20010": "The token's tenant does not match O365_TENANT_ID: check that the app and tenant IDs belong together.",
    "AF20011": "The tenant in O365_TENANT_ID is unknown to the Management Activity API: check the ID and O365_CLOUD.",
    "AF20012": "The tenant is not set up for the Management Activity API: turn on audit log search in Microsoft "
               "Purview and wait for it to take effect.",
    "AF20013": "O365_TENANT_ID is not a valid GUID.",
    "AF20020": "A content type is not valid: check O365_CONTENT_TYPES.",
}


class ApiError(RuntimeError):
    def __init__(self, message: str, code: str = "", status: int = 0):
        super().__init__(message)
        self.code, self.status = code, status


class FatalApiError(ApiError):
    """Retrying cannot help: the sync stops and says why."""


class SubscriptionNeeded(ApiError):
    """AF20022 / AF20023: start the subscription, then ask again."""


class WindowRejected(ApiError):
    """AF20030 / AF20055: the time window broke a rule (usually clock skew)."""


class InvalidNextPage(ApiError):
    """AF20031: the page chain broke; list the window again from its start."""


class BlobUnavailable(ApiError):
    """AF20050 / AF20051 / AF20052: this content cannot be had any more. Record it as lost and go on."""


class RetriesExhausted(ApiError):
    """Throttling or server trouble that outlasted every retry."""


@dataclass(frozen=True)
class ContentBlob:
    content_type: str
    content_id: str
    content_uri: str
    created: str  # our UTC text form
    expiration: str


class RequestPacer:
    """Spaces requests evenly so all content types together stay under the per-tenant quota."""

    def __init__(self, per_minute: int):
        self._interval = 60.0 / per_minute
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, (parsed - datetime.now(timezone.utc)).total_seconds())


def _time_param(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class ActivityApi:
    def __init__(self, settings: Settings, session: requests.Session, tokens: TokenProvider,
                 pacer: RequestPacer | None = None, *, max_attempts: int = 8, backoff_base: float = 1.0,
                 backoff_cap: float = 60.0, stop: threading.Event | None = None,
                 on_retry: Callable[[str], None] | None = None):
        self.settings = settings
        self.feed = f"{settings.api_url}/api/v1.0/{settings.tenant_id}/activity/feed"
        self._session, self._tokens = session, tokens
        self._pacer = pacer or RequestPacer(settings.max_requests_per_minute)
        self._max_attempts, self._backoff_base, self._backoff_cap = max_attempts, backoff_base, backoff_cap
        self._stop = stop or threading.Event()
        self._on_retry = on_retry or (lambda message: None)
        self.clock_skew = 0.0  # seconds the service's clock is ahead of ours, from its Date header

    def server_now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_skew)

    # --- operations ---------------------------------------------------------------------------
    def start_subscription(self, content_type: str) -> None:
        self.request("POST", f"{self.feed}/subscriptions/start", {"contentType": content_type})

    def list_subscriptions(self) -> list[dict]:
        return self.request("GET", f"{self.feed}/subscriptions/list").json()

    def list_content(self, content_type: str, start: datetime, end: datetime) -> Iterator[ContentBlob]:
        """Every blob announced with start <= contentCreated < end, across all pages."""
        url, params = f"{self.feed}/subscriptions/content", {
            "contentType": content_type, "startTime": _time_param(start), "endTime": _time_param(end)}
        while url:
            response = self.request("GET", url, params)
            for item in response.json():
                yield ContentBlob(content_type, item["contentId"], item["contentUri"],
                                  utc_text(parse_utc(item["contentCreated"])),
                                  utc_text(parse_utc(item["contentExpiration"])))
            # follow the next page's address verbatim; requests' headers ignore case
            url = response.headers.get("NextPageUri") or response.headers.get("NextPageUrl")
            params = None

    def fetch_blob(self, content_uri: str) -> bytes:
        return self.request("GET", content_uri).content

    # --- the one request path -----------------------------------------------------------------
    def _publisher_params(self, url: str, params: dict | None) -> dict:
        query = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
        params = dict(params or {})
        if "publisheridentifier" not in query:
            params["PublisherIdentifier"] = self.settings.publisher_id
        return params

    def request(self, method: str, url: str, params: dict | None = None) -> requests.Response:
        params = self._publisher_params(url, params)
        refreshed = False
        attempt = 0
        while True:
            if self._stop.is_set():
                raise RetriesExhausted("Stopped while waiting to retry.")
            self._pacer.wait()
            try:
                response = self._session.request(method, url, params=params, timeout=(15, 180),
                                                 headers={"Authorization": f"Bearer {self._tokens.token()}"})
            except requests.RequestException as exc:
                attempt = self._backoff(attempt, None, f"network error ({type(exc).__name__})")
                continue
            self._note_clock(response)
            if response.status_code < 300:
                return response
            code = _error_code(response)
            status = response.status_code
            if code == "AF20024":  # already enabled, no change: the result we wanted
                return response
            if status == 401 and not code:
                if refreshed:
                    raise FatalApiError("The API refused a freshly issued token: check that admin consent was "
                                        "granted for the app's Office 365 Management APIs permissions.", code, status)
                self._tokens.invalidate()
                refreshed = True
                continue
            message = self._message(response)
            if code == "AF429" or status == 429:
                attempt = self._backoff(attempt, _retry_after(response), "throttled (AF429)")
            elif status in (408, 500, 502, 503, 504) or code.startswith("AF5000"):
                attempt = self._backoff(attempt, _retry_after(response), f"service error {code or status}")
            elif code in ("AF20022", "AF20023"):
                raise SubscriptionNeeded(message, code, status)
            elif code in ("AF20030", "AF20055"):
                raise WindowRejected(message, code, status)
            elif code == "AF20031":
                raise InvalidNextPage(message, code, status)
            elif code in ("AF20050", "AF20051", "AF20052"):
                raise BlobUnavailable(message, code, status)
            else:
                hint = FATAL_HINTS.get(code, "")
                raise FatalApiError(f"The Management Activity API refused the request (HTTP {status}"
                                    f"{', ' + code if code else ''}): {hint or message}", code, status)

    def _backoff(self, attempt: int, retry_after: float | None, why: str) -> int:
        attempt += 1
        if attempt >= self._max_attempts:
            raise RetriesExhausted(f"Gave up after {attempt} attempts: {why}.")
        delay = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if retry_after is not None:  # the service knows best, but "0" must not turn into a tight loop
            delay = max(delay, min(retry_after, 600.0))
        self._on_retry(f"{why}; retrying in {delay:.1f} s (attempt {attempt + 1} of {self._max_attempts})")
        self._stop.wait(delay)
        return attempt

    def _note_clock(self, response: requests.Response) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                served = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            self.clock_skew = (served - datetime.now(timezone.utc)).total_seconds()

    @staticmethod
    def _message(response: requests.Response) -> str:
        try:
            body = response.json()
            error = body.get("error", {}) if isinstance(body, dict) else {}
            return str(error.get("message") or body.get("Message") or "")[:300]
        except ValueError:
            return response.text[:300]
