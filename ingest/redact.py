"""Secrets out of text before it is logged, stored or shown. A peer may echo a request back (a proxy's error page
quoting the token request's form, an API error repeating the Authorization header), and libraries log what
peers say: so every text that came from the network goes through `scrub`, and every log record of this
process does too (`install_log_scrubber`). Known secrets are removed by value, credentials by their shape."""
from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import deque

MASK = "***"
_known: deque[str] = deque(maxlen=64)  # the client secret, store keys, the access tokens issued lately
_lock = threading.Lock()
_SHAPES = [
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1\2{MASK}"),
    (re.compile(r"(?i)\b(client_secret|client_assertion|access_token|refresh_token|id_token|password|accountkey"
                r"|sig)(\"?'?\s*[=:]\s*\"?'?)[^\s&\"',;}]+"), rf"\1\2{MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), MASK),  # a JSON web token
]


def remember(secret: str | None) -> None:
    """Scrub this value wherever it turns up from now on."""
    if secret and len(secret) >= 6:
        with _lock:
            if secret not in _known:
                _known.append(secret)


def scrub(text: str) -> str:
    with _lock:
        known = list(_known)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def short(text: str, limit: int = 200) -> str:
    """Network text for a message: scrubbed, on one line, without control characters, at most `limit` long."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in scrub(str(text))).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_installed = False


def install_log_scrubber() -> None:
    """Every log record made in this process from now on is scrubbed (its message and any traceback),
    whichever library makes it and whichever handler prints it."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def scrubbed_record(*args, **kwargs):
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call stays as it was
            return record
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
        return record

    logging.setLogRecordFactory(scrubbed_record)
