"""Exports an analyst opens in a spreadsheet or feeds to another tool: no cell a spreadsheet would evaluate,
in any of the forms it would evaluate; JSON Lines that strict parsers read."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore.export import safe_cell, write_csv, write_jsonl
from ingest.normalize import normalize

TRIGGERS = "=+-@\uff1d\uff0b\uff0d\uff20"
SPLITS = re.compile(r"[\r\n\t,;|]")  # where some importer may cut a cell into pieces


def evaluable(text: str) -> bool:
    """Would a spreadsheet (or an importer that splits the cell) see a formula in any piece of it?"""
    return any(piece.lstrip()[:1] in set(TRIGGERS) for piece in SPLITS.split(text) if piece.lstrip())


@pytest.mark.parametrize("text", ["=1+1", " =1+1", "\u3000=1", "\n=cmd|' /C calc'!A0", "Report\n=1+1", "\uff1d1+1",
                                  "a;=1+1", "a,=1+1", "a|=1+1", "a\t@SUM(A1)", "+1", "-1", "@x", "\t=1", "\r=1",
                                  "x;\uff0b1", '=HYPERLINK("http://evil.example","Click me").xlsx'])
def test_every_form_a_spreadsheet_would_evaluate_is_neutralized(text):
    assert evaluable(text), "the case itself must be dangerous"
    cell = safe_cell(text)
    assert not evaluable(cell)
    assert cell.replace("'", "") == text.replace("'", ""), "only apostrophes are added: the evidence stays readable"


@pytest.mark.parametrize("text", ["Budget - Final.xlsx", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "2001:db8::1",
                                  "megan.b@contoso.com", "a = b"])
def test_ordinary_values_are_left_as_they_are(text):
    assert safe_cell(text) == text


@given(st.text(alphabet=st.sampled_from(list("ab =+-@;,|\t\n\r '\uff1d\u3000")), max_size=20))
def test_no_text_survives_as_a_formula(text):
    cell = safe_cell(text)
    assert not evaluable(cell)
    assert cell.replace("'", "") == text.replace("'", "")


def test_csv_quotes_every_cell_and_neutralizes():
    row = normalize({"Id": "1", "SourceFileName": "a;=1+1", "UserId": "x"}, "Audit.SharePoint", "2026-01-01T00:00:00Z")
    out = io.StringIO()
    write_csv([row], out)
    header, line = out.getvalue().splitlines()
    assert line.startswith('"') and line.endswith('"') and '"a;\'=1+1"' in line
    (parsed,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert parsed["file_name"] == "a;'=1+1"


def test_jsonl_export_is_strict_json_even_for_records_stored_with_nan():
    kept = normalize({"Id": "2", "Note": "NaN and Infinity inside a string"}, "Audit.General", "2026-01-01T00:00:00Z")
    older = kept._replace(id="3", raw='{"Id":"3","Score":NaN,"Max":Infinity,"Min":-Infinity}')  # as once stored
    out = io.StringIO()
    write_jsonl([kept, older], out)

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    first, second = (json.loads(line, parse_constant=refuse) for line in out.getvalue().splitlines())
    assert first["Note"] == "NaN and Infinity inside a string"
    assert second == {"Id": "3", "Score": None, "Max": None, "Min": None}
