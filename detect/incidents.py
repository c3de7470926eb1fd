"""Incidents: leads that belong to one attack, joined into one investigation.

Two leads join when they share an entity — an account, an address, an application, or what was acted on (a mailbox,
a new administrator, a forwarding address) — and are no more than `gap` apart. An entity too common to mean anything
does not join: what most of the tenant does (an office's address, a first-party application everyone signs in to,
a service account acting from everywhere) is decided from the data — the share of the tenant's other entities it
has succeeded with — not from a hand-kept list. Every join is explained.

Incremental, and the same as looking at everything at once: the incidents are the connected groups of joinable
leads, seeded with the groups already stored, so a lead never leaves its incident; what is everyday is judged per
day and remembered once the day's window has passed, and the joining goes on from the leads of those days, so a
synced batch costs a look at its own days. An incident's id is made from its first
lead and stays: when leads join two incidents, the older id is kept and the merge recorded. What the analyst
decides (status, owner, notes) is kept beside it with who and when."""
from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property

import pandas as pd

from eventstore import EventStore
from eventstore.model import parse_utc, utc_text

from .leads import Lead
from .rules import SEVERITIES, TACTICS, Tactic

KIND = "incident"
CASES = "incident-case"
STATUSES = ("new", "active", "closed: true positive", "closed: false positive", "closed: benign")
COMMON_SHARE = 0.10  # an address, app or target that this share of the tenant's active accounts succeeded with
COMMON_ADDRESSES = 0.50  # an account that succeeded from this share of the addresses in use (people roam office NATs)
COMMON_AT_LEAST = 5  # ... and at least this many
_KINDS = (("users", "account"), ("ips", "address"), ("apps", "application"), ("targets", "target"))


@dataclass
class Incident:
    """A group of leads, and what is worked out from them (severity, the tactic chain, who and where)."""

    id: str
    leads: list[Lead]  # in the order the attack ran (see in_order)
    joins: list[dict]  # {"lead", "entity", "at", "why"}: how each lead after the first came in
    merged: list[dict]  # {"id", "at"}: incidents merged into this one
    case: dict = field(default_factory=dict)  # {"status", "owner", "history": [{"at", "by", "status", "owner",
    #                                            "note"}]}
    tactics: dict[str, Tactic] = field(default_factory=lambda: TACTICS)

    @property
    def first_seen(self) -> str:
        return min(lead.first_seen for lead in self.leads)

    @property
    def last_seen(self) -> str:
        return max(lead.last_seen for lead in self.leads)

    @cached_property
    def chain(self) -> list[str]:
        """Its tactics, in the order the leads first show each."""
        return list(dict.fromkeys(lead.tactic for lead in self.leads if lead.tactic))

    @property
    def severity(self) -> str:
        """Its worst lead's, one step up when its chain spans three tactics or more."""
        worst = max(SEVERITIES.get(lead.severity, 0) for lead in self.leads)
        if len(self.chain) >= 3:
            worst = min(worst + 1, SEVERITIES["critical"])
        return next(name for name, rank in SEVERITIES.items() if rank == worst)

    @property
    def status(self) -> str:
        return self.case.get("status", "new")

    def entities(self, side: str) -> list[str]:
        """Every account ("users"), address ("ips"), application ("apps") or target ("targets") of its leads, those
        in most leads first."""
        counts: dict[str, int] = defaultdict(int)
        for lead in self.leads:
            for value in getattr(lead, side):
                counts[value] += 1
        return sorted(counts, key=lambda value: (-counts[value], value))

    @property
    def main(self) -> tuple[str, str]:
        """(the account, the address) the incident is most about."""
        users, ips = self.entities("users"), self.entities("ips")
        return (users[0] if users else ""), (ips[0] if ips else "")

    @property
    def title(self) -> str:
        """"Password spray → account takeover → … — Ben.Lauer@contoso.com, from 198.51.100.9, 03:12–04:04 UTC"."""
        steps = " → ".join(dict.fromkeys(lead.step or lead.title.lower() for lead in self.leads))
        user, ip = self.main
        first, last = parse_utc(self.first_seen), parse_utc(self.last_seen)
        span = f"{first:%Y-%m-%d %H:%M}–{last:%H:%M} UTC" if first.date() == last.date() else \
            f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
        who = ", ".join(part for part in (user, f"from {ip}" if ip else "", span) if part)
        return f"{steps[:1].upper()}{steps[1:]} — {who}"

    @property
    def events(self) -> int:
        return sum(lead.events for lead in self.leads)

    def line(self) -> dict:
        """What `python -m dashboard incidents --json` prints for this incident."""
        return {"id": self.id, "title": self.title, "severity": self.severity, "status": self.status,
                "owner": self.case.get("owner", ""), "first_seen": self.first_seen, "last_seen": self.last_seen,
                "users": self.entities("users"), "ips": self.entities("ips"), "apps": self.entities("apps"),
                "targets": self.entities("targets"), "leads": [lead.id for lead in self.leads],
                "rules": sorted({lead.rule for lead in self.leads}), "tactics": self.chain,
                "events": self.events, "summary": " · ".join(lead.summary for lead in self.leads),
                "merged": [m["id"] for m in self.merged]}


