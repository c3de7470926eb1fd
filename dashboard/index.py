"""ActivityIndex: the dashboard's analytic engine. An in-memory DuckDB table of the narrow columns, kept in
step with the event store incrementally (only events stored since the last look are copied), so that a
filter change is a columnar query over memory, not a scan of the store. The store stays the durable record:
full events (raw JSON) are read from it by position, a page at a time.

Every query is built here with bound parameters; no user text is ever part of SQL."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import pandas as pd

from eventstore import EventStore, Filter, ip
from eventstore.model import EVENT_COLUMNS
from eventstore.sql import Dialect

NARROW = [c for c in EVENT_COLUMNS if c != "raw"]
# Entity kinds the graph can draw, and the column each comes from.
ENTITY_COLUMNS = {"user": "user_id", "ip": "client_ip", "operation": "operation", "file": "file_name",
                  "site": "site_url", "workload": "workload", "application": "application", "agent": "user_agent"}

_SCHEMA = """
CREATE TABLE ev (
    seq BIGINT, id VARCHAR, ts TIMESTAMP, content_type VARCHAR, workload VARCHAR, record_type INTEGER,
    operation VARCHAR, result_status VARCHAR, user_id VARCHAR, client_ip VARCHAR, user_agent VARCHAR,
    application VARCHAR, object_id VARCHAR, site_url VARCHAR, file_name VARCHAR,
    ip_v6 BOOLEAN, ip_num UHUGEINT  -- the address as a number, for CIDR ranges (DuckDB's inet is not offline)
)"""


@dataclass(frozen=True)
class Watch:
    """A watch-list as the index applies it: accounts and addresses/ranges, restrict or highlight."""

    accounts: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()  # addresses and CIDR ranges, as text
    restrict: bool = False


class ActivityIndex:
    def __init__(self, store: EventStore):
        self.store = store
        self._con = duckdb.connect(":memory:")
        self._con.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._position = 0
        self._generation = None
        self.version = (0, 0)

    # --- keeping in step with the store ---------------------------------------------------------
    def refresh(self) -> tuple[int, int]:
        """Copy what the store gained since last time (all of it after a retention prune). Cheap when
        nothing changed: one small read of the store's version."""
        with self._lock:
            position, generation = self.store.data_version()
            if generation != self._generation:
                self._con.execute("DELETE FROM ev")
                self._position, self._generation = 0, generation
            while self._position < position:
                rows = self.store.rows_since(self._position)
                if not rows:
                    break
                self._append(rows)
                self._position = rows[-1][0]
            self.version = (self._position, self._generation)
            return self.version

    def _append(self, rows: list[tuple]) -> None:
        frame = pd.DataFrame(rows, columns=["seq", *NARROW])
        # addresses as numbers, worked out once per distinct address (a tenant has few of them)
        addresses = pd.DataFrame([(address, *ip.number(address)) for address in frame["client_ip"].unique()],
                                 columns=["client_ip", "ip_v6", "ip_num"]).astype({"ip_num": "string"})
        self._con.register("incoming", frame)
        self._con.register("addresses", addresses)
        self._con.execute(
            "INSERT INTO ev SELECT i.seq, i.id, TRY_STRPTIME(i.time, '%Y-%m-%dT%H:%M:%SZ'), i.content_type, "
            "i.workload, i.record_type, i.operation, i.result_status, i.user_id, i.client_ip, i.user_agent, "
            "i.application, i.object_id, i.site_url, i.file_name, a.ip_v6, CAST(a.ip_num AS UHUGEINT) "
            "FROM incoming i LEFT JOIN addresses a USING (client_ip) ORDER BY i.seq")
        self._con.unregister("incoming")
        self._con.unregister("addresses")

    def _query(self, sql: str, params: list) -> pd.DataFrame:
        cursor = self._con.cursor()  # one cursor per call: safe across Streamlit's threads
        try:
            return cursor.execute(sql, params).df()
        finally:
            cursor.close()

    @staticmethod
    def where(flt: Filter, watch: Watch | None = None) -> tuple[str, list]:
        where, params = DUCKDB.where(flt)
        if watch is not None and watch.restrict:
            clause, values = _watch_clause(watch, flt.case_sensitive)
            where, params = f"{where} AND {clause}", params + values
        return where, params

    # --- questions the pages ask --------------------------------------------------------------
    def count(self, flt: Filter, watch: Watch | None = None) -> int:
        where, params = self.where(flt, watch)
        return int(self._query(f"SELECT count(*) AS n FROM ev WHERE {where}", params)["n"][0])

    def edges(self, flt: Filter, chain: tuple[str, ...], watch: Watch | None = None) -> pd.DataFrame:
        """Counted pairs along a chain of entity kinds, e.g. ("user", "ip") or ("user", "ip", "operation"):
        columns src_kind, src, dst_kind, dst, n. Empty values are left out (no entity to draw)."""
        where, params = self.where(flt, watch)
        parts, all_params = [], []
        for src_kind, dst_kind in zip(chain, chain[1:]):
            src, dst = ENTITY_COLUMNS[src_kind], ENTITY_COLUMNS[dst_kind]
            parts.append(f"SELECT '{src_kind}' AS src_kind, {src} AS src, '{dst_kind}' AS dst_kind, {dst} AS dst, "
                         f"count(*) AS n FROM ev WHERE {where} AND {src} <> '' AND {dst} <> '' GROUP BY {src}, {dst}")
            all_params.extend(params)
        return self._query(" UNION ALL ".join(parts), all_params)

    def timeline(self, flt: Filter, stack_by: str, watch: Watch | None = None, top: int = 8) -> pd.DataFrame:
        """Events per time bucket (an hour, or a day over long ranges), stacked by the top values of a column."""
        where, params = self.where(flt, watch)
        column = {"workload": "workload", "operation": "operation", "content type": "content_type"}[stack_by]
        span = self._query(f"SELECT min(ts) AS a, max(ts) AS b FROM ev WHERE {where}", params)
        if span["a"].isna().all():
            return pd.DataFrame(columns=["bucket", "series", "n"])
        bucket = "hour" if (span["b"][0] - span["a"][0]).total_seconds() <= 8 * 86400 else "day"
        return self._query(
            f"WITH f AS (SELECT date_trunc('{bucket}', ts) AS bucket, {column} AS series FROM ev WHERE {where}), "
            f"top AS (SELECT series FROM f GROUP BY series ORDER BY count(*) DESC LIMIT {int(top)}) "
            f"SELECT bucket, CASE WHEN series IN (SELECT series FROM top) THEN series ELSE 'other' END AS series, "
            f"count(*) AS n FROM f GROUP BY ALL ORDER BY bucket", params)

    def values(self, column: str, limit: int = 500) -> list:
        """Distinct values of a column, most frequent first (filter choices)."""
        assert column in NARROW
        frame = self._query(f"SELECT {column} AS v FROM ev WHERE {column} IS NOT NULL AND CAST({column} AS VARCHAR) "
                            f"<> '' GROUP BY {column} ORDER BY count(*) DESC LIMIT {int(limit)}", [])
        return frame["v"].tolist()

    def case_variants(self, column: str, wanted: tuple[str, ...], limit: int = 10) -> pd.DataFrame:
        """Values that equal one of `wanted` except for case (and are not it): the hint for a case-sensitive
        filter that matches little."""
        assert column in NARROW
        if not wanted:
            return pd.DataFrame(columns=["value", "n"])
        marks = ", ".join("?" * len(wanted))
        return self._query(
            f"SELECT {column} AS value, count(*) AS n FROM ev WHERE lower({column}) IN ({marks}) "
            f"AND {column} NOT IN ({marks}) GROUP BY {column} ORDER BY n DESC LIMIT {int(limit)}",
            [w.lower() for w in wanted] + list(wanted))

    def page(self, flt: Filter, watch: Watch | None = None, limit: int = 50, offset: int = 0) -> list[int]:
        """Positions of the matching events, newest first, one page."""
        where, params = self.where(flt, watch)
        frame = self._query(f"SELECT seq FROM ev WHERE {where} ORDER BY ts DESC, seq DESC LIMIT ? OFFSET ?",
                            params + [int(limit), int(offset)])
        return [int(s) for s in frame["seq"]]

    def entity_summary(self, flt: Filter, kind: str, value: str, watch: Watch | None = None) -> dict:
        """Counts, first/last seen and top related entities for one node of the graph."""
        column = ENTITY_COLUMNS[kind]
        where, params = self.where(flt, watch)
        where += f" AND {column} = ?"
        params = params + [value]
        head = self._query(f"SELECT count(*) AS n, min(ts) AS first, max(ts) AS last FROM ev WHERE {where}", params)
        related = {}
        for other, other_column in (("user", "user_id"), ("ip", "client_ip"), ("operation", "operation")):
            if other == kind:
                continue
            related[other] = self._query(
                f"SELECT {other_column} AS value, count(*) AS n FROM ev WHERE {where} AND {other_column} <> '' "
                f"GROUP BY {other_column} ORDER BY n DESC LIMIT 5", params)
        return {"events": int(head["n"][0]), "first": head["first"][0], "last": head["last"][0], "related": related}

    def watch_matches(self, watch: Watch, flt: Filter) -> tuple[int, set[str]]:
        """(events in the filter that involve a listed entity, listed entries that matched nothing). A few
        queries whatever the list's length: a 10,000-entry list must not cost 10,000 queries per page view."""
        where, params = self.where(flt)
        clause, values = _watch_clause(watch, flt.case_sensitive)
        total = int(self._query(f"SELECT count(*) AS n FROM ev WHERE {where} AND {clause}", params + values)["n"][0])
        unmatched = set()
        if watch.accounts:
            one, vals = _accounts_in(watch.accounts, flt.case_sensitive)
            seen = set(self._query(f"SELECT DISTINCT {'user_id' if flt.case_sensitive else 'lower(user_id)'} AS v "
                                   f"FROM ev WHERE {where} AND {one}", params + vals)["v"])
            unmatched.update(a for a in watch.accounts if (a if flt.case_sensitive else a.lower()) not in seen)
        if watch.networks:
            one, vals = _ip_match(watch.networks)
            present = self._query(f"SELECT DISTINCT client_ip AS a FROM ev WHERE {where} AND {one}", params + vals)
            unmatched.update(set(watch.networks) - ip.entries_matching(watch.networks, present["a"]))
        return total, unmatched


def _naive(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _ip_match(entries: tuple[str, ...]) -> tuple[str, list]:
    """Addresses (one list, a hash join however long it is) and ranges (number spans over ip_v6, ip_num)."""
    wanted = ip.IpSet(entries)
    parts, params = [], []
    if wanted.exact:
        parts.append("client_ip IN (SELECT unnest(?::VARCHAR[]))")
        params.append(sorted(wanted.exact))
    for v6, low, high in wanted.ranges:
        parts.append("(ip_v6 = ? AND ip_num BETWEEN CAST(? AS UHUGEINT) AND CAST(? AS UHUGEINT))")
        params.extend([v6, str(low), str(high)])
    return "(" + " OR ".join(parts) + ")", params


def _accounts_in(accounts: tuple[str, ...], case_sensitive: bool) -> tuple[str, list]:
    if case_sensitive:
        return "user_id IN (SELECT unnest(?::VARCHAR[]))", [list(accounts)]
    return "lower(user_id) IN (SELECT unnest(?::VARCHAR[]))", [[a.lower() for a in accounts]]


DUCKDB = Dialect(time_column="ts", time_param=_naive, fold="lower", fold_value=str.lower,
                 contains="contains({column}, ?)", ip_match=_ip_match)


def _watch_clause(watch: Watch, case_sensitive: bool) -> tuple[str, list]:
    """Events that involve a listed account or address (OR of both parts)."""
    pieces = []
    if watch.accounts:
        pieces.append(_accounts_in(watch.accounts, case_sensitive))
    if watch.networks:
        pieces.append(_ip_match(watch.networks))
    if not pieces:
        return "FALSE", []
    return "(" + " OR ".join(clause for clause, _ in pieces) + ")", [p for _, values in pieces for p in values]
