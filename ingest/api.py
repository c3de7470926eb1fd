"""ActivityApi: the Management Activity API's operations, with every rule of the contract in one place:
PublisherIdentifier on every call, NextPageUri followed verbatim, AF codes turned into typed errors,
backoff on throttling and server trouble, one token refresh on 401, pacing under the tenant quota.

Every answer is checked before it is believed (a proxy, a bug or an attacker may have written it): the token
goes only to this tenant's feed on the configured origin, listings are validated item by item, page chains
are bounded, error bodies are read defensively and scrubbed, and the service's clock is trusted only within
MAX_CLOCK_SKEW of ours."""
from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests
from urllib3.util import parse_url

from eventstore.model import parse_utc, utc_text

from . import http, redact
from .auth import TokenProvider
from .settings import Settings

# What to tell a person when the API refuses for a reason retrying cannot fix.
REFUSAL_HINTS = {
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


# Identity-level refusals: every request would get them, so the pass stops and says what to fix.
FATAL_CODES = {"AF10001", "AF20010", "AF20011", "AF20012", "AF20013"}
LISTING_BYTES = 16 * 1024 * 1024  # a listing page is tens of kB
MAX_PAGES = 5000  # listing pages per window: a chain longer than this is a fault, not a tenant
# An empty page naming itself as the next is read again this many times (waiting 0.5, 1, 2, 4, 8 s) before the
# chain counts as a loop.
EMPTY_PAGE_RETRIES, EMPTY_PAGE_WAIT = 5, 0.5
# Beyond this the Date header is not believed for anything irreversible: a window planned on a clock that runs
# ahead could skip content for good, and an "expired" from a service whose clock is off is not proof.
MAX_CLOCK_SKEW = timedelta(minutes=30)


class ApiError(RuntimeError):
    def __init__(self, message: str, code: str = "", status: int = 0):
        super().__init__(message)
        self.code, self.status = code, status

    def __reduce__(self):  # raised in the helper process that parses, it arrives whole
        return type(self), (str(self), self.code, self.status)


class FatalApiError(ApiError):
    """Retrying cannot help and every request would get the same: the pass stops and says why."""


class SubscriptionNeeded(ApiError):
    """AF20022 / AF20023: start the subscription, then ask again."""


class WindowRejected(ApiError):
    """AF20030 / AF20055: the time window broke a rule (usually clock skew)."""


class InvalidNextPage(ApiError):
    """AF20031: the page chain broke; list the window again from its start."""


class BlobUnavailable(ApiError):
    """AF20050 / AF20051 / AF20052: this content cannot be had any more. Record it as lost and go on."""


class BadAnswer(ApiError):
    """An answer that cannot be believed or used: not the JSON the contract promises, too large, too slow, a
    redirect, an address outside the configured API, a refusal with no known meaning. One recorded error for
    its window or blob; everything else goes on."""


class RetriesExhausted(ApiError):
    """Throttling or server trouble that outlasted every retry."""


class Interrupted(ApiError):
    """A stop was asked for (SIGTERM, Ctrl-C, a lost lease) while a request was waiting or in flight."""


class ClockSkew(ApiError):
    """The service's clock and ours disagree by more than MAX_CLOCK_SKEW."""


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


def parse_json(body: bytes, what: str):
    """JSON from a peer, or BadAnswer: never a traceback, however broken or deep it is."""
    try:
        return json.loads(body)
    except RecursionError:
        raise BadAnswer(f"{what} is nested too deeply to be read", "MALFORMED") from None
    except ValueError:
        raise BadAnswer(f"{what} is not JSON ({_peek(body)})", "MALFORMED") from None


def parse_listing(body: bytes, content_type: str) -> list[ContentBlob]:
    """A listing page → its content blobs. Every field is checked: one bad item makes the page unusable,
    since a page we cannot fully read must not let the checkpoint pass it."""
    items = parse_json(body, "the content listing")
    if not isinstance(items, list):
        raise BadAnswer(f"the content listing is a JSON {type(items).__name__}, not a list", "MALFORMED")
    blobs = []
    for number, item in enumerate(items, 1):
        try:
            if not isinstance(item, dict):
                raise ValueError("not an object")
            content_id, uri = item["contentId"], item["contentUri"]
            if not (isinstance(content_id, str) and isinstance(uri, str) and 0 < len(content_id) <= 1000
                    and 0 < len(uri) <= 4000):
                raise ValueError("contentId or contentUri is not a short text")
            if item.get("contentType", content_type) != content_type:
                raise ValueError(f"it is of another content type ({redact.short(str(item.get('contentType')), 40)})")
            created = utc_text(parse_utc(str(item["contentCreated"])))
            expiration = utc_text(parse_utc(str(item["contentExpiration"])))
        except (KeyError, ValueError, TypeError, OverflowError) as error:
            raise BadAnswer(f"item {number} of the content listing is unusable: {redact.short(str(error), 80)}",
                            "MALFORMED") from None
        blobs.append(ContentBlob(content_type, content_id, uri, created, expiration))
    return blobs


def _peek(body: bytes) -> str:
    text = redact.short(body[:200].decode("utf-8", "replace"), 60)
    return f"it begins {text!r}" if text else "it is empty"


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date as an aware UTC time; None when absent or unreadable (a peer may send anything)."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # "-0000": UTC, zone not stated


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        moment = _http_date(value)
        return None if moment is None else max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_of(response: requests.Response) -> tuple[str, str]:
    """(AF code, short scrubbed message) from an error answer, whatever shape it has."""
    try:
        body = parse_json(response.content, "the error")
    except BadAnswer:
        return "", f"{'HTML' if b'<' in response.content[:100] else 'unreadable'} answer ({_peek(response.content)})"
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    message = (error.get("message") if isinstance(error, dict) else None) or \
        (body.get("Message") if isinstance(body, dict) else None) or ""
    return redact.short(code, 20), redact.short(str(message), 200)


def service_error(response: requests.Response) -> tuple[str, str]:
    """(code, short scrubbed message) of an answer in Microsoft's REST shape, {"error": {"code", "message"}}, as
    Microsoft Graph and the Log Analytics API give them; ("", "") when it has none."""
    try:
        return error_of(json.loads(response.content or b"{}"))
    except ValueError:
        return "", ""


def error_of(answer) -> tuple[str, str]:
    """service_error of an answer already decoded."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return redact.short(str(error.get("code", "")), 80), redact.short(str(error.get("message", "")), 300)


def _time_param(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} h" if seconds >= 3600 \
        else f"{seconds / 60:.0f} min"


log = logging.getLogger("ingest.api")


REFRESH = "refresh the token"  # what a client's _judge says when a new token may be all an answer needs


class ApiClient:
    """What every client of a Microsoft API here shares: one bounded session, a token, pacing, backoff that honours
    Retry-After and stops at once when asked, and the service's clock."""

    RESOURCE = "api_url"  # the Settings field naming this client's API, whose token it asks for

    @classmethod
    def connect(cls, settings: Settings, on_retry: Callable[[str], None] | None = None, backoff_base: float = 1.0):
        """A client for these settings (for the DEMO, those of ingest.demo.tenant_settings), with a session that
        sends nothing anywhere but its API's and the login origins."""
        resource = getattr(settings, cls.RESOURCE)
        session = http.Session({http.origin(resource), http.origin(settings.login_url)}, ca_bundle=settings.ca_bundle)
        return cls(settings, session, cls.tokens_for(settings, session, resource), backoff_base=backoff_base,
                   on_retry=on_retry or (lambda message: log.warning("%s", message)))

    @classmethod
    def tokens_for(cls, settings: Settings, session: http.Session, resource: str):
        """Where this client's tokens come from: the app registration, through MSAL and our session."""
        return TokenProvider(settings, session, resource=resource)

    def __init__(self, settings: Settings, session: http.Session, tokens: TokenProvider,
                 pacer: RequestPacer | None = None, *, max_attempts: int = 8, backoff_base: float = 1.0,
                 backoff_cap: float = 60.0, on_retry: Callable[[str], None] | None = None):
        self.settings = settings
        self._session, self._tokens = session, tokens
        self.stop = session.stop  # set: every wait and request in flight ends at once
        self._pacer = pacer or RequestPacer(settings.max_requests_per_minute)
        self._max_attempts, self._backoff_base, self._backoff_cap = max_attempts, backoff_base, backoff_cap
        self._on_retry = on_retry or (lambda message: None)
        self.clock_skew = 0.0  # seconds the service's clock is ahead of ours, from its Date header

    def server_now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_skew)

    def _trust(self, base: str, name: str, trailing_slash: bool = False) -> None:
        """The one place a token may go: `base`'s origin, under its path, over HTTPS (`name` says it in errors)."""
        self._base, self._base_name = base, name
        self._origin, self._path = http.origin(base), urlsplit(base).path + ("/" if trailing_slash else "")

    def _check_address(self, url: str) -> None:
        """The token goes to the trusted base (see _trust), or nowhere."""
        try:
            path = parse_url(url).path or ""
        except ValueError:
            path = ""
        if http.origin(url) != self._origin or not path.startswith(self._path) or "/../" in path:
            raise BadAnswer(f"refused to send the token to {redact.short(url, 120)}: it is not {self._base_name} "
                            f"({self._base})", "UNTRUSTED_ADDRESS")

    def _send(self, method: str, url: str, max_bytes: int, **kwargs) -> requests.Response | str:
        """One attempt, paced, with the token: the answer (never a redirect), or what went wrong on the network
        (the caller backs off and tries again). Everything else that can go wrong is raised as an ApiError."""
        if self.stop.is_set():
            raise Interrupted("Stopped.")
        self._pacer.wait()
        try:
            response = self._session.request(method, url, max_bytes=max_bytes, deadline=self.settings.request_timeout,
                                             headers={"Authorization": f"Bearer {self._tokens.token()}"}, **kwargs)
        except http.Interrupted:
            raise Interrupted("Stopped while a request was in flight.") from None
        except http.UntrustedAddress as refused:
            raise BadAnswer(f"refused: {refused}", "UNTRUSTED_ADDRESS") from None
        except http.AnswerTooLarge as large:
            raise BadAnswer(str(large), "TOO_LARGE") from None
        except http.DeadlineExceeded as slow:
            raise BadAnswer(f"{slow} (O365_REQUEST_TIMEOUT)", "TOO_SLOW") from None
        except requests.RequestException as exc:
            return f"network error ({type(exc).__name__})"
        self._note_clock(response)
        if 300 <= response.status_code < 400:
            raise BadAnswer(f"the API answered with a redirect (HTTP {response.status_code}) to "
                            f"{redact.short(response.headers.get('Location', '?'), 120)}; redirects are not "
                            "followed", "REDIRECT")
        return response

    def _exchange(self, method: str, url: str, max_bytes: int, **kwargs) -> requests.Response:
        """One request to the trusted API, tried again as its answers say: network trouble, and what `_judge` calls
        passing, are backed off (honouring Retry-After); a token is refreshed when `_judge` asks for it."""
        self._check_address(url)
        refreshed, attempt = False, 0
        while True:
            response = self._send(method, url, max_bytes, **kwargs)
            if isinstance(response, str):
                attempt = self._backoff(attempt, None, response)
                continue
            if 200 <= response.status_code < 300:
                return response
            why = self._judge(response, refreshed)
            if why is None:
                return response
            if why == REFRESH:
                self._tokens.invalidate()
                refreshed = True
            else:
                attempt = self._backoff(attempt, _retry_after(response), why)

    def _judge(self, response: requests.Response, refreshed: bool) -> str | None:
        """What an answer other than 2xx means for this API: None to take it as it is, REFRESH to try once more
        with a new token, or why to back off and try again; anything else is raised as an ApiError."""
        raise NotImplementedError

    def _backoff(self, attempt: int, retry_after: float | None, why: str) -> int:
        attempt += 1
        if attempt >= self._max_attempts:
            raise RetriesExhausted(f"Gave up after {attempt} attempts: {why}.")
        delay = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if retry_after is not None:  # the service knows best, but "0" must not turn into a tight loop
            delay = max(delay, min(retry_after, 600.0))
        self._on_retry(f"{why}; retrying in {delay:.1f} s (attempt {attempt + 1} of {self._max_attempts})")
        if self.stop.wait(delay):
            raise Interrupted("Stopped while waiting to retry.")
        return attempt

    def _note_clock(self, response: requests.Response) -> None:
        served = _http_date(response.headers.get("Date"))
        if served is not None:
            self.clock_skew = (served - datetime.now(timezone.utc)).total_seconds()