def in_order(leads: list[Lead]) -> list[Lead]:
    """Leads as the attack ran: by when each began, those of the same moment in the tactics' order."""
    order = {key: rank for rank, key in enumerate(TACTICS)}
    return sorted(leads, key=lambda lead: (lead.first_seen, order.get(lead.tactic, len(order)), lead.id))


class _Sweep:
    """Leads joined as they began. An earlier lead that ended more than the gap before this one began is out of
    reach of every later one too: each entity keeps only its leads still in reach (comparing with all of them made
    16 million comparisons at 20M events). Those are already one group unless a lead came in on a day the entity
    was everyday, without joining them: then the next lead joins each, else the first stands for all."""

    def __init__(self, gap: float):
        self.gap = gap
        self.in_reach: dict[tuple[str, str], list[tuple[float, int, Lead]]] = {}  # entity → (end, order, lead)
        self.apart: set[tuple[str, str]] = set()  # entities whose leads in reach may not all be one group
        self.found: dict[str, dict] = {}
        self.pairs: list[tuple[str, str]] = []

    def copy(self, began: float = float("-inf")) -> "_Sweep":
        """A copy to go on from, for leads that begin at `began` or later (what is out of their reach is left)."""
        other = _Sweep(self.gap)
        for key, near in self.in_reach.items():
            near = [entry for entry in near if entry[0] >= began - self.gap]
            if near:
                other.in_reach[key] = near
        other.apart = {key for key in self.apart if key in other.in_reach}
        other.found, other.pairs = dict(self.found), list(self.pairs)
        return other

    def step(self, order: int, lead: Lead, common: set) -> None:
        began, day, best = parse_utc(lead.first_seen).timestamp(), lead.first_seen[:10], None
        reach = began - self.gap
        mine = (parse_utc(lead.last_seen).timestamp(), order, lead)
        for side, word in _KINDS:
            for value in getattr(lead, side):
                key = (side, value)
                near = self.in_reach.get(key)
                if near is None:
                    self.in_reach[key] = [mine]
                    continue
                near = self.in_reach[key] = [entry for entry in near if entry[0] >= reach]
                if len(near) < 2:
                    self.apart.discard(key)
                if near and (side, value, day) in common:
                    self.apart.add(key)
                elif near:
                    # the first lead in reach; one shared through several entities: by the side's name
                    if best is None or (near[0][1], side) < best[:2]:
                        best = (near[0][1], side, near[0][2], value, word)
                    self.pairs.extend((lead.id, entry[2].id) for entry in (near if key in self.apart else near[:1]))
                    self.apart.discard(key)
                near.append(mine)
        if best is not None:
            _, _, other, value, word = best
            self.found[lead.id] = {"lead": lead.id, "with": other.id, "entity": value, "kind": word,
                                   "at": lead.first_seen,
                                   "why": f"joined by the {word} {value} at {lead.first_seen[11:16]} UTC — "
                                          f"{lead.title.lower()} after {other.title.lower()}"}


def incident_id(first_lead: str) -> str:
    return "INC-" + hashlib.sha1(first_lead.encode()).hexdigest()[:8].upper()


