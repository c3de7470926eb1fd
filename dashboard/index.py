"""ActivityIndex: the dashboard's analytic engine. A DuckDB database file beside the store holds the columns the
pages filter, count and draw on, so that a question costs what its time range holds, not what the store holds:

- rows are appended in store order, which is nearly time order (blobs arrive within hours), so DuckDB's per-row-
  group minimum and maximum of `ts` let a 7-day question skip the other 83 days of a 90-day index;
- it survives restarts: opening it and copying what the store gained since the cursor it recorded (the store's
  feed: positions in SQLite, `_ts` in Cosmos DB, each event kept once by its position) is all a start costs;
  it is rebuilt (with progress) when missing, damaged, of an older layout, or from another store;
- retention follows the store's horizon by deleting old hours in small transactions, never by a reload;
- its memory is DuckDB's `memory_limit` (DASHBOARD_INDEX_MEMORY), not a function of the event count.

Who writes it: the dashboard server that opens it first (DuckDB locks the file). A second dashboard process on
the same index gets IndexBusy with what to do — one server serves any number of browsers. The ingest never
touches it. What a filter means is decided here, for every page: exact values by default (as a Cosmos DB query
does), and with case ignored, equality under Unicode case folding (`eventstore.model.fold`), applied to each
distinct value the index holds. Every query is built here with bound parameters; no user text is ever SQL."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd

from eventstore import Changes, EventStore, Filter, ip
from eventstore.model import EVENT_COLUMNS, EventRow, fold

from eventstore.entities import KINDS, STACK_COLUMNS, scoped

log = logging.getLogger("dashboard.index")
LAYOUT = "2"
NARROW = [c for c in EVENT_COLUMNS if c != "raw"]
INDEXED = [c for c in NARROW if c != "id"]  # the Id is only needed with the whole event, read from the store
VALUE_FILTERS = ("workload", "content_type", "operation", "record_type", "result_status", "user_id")
TEXT_COLUMNS = ("user_agent", "object_id", "site_url", "file_name", "application")
PLACE_COLUMNS = ("country", "owner")  # of the client address, from the places table
BATCH = 50_000  # rows copied from the store per transaction
INLINE = 200_000  # a backlog up to this is copied while the page waits; a larger one in the background

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ev (
    seq BIGINT, ts TIMESTAMP, content_type VARCHAR, workload VARCHAR, record_type INTEGER, operation VARCHAR,
    result_status VARCHAR, user_id VARCHAR, client_ip VARCHAR, user_agent VARCHAR, application VARCHAR,
    object_id VARCHAR, site_url VARCHAR, file_name VARCHAR
);
-- each distinct address once, as a number, for CIDR ranges (DuckDB's inet extension is not available offline)
CREATE TABLE IF NOT EXISTS ips (client_ip VARCHAR PRIMARY KEY, v6 BOOLEAN, num UHUGEINT);
-- where each address is and who owns its network (ipinfo), looked up once per address
CREATE TABLE IF NOT EXISTS places (client_ip VARCHAR PRIMARY KEY, country VARCHAR, owner VARCHAR, asn BIGINT,
                                   lat DOUBLE, lon DOUBLE);
CREATE TABLE IF NOT EXISTS state (key VARCHAR PRIMARY KEY, value VARCHAR);
"""


class IndexBusy(RuntimeError):
    """Another process holds the index file; the message says what to do."""


@dataclass(frozen=True)
class Watch:
    """A watch-list as the index applies it: accounts and addresses/ranges, restrict or highlight."""

    accounts: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()  # addresses and CIDR ranges, as text
    restrict: bool = False


@dataclass
class Catching:
    """A copy from the store in progress (a first build, or a long backlog)."""

    done: int
    total: int | None  # None: the store cannot say how many are left (Cosmos DB's feed)
    rebuild: bool


