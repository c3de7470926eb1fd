"""Stored events out to files: JSON Lines (the original records) and CSV (the normalized columns).
Audit text is attacker-controlled: CSV cells that a spreadsheet would run as a formula are neutralized."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from .model import EVENT_COLUMNS, EventRow

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(rows: Iterable[EventRow], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(EVENT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        count += 1
    return count


def write_jsonl(rows: Iterable[EventRow], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(row.raw)
        out.write("\n")
        count += 1
    return count
