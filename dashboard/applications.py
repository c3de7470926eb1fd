"""Applications by name, not by id: first-party Microsoft applications from a list kept as data
(applications.csv), and an application the tenant consented to from its own consent record (the record names the
app and its id side by side). Pure."""
from __future__ import annotations

import csv
import os
import re
from functools import lru_cache

# the records that name an application beside its id (Entra ID's audit of app consent and registration)
NAMING_OPERATIONS = ("Consent to application.", "Add service principal.", "Add application.",
                     "Add service principal credentials.", "Update application.", "Add delegated permission grant.")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_id(value: str) -> bool:
    return bool(_GUID.fullmatch(value or ""))


@lru_cache(maxsize=1)
def first_party() -> dict[str, str]:
    """id (lower case) → name, for Microsoft's own applications."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "applications.csv")
    with open(path, encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {row["id"].strip().lower(): row["name"].strip() for row in rows}


def named_in(record: dict) -> dict[str, str]:
    """id → name an app consent or registration record gives: its targets hold the app's id and its name."""
    targets = record.get("Target")
    found = [t.get("ID") for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []
    found = [t for t in found if isinstance(t, str) and t.strip()]
    ids = [t for t in found if is_id(t)]
    names = [t for t in found if not is_id(t) and "@" not in t]
    if len(ids) == 1 and len(names) == 1:
        return {ids[0].lower(): names[0][:120]}
    return {}


def name_of(value: str, consented: dict[str, str]) -> str:
    """The name an application id goes by ("" for anything else)."""
    if not is_id(value):
        return ""
    key = value.lower()
    return consented.get(key) or first_party().get(key, "")
