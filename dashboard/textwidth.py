"""How wide a line of text is drawn in the graph's font (Arial; Liberation Sans, its metric twin, on Linux): the
widths of Helvetica's glyphs, which Arial's match, in thousandths of the font size. Pure; the layout uses it to make
room for names, and the browser tests check it against what is drawn."""
from __future__ import annotations

import unicodedata

# printable ASCII from " " (32) to "~" (126)
_ASCII = (278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
          556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
          1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
          667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
          333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
          556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584)
_OTHER = {"·": 278, "…": 1000, "→": 1000, "–": 556, "—": 1000, "é": 556, "ü": 556, "ö": 556, "ä": 556}


def char_width(ch: str) -> int:
    code = ord(ch)
    if 32 <= code <= 126:
        return _ASCII[code - 32]
    if ch in _OTHER:
        return _OTHER[ch]
    return 1000 if unicodedata.east_asian_width(ch) in ("W", "F") else 600


def text_width(text: str, size: float) -> float:
    """The width of `text` at font size `size`, in the same unit as `size`."""
    return sum(map(char_width, text)) * size / 1000