class Correlator:
    """Joins leads into incidents and keeps them (documents "incident") and their cases ("incident-case") in the
    store. `index` answers which entities are too common to join (see common_entities)."""

    def __init__(self, index, store: EventStore, gap: timedelta = timedelta(hours=24)):
        self.index, self.store, self.gap = index, store, gap
        self._judged: dict[tuple[str, str, str], bool] = {}  # (side, value, day) → everyday, for days whose
        #                                                       window has passed
        self._lock = threading.Lock()
        self._kept: tuple[list[tuple], _Sweep | None] = ([], None)  # the sweep as it stood before the first lead
        #                                                             whose day was not judged for good, and the
        #                                                             leads (as they were) it had taken

    # --- what is too common to mean anything -----------------------------------------------------
    def _settled(self) -> datetime | None:
        """The last UTC day whose window (the day ± the gap) the newest stored event has passed: what is judged of
        it, and of every day before it, is for good (None: nothing stored)."""
        newest = self.index.sql("SELECT max(ts) AS t FROM ev", [])["t"][0] if self.index is not None else None
        return None if newest is None or pd.isna(newest) else newest - timedelta(days=1) - self.gap

    def common_entities(self, leads: list[Lead], settled: datetime | None) -> set[tuple[str, str, str]]:
        """(side, value, day) for the leads' entities that are everyday on the UTC day a lead began, judged over that
        day ± the gap: an address, application or target that the share COMMON_SHARE of the accounts active then
        succeeded with; an account that succeeded from that share of the addresses (a tenant-wide service account).
        Failures do not count: a spray fails against many accounts. Judged per day, so that a new lead costs a look
        at its own days, not at every day a lead was ever found on; a day whose window has ended before the newest
        stored event is judged once and remembered."""
        if self.index is None or not leads:
            return set()
        wanted: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for lead in leads:
            day = lead.first_seen[:10]
            wanted[day].update((side, value) for side, _ in _KINDS for value in getattr(lead, side)
                               if (side, value, day) not in self._judged)
        wanted = {day: pairs for day, pairs in wanted.items() if pairs}
        found = self._judge(wanted, settled) if wanted else set()
        return found | {(side, value, day) for lead in leads for day in (lead.first_seen[:10],) for side, _ in _KINDS
                        for value in getattr(lead, side) if self._judged.get((side, value, day))}

    def _judge(self, wanted: dict[str, set[tuple[str, str]]], settled: datetime | None) -> set[tuple[str, str, str]]:
        days = [datetime.fromisoformat(day) for day in sorted(wanted)]
        windows = ("WITH d AS (SELECT unnest(?::TIMESTAMP[]) AS day), w AS (SELECT ev.*, d.day FROM ev JOIN d ON "
                   "ts >= d.day - to_microseconds(?) AND ts < d.day + to_microseconds(?) WHERE operation <> "
                   "'UserLoginFailed' AND lower(result_status) NOT IN ('failed', 'false', 'failure')) ")
        gap = int(self.gap.total_seconds() * 1e6)
        span = [days, gap, gap + 86_400_000_000]
        totals = {row.day.strftime("%Y-%m-%d"): (row.users, row.ips) for row in self.index.sql(
            windows + "SELECT day, count(DISTINCT user_id) AS users, count(DISTINCT client_ip) AS ips FROM w "
            "GROUP BY day", span).itertuples()}
        found: set[tuple[str, str, str]] = set()
        for side, column, other, share, of in (("ips", "client_ip", "user_id", COMMON_SHARE, 0),
                                               ("apps", "application", "user_id", COMMON_SHARE, 0),
                                               ("targets", "object_id", "user_id", COMMON_SHARE, 0),
                                               ("users", "user_id", "client_ip", COMMON_ADDRESSES, 1)):
            values = sorted({value for pairs in wanted.values() for s, value in pairs if s == side})
            if not values:
                continue
            frame = self.index.sql(windows + f"SELECT day, {column} AS v, count(DISTINCT {other}) AS n FROM w WHERE "
                                   f"{column} IN (SELECT unnest(?::VARCHAR[])) GROUP BY day, {column}", span + [values])
            for row in frame.itertuples():
                day = row.day.strftime("%Y-%m-%d")
                if row.n >= max(COMMON_AT_LEAST, share * totals.get(day, (0, 0))[of]):
                    found.add((side, row.v, day))
        for day, pairs in wanted.items():  # a day whose window is still filling is judged again next time
            if settled is not None and datetime.fromisoformat(day) <= settled:
                self._judged.update(((side, value, day), (side, value, day) in found) for side, value in pairs)
        return found

    # --- correlation ---------------------------------------------------------------------------
    def correlate(self, leads: list[Lead]) -> list[Incident]:
        """Every lead in an incident (a lead alone is an incident of one), the stored incidents kept whole, merges
        recorded; what changed is saved."""
        with self._lock:  # the dashboard's keeping-up thread and a page may ask at once
            return self._correlate(leads)

    def _correlate(self, leads: list[Lead]) -> list[Incident]:
        leads = in_order(leads)  # once: the joins, and every incident's leads, follow this order
        stored = {key: json.loads(payload) for key, payload in self.store.documents(KIND).items()}
        by_id = {lead.id: lead for lead in leads}
        parent = {lead.id: lead.id for lead in leads}

        def root(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: str, b: str) -> None:
            parent[root(a)] = root(b)

        for doc in stored.values():  # a lead never leaves its incident
            members = [lead for lead in doc["leads"] if lead in by_id]
            for lead in members[1:]:
                union(lead, members[0])
        joins, pairs = self._joins(leads)
        for a, b in pairs:
            union(a, b)
        groups: dict[str, list[Lead]] = defaultdict(list)
        for lead in leads:
            groups[root(lead.id)].append(lead)
        owner_of = {lead: key for key, doc in stored.items() for lead in doc["leads"]}
        cases = {key: json.loads(payload) for key, payload in self.store.documents(CASES).items()}
        incidents, changed, now = [], {}, utc_text(datetime.now(timezone.utc))
        for members in groups.values():
            earlier = sorted({owner_of[lead.id] for lead in members if lead.id in owner_of},
                             key=lambda key: (stored[key]["created"], key))
            key = earlier[0] if earlier else incident_id(members[0].id)
            doc = stored.get(key, {"id": key, "created": now, "leads": [], "merged": []})
            merged = doc["merged"] + [{"id": other, "at": now} for other in earlier[1:]
                                      if other not in {m["id"] for m in doc["merged"]}]
            ids = [lead.id for lead in members]
            if ids != doc["leads"] or merged != doc["merged"]:
                changed[key] = json.dumps({**doc, "leads": ids, "merged": merged})
            incidents.append(Incident(key, members, [joins[lead.id] for lead in members if lead.id in joins],
                                      merged, cases.get(key, {})))
        if changed and not getattr(self.store, "read_only", False):
            self.store.put_documents(KIND, changed)
        # open ones first, the most severe, then those that show more of an attack's stages, then the newest
        incidents.sort(key=lambda i: (i.status.startswith("closed"), -SEVERITIES.get(i.severity, 0), -len(i.chain),
                                      _desc(i.last_seen)))
        return incidents

    def _joins(self, leads: list[Lead]) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        """(for each lead that joins an earlier one: the first such lead in the attack's order, the entity they
        share and why; pairs of leads that join, enough to connect every lead with every lead it joins), for
        leads in the attack's order. The sweep over them is resumed where the last one could be kept: at the first
        lead whose day was not yet judged for good, if every lead before it is as it was then."""
        keys = [(lead.id, lead.first_seen, lead.last_seen, lead.title, *(tuple(getattr(lead, side))
                                                                          for side, _ in _KINDS)) for lead in leads]
        kept_keys, sweep = self._kept
        start = len(kept_keys) if keys[:len(kept_keys)] == kept_keys else 0
        sweep = sweep.copy() if start else _Sweep(self.gap.total_seconds())
        settled = self._settled()
        common = self.common_entities(leads[start:], settled)
        # the first lead whose day is not judged for good: the sweep as it stands before it is kept for next time
        keep_at = None if settled is None else next(
            (n for n in range(start, len(leads)) if datetime.fromisoformat(leads[n].first_seen[:10]) > settled), None)
        for order in range(start, len(leads)):
            if order == keep_at and (order > start or not start):
                # (for leads after the last one before it: whatever comes next begins no earlier than that one)
                last = parse_utc(leads[order - 1].first_seen).timestamp() if order else float("-inf")
                self._kept = (keys[:order], sweep.copy(last))
            sweep.step(order, leads[order], common)
        return sweep.found, sweep.pairs

    # --- the analyst's decision ----------------------------------------------------------------
    def decide(self, incident: str, who: str, status: str | None = None, owner: str | None = None,
               note: str = "") -> dict:
        """Set an incident's status and owner, or add a note; kept with who and when. Returns the case."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status is one of {', '.join(STATUSES)}")
        case = json.loads(self.store.documents(CASES).get(incident, "{}"))
        entry = {"at": utc_text(datetime.now(timezone.utc)), "by": who}
        if status is not None and status != case.get("status", "new"):
            case["status"] = entry["status"] = status
        if owner is not None and owner != case.get("owner", ""):
            case["owner"] = entry["owner"] = owner[:200]
        if note.strip():
            entry["note"] = note.strip()[:4000]
        if len(entry) > 2:
            case["history"] = case.get("history", []) + [entry]
            self.store.put_documents(CASES, {incident: json.dumps(case)})
        return case


def _desc(text: str) -> str:
    """Sorts newest first inside an ascending sort."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in text)


def as_document(incident: Incident) -> dict:
    """An incident whole, with its leads, as plain data (the report, the JSON line)."""
    return {**incident.line(), "joins": incident.joins, "leads": [asdict(lead) for lead in incident.leads],
            "case": incident.case}
