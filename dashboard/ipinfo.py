"""Where an address is and who owns its network, offline. Three sources, the first that knows an address wins:
the operator's own networks file (offices, VPN egress, partners: CSV network,country,owner[,lat,lon]), MaxMind
GeoLite2/GeoIP2 files the operator points at (Country or City, and ASN), and the database that installs with the
package geoip2fast (country and network owner, IPv4 and IPv6, from the registries' and MaxMind's data).
No address ever leaves the machine."""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from eventstore import ip
from ingest import redact

log = logging.getLogger("dashboard.ipinfo")
MAX_NETWORKS_FILE = 10 * 1024 * 1024
MAX_ASN = 2**32 - 1  # AS numbers are 32-bit
SAID_LINES = 5  # bad lines of a networks file named one by one; the rest counted
PROBES = ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111")  # addresses every real database knows


@dataclass(frozen=True)
class Place:
    country: str = ""  # ISO 3166 alpha-2, "" when unknown
    owner: str = ""  # the network's owner (AS name), "" when unknown
    asn: int | None = None
    lat: float | None = None  # only when a source knows coordinates (a networks file, a City database)
    lon: float | None = None
    source: str = ""  # which source answered



UNKNOWN = Place()


def place_text(country: str, owner: str, asn=None) -> str:
    """"RO · AS64510 · Example Cloud Hosting": what is known, in that order (asn may be missing: None, NaN, NA)."""
    try:
        number = f"AS{int(asn)}" if asn is not None and not pd.isna(asn) and int(asn) > 0 else ""
    except (TypeError, ValueError):
        number = ""
    return " · ".join(part for part in (country or "", number, owner or "") if part)


class NetworksFileError(ValueError):
    """The networks file cannot be read; the message says where and why."""


def _asn(value) -> int | None:
    """An AS number ("64510", "AS64510", or a database's integer) within 32 bits; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"(?i)(AS)?\d{1,10}", value.strip()):
        number = int(value.strip().upper().removeprefix("AS"))
    else:
        return None
    return number if 0 < number <= MAX_ASN else None


def _degrees(value, limit: float) -> float | None:
    """A latitude (limit 90) or longitude (limit 180), finite and in range; None for anything else."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and -limit <= number <= limit else None


def _country(value) -> str:
    return value.upper() if isinstance(value, str) and re.fullmatch(r"[A-Za-z]{2}", value) else ""


def read_networks(text: str, name: str = "networks file") -> tuple[list[tuple[tuple[bool, int, int], Place]],
                                                                   list[str]]:
    """CSV with a header: network (address or CIDR), country, owner, and optionally asn, lat, lon → (the networks,
    what was wrong with the lines left out: file and line, in words). Raises NetworksFileError when it is not such a
    file at all."""
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    if "network" not in fields:
        raise NetworksFileError(f"The {name} needs a header row with at least: network, country, owner.")
    out, bad = [], []
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
        parsed = ip.parse_entry(row.get("network", ""))
        asn, lat, lon = _asn(row.get("asn", "")), _degrees(row.get("lat", ""), 90), _degrees(row.get("lon", ""), 180)
        wrong = [why for why, failed in (
            (f"{redact.short(row.get('network', ''), 60)!r} is not an address or CIDR range", parsed is None),
            ("country must be a two-letter code (ISO 3166)", row.get("country") and not _country(row["country"])),
            (f"asn must be a number from 1 to {MAX_ASN:,}", row.get("asn") and asn is None),
            ("lat must be a number from -90 to 90", row.get("lat") and lat is None),
            ("lon must be a number from -180 to 180", row.get("lon") and lon is None)) if failed]
        if wrong:
            bad.append(f"{name}, line {line}: {'; '.join(wrong)}")
            continue
        out.append((ip.span(parsed), Place(_country(row.get("country", "")), row.get("owner", "")[:120], asn, lat,
                                           lon, name)))
    out.sort(key=lambda item: item[0][2] - item[0][1])  # the narrowest network first
    return out, bad


def _place_in(record, source: str) -> Place | None:
    """What a MaxMind record (Country, City or ASN) says, each field checked; None for a record that is not a map."""
    if not isinstance(record, dict):
        return None

    def part(name: str) -> dict:
        value = record.get(name)
        return value if isinstance(value, dict) else {}

    owner = record.get("autonomous_system_organization")
    return Place(_country(part("country").get("iso_code") or part("registered_country").get("iso_code")),
                 owner[:120] if isinstance(owner, str) else "", _asn(record.get("autonomous_system_number")),
                 _degrees(part("location").get("latitude"), 90), _degrees(part("location").get("longitude"), 180),
                 source)


