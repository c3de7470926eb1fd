"""The one HTTPS session every request to Microsoft goes through (the API and, through MSAL, the token endpoint),
and the rules it holds any peer to — the service, a proxy, or an attacker in between:

- requests go only to the configured origins (scheme, host, port) over HTTPS, and redirects are never followed,
  so a credential can only ever reach the place it was configured for;
- an answer is bounded in size, a request in total time however slowly the peer sends (a watchdog shuts the
  socket of a request past its deadline: a read timeout alone restarts with every byte);
- a stop (SIGTERM, Ctrl-C, a lost sync lease) interrupts the requests in flight within a second."""
from __future__ import annotations

import atexit
import functools
import os
import socket
import tempfile
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from . import redact

CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 30.0  # per socket operation
DEFAULT_DEADLINE = 120.0  # seconds for a whole request, answer included
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # token answers and listing pages are a few kB


class UntrustedAddress(requests.exceptions.InvalidURL):
    """A URL outside the configured origins (or not HTTPS): nothing is sent to it."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """The answer was larger than allowed; reading stopped at the limit."""


class DeadlineExceeded(requests.exceptions.Timeout):
    """The request as a whole took longer than allowed (e.g. a peer that sends one byte at a time)."""


class Interrupted(requests.exceptions.RequestException):
    """A stop was asked for while the request was in flight."""


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL as requests itself will parse it; None for anything with credentials
    in it or no host."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return None
    if not parsed.scheme or not parsed.host or parsed.auth:
        return None
    scheme = parsed.scheme.lower()
    return scheme, parsed.host.lower().rstrip("."), parsed.port or {"https": 443, "http": 80}.get(scheme, 0)


# --- the watchdog: deadlines and stops for requests in flight ---------------------------------------
class _Ticket:
    def __init__(self, deadline: float, stop: threading.Event):
        self.deadline, self.stop = deadline, stop
        self.connection: HTTPSConnection | None = None
        self.fired: str = ""  # "deadline" or "stop" once the watchdog acted
        self._lock = threading.Lock()

    def attach(self, connection: HTTPSConnection) -> None:
        with self._lock:
            self.connection = connection
            fired = self.fired
        if fired:
            raise Interrupted("stopped") if fired == "stop" else DeadlineExceeded("deadline passed")

    def check(self, now: float) -> None:
        reason = "stop" if self.stop.is_set() else "deadline" if now > self.deadline else ""
        if not reason:
            return
        with self._lock:
            if self.fired:
                return
            self.fired = reason
            connection = self.connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:  # a blocked read in another thread returns at once
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Watchdog:
    def __init__(self):
        self._tickets: set[_Ticket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, ticket: _Ticket) -> None:
        with self._lock:
            self._tickets.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-watchdog", daemon=True)
                self._thread.start()

    def remove(self, ticket: _Ticket) -> None:
        with self._lock:
            self._tickets.discard(ticket)

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                tickets = list(self._tickets)
            now = time.monotonic()
            for ticket in tickets:
                ticket.check(now)


_watchdog = _Watchdog()
_current = threading.local()  # the ticket of the request this thread is making


class _WatchedConnection(HTTPSConnection):
    def request(self, *args, **kwargs):
        ticket = getattr(_current, "ticket", None)
        if ticket is not None:
            ticket.attach(self)
        return super().request(*args, **kwargs)


class _WatchedPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedConnection


_POOLS = {"http": HTTPConnectionPool, "https": _WatchedPool}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


# --- the session --------------------------------------------------------------------------------
class Session(requests.Session):
    def __init__(self, origins: set[tuple[str, str, int]], stop: threading.Event | None = None,
                 ca_bundle: str = "", pool_size: int = 16):
        super().__init__()
        self.origins = origins
        self.stop = stop or threading.Event()
        # what requests would read from the environment on every request (proxies and no_proxy, the CA bundle,
        # ~/.netrc), read once here: per request it cost more than the request itself. .netrc is never read:
        # a credential goes only where it was configured.
        self.trust_env = False
        self._proxies = {where: get_environ_proxies(f"https://{where[1]}:{where[2]}") for where in origins}
        self.verify = (_combined_bundle(ca_bundle) if ca_bundle
                       else os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True)
        self.mount("https://", _Adapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0))
        self.mount("http://", _Adapter(max_retries=0))  # never used: refused before sending
        self.headers["User-Agent"] = "O365ActivityGraph/1.0"

    def request(self, method, url, *args, max_bytes: int = DEFAULT_MAX_BYTES, deadline: float = DEFAULT_DEADLINE,
                **kwargs) -> requests.Response:
        """Like requests' own, within the rules above. The answer's body is read (at most `max_bytes`) before
        this returns, so `.content`, `.text` and `.json()` work as usual."""
        where = origin(url)
        if where is None or where[0] != "https" or where not in self.origins:
            raise UntrustedAddress(f"{redact.short(url, 120)} is not the configured service (only "
                                   f"{', '.join(sorted(f'https://{h}:{p}' for _, h, p in self.origins))})")
        kwargs.update(allow_redirects=False, stream=True)
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        kwargs.setdefault("proxies", self._proxies[where])
        ticket = _Ticket(time.monotonic() + deadline, self.stop)
        _current.ticket = ticket
        _watchdog.add(ticket)
        try:
            response = super().request(method, url, *args, **kwargs)
            try:
                _read_body(response, max_bytes)
            finally:
                response.close()
            return response
        except requests.RequestException:
            if ticket.fired == "stop":
                raise Interrupted("stopped while a request was in flight") from None
            if ticket.fired == "deadline":
                raise DeadlineExceeded(f"the answer took longer than {deadline:.0f} s") from None
            raise
        finally:
            _watchdog.remove(ticket)
            _current.ticket = None


def _read_body(response: requests.Response, limit: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(f"the answer is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    for chunk in response.iter_content(1 << 16):  # decompressed: a small gzip cannot become a large body
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"the answer is over {limit:,} bytes (the limit); reading stopped there")
        chunks.append(chunk)
    response._content = b"".join(chunks)


@functools.lru_cache(maxsize=8)
def _combined_bundle(extra_ca: str) -> str:
    """The CAs requests would trust anyway, plus the extra ones, in one file (one per process)."""
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
