"""Stored events out to files: JSON Lines (the original records), CSV and Excel (the normalized columns).

Audit text is attacker-controlled, and a CSV ends up in a spreadsheet: every cell is quoted, and a cell that a
spreadsheet could run as a formula is neutralized with a leading apostrophe — at its start (after any
spaces, also the full-width forms such as ＝) and after anything an importer might split a cell at (a line
break, `;`, `,`, a tab, `|`), so that no piece of it starts a formula either."""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from typing import BinaryIO, TextIO

from .model import EVENT_COLUMNS, EventRow

_TRIGGER = "=+\\-@\uff1d\uff0b\uff0d\uff20"  # = + - @ and their full-width forms
_AT_START = re.compile(rf"^(?:\s*[{_TRIGGER}]|[\t\r\n])")
_AFTER_SPLIT = re.compile(rf"([\r\n\t,;|][^\S\r\n]*)(?=[{_TRIGGER}])")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    text = _AFTER_SPLIT.sub(r"\1'", text)
    return "'" + text if _AT_START.match(text) else text


def write_csv(rows: Iterable[Sequence], out: TextIO, header: Sequence[str] = EVENT_COLUMNS) -> int:
    """Events (or any rows under `header`) as CSV: every cell quoted and neutralized. Returns the row count."""
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        count += 1
    return count


XLSX_CELL = 32_767  # characters Excel holds in a cell


def write_xlsx(rows: Iterable[Sequence], out: BinaryIO, header: Sequence[str] = EVENT_COLUMNS,
               sheet: str = "events") -> int:
    """Events (or any rows under `header`) as an Excel workbook: every cell written as text — never a formula, a
    link or a number Excel guessed — and cut at Excel's 32,767 characters with a note. Returns the row count."""
    import xlsxwriter

    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                     "strings_to_numbers": False})
    page = book.add_worksheet(sheet[:31])
    bold = book.add_format({"bold": True})
    for column, name in enumerate(header):
        page.write_string(0, column, name, bold)
    count = 0
    for count, row in enumerate(rows, 1):
        for column, value in enumerate(row):
            text = "" if value is None else str(value)
            if len(text) > XLSX_CELL:
                text = text[: XLSX_CELL - 40] + f" … [cut: {len(text):,} characters in all]"
            page.write_string(count, column, text)
    page.freeze_panes(1, 0)
    book.close()
    return count


def _not_json(name: str):
    raise ValueError(name)


def strict_json(raw: str) -> str:
    """The record as strict JSON: NaN and Infinity (which older versions stored as received) become null."""
    if "NaN" not in raw and "Infinity" not in raw:
        return raw
    try:
        json.loads(raw, parse_constant=_not_json)
        return raw  # the words were inside strings
    except ValueError:
        return json.dumps(json.loads(raw, parse_constant=lambda name: None), ensure_ascii=False,
                          separators=(",", ":"))


def write_jsonl(rows: Iterable[EventRow], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(strict_json(row.raw))
        out.write("\n")
        count += 1
    return count
