"""Leads: the rules in rules.py, run over the index as events arrive. The index says which span of event times it
gained since the last run (`take_changed_span`); each rule looks again only at the buckets that span touches
(plus the history it compares with), so a sync of five minutes costs five minutes of events, not the whole store.
A lead's id is fixed by its rule, its key and its bucket, so looking again updates it instead of adding another.
Leads and the analyst's review marks are kept in the store (documents "lead" and "lead-review")."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pandas as pd

from eventstore import EventStore

from eventstore.entities import KINDS
from ingest.normalize import domain_of, named_values

from .countries import nearest_km
from .rules import RULES, SEVERITIES, Detail, Rule

log = logging.getLogger("detect.leads")
CANDIDATES_AT_ONCE = 20_000  # events a rule with `details` reads the original records of at once
READ_AT_MOST = 200_000  # records' detail fields kept for the other rules of a look (a few hundred bytes each)


@dataclass
class Lead:
    id: str
    rule: str
    severity: str
    title: str
    summary: str
    first_seen: str  # UTC, "YYYY-MM-DDTHH:MM:SSZ"
    last_seen: str
    users: list[str]  # every account it is about (a spray's: each account it targeted)
    ips: list[str]
    events: int
    view: dict  # the Explore view (URL parameters) of exactly its events
    reviewed: dict = field(default_factory=dict)  # {"by", "at", "note"} once marked
    tactic: str = ""  # the MITRE ATT&CK tactic its rule is evidence of (a key of rules.TACTICS)
    step: str = ""  # what it found, in a few words
    targets: list[str] = field(default_factory=list)  # what was acted on: a mailbox, a new admin, a forwarding address
    apps: list[str] = field(default_factory=list)  # applications it involves (their ids)

    def line(self) -> dict:
        """What `python -m dashboard leads --json` prints for this lead."""
        return {"rule": self.rule, "severity": self.severity, "tactic": self.tactic, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "users": self.users, "ips": self.ips, "targets": self.targets,
                "apps": self.apps, "events": self.events, "summary": self.summary, "id": self.id,
                "reviewed": bool(self.reviewed)}


def _text(moment) -> str:
    return pd.Timestamp(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(first, last) -> str:
    a, b = pd.Timestamp(first), pd.Timestamp(last)
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M}–{b:%H:%M} UTC"
    return f"{a:%Y-%m-%d %H:%M} – {b:%Y-%m-%d %H:%M} UTC"


def _few(values, n: int = 3) -> str:
    values = list(values)
    return ", ".join(values[:n]) + (f" and {len(values) - n} more" if len(values) > n else "")


def holds(detail: Detail, record: dict) -> bool:
    """Whether the original record meets the detail (see rules.Detail)."""
    actor = domain_of(str(record.get("UserId", "")))
    for value in named_values(record, detail.field, detail.name):
        if not value:
            continue
        if detail.values and value.casefold() not in {v.casefold() for v in detail.values}:
            continue
        if detail.external:
            parts = re.split(r"[;,\s]+", value)
            domains = {domain_of(part.removeprefix("smtp:").removeprefix("SMTP:")) for part in parts}
            if not any(d and d != actor and not d.endswith("." + actor) for d in domains):
                continue
        return True
    return False


class LeadEngine:
    def __init__(self, index, store: EventStore, rules: tuple[Rule, ...] = RULES):
        self.index, self.store, self.rules = index, store, rules
        self._lock = threading.Lock()
        self.stopped = threading.Event()  # set when the dashboard lets go of this engine
        self.signature = hashlib.sha1(repr(rules).encode()).hexdigest()[:12]
        self._unsaved: dict[str, str] = {}  # with a read-only store (a read-only Cosmos DB key): kept here
        self._decoded: dict[str, tuple[str, Lead]] = {}  # key → (its stored text, the lead it says): read once
        self._looked = False  # a look over everything was done in this process (for a store that cannot say so)
        self.looking: tuple[int, int, str] | None = None  # while a look goes on: detections done, of all, the span
        self._fields = {"UserId"} | {detail.field for rule in rules for detail in rule.details}
        self._read: dict[int, dict | None] = {}  # position → what _records read there, for the rest of a look

    # --- keeping up -------------------------------------------------------------------------
    def update(self, wait: float = -1) -> int | None:
        """Look again where the index gained events; everywhere when the rules changed. Returns leads written, or
        None when another thread is looking and did not finish within `wait` seconds (-1: wait for it)."""
        if not self._lock.acquire(timeout=wait):
            return None
        try:
            return self._update()
        finally:
            self.looking = None
            self._lock.release()

    def _update(self) -> int:
        span = self.index.take_changed_span()
        if not self._looked and self.store.get_meta("leads.rules") != self.signature:
            whole = self.index.sql("SELECT min(ts) AS a, max(ts) AS b FROM ev", [])
            span = None if pd.isna(whole["a"][0]) else (whole["a"][0].to_pydatetime(),
                                                        whole["b"][0].to_pydatetime())
        if span is None:
            return 0
        found: dict[str, Lead] = {}
        days = (span[1] - span[0]).total_seconds() / 86400
        what = f"{days:.0f} days of events" if days >= 2 else "the new events"
        for done, rule in enumerate(self.rules):
            self.looking = (done, len(self.rules), what)
            try:
                for lead in getattr(self, f"_{rule.shape}")(rule, *span):
                    found[lead.id] = lead
            except Exception:  # noqa: BLE001 - one broken rule must not stop the others
                log.exception("the rule %s failed; the others ran", rule.name)
        self.looking, self._read = None, {}
        documents = {k: json.dumps(asdict(v), default=str) for k, v in found.items()}
        if getattr(self.store, "read_only", False):
            self._unsaved.update(documents)
        else:
            if documents:
                self.store.put_documents("lead", documents)
            self.store.set_meta("leads.rules", self.signature)
        self._looked = True
        return len(found)

    def leads(self) -> list[Lead]:
        """Every lead of the current rules, most severe and newest first, with its review mark."""
        names = {rule.name for rule in self.rules}
        reviews = {k: json.loads(v) for k, v in self.store.documents("lead-review").items()}
        out, decoded = [], {}
        for key, payload in {**self.store.documents("lead"), **self._unsaved}.items():
            known = self._decoded.get(key)
            lead = known[1] if known is not None and known[0] == payload else Lead(**json.loads(payload))
            decoded[key] = (payload, lead)
            if lead.rule in names:
                out.append(replace(lead, reviewed=reviews.get(key, {})))  # a copy: each caller's own
        self._decoded = decoded  # 8,000 leads at 20M events: decoding them all took 0.4 s on every call
        out.sort(key=lambda lead: lead.last_seen, reverse=True)
        out.sort(key=lambda lead: -SEVERITIES.get(lead.severity, 0))
        return out

    def review(self, lead_id: str, who: str, note: str, reviewed: bool = True) -> None:
        mark = {"by": who, "at": _text(datetime.now(timezone.utc)), "note": note[:2000]} if reviewed else {}
        self.store.put_documents("lead-review", {lead_id: json.dumps(mark)})

    # --- the shapes -------------------------------------------------------------------------
    def _lead(self, rule: Rule, key: str, bucket, first, last, users, ips, events: int, summary: str,
              view: dict, targets=(), apps=(), view_from=None) -> Lead:
        """`view_from`: where its events begin, when that is before the moment it is about (`first`)."""
        ident = hashlib.sha1(f"{rule.name}\n{key}\n{_text(bucket)}".encode()).hexdigest()[:16]
        start = pd.Timestamp(first if view_from is None else view_from).to_pydatetime().replace(
            second=0, microsecond=0, tzinfo=None)
        end = pd.Timestamp(last).to_pydatetime().replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        view = {**view, "period": "custom", "start": start.isoformat(timespec="minutes"),
                "end": end.isoformat(timespec="minutes"), "relationship": _RELATIONSHIP[rule.by]}
        return Lead(ident, rule.name, rule.severity, rule.title, rule.title + summary, _text(first),
                    _text(last), sorted({u for u in users if u}), sorted({i for i in ips if i}), int(events), view,
                    tactic=rule.tactic, step=rule.step, targets=sorted({t for t in targets if t}),
                    apps=sorted({a for a in apps if a}))

    @staticmethod
    def _range(rule: Rule, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """Whole buckets around the changed span."""
        seconds = rule.window.total_seconds()
        floor = datetime.fromtimestamp(start.replace(tzinfo=timezone.utc).timestamp() // seconds * seconds,
                                       timezone.utc).replace(tzinfo=None)
        return floor, end.replace(tzinfo=None) + rule.window

    @staticmethod
    def _days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The whole UTC days of the changed span, for shapes whose lead is a person's day: looking at the span
        alone, a later sync's part of a day wrote that day's lead again without what came before it."""
        return start.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0), \
            end.replace(tzinfo=None) + timedelta(seconds=1)

    def _burst(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        low, high = self._range(rule, start, end)
        key = KINDS[rule.by].column
        distinct_kind, at_least_distinct = rule.distinct or ("ip", 1)
        other = KINDS[distinct_kind].column
        frame = self.index.sql(
            f"SELECT {key} AS key, time_bucket(to_seconds(?), ts) AS bucket, count(*) AS n, min(ts) AS first, "
            f"max(ts) AS last, count(DISTINCT {other}) AS d, list(DISTINCT user_id) AS users, "
            f"list(DISTINCT client_ip) AS ips FROM ev WHERE ts >= ? AND ts < ? AND operation IN "
            f"(SELECT unnest(?::VARCHAR[])) AND {key} <> '' GROUP BY ALL HAVING count(*) >= ? AND d >= ?",
            [int(rule.window.total_seconds()), low, high, list(rule.operations), rule.at_least, at_least_distinct])
        leads = []
        for row in frame.itertuples():
            if rule.by == "ip":
                summary = f" from {row.key} against {row.d:,} accounts, {_span(row.first, row.last)}"
                view = {"ip": row.key, "operation": list(rule.operations)}
                if rule.then:  # and whether it worked
                    won = self.index.sql(
                        "SELECT DISTINCT user_id FROM ev WHERE client_ip = ? AND ts >= ? AND ts <= ? AND operation IN "
                        "(SELECT unnest(?::VARCHAR[])) AND user_id <> ''",
                        [row.key, row.first, row.last + rule.window, list(rule.then)])["user_id"].tolist()
                    summary += f" — {len(won)} succeeded ({_few(sorted(won))})" if won else " — none succeeded"
            else:
                summary = (f" on {row.key}: {row.n:,} failures from {len(row.ips):,} address(es), "
                           f"{_span(row.first, row.last)}")
                view = {"user": row.key, "operation": list(rule.operations)}
            leads.append(self._lead(rule, row.key, row.bucket, row.first, row.last, row.users, row.ips, row.n,
                                    summary, view))
        return leads

    def _after_failures(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        low, high = self._range(rule, start, end)
        frame = self.index.sql(
            "WITH f AS (SELECT client_ip, time_bucket(to_seconds(?), ts) AS bucket, count(*) AS n, min(ts) AS first, "
            "max(ts) AS last FROM ev WHERE ts >= ? AND ts < ? AND operation IN (SELECT unnest(?::VARCHAR[])) "
            "AND client_ip <> '' GROUP BY ALL HAVING count(*) >= ?) "
            "SELECT f.client_ip AS key, f.bucket, any_value(f.n) AS failures, count(*) AS successes, "
            "any_value(f.first) AS first, max(e.ts) AS last, list(DISTINCT e.user_id) AS users FROM f JOIN ev e "
            "ON e.client_ip = f.client_ip AND e.ts >= f.first AND e.ts <= f.last + to_seconds(?) "
            "WHERE e.ts >= ? AND e.ts < ? AND e.operation IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
            [int(rule.window.total_seconds()), low, high, list(rule.operations), rule.at_least,
             int(rule.window.total_seconds()), low, high + rule.window, list(rule.then)])
        return [self._lead(rule, row.key, row.bucket, row.first, row.last, row.users, [row.key],
                           row.failures + row.successes,
                           f": {_few(row.users)} signed in from {row.key} after {row.failures:,} failures from it, "
                           f"{_span(row.first, row.last)}",
                           {"ip": row.key, "operation": list(rule.operations + rule.then)})
                for row in frame.itertuples()]

    def _each(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        low, high = self._range(rule, start, end)
        key = KINDS[rule.by].column
        kept, after = [], (low, -1)
        while True:  # a chunk at a time: the original records of a busy tenant's months do not fit in memory
            chunk = self.index.sql(
                f"SELECT seq, ts, {key} AS key, user_id, client_ip, operation, object_id, application FROM ev WHERE "
                f"(ts > ? OR ts = ? AND seq > ?) AND ts < ? AND operation IN (SELECT unnest(?::VARCHAR[])) AND "
                f"{key} <> '' ORDER BY ts, seq LIMIT ?",
                [after[0], after[0], after[1], high, list(rule.operations), CANDIDATES_AT_ONCE])
            if chunk.empty:
                break
            after = (chunk["ts"].iloc[-1].to_pydatetime(), int(chunk["seq"].iloc[-1]))
            kept.append(self._said(rule, chunk))
            if len(chunk) < CANDIDATES_AT_ONCE:
                break
        frame = pd.concat(kept) if kept else pd.DataFrame()
        if frame.empty:
            return []
        leads = []
        for (value, day), group in frame.groupby(["key", frame["ts"].dt.floor("D")]):
            operations = sorted(set(group["operation"]))
            actors = sorted(set(group["user_id"]) - {""})
            if rule.by == "object":
                summary = (f": {value}, by {_few(actors)} ({', '.join(operations)}), "
                           f"{_span(group.ts.min(), group.ts.max())}")
                view = {"text": value, "operation": list(rule.operations)}
            else:
                summary = (f" by {value}: {', '.join(operations)} ×{len(group):,}, "
                           f"{_span(group.ts.min(), group.ts.max())}")
                view = {"user": value, "operation": list(rule.operations)}
            named = actors + ([value] if rule.by == "user" or "@" in value else [])  # a target account too
            targets = set(group["object_id"]) | {v for said in group["said"] for v in said}
            leads.append(self._lead(rule, value, day, group.ts.min(), group.ts.max(), named, set(group["client_ip"]),
                                    len(group), summary, view, targets, set(group["application"])))
        return leads

    def _said(self, rule: Rule, frame: pd.DataFrame) -> pd.DataFrame:
        """The events whose original records hold what the rule's details ask for, with what they said (a
        forwarding address, a role); every event when the rule has no details."""
        frame = frame.assign(said=[()] * len(frame))
        if not rule.details:
            return frame
        records = self._records([int(seq) for seq in frame["seq"]])
        frame["said"] = [tuple(v for d in rule.details if record is not None and holds(d, record)
                               for v in named_values(record, d.field, d.name) if "@" in v)
                         for record in records]
        return frame[[record is not None and any(holds(d, record) for d in rule.details) for record in records]]

    def _records(self, positions: list[int]) -> list[dict | None]:
        """What the rules' details read of the original records at these positions (the actor, and the fields the
        details name), in order; None where a record is gone or unreadable. Kept for the rest of the look: rules
        over the same operations (the inbox rules) read the same records, and reading a record out of its
        compressed block is what these rules cost."""
        wanted = [p for p in positions if p not in self._read]
        texts = self.store.records_at(wanted)
        if len(self._read) + len(wanted) > READ_AT_MOST:
            self._read = {p: self._read[p] for p in positions if p in self._read}
        for position in wanted:
            try:
                record = json.loads(texts[position]) if position in texts else None  # (gone: pruned meanwhile)
            except ValueError:
                record = None
            self._read[position] = {k: record[k] for k in self._fields if k in record} if isinstance(record, dict) \
                else None
        return [self._read.get(p) for p in positions]

    def _baseline(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        day = timedelta(days=1)
        low = datetime.combine(start.date(), datetime.min.time())
        frame = self.index.sql(
            "WITH d AS (SELECT user_id AS key, date_trunc('day', ts) AS day, count(*) AS n, min(ts) AS first, "
            "max(ts) AS last, list(DISTINCT client_ip) AS ips FROM ev WHERE ts >= ? AND ts < ? AND operation IN "
            "(SELECT unnest(?::VARCHAR[])) AND user_id <> '' GROUP BY ALL) "
            "SELECT a.*, coalesce((SELECT sum(b.n) FROM d b WHERE b.key = a.key AND b.day < a.day AND "
            "b.day >= a.day - to_days(?)), 0) / ? AS usual FROM d a WHERE a.day >= ? AND a.n >= ?",
            [low - rule.history, end.replace(tzinfo=None) + day, list(rule.operations), rule.history.days,
             float(rule.history.days), low, rule.at_least])
        frame = frame[frame["n"] >= rule.factor * frame["usual"]]
        leads = []
        for row in frame.itertuples():
            # it begins where the day's count passed what would have been usual, not at the day's first event
            crossing = max(rule.at_least, math.ceil(rule.factor * row.usual))
            began = self.index.sql(
                "SELECT ts FROM ev WHERE user_id = ? AND ts >= ? AND ts <= ? AND operation IN "
                "(SELECT unnest(?::VARCHAR[])) ORDER BY ts LIMIT 1 OFFSET ?",
                [row.key, row.first, row.last, list(rule.operations), crossing - 1])["ts"]
            first = began[0] if len(began) else row.first
            leads.append(self._lead(rule, row.key, row.day, first, row.last, [row.key], row.ips, row.n,
                                    f": {row.key}, {row.n:,} in a day (usual: {row.usual:.1f} a day), past the "
                                    f"usual from {pd.Timestamp(first):%H:%M}, {_span(row.first, row.last)}",
                                    {"user": row.key, "operation": list(rule.operations)}, view_from=row.first))
        return leads

    @staticmethod
    def _signins(where: str) -> str:
        """Sign-ins with where their address is; parameters: from, to, operations, then those of `where`."""
        return ("SELECT e.user_id, e.ts, e.client_ip, p.country, p.owner, p.lat, p.lon FROM ev e JOIN places p "
                "USING (client_ip) WHERE e.ts >= ? AND e.ts < ? AND e.operation IN (SELECT unnest(?::VARCHAR[])) "
                f"AND e.user_id <> '' AND {where}")

    def _new_country(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        low, high = start.replace(tzinfo=None), end.replace(tzinfo=None) + timedelta(seconds=1)
        frame = self.index.sql(
            "WITH s AS (" + self._signins("p.country <> ''") + "), "
            "firsts AS (SELECT user_id, country, min(ts) AS first, arg_min(client_ip, ts) AS ip FROM s GROUP BY ALL), "
            "began AS (SELECT user_id, min(ts) AS began FROM s GROUP BY ALL) "
            "SELECT f.* FROM firsts f JOIN began b USING (user_id) WHERE f.first >= ? AND f.first < ? "
            "AND f.first >= b.began + to_seconds(?)",
            [low - timedelta(days=30), high, list(rule.operations), low, high, int(rule.history.total_seconds())])
        return [self._lead(rule, row.user_id, row.first, row.first, row.first, [row.user_id], [row.ip], 1,
                           f": {row.user_id} from {row.country} ({row.ip}), {_span(row.first, row.first)}",
                           {"user": row.user_id, "ip": row.ip, "operation": list(rule.operations)})
                for row in frame.itertuples()]

    def _travel(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        """Coordinates where the IP sources have them (a networks file, a City database); where they know only the
        countries (the packaged database), the least distance between the two countries' territories."""
        low, high = self._days(start, end)
        frame = self.index.sql(
            "WITH s AS (" + self._signins("(p.lat IS NOT NULL OR p.country <> '')") + "), "
            "l AS (SELECT *, lag(ts) OVER w AS pts, lag(lat) OVER w AS plat, lag(lon) OVER w AS plon, "
            "lag(client_ip) OVER w AS pip, lag(country) OVER w AS pcountry FROM s "
            "WINDOW w AS (PARTITION BY user_id ORDER BY ts)), "
            "k AS (SELECT *, 2 * 6371 * asin(sqrt(pow(sin(radians(lat - plat) / 2), 2) + cos(radians(plat)) * "
            "cos(radians(lat)) * pow(sin(radians(lon - plon) / 2), 2))) AS km FROM l WHERE pts IS NOT NULL) "
            "SELECT * FROM k WHERE ts >= ? AND (km >= ? AND km / greatest(epoch(ts - pts) / 3600.0, 1 / 12) >= ? OR "
            "km IS NULL AND country <> pcountry AND country <> '' AND pcountry <> '')",
            [low - rule.history, high, list(rule.operations), low, rule.km, rule.speed])
        if frame.empty:
            return []
        frame["rough"] = frame["km"].isna()  # judged by countries alone
        frame["km"] = [km if not rough else nearest_km(c, pc) for km, rough, c, pc in
                       zip(frame["km"], frame["rough"], frame["country"], frame["pcountry"])]
        frame = frame[frame["km"].notna()]
        hours = ((frame["ts"] - frame["pts"]).dt.total_seconds() / 3600).clip(lower=1 / 12)
        frame = frame[(frame["km"] >= rule.km) & (frame["km"] / hours >= rule.speed)]
        leads = []  # one lead per person and day, however many legs
        for (user, _), legs in frame.groupby(["user_id", frame["ts"].dt.floor("D")]):
            first = legs.iloc[0]
            minutes = (first.ts - first.pts).total_seconds() / 60
            more = f" (and {len(legs) - 1} more such hop(s))" if len(legs) > 1 else ""
            leads.append(self._lead(
                rule, user, first.ts.floor("D"), legs.pts.min(), legs.ts.max(), [user],
                set(legs.pip) | set(legs.client_ip), 2 * len(legs),
                f": {user}, {first.pcountry or '?'} ({first.pip}) → {first.country or '?'} ({first.client_ip}), "
                + (f"at least {first.km:,.0f} km apart judged by the countries alone" if first.rough else
                   f"{first.km:,.0f} km") + f" in {minutes:,.0f} min{more}, {_span(legs.pts.min(), legs.ts.max())}",
                {"user": user, "operation": list(rule.operations)}))
        return leads

    def _network(self, rule: Rule, start: datetime, end: datetime) -> list[Lead]:
        low, high = self._days(start, end)
        pattern = "|".join(re.escape(name) for name in rule.networks)
        frame = self.index.sql(
            "WITH s AS (" + self._signins("regexp_matches(p.owner, ?, 'i')") + ") "
            "SELECT user_id, client_ip, any_value(owner) AS owner, any_value(country) AS country, "
            "date_trunc('day', ts) AS day, count(*) AS n, min(ts) AS first, max(ts) AS last FROM s GROUP BY ALL",
            [low, high, list(rule.operations), pattern])
        return [self._lead(rule, f"{row.user_id}\n{row.client_ip}", row.day, row.first, row.last, [row.user_id],
                           [row.client_ip], row.n,
                           f": {row.user_id} from {row.client_ip} ({row.owner}, {row.country or '?'}), "
                           f"{_span(row.first, row.last)}",
                           {"user": row.user_id, "ip": row.client_ip, "operation": list(rule.operations)})
                for row in frame.itertuples()]


_RELATIONSHIP = {"ip": "IP → user", "user": "user → IP → operation", "object": "user → operation → target"}
