"""The analyst's view (filters, watch-list, relationship) ↔ URL query parameters ↔ an eventstore Filter.
Pure, so a shared URL always means the same view."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime, time, timedelta, timezone

from eventstore import Filter, ip

from eventstore.entities import KINDS, STACK_COLUMNS
from .graph import DEFAULT_CAP, MAX_CAP, RELATIONSHIPS

PERIODS = {"last 24 hours": 1, "last 7 days": 7, "last 30 days": 30, "last 90 days": 90, "last 180 days": 180,
           "custom": 0}
LIST_FIELDS = ("workload", "content_type", "operation", "record_type", "result_status", "country", "owner", "expand")
MAX_EXPANDED = 5  # nodes expanded in place at once; the oldest closes when another opens
WATCH_MODES = ("highlight", "restrict")
# What a page may honour of the view: each page shows and applies exactly its own (the rest is kept for the pages
# that honour it, and the URL carries what the page honours).
SPAN_FIELDS = ("period", "start", "end")
GRAPH_FIELDS = ("relationship", "cap", "stack_by", "node", "expand")
STACKS = tuple(STACK_COLUMNS)  # what the timeline's bars can be stacked by
EARLIEST, LATEST = datetime(2000, 1, 1), datetime(2101, 1, 1)  # a custom range outside these is a typo


def in_words(flt: Filter, now: datetime | None = None) -> str:
    """A filter as a person reads it (the activity log, a report, a file's name): the span in UTC, then each
    filter that narrows it."""
    end = flt.end or (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    parts = [f"{flt.start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" if flt.start else "all time"]
    for label, values in (("user", flt.user_id), ("IP", flt.client_ip), ("operation", flt.operation),
                          ("workload", flt.workload), ("content type", flt.content_type),
                          ("record type", flt.record_type), ("result", flt.result_status), ("country", flt.country),
                          ("network owner", flt.owner)):
        if values:
            parts.append(f"{label} {', '.join(map(str, values[:5]))}{' …' if len(values) > 5 else ''}")
    if flt.text:
        parts.append(f'text "{flt.text}"')
    parts.append("case-sensitive" if flt.case_sensitive else "case ignored")
    return "; ".join(parts)


def file_name(what: str, flt: Filter, extension: str, now: datetime | None = None) -> str:
    """"events_2026-11-23T0600_2026-11-30T0600_ip-198.51.100.9.csv": what, the span in UTC and the main filters, in
    characters every file system takes, so that a team can file what it downloaded."""
    end = flt.end or (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    parts = [what, f"{flt.start:%Y-%m-%dT%H%M}" if flt.start else "all", f"{end:%Y-%m-%dT%H%M}"]
    for label, values in (("user", flt.user_id), ("ip", flt.client_ip), ("op", flt.operation),
                          ("country", flt.country)):
        if values:
            parts.append(f"{label}-{values[0]}" + (f"+{len(values) - 1}" if len(values) > 1 else ""))
    if flt.text:
        parts.append(f"text-{flt.text}")
    return re.sub(r"[^A-Za-z0-9._@+-]+", "-", "_".join(parts))[:160] + f".{extension}"


def covering(start: datetime, end: datetime, bars: list[tuple[datetime, datetime]]) -> tuple[datetime, datetime]:
    """A span picked on the timeline, widened to the edges of the bars (start, end) it touches: every event of a bar
    the analyst dragged across stays in."""
    touched = [(a, b) for a, b in bars if a < end and b > start]
    if not touched:
        return start, end
    return min(start, min(a for a, _ in touched)), max(end, max(b for _, b in touched))


def periods(oldest_days: float) -> list[str]:
    """The time choices to offer when the oldest event is this many days old: the longest ranges only once there is
    history that old (a backfill brought it)."""
    return [name for name, days in PERIODS.items() if days <= 90 or oldest_days > 90]


class FilterInputError(ValueError):
    """A filter value the analyst typed cannot be used (e.g. an IP that is not one)."""


@dataclass(frozen=True)
class View:
    period: str = "last 7 days"
    start: datetime | None = None  # with period "custom": UTC, naive, to the minute
    end: datetime | None = None  # exclusive; none: until now
    workload: tuple[str, ...] = ()
    content_type: tuple[str, ...] = ()
    operation: tuple[str, ...] = ()
    record_type: tuple[str, ...] = ()
    result_status: tuple[str, ...] = ()
    user: str = ""  # one or more accounts, comma separated
    ip: str = ""  # addresses or CIDR ranges, comma separated
    country: tuple[str, ...] = ()  # where the address is
    owner: tuple[str, ...] = ()  # who owns the address's network
    text: str = ""  # in user agent, object, site, file name or application
    case_sensitive: bool = True
    watchlist: str = ""
    watch_mode: str = "highlight"
    relationship: str = "user → IP"
    cap: int = DEFAULT_CAP
    stack_by: str = "workload"
    node: str = ""  # the graph node whose detail panel is open (its id, e.g. "ip:198.51.100.9")
    expand: tuple[str, ...] = ()  # graph nodes whose neighbours are drawn in place (ids, oldest first)

    def to_params(self) -> dict[str, str | list[str]]:
        """Only what differs from the default view, so a URL stays short."""
        default = View()
        params: dict[str, str | list[str]] = {}
        for name, value in asdict(self).items():
            if value == getattr(default, name):
                continue
            if isinstance(value, tuple):
                params[name] = [str(v) for v in value]
            elif isinstance(value, bool):
                params[name] = "1" if value else "0"
            elif isinstance(value, datetime):
                params[name] = value.isoformat(timespec="minutes")
            else:
                params[name] = str(value)
        return params

    @classmethod
    def from_params(cls, params: dict[str, list[str]]) -> "View":
        """Tolerant: a hand-edited URL with a bad value falls back to the default for that value."""
        values: dict = {}
        for f in fields(cls):
            raw = params.get(f.name)
            if not raw:
                continue
            if f.name in LIST_FIELDS:
                values[f.name] = tuple(v for v in raw if v)
                continue
            text = raw[-1]
            try:
                if f.name in ("start", "end"):
                    values[f.name] = _moment(text, f.name == "end")
                elif f.name == "case_sensitive":
                    values[f.name] = text not in ("0", "false", "False")
                elif f.name == "cap":
                    values[f.name] = max(1, min(MAX_CAP, int(text)))
                else:
                    values[f.name] = text
            except ValueError:
                continue
        view = cls(**values)
        if view.period not in PERIODS:
            view = replace(view, period="last 7 days")
        if view.relationship not in RELATIONSHIPS:
            view = replace(view, relationship="user → IP")
        if view.watch_mode not in WATCH_MODES:
            view = replace(view, watch_mode="highlight")
        if view.stack_by not in STACKS:
            view = replace(view, stack_by="workload")
        return view

    def only(self, names) -> "View":
        """This view with every field but `names` at its default: what a page that honours those fields applies."""
        default = View()
        return replace(default, **{name: getattr(self, name) for name in names})

    def pinned(self, now: datetime | None = None) -> "View":
        """The same events at fixed times: a relative period ("last 7 days") becomes the custom range it means now,
        so a link opened tomorrow shows what it shows today."""
        if self.period == "custom" and self.start:
            return replace(self, end=self.end or _minute(now or datetime.now(timezone.utc)))
        flt = self.to_filter(now)
        return self.narrowed(flt.start, (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
                             + timedelta(minutes=1))

    def users(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.user.split(",") if u.strip())

    def ips(self) -> tuple[str, ...]:
        entries = tuple(v.strip() for v in self.ip.split(",") if v.strip())
        for entry in entries:
            if ip.parse_entry(entry) is None:
                raise FilterInputError(f"{entry!r} is not an IP address or CIDR range "
                                       "(e.g. 198.51.100.9 or 198.51.100.0/24).")
        return entries

    def to_filter(self, now: datetime | None = None) -> Filter:
        # to the minute: the same view asked twice in a minute is the same question (and a cache hit)
        now = now or datetime.now(timezone.utc).replace(second=0, microsecond=0)
        if self.period == "custom" and self.start:
            last = self.end or now.replace(tzinfo=None)
            if not EARLIEST <= self.start < last <= LATEST:
                raise FilterInputError(f"The custom range must run forward, between {EARLIEST:%Y-%m-%d} and "
                                       f"{LATEST:%Y-%m-%d}; it is {self.start:%Y-%m-%d %H:%M} to "
                                       f"{last:%Y-%m-%d %H:%M}.")
            start, end = self.start.replace(tzinfo=timezone.utc), last.replace(tzinfo=timezone.utc)
        else:
            start, end = now - timedelta(days=PERIODS.get(self.period) or 7), None
        record_types = []
        for value in self.record_type:
            try:
                record_types.append(int(value))
            except ValueError:
                raise FilterInputError(f"Record type {value!r} is not a number.") from None
        return Filter(start=start, end=end, workload=self.workload, content_type=self.content_type,
                      operation=self.operation, record_type=tuple(record_types), result_status=self.result_status,
                      user_id=self.users(), client_ip=self.ips(), country=self.country, owner=self.owner,
                      text=self.text.strip(),
                      case_sensitive=self.case_sensitive)

    def narrowed(self, start: datetime, end: datetime) -> "View":
        """This view over a custom span (a span picked on the timeline)."""
        return replace(self, period="custom", start=_minute(start), end=_minute(end))

    def pivot_all(self, entity: dict[str, str]) -> "View":
        """Narrowed to every kind → value of a graph node (an operation drawn once per user: both)."""
        view = self
        for kind, value in entity.items():
            view = view.pivot(kind, value)
        return view

    def expanding(self, node: str) -> "View":
        """With this node's neighbours drawn in place, or no longer when they were."""
        if node in self.expand:
            return replace(self, expand=tuple(n for n in self.expand if n != node))
        return replace(self, expand=(self.expand + (node,))[-MAX_EXPANDED:])

    def pivot(self, kind: str, value: str) -> "View":
        """This view narrowed to one entity (the graph's Pivot button), by the filter its kind declares."""
        field = KINDS[kind].pivot
        return replace(self, **{field: (value,) if field in LIST_FIELDS else value})


def _minute(moment: datetime) -> datetime:
    """UTC, naive, to the minute: how a custom range is kept (and written in the URL)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(second=0, microsecond=0)


def _moment(text: str, end: bool) -> datetime:
    """A custom range's bound from the URL: a time to the minute, or a whole day (the "to" day included, as the
    dashboard's links had it before ranges had hours)."""
    if len(text) == 10:
        day = datetime.combine(date.fromisoformat(text), time.min)
        if not end:
            return day
        return day + timedelta(days=1) if day.date() < date.max else datetime.max.replace(second=0, microsecond=0)
    return _minute(datetime.fromisoformat(text))


ALL_FIELDS = tuple(f.name for f in fields(View))
FILTER_FIELDS = tuple(name for name in ALL_FIELDS if name not in GRAPH_FIELDS)