class IpInfo:
    def __init__(self, networks_file: str = "", databases: tuple[str, ...] = (), packaged: bool = True,
                 networks_text: str = ""):
        """`networks_text`: a networks file's content (the DEMO tenant's own), when there is no file. A source that
        cannot be read is left out and said in `problems`: enrichment helps, it is never a reason to stop."""
        self.problems: list[str] = []
        self.networks: list = read_networks(networks_text, "DEMO networks")[0] if networks_text else []
        if networks_file:
            try:
                if os.path.getsize(networks_file) > MAX_NETWORKS_FILE:
                    raise NetworksFileError(f"The networks file {networks_file} is over 10 MB.")
                with open(networks_file, encoding="utf-8-sig") as f:
                    self.networks, bad = read_networks(f.read(), os.path.basename(networks_file))
            except (NetworksFileError, OSError, UnicodeDecodeError) as error:
                self.problems.append(f"IP_NETWORKS_FILE is not used: {error}")
            else:
                self.problems += [f"IP_NETWORKS_FILE: {why}: the line is left out" for why in bad[:SAID_LINES]]
                if len(bad) > SAID_LINES:
                    self.problems.append(f"IP_NETWORKS_FILE: {len(bad) - SAID_LINES} more line(s) are left out")
        self.readers = []
        for path in databases:
            import maxminddb
            from maxminddb.errors import InvalidDatabaseError

            name = os.path.basename(path)
            try:
                reader = maxminddb.open_database(path)
                probed = [self._get(reader, address) for address in PROBES]
            except (OSError, ValueError, InvalidDatabaseError) as error:
                self.problems.append(f"IP_DATABASES: {name} is not used ({type(error).__name__}: not a readable "
                                     "MaxMind database)")
                continue
            if any(record is not None and not isinstance(record, dict) for record in probed):
                self.problems.append(f"IP_DATABASES: {name} is not used: its records are not MaxMind Country, City "
                                     "or ASN records")
                continue
            self.readers.append((name, reader))
        self.packaged = None
        if packaged:
            try:
                from geoip2fast import GeoIP2Fast

                self.packaged = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)
            except Exception as error:  # noqa: BLE001 - enrichment is a help, never a reason to stop
                self.problems.append(f"the packaged IP database could not be loaded ({type(error).__name__})")
        for problem in self.problems:
            log.warning("%s", problem)
        self.lookup = lru_cache(maxsize=200_000)(self._lookup)

    def signature(self) -> str:
        """What answered, so that an index enriched by other sources is enriched again."""
        parts = [f"networks:{hashlib.sha1(repr(self.networks).encode()).hexdigest()[:12]}"]
        parts += [f"{name}:{reader.metadata().build_epoch}" for name, reader in self.readers]
        parts.append("geoip2fast" if self.packaged else "")
        return "|".join(parts)

    @staticmethod
    def _get(reader, address: str, v6: bool | None = None):
        """The database's record for an address; None where it has none or cannot answer (an IPv6 address in an
        IPv4-only database, a record that cannot be decoded)."""
        from maxminddb.errors import InvalidDatabaseError

        if (":" in address if v6 is None else v6) and reader.metadata().ip_version == 4:
            return None
        try:
            return reader.get(address)
        except (ValueError, TypeError, InvalidDatabaseError):
            return None

    def _lookup(self, address: str) -> Place:
        listed = ip.most_specific(address, self.networks)
        if listed is not None:
            return listed
        v6, _ = ip.number(address)
        if v6 is None:
            return UNKNOWN
        found = Place()
        for name, reader in self.readers:
            said = _place_in(self._get(reader, address, v6), name)
            if said is None or said == Place(source=name):
                continue  # nothing known, or a record that cannot be read: left out for this address
            found = Place(found.country or said.country, found.owner or said.owner, found.asn or said.asn,
                          found.lat if found.lat is not None else said.lat,
                          found.lon if found.lon is not None else said.lon, found.source or name)
        if (not found.country or not found.owner) and self.packaged is not None:
            answer = self.packaged.lookup(address)
            country = answer.country_code if (answer.country_code or "").isalpha() else ""
            owner = "private network" if answer.is_private else \
                answer.asn_name if answer.asn_name and "<" not in answer.asn_name else ""
            found = Place(found.country or country, found.owner or owner, found.asn, found.lat, found.lon,
                          found.source or ("geoip2fast" if country or owner else ""))
        return found


def ip_sources(settings) -> IpInfo:
    """The sources the settings name; the DEMO tenant's own networks when it stands in for a tenant."""
    from simulator.tenant import NETWORKS

    return IpInfo(settings.ip_networks_file, settings.ip_databases, networks_text=NETWORKS if settings.demo else "")
