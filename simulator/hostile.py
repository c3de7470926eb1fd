"""Hostile and broken peers, for the tests that prove the client survives them: scripted answers a proxy,
a bug at the service or an attacker might send (script them with SimulatedService.script), and a listener
elsewhere that records whatever reaches it — so a test can show that a bearer token never did."""
from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .server import Answer, Request


def html_page(status: int = 200, text: str = "Access denied by your organization's web filter") -> Answer:
    """What a TLS-inspecting middlebox or a captive portal sends instead of JSON."""
    return Answer(status, f"<!DOCTYPE html><html><body><h1>{text}</h1></body></html>".encode(), {},
                  "text/html; charset=utf-8")


def json_answer(value, status: int = 200, headers: dict | None = None) -> Answer:
    return Answer(status, json.dumps(value).encode(), headers or {})


def deeply_nested(depth: int = 100_000, status: int = 200) -> Answer:
    """A JSON text nested so deep that a recursive parser runs out of stack."""
    return Answer(status, b"[" * depth + b"]" * depth)


def huge_blob(size: int, record_size: int = 1_000_000) -> Answer:
    """A well-formed content blob of about `size` bytes, streamed (never held in memory here)."""

    def chunks(_request: Request) -> Iterator[bytes]:
        filler = b"A" * (record_size - 200)
        yield b"["
        sent, n = 1, 0
        while sent < size:
            record = b'%s{"Id":"00000000-0000-4000-8000-%012d","CreationTime":"2026-01-01T00:00:00",' \
                     b'"Operation":"FileAccessed","Padding":"%s"}' % (b"," if n else b"", n, filler)
            yield record
            sent += len(record)
            n += 1
        yield b"]"

    return Answer(200, chunks)


def trickle(answer: Answer, seconds_per_byte: float = 0.5) -> Answer:
    """The same answer, one byte at a time: each read returns within any read timeout, yet it never ends."""
    return Answer(answer.status, answer.body, answer.headers, answer.content_type, seconds_per_byte)


def echo_request(status: int = 400, code: str = "AF20099") -> Answer:
    """An error that repeats the request it refuses, credentials first (a bearer token, a client secret)."""

    def body(request: Request) -> bytes:
        echoed = f"Authorization: {request.headers.get('Authorization', '')}; form: " \
                 f"{request.body.decode(errors='replace')}; {request.method} {request.path}"
        if not code:
            return f"<html><body>Bad request: {echoed}</body></html>".encode()
        return json.dumps({"error": {"code": code, "message": f"The request is invalid: {echoed}"}}).encode()

    return Answer(status, body, {}, "application/json" if code else "text/html")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict


class Elsewhere:
    """A listener on loopback that is not the configured API: it records every request (and its headers)
    and answers an empty JSON list. HTTPS with the simulator's certificate, or plain HTTP."""

    def __init__(self, cert: tuple[str, str] | None = None):
        self.seen: list[Seen] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append(Seen(self.command, self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            do_GET = do_POST = _answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        scheme = "http"
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def authorization_seen(self) -> list[str]:
        return [s.headers.get("Authorization", "") for s in self.seen if s.headers.get("Authorization")]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