class ActivityApi(ApiClient):
    def __init__(self, settings: Settings, session: http.Session, tokens: TokenProvider, *args, **kwargs):
        super().__init__(settings, session, tokens, *args, **kwargs)
        self.feed = f"{settings.api_url}/api/v1.0/{settings.tenant_id}/activity/feed"
        self._trust(self.feed, "this tenant's Management Activity API", trailing_slash=True)

    def check_clock(self) -> None:
        """Raise ClockSkew when the service's clock cannot be believed for planning or for 'expired'."""
        if abs(self.clock_skew) > MAX_CLOCK_SKEW.total_seconds():
            side = "ahead of" if self.clock_skew > 0 else "behind"
            raise ClockSkew(f"The Management Activity API's clock (its Date header) is {_span(self.clock_skew)} "
                            f"{side} this machine's. Nothing is synced or given up as expired until they agree: "
                            "check this machine's clock (NTP) and any proxy in between.", "CLOCK")

    # --- operations ---------------------------------------------------------------------------
    def start_subscription(self, content_type: str) -> None:
        self.request("POST", f"{self.feed}/subscriptions/start", {"contentType": content_type})

    def list_subscriptions(self) -> list[dict]:
        found = parse_json(self.request("GET", f"{self.feed}/subscriptions/list").content, "the subscription list")
        if not isinstance(found, list):
            raise BadAnswer("the subscription list is not a list", "MALFORMED")
        return [item for item in found if isinstance(item, dict)]

    def list_content(self, content_type: str, start: datetime, end: datetime) -> Iterator[ContentBlob]:
        """Every blob announced with start <= contentCreated < end, across all pages."""
        url, params = f"{self.feed}/subscriptions/content", {
            "contentType": content_type, "startTime": _time_param(start), "endTime": _time_param(end)}
        followed: set[str] = set()
        again = 0  # times in a row the page just read was empty and named itself as the next
        for _ in range(MAX_PAGES):
            response = self.request("GET", url, params)
            blobs = parse_listing(response.content, content_type)
            yield from blobs
            # follow the next page's address verbatim; requests' headers ignore case
            following = response.headers.get("NextPageUri") or response.headers.get("NextPageUrl")
            if not following:
                return
            if following == url and not blobs and again < EMPTY_PAGE_RETRIES:
                # the service answers an empty page that names itself while the next is not ready: ask again shortly
                again += 1
                if self.stop.wait(EMPTY_PAGE_WAIT * 2 ** (again - 1)):
                    raise Interrupted("Stopped while waiting to read a listing page again.")
                continue
            if following in followed:
                raise BadAnswer("the listing's next page points back to a page already read"
                                + (f" (empty {again + 1} times in a row)" if again else ""), "PAGE_LOOP")
            followed.add(following)
            url, params, again = following, None, 0
        raise BadAnswer(f"the listing goes on past {MAX_PAGES:,} pages", "TOO_MANY_PAGES")

    def fetch_blob(self, content_uri: str) -> bytes:
        return self.request("GET", content_uri, max_bytes=self.settings.max_blob_mb * 1024 * 1024).content

    def blob_uri(self, content_id: str) -> str | None:
        """Where this tenant's feed serves the blob `content_id` (the contract: contentUri = feed/audit/{contentId});
        None for an id that cannot name one (it would change the address's path or query)."""
        if not re.fullmatch(r"[^/\\?#%\s]{1,1000}", content_id) or content_id in (".", ".."):
            return None
        return f"{self.feed}/audit/{quote(content_id, safe='$')}"

    def names_blob(self, content_uri: str, content_id: str) -> bool:
        """Whether `content_uri` is this tenant's address of the blob `content_id` (its host aside: nothing is sent
        there), so that a message naming one blob cannot have another fetched in its name."""
        ours = self.blob_uri(content_id)
        try:
            theirs = urlsplit(content_uri)
        except ValueError:
            return False
        return ours is not None and not theirs.query and not theirs.fragment and \
            unquote(theirs.path) == unquote(urlsplit(ours).path)

    # --- the one request path -----------------------------------------------------------------
    def _publisher_params(self, url: str, params: dict | None) -> dict:
        query = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
        params = dict(params or {})
        if "publisheridentifier" not in query:
            params["PublisherIdentifier"] = self.settings.publisher_id
        return params

    def request(self, method: str, url: str, params: dict | None = None, *,
                max_bytes: int = LISTING_BYTES) -> requests.Response:
        return self._exchange(method, url, max_bytes, params=self._publisher_params(url, params))

    def _judge(self, response: requests.Response, refreshed: bool) -> str | None:
        status = response.status_code
        code, message = _error_of(response)
        if code == "AF20024":  # already enabled, no change: the result we wanted
            return None
        if status == 401 and not code:
            if refreshed:
                raise FatalApiError("The API refused a freshly issued token: check that admin consent was "
                                    "granted for the app's Office 365 Management APIs permissions.", code, status)
            return REFRESH
        if code == "AF429" or status == 429:
            return "throttled (AF429)"
        if status in (408, 500, 502, 503, 504) or code.startswith("AF5000"):
            return f"service error {code or status}"
        if code in ("AF20022", "AF20023"):
            raise SubscriptionNeeded(message, code, status)
        if code in ("AF20030", "AF20055"):
            raise WindowRejected(message, code, status)
        if code == "AF20031":
            raise InvalidNextPage(message, code, status)
        if code in ("AF20050", "AF20051", "AF20052"):
            raise BlobUnavailable(message, code, status)
        if code in FATAL_CODES:
            raise FatalApiError(f"The Management Activity API refused the request (HTTP {status}, {code}): "
                                f"{REFUSAL_HINTS[code]}", code, status)
        hint = REFUSAL_HINTS.get(code, "")
        raise BadAnswer(f"The Management Activity API refused the request (HTTP {status}"
                        f"{', ' + code if code else ''}): {hint or message or 'no reason given'}",
                        code or f"HTTP{status}", status)
