"""Watch-list files (adminlist.csv and the like) → a validated list of accounts and IP addresses/ranges.
Pure: bytes in, a WatchList or one clear WatchListError out; a bad file changes nothing."""
from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass

from eventstore import ip

MAX_BYTES = 1_000_000
MAX_COLUMNS = 50
MAX_ENTRIES = 10_000
MAX_ENTRY_LENGTH = 320  # the longest an e-mail address can be
ACCOUNT_HEADERS = {"userid", "user", "upn", "userprincipalname", "email", "mail", "account", "accounts", "username"}
IP_HEADERS = {"ip", "clientip", "ipaddress", "address", "cidr", "network", "clientipaddress", "actoripaddress"}


class WatchListError(ValueError):
    """Why a file was refused, in words an analyst can act on."""


@dataclass(frozen=True)
class WatchList:
    name: str
    accounts: tuple[str, ...]
    networks: tuple[str, ...]  # single addresses and CIDR ranges, normalized
    changed_by: str = ""  # who last saved it, and when (UTC text)
    changed_at: str = ""

    @property
    def size(self) -> int:
        return len(self.accounts) + len(self.networks)

    def to_json(self) -> str:
        return json.dumps({"accounts": list(self.accounts), "networks": list(self.networks),
                           "changed_by": self.changed_by, "changed_at": self.changed_at})

    @classmethod
    def from_json(cls, name: str, payload: str) -> "WatchList":
        data = json.loads(payload)
        return cls(name, tuple(data.get("accounts", ())), tuple(data.get("networks", ())),
                   str(data.get("changed_by", "")), str(data.get("changed_at", "")))


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16")  # Excel's "Unicode text"
        except UnicodeDecodeError:
            raise WatchListError("This file starts like UTF-16 text (Excel's 'Unicode Text') but is not valid "
                                 "UTF-16. Save it again, or as 'CSV UTF-8 (comma delimited)'.") from None
    if b"\x00" in data:
        raise WatchListError("This file looks binary (it has NUL bytes). Upload a CSV text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WatchListError("This file is not UTF-8 text. In Excel, save it as 'CSV UTF-8 (comma delimited)'.") \
            from None


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LOOKS_LIKE_AN_ADDRESS = re.compile(r"[0-9a-fA-F.:/\[\]%]+")
_HEADER = re.compile(r"[A-Za-z][A-Za-z _()-]*")  # a column title such as "admins" or "Suspect IPs"


def _account(value: str) -> str | None:
    """An account as audit records name it: a UPN or e-mail address (user@domain, guests' #EXT# ones too), an
    object or app GUID, a SID, or DOMAIN\\user. None for anything else."""
    local, at, domain = value.rpartition("@")
    if at and local and domain and not any(ch.isspace() for ch in value):
        return value
    if _GUID.fullmatch(value) or value.upper().startswith("S-1-") or ("\\" in value and not value.endswith("\\")):
        return value
    return None


def _pick_columns(header: list[str]) -> tuple[list[int], list[int]] | None:
    names = [h.strip().lower().replace(" ", "").replace("_", "") for h in header]
    accounts = [i for i, n in enumerate(names) if n in ACCOUNT_HEADERS]
    ips = [i for i, n in enumerate(names) if n in IP_HEADERS]
    return (accounts, ips) if accounts or ips else None


def _rows(text: str) -> list[list[str]]:
    first_line = text.lstrip().splitlines()[0]
    delimiter = max("\t;,", key=lambda d: (first_line.count(d), d == ","))  # tab: Excel's "Unicode Text"
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row)]
    except csv.Error as error:  # e.g. a field of over 128 KiB
        raise WatchListError(f"This file cannot be read as CSV ({error}). A watch-list holds short values: "
                             "accounts and IP addresses.") from None
    if not rows:
        raise WatchListError("No accounts or IP addresses were found in this file (it holds only separators).")
    if max(len(row) for row in rows) > MAX_COLUMNS:
        raise WatchListError(f"This file has more than {MAX_COLUMNS} columns. A watch-list needs one column of "
                             "accounts or IPs (or columns named UserId/UPN/Email and IP/ClientIP).")
    return rows


def check_name(name: str) -> str:
    """A watch-list's name, stripped; WatchListError when it is empty or too long to show."""
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise WatchListError("Give the watch-list a name of 1 to 80 characters.")
    return name


def parse_watchlist(name: str, data: bytes) -> WatchList:
    name = check_name(name)
    if len(data) > MAX_BYTES:
        raise WatchListError(f"This file is {len(data):,} bytes; a watch-list may be at most {MAX_BYTES:,}.")
    text = _decode(data)
    if not text.strip():
        raise WatchListError("This file is empty.")
    rows = _rows(text)
    picked = _pick_columns(rows[0])
    if picked:
        account_columns, ip_columns = picked
        body, first_row = rows[1:], 2
    elif max(len(row) for row in rows) == 1 or all(len([c for c in row if c.strip()]) <= 1 for row in rows):
        account_columns, ip_columns = [], []  # one column: each value speaks for itself
        body, first_row = rows, 1
        first = next(c.strip() for c in rows[0] if c.strip())
        if _HEADER.fullmatch(first) and _account(first) is None and len(rows) > 1:
            body, first_row = rows[1:], 2  # a header such as "admins"
    else:
        raise WatchListError("Could not tell which column holds the accounts or IPs: name the column UserId, UPN, "
                             "Email, IP or ClientIP, or upload a file with a single column.")

    accounts, networks = [], []
    for number, row in enumerate(body, first_row):
        columns = (account_columns + ip_columns) or range(len(row))
        for index in columns:
            if index >= len(row) or not row[index].strip():
                continue
            value = row[index].strip()
            if value[0] in "=+-@":
                raise WatchListError(f"Row {number} holds a spreadsheet formula ({value[:40]!r}). Watch-lists take "
                                     "plain values only; remove formulas and upload again.")
            if len(value) > MAX_ENTRY_LENGTH:
                raise WatchListError(f"Row {number} has a value of {len(value)} characters; the longest account "
                                     f"or address is {MAX_ENTRY_LENGTH}.")
            network = ip.parse_entry(value) if index not in account_columns else None
            if network is not None:
                networks.append(network)
            elif index in ip_columns or (not account_columns and _LOOKS_LIKE_AN_ADDRESS.fullmatch(value)):
                raise WatchListError(f"Row {number}: {value[:60]!r} is not an IP address or CIDR range "
                                     "(e.g. 198.51.100.9, 198.51.100.0/24, 2001:db8::/32).")
            elif _account(value) is not None:
                accounts.append(value)
            else:
                raise WatchListError(f"Row {number}: {value[:60]!r} is neither an account (user@domain, an object "
                                     "GUID, a SID or DOMAIN\\user) nor an IP address or CIDR range.")
    accounts, networks = list(dict.fromkeys(accounts)), list(dict.fromkeys(networks))
    if not accounts and not networks:
        raise WatchListError("No accounts or IP addresses were found in this file.")
    if len(accounts) + len(networks) > MAX_ENTRIES:
        raise WatchListError(f"This file lists {len(accounts) + len(networks):,} entries; the limit is "
                             f"{MAX_ENTRIES:,}.")
    return WatchList(name, tuple(accounts), tuple(networks))
