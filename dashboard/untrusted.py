"""Untrusted text — audit data, a URL someone crafted, what a peer answered, a name another analyst typed — for
the places that would otherwise read it as markup: Markdown (alerts, captions, labels) and HTML (the graph
component's labels and tooltips). It is always shown as the text it is."""
from __future__ import annotations

import html
import re

from ingest import redact

_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # CommonMark lets a backslash escape each of these
# GFM turns bare addresses into links after escapes are resolved ("https://…", "www.…", "name@host"): an
# invisible word joiner inside each pattern keeps them text, and looks the same
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)")
WORD_JOINER = "\u2060"


def markdown(text, limit: int = 500) -> str:
    """Text for a Markdown element, shown literally: no link, image, emphasis, HTML, directive or formula can
    come out of it. On one line, without control characters or secrets, at most `limit` characters."""
    cleaned = redact.short(str(text), limit)
    return _ASCII_PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, cleaned))


def canvas_text(text, limit: int | None = None) -> str:
    """Text drawn as text (a canvas): as typed, but with control and format characters (a right-to-left override
    that would reorder what follows) made visible, shortened."""
    cleaned = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in str(text))
    return cleaned[: limit - 1] + "…" if limit and len(cleaned) > limit else cleaned


def html_text(text, limit: int | None = None) -> str:
    """Text for a place that parses HTML: escaped, control characters made visible, shortened."""
    return html.escape(canvas_text(text, limit), quote=True)


def inert_html(text, limit: int | None = None) -> str:
    """Text for a place that both shows a string as plain text and parses it as HTML (the graph component's
    tooltips): read as typed by the first, and no element can come of it in the second, because every "<" is
    followed by an invisible zero-width space, which no tag name can start with."""
    return canvas_text(text, limit).replace("<", "<\u200b")
