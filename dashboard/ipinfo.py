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
import os
from dataclasses import dataclass
from functools import lru_cache

from eventstore import ip

log = logging.getLogger("dashboard.ipinfo")
MAX_NETWORKS_FILE = 10 * 1024 * 1024


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
    """"RO · AS64510 · Example Cloud Hosting": what is known, in that order (asn may be a missing number)."""
    number = f"AS{int(asn)}" if isinstance(asn, (int, float)) and asn == asn else ""
    return " · ".join(part for part in (country, number, owner) if part)


class NetworksFileError(ValueError):
    """The networks file cannot be read; the message says where and why."""


def read_networks(text: str, name: str = "networks file") -> list[tuple[tuple[bool, int, int], Place]]:
    """CSV with a header: network (address or CIDR), country, owner, and optionally asn, lat, lon."""
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    if "network" not in fields:
        raise NetworksFileError(f"The {name} needs a header row with at least: network, country, owner.")
    out = []
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        parsed = ip.parse_entry(row.get("network", ""))
        if parsed is None:
            raise NetworksFileError(f"The {name}, line {line}: {row.get('network', '')!r} is not an address or "
                                    "CIDR range.")
        try:
            asn = int(row["asn"].upper().removeprefix("AS")) if row.get("asn") else None
            lat = float(row["lat"]) if row.get("lat") else None
            lon = float(row["lon"]) if row.get("lon") else None
        except ValueError:
            raise NetworksFileError(f"The {name}, line {line}: asn, lat and lon must be numbers.") from None
        out.append((ip.span(parsed),
                    Place(row.get("country", "").upper()[:2], row.get("owner", "")[:120], asn, lat, lon, name)))
    out.sort(key=lambda item: item[0][2] - item[0][1])  # the narrowest network first
    return out


class IpInfo:
    def __init__(self, networks_file: str = "", databases: tuple[str, ...] = (), packaged: bool = True,
                 networks_text: str = ""):
        """`networks_text`: a networks file's content (the DEMO tenant's own), when there is no file. A source that
        cannot be read is left out and said in `problems`: enrichment helps, it is never a reason to stop."""
        self.problems: list[str] = []
        self.networks: list = read_networks(networks_text, "DEMO networks") if networks_text else []
        if networks_file:
            try:
                if os.path.getsize(networks_file) > MAX_NETWORKS_FILE:
                    raise NetworksFileError(f"The networks file {networks_file} is over 10 MB.")
                with open(networks_file, encoding="utf-8-sig") as f:
                    self.networks = read_networks(f.read(), os.path.basename(networks_file))
            except (NetworksFileError, OSError, UnicodeDecodeError) as error:
                self.problems.append(f"IP_NETWORKS_FILE is not used: {error}")
        self.readers = []
        for path in databases:
            import maxminddb
            from maxminddb.errors import InvalidDatabaseError

            try:
                self.readers.append((os.path.basename(path), maxminddb.open_database(path)))
            except (OSError, ValueError, InvalidDatabaseError) as error:
                self.problems.append(f"IP_DATABASES: {os.path.basename(path)} is not used ({type(error).__name__}: "
                                     "not a readable MaxMind database)")
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

    def _lookup(self, address: str) -> Place:
        listed = ip.most_specific(address, self.networks)
        if listed is not None:
            return listed
        v6, _ = ip.number(address)
        if v6 is None:
            return UNKNOWN
        found = Place()
        for name, reader in self.readers:
            record = reader.get(address) or {}
            country = (record.get("country") or record.get("registered_country") or {}).get("iso_code", "")
            location = record.get("location") or {}
            found = Place(found.country or country or "",
                          found.owner or record.get("autonomous_system_organization", "") or "",
                          found.asn or record.get("autonomous_system_number"),
                          found.lat if found.lat is not None else location.get("latitude"),
                          found.lon if found.lon is not None else location.get("longitude"),
                          found.source or (name if record else ""))
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