class ActivityIndex:
    def __init__(self, store: EventStore, path: str = ":memory:", memory_limit: str = "1GB", ipinfo=None):
        self.store, self.path, self.ipinfo = store, path, ipinfo
        self._lock = threading.Lock()  # one writer at a time in this process
        self._copying = threading.Lock()  # one copy from the store at a time (inline or in the background)
        self._con = self._open(memory_limit)
        state = dict(self._con.execute("SELECT key, value FROM state").fetchall())
        # an index of layout 2 recorded a SQLite position, which is that store's cursor
        self._cursor, self._horizon = state.get("cursor", state.get("position", "")), state.get("horizon", "")
        self._events = self._con.execute("SELECT count(*) FROM ev").fetchone()[0]
        self.version = (self._events, self._horizon)
        self.catching: Catching | None = None  # a background copy and how far it got
        self._asked = float("-inf")  # when the store was last asked what changed (monotonic seconds)
        self._distinct: dict = {}  # (column, day range, version) → distinct values, for case folding
        self._place_everything(state)

    # --- the file ------------------------------------------------------------------------------
    def _open(self, memory_limit: str) -> duckdb.DuckDBPyConnection:
        config = {"memory_limit": memory_limit, "threads": 2}
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            con = duckdb.connect(self.path, config=config)
        except duckdb.Error as error:
            if "lock" in str(error).lower():
                raise IndexBusy(f"Another process already serves this store's index {self.path} "
                                f"({str(error).split('held in', 1)[-1].strip() or 'see its lock'}). Open that "
                                "dashboard — one serves any number of browsers — or stop it; or give this one an "
                                "index file of its own with DASHBOARD_INDEX (it is built from the store).") from None
            damaged = f"{self.path}.damaged-{int(time.time())}"
            log.error("the index %s cannot be opened (%s); moved to %s and built again", self.path, error, damaged)
            for suffix in ("", ".wal"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, damaged + suffix)
            con = duckdb.connect(self.path, config=config)
        con.execute(_SCHEMA)
        state = dict(con.execute("SELECT key, value FROM state").fetchall())
        if state.get("layout", LAYOUT) != LAYOUT or state.get("store", self.store.identity()) != \
                self.store.identity():
            log.warning("the index %s was built for another store or layout: building it again", self.path)
            con.execute("DROP TABLE ev; DROP TABLE ips; DROP TABLE state")
            con.execute(_SCHEMA)
        con.execute("INSERT OR REPLACE INTO state VALUES ('layout', ?), ('store', ?)", [LAYOUT, self.store.identity()])
        return con

    def close(self) -> None:
        self._con.close()

    # --- where addresses are --------------------------------------------------------------------
    def _place_everything(self, state: dict) -> None:
        """Look up every address again when the IP sources changed (a newer database, an edited networks file)."""
        if self.ipinfo is None:
            return
        signature = self.ipinfo.signature()
        if state.get("places") == signature:
            return
        addresses = self._query("SELECT client_ip FROM ips", [])["client_ip"]
        with self._lock:
            self._con.execute("DELETE FROM places")
            self._insert_places(self._con, addresses)
            self._con.execute("INSERT OR REPLACE INTO state VALUES ('places', ?)", [signature])

    def _insert_places(self, cursor, addresses) -> None:
        if self.ipinfo is None or len(addresses) == 0:
            return
        found = [(a, p.country, p.owner, p.asn, p.lat, p.lon)
                 for a, p in zip(addresses, map(self.ipinfo.lookup, addresses))]
        cursor.register("found", pd.DataFrame(found, columns=["client_ip", "country", "owner", "asn", "lat", "lon"]))
        cursor.execute("INSERT INTO places SELECT * FROM found ON CONFLICT DO NOTHING")
        cursor.unregister("found")

    def places(self, addresses: list[str]) -> pd.DataFrame:
        """client_ip, country, owner, asn, lat, lon for these addresses (those known)."""
        return self._query("SELECT * FROM places WHERE client_ip IN (SELECT unnest(?::VARCHAR[]))", [list(addresses)])

    # --- what changed, for the leads ------------------------------------------------------------
    def take_changed_span(self) -> tuple[datetime, datetime] | None:
        """The span of event times indexed since the last call (kept on disk, so a restart loses none)."""
        with self._lock:
            state = dict(self._con.execute("SELECT key, value FROM state WHERE key IN ('changed_from', "
                                           "'changed_to')").fetchall())
            self._con.execute("DELETE FROM state WHERE key IN ('changed_from', 'changed_to')")
        if "changed_from" not in state:
            return None
        return datetime.fromisoformat(state["changed_from"]), datetime.fromisoformat(state["changed_to"])

    def sql(self, sql: str, params: list) -> pd.DataFrame:
        """A read-only question in SQL (the leads' rules; pages use the methods below)."""
        return self._query(sql, params)

    # --- keeping in step with the store ---------------------------------------------------------
    def refresh(self, max_age: float = 0.0) -> tuple[int, str]:
        """Follow the store: drop what retention removed, copy what it gained. A small backlog is copied now; a
        large one (a first build) in the background, with `catching` saying how far it got. While another thread
        copies, this one answers from what is indexed so far. With `max_age`, the store is not asked again within
        that many seconds of the last time (a page asks many times per click; Cosmos DB charges every ask)."""
        if time.monotonic() - self._asked < max_age:
            return self.version
        if self._copying.acquire(blocking=False):
            handed_over = False
            try:
                horizon = self.store.horizon()
                if horizon > self._horizon:
                    self._follow_horizon(horizon)
                first_build = self._events == 0
                changes = self._append(self.store.changes(self._cursor, BATCH))
                if changes.remaining is None or changes.remaining > INLINE:
                    self.catching = Catching(len(changes.rows), changes.remaining and
                                             changes.remaining + len(changes.rows), rebuild=first_build)
                    threading.Thread(target=self._copy_in_background, name="index-catch-up", daemon=True).start()
                    handed_over = True
                elif changes.remaining:
                    self._copy()
            except (duckdb.Error, OSError) as error:  # e.g. a full disk: keep answering from what is indexed
                log.error("could not bring the index up to date with the store: %s", error)
            finally:
                self._asked = time.monotonic()  # after the answer: a slow store is not asked back to back
                if not handed_over:
                    self._copying.release()
        self.version = (self._events, self._horizon)
        return self.version

    def wait(self, timeout: float = 600) -> None:
        """Until a background copy is done (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.catching is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.refresh()

    def _copy_in_background(self) -> None:
        try:
            self._copy()
        except Exception:  # noqa: BLE001 - the next refresh tries again; the pages keep what is indexed
            log.exception("copying from the store into the index failed")
        finally:
            self.catching = None
            self.version = (self._events, self._horizon)
            self._copying.release()

    def _copy(self) -> None:
        while True:
            changes = self._append(self.store.changes(self._cursor, BATCH))
            if self.catching is not None:
                self.catching.done += len(changes.rows)
            if changes.caught_up:
                break

    def _append(self, changes: Changes) -> Changes:
        """Index these rows, each position once (a feed may deliver a row again), and remember the cursor."""
        if not changes.rows:
            if changes.cursor != self._cursor:
                with self._lock:
                    self._con.execute("INSERT OR REPLACE INTO state VALUES ('cursor', ?)", [changes.cursor])
                self._cursor = changes.cursor
            return changes
        frame = pd.DataFrame(changes.rows, columns=["seq", *NARROW])
        addresses = pd.DataFrame([(a, *ip.number(a)) for a in frame["client_ip"].unique()],
                                 columns=["client_ip", "v6", "num"]).astype({"num": "string"})
        horizon = self._horizon or "0000"
        low, high = int(frame["seq"].min()), int(frame["seq"].max())
        with self._lock:
            cursor = self._con.cursor()
            try:
                cursor.register("incoming", frame)
                cursor.register("addresses", addresses)
                cursor.execute("BEGIN")
                # the range lets DuckDB skip, by their min/max, the row groups that cannot hold these positions
                (added,) = cursor.execute(
                    f"INSERT INTO ev SELECT seq, TRY_STRPTIME(time, '%Y-%m-%dT%H:%M:%SZ'), "
                    f"{', '.join(INDEXED[1:])} FROM incoming WHERE time >= ? AND seq NOT IN "
                    f"(SELECT seq FROM ev WHERE seq BETWEEN ? AND ?) ORDER BY seq", [horizon, low, high]).fetchone()
                cursor.execute("INSERT INTO ips SELECT client_ip, v6, CAST(num AS UHUGEINT) FROM addresses "
                               "WHERE v6 IS NOT NULL ON CONFLICT DO NOTHING")
                new = cursor.execute("SELECT client_ip FROM addresses WHERE v6 IS NOT NULL AND client_ip NOT IN "
                                     "(SELECT client_ip FROM places)").df()["client_ip"]
                self._insert_places(cursor, new)
                if added:
                    times = frame["time"][frame["time"] >= horizon]
                    span = self._changed_span(cursor, times.min()[:19], times.max()[:19])
                    cursor.execute("INSERT OR REPLACE INTO state VALUES ('changed_from', ?), ('changed_to', ?)", span)
                cursor.execute("INSERT OR REPLACE INTO state VALUES ('cursor', ?)", [changes.cursor])
                cursor.execute("COMMIT")
            finally:
                cursor.close()
        self._cursor = changes.cursor
        self._events += added
        return changes

    @staticmethod
    def _changed_span(cursor, first: str, last: str) -> list[str]:
        state = dict(cursor.execute("SELECT key, value FROM state WHERE key IN ('changed_from', 'changed_to')")
                     .fetchall())
        return [min(first, state.get("changed_from", first)), max(last, state.get("changed_to", last))]

    def _follow_horizon(self, horizon: str) -> None:
        """Delete what is older than the store's horizon, six hours of events per transaction (from the oldest
        left): the pages keep reading their snapshot, and no single step holds the writer long."""
        end = datetime.fromisoformat(horizon)
        while True:
            oldest = self._query("SELECT min(ts) AS t FROM ev WHERE ts < ?", [end])["t"][0]
            if pd.isna(oldest):
                break
            with self._lock:
                upper = min(oldest.to_pydatetime() + timedelta(hours=6), end)
                self._events -= self._con.execute("DELETE FROM ev WHERE ts < ?", [upper]).fetchone()[0]
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO state VALUES ('horizon', ?)", [horizon])
        self._horizon = horizon

    def _query(self, sql: str, params: list) -> pd.DataFrame:
        cursor = self._con.cursor()  # one cursor per call: safe across Streamlit's threads
        try:
            return cursor.execute(sql, params).df()
        finally:
            cursor.close()

    # --- what a filter means ---------------------------------------------------------------------
    def where(self, flt: Filter, watch: Watch | None = None) -> tuple[str, list]:
        clauses, params = ["1 = 1"], []

        def add(clause: str, values: list) -> None:
            clauses.append(clause)
            params.extend(values)

        if flt.start is not None:
            add("ts >= ?", [_naive(flt.start)])
        if flt.end is not None:
            add("ts < ?", [_naive(flt.end)])
        for column in VALUE_FILTERS:
            values = getattr(flt, column)
            if values:
                add(*self._values_in(column, values, flt.case_sensitive or column == "record_type", flt))
        if flt.client_ip:
            add(*_ip_match(flt.client_ip))
        for column in PLACE_COLUMNS:
            if getattr(flt, column):
                add(f"client_ip IN (SELECT client_ip FROM places WHERE {column} IN (SELECT unnest(?::VARCHAR[])))",
                    [list(getattr(flt, column))])
        if flt.text:
            if flt.case_sensitive:
                add("(" + " OR ".join(f"contains({c}, ?)" for c in TEXT_COLUMNS) + ")", [flt.text] * len(TEXT_COLUMNS))
            else:
                wanted = fold(flt.text)
                tests = [self._values_in(c, self._matching(c, lambda v: wanted in fold(v), flt), True, flt)
                         for c in TEXT_COLUMNS]
                add("(" + " OR ".join(t for t, _ in tests) + ")", [p for _, values in tests for p in values])
        if watch is not None and watch.restrict:
            add(*self._watch_clause(watch, flt))
        return " AND ".join(clauses), params

    def _values_in(self, column: str, values, case_sensitive: bool, flt: Filter) -> tuple[str, list]:
        if not case_sensitive:
            wanted = {fold(str(v)) for v in values}
            values = self._matching(column, lambda v: fold(v) in wanted, flt)
        if column == "record_type":
            return f"{column} IN (SELECT unnest(?::INTEGER[]))", [list(values)]
        return f"{column} IN (SELECT unnest(?::VARCHAR[]))", [list(values)]

    def _matching(self, column: str, test, flt: Filter) -> list[str]:
        """The distinct values of a column, in the filter's days, that pass `test`: how "ignore case" becomes
        exact matching, with one meaning of case folding whatever the engine."""
        start = flt.start.date() if flt.start else None
        key = (column, start, self.version)
        values = self._distinct.get(key)
        if values is None:
            where, params = ("ts >= ?", [datetime.combine(start, datetime.min.time())]) if start else ("1 = 1", [])
            values = self._query(f"SELECT DISTINCT {column} AS v FROM ev WHERE {where} AND {column} <> ''",
                                 params)["v"].tolist()
            self._distinct = {k: v for k, v in self._distinct.items() if k[2] == self.version}
            self._distinct[key] = values
        return [v for v in values if test(v)]

    def _watch_clause(self, watch: Watch, flt: Filter) -> tuple[str, list]:
        """Events that involve a listed account or address (either)."""
        pieces = []
        if watch.accounts:
            pieces.append(self._values_in("user_id", watch.accounts, flt.case_sensitive, flt))
        if watch.networks:
            pieces.append(_ip_match(watch.networks))
        if not pieces:
            return "FALSE", []
        return "(" + " OR ".join(c for c, _ in pieces) + ")", [p for _, values in pieces for p in values]

    # --- questions the pages ask --------------------------------------------------------------
    def count(self, flt: Filter, watch: Watch | None = None) -> int:
        where, params = self.where(flt, watch)
        return int(self._query(f"SELECT count(*) AS n FROM ev WHERE {where}", params)["n"][0])

    def edges(self, flt: Filter, chain: tuple[str, ...], watch: Watch | None = None) -> pd.DataFrame:
        """Counted pairs along a chain of entity kinds, e.g. ("user", "ip") or ("user", "ip", "operation"):
        columns src_kind, src, src_scope, dst_kind, dst, dst_scope, n. A scope is "" or, for a kind drawn once per
        chain head (`entities.scoped`), the head's node id ("user:megan@…"). Empty values are left out."""
        where, params = self.where(flt, watch)
        head = f"'{chain[0]}:' || {KINDS[chain[0]].column}"
        parts, all_params = [], []
        for src_kind, dst_kind in zip(chain, chain[1:]):
            src, dst = KINDS[src_kind].column, KINDS[dst_kind].column
            src_scope, dst_scope = (head if scoped(kind, chain) else "''" for kind in (src_kind, dst_kind))
            present = f"{src} <> '' AND {dst} <> ''"
            if scoped(src_kind, chain) or scoped(dst_kind, chain):
                present += f" AND {KINDS[chain[0]].column} <> ''"
            parts.append(f"SELECT '{src_kind}' AS src_kind, {src} AS src, {src_scope} AS src_scope, "
                         f"'{dst_kind}' AS dst_kind, {dst} AS dst, {dst_scope} AS dst_scope, count(*) AS n "
                         f"FROM ev WHERE {where} AND {present} GROUP BY ALL")
            all_params.extend(params)
        return self._query(" UNION ALL ".join(parts), all_params)

    def timeline(self, flt: Filter, stack_by: str, watch: Watch | None = None, top: int = 8) -> pd.DataFrame:
        """Events per time bucket — a minute over a few hours, an hour over a week, a day beyond — stacked by the
        top values of a column: bucket (its start), end (the next bucket's), series, n."""
        where, params = self.where(flt, watch)
        column = STACK_COLUMNS[stack_by]
        span = self._query(f"SELECT min(ts) AS a, max(ts) AS b FROM ev WHERE {where}", params)
        if span["a"].isna().all():
            return pd.DataFrame(columns=["bucket", "series", "n"])
        seconds = (span["b"][0] - span["a"][0]).total_seconds()
        bucket = "minute" if seconds <= 6 * 3600 else "hour" if seconds <= 8 * 86400 else "day"
        return self._query(
            f"WITH f AS (SELECT date_trunc('{bucket}', ts) AS bucket, {column} AS series FROM ev WHERE {where}), "
            f"top AS (SELECT series FROM f GROUP BY series ORDER BY count(*) DESC LIMIT {int(top)}) "
            f"SELECT bucket, bucket + INTERVAL 1 {bucket} AS end, "
            f"CASE WHEN series IN (SELECT series FROM top) THEN series ELSE 'other' END AS series, "
            f"count(*) AS n FROM f GROUP BY ALL ORDER BY bucket", params)

    def values(self, column: str, flt: Filter, limit: int = 500) -> list:
        """Distinct values of a column in the filter's time range, most frequent first (filter choices); the
        country and owner of the client addresses too."""
        assert column in INDEXED or column in PLACE_COLUMNS
        where, params = self.where(Filter(start=flt.start, end=flt.end))
        source = "ev JOIN places USING (client_ip)" if column in PLACE_COLUMNS else "ev"
        frame = self._query(f"SELECT {column} AS v FROM {source} WHERE {where} AND {column} IS NOT NULL AND "
                            f"CAST({column} AS VARCHAR) <> '' GROUP BY {column} ORDER BY count(*) DESC "
                            f"LIMIT {int(limit)}", params)
        return frame["v"].tolist()

    def case_variants(self, column: str, wanted: tuple[str, ...], flt: Filter, limit: int = 10) -> pd.DataFrame:
        """Values that equal one of `wanted` once case is folded (and are not it), with their event counts in the
        filter's time range: the hint for a case-sensitive filter that matches little."""
        assert column in INDEXED
        folded = {fold(w) for w in wanted}
        variants = [v for v in self._matching(column, lambda v: fold(v) in folded, flt) if v not in wanted]
        if not variants:
            return pd.DataFrame(columns=["value", "n"])
        where, params = self.where(Filter(start=flt.start, end=flt.end))
        return self._query(
            f"SELECT {column} AS value, count(*) AS n FROM ev WHERE {where} AND {column} IN "
            f"(SELECT unnest(?::VARCHAR[])) GROUP BY {column} ORDER BY n DESC LIMIT {int(limit)}", params + [variants])

    def page(self, flt: Filter, watch: Watch | None = None, limit: int = 50,
             after: tuple[datetime, int] | None = None) -> list[tuple[datetime, int]]:
        """(time, position) of matching events, newest first, continuing after `after` (a key this returned):
        keyset paging, so the ten-thousandth page costs what the first does."""
        where, params = self.where(flt, watch)
        if after is not None:
            where += " AND (ts < ? OR (ts = ? AND seq < ?))"
            params = params + [_naive(after[0]), _naive(after[0]), int(after[1])]
        frame = self._query(f"SELECT ts, seq FROM ev WHERE {where} ORDER BY ts DESC, seq DESC LIMIT ?",
                            params + [int(limit)])
        return [(t.to_pydatetime(), int(s)) for t, s in zip(frame["ts"], frame["seq"])]

    def events(self, flt: Filter, watch: Watch | None = None, limit: int | None = None) -> Iterator[EventRow]:
        """The matching events themselves (from the store), newest first, a few thousand at a time: an export."""
        after, left = None, limit if limit is not None else float("inf")
        while left > 0:
            keys = self.page(flt, watch, limit=int(min(5000, left)), after=after)
            if not keys:
                return
            yield from self.store.events_at([position for _, position in keys])
            after, left = keys[-1], left - len(keys)

    def entity_summary(self, flt: Filter, entity: dict[str, str], watch: Watch | None = None,
                       related: tuple[str, ...] = ("user", "ip", "operation"), top: int = 5) -> dict:
        """Counts, first/last seen and the top entities of each `related` kind for one node of the graph: the events
        whose values are all those of `entity` (kind → value; two for an operation drawn once per user)."""
        where, params = self.where(flt, watch)
        for kind, value in entity.items():
            where += f" AND {KINDS[kind].column} = ?"
            params = params + [value]
        head = self._query(f"SELECT count(*) AS n, min(ts) AS first, max(ts) AS last FROM ev WHERE {where}", params)
        found = {}
        for other in related:
            if other in entity:
                continue
            column = KINDS[other].column
            found[other] = self._query(f"SELECT {column} AS value, count(*) AS n FROM ev WHERE {where} AND "
                                       f"{column} <> '' GROUP BY {column} ORDER BY n DESC LIMIT {int(top)}", params)
        return {"events": int(head["n"][0]), "first": head["first"][0], "last": head["last"][0], "related": found}

    def watch_matches(self, watch: Watch, flt: Filter) -> tuple[int, set[str]]:
        """(events in the filter that involve a listed entity, listed entries that matched nothing). A few
        queries whatever the list's length: a 10,000-entry list must not cost 10,000 queries per page view."""
        where, params = self.where(flt)
        clause, values = self._watch_clause(watch, flt)
        total = int(self._query(f"SELECT count(*) AS n FROM ev WHERE {where} AND {clause}", params + values)["n"][0])
        unmatched = set()
        if watch.accounts:
            one, vals = self._values_in("user_id", watch.accounts, flt.case_sensitive, flt)
            seen = set(self._query(f"SELECT DISTINCT user_id AS v FROM ev WHERE {where} AND {one}", params + vals)["v"])
            same = (lambda a: a) if flt.case_sensitive else fold
            seen = {same(v) for v in seen}
            unmatched.update(a for a in watch.accounts if same(a) not in seen)
        if watch.networks:
            one, vals = _ip_match(watch.networks)
            present = self._query(f"SELECT DISTINCT client_ip AS a FROM ev WHERE {where} AND {one}", params + vals)
            unmatched.update(set(watch.networks) - ip.entries_matching(watch.networks, present["a"]))
        return total, unmatched


def _naive(moment: datetime) -> datetime:
    """A filter's time as the index compares it: UTC, to the second (event times have no finer part)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _ip_match(entries: tuple[str, ...]) -> tuple[str, list]:
    """Addresses (one list: a hash join however long it is) and ranges (number spans over the `ips` table)."""
    wanted = ip.IpSet(entries)
    parts, params = [], []
    if wanted.exact:
        parts.append("client_ip IN (SELECT unnest(?::VARCHAR[]))")
        params.append(sorted(wanted.exact))
    for v6, low, high in wanted.ranges:
        parts.append("client_ip IN (SELECT client_ip FROM ips WHERE v6 = ? AND num BETWEEN CAST(? AS UHUGEINT) "
                     "AND CAST(? AS UHUGEINT))")
        params.extend([v6, str(low), str(high)])
    return "(" + " OR ".join(parts) + ")", params
