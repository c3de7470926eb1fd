"""The embedded default store: one SQLite file in WAL mode, so the ingest process writes while the
dashboard process reads. The narrow `events` table is what filters touch; the original JSON lives in
`raw_events` so scans over the narrow columns stay fast."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone

from . import ip
from .base import EventStore, StoreError, StoreUnavailable, translate_errors
from .model import (
    EVENT_COLUMNS,
    BlobRecord,
    Checkpoint,
    EventRow,
    Filter,
    StoreStats,
    parse_utc,
    utc_text,
)
from .sql import Dialect

_NARROW = [c for c in EVENT_COLUMNS if c != "raw"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- arrival order, assigned by store_blob; never reused
    id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL, content_type TEXT NOT NULL, workload TEXT NOT NULL, record_type INTEGER,
    operation TEXT NOT NULL, result_status TEXT NOT NULL, user_id TEXT NOT NULL, client_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL, application TEXT NOT NULL, object_id TEXT NOT NULL, site_url TEXT NOT NULL,
    file_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS raw_events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    content_id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_created TEXT NOT NULL,
    content_expiration TEXT NOT NULL, events INTEGER NOT NULL, status TEXT NOT NULL,
    error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '', recorded_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    content_type TEXT PRIMARY KEY, listed_until TEXT, last_success TEXT, last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', '1');
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
CREATE TABLE IF NOT EXISTS watchlists (name TEXT PRIMARY KEY, payload TEXT NOT NULL, saved_at TEXT NOT NULL);
"""

_INSERT_EVENT = f"INSERT OR IGNORE INTO events(seq, {', '.join(_NARROW)}) VALUES (?, {', '.join('?' * len(_NARROW))})"


def _ip_between(address: str, v6: int, low: str, high: str) -> int:
    """Whether an address lies in [low, high] (integers as text: IPv6 needs 128 bits, SQLite has 64)."""
    is_v6, value = ip.number(address)
    return int(is_v6 is not None and is_v6 == bool(v6) and int(low) <= value <= int(high))


def _fold(value):
    return value.casefold() if isinstance(value, str) else value


def _present(conn: sqlite3.Connection, table: str, column: str, values: list[str], also: str = "1") -> set[str]:
    """Which of `values` are in table.column (an indexed column), in chunks under SQLite's variable limit."""
    found: set[str] = set()
    for i in range(0, len(values), 500):
        chunk = values[i:i + 500]
        found.update(r[0] for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE {column} IN ({', '.join('?' * len(chunk))}) AND {also}", chunk))
    return found


def _store_error(path: str, exc: sqlite3.Error) -> StoreError:
    """What a failed SQLite operation means for the person running this, in words they can act on."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL") or "disk is full" in str(exc):
        return StoreError(f"The disk holding the event store ({path}) is full. Free some space or set AUDIT_STORE "
                          "to a larger disk; nothing stored so far is lost, and the next sync goes on from where "
                          "this one stopped.")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
        return StoreError(f"The event store file {path} is damaged ({exc}). {_DAMAGED_ADVICE}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"The event store {path} stayed busy (another process held it too long); try again.")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        return StoreError(f"The event store {path} cannot be written or read ({exc}): check the file's "
                          "permissions and the disk.")
    return StoreError(f"The event store {path} failed: {exc}")


_DAMAGED_ADVICE = ("Stop the dashboard and the sync, then restore the file from a backup — or move it aside and "
                   "sync again, which brings back the last 7 days (what the Management Activity API keeps).")


def _ip_match(entries: tuple[str, ...]) -> tuple[str, list]:
    wanted = ip.IpSet(entries)
    parts, params = [], []
    if wanted.exact:
        parts.append(f"client_ip IN ({', '.join('?' * len(wanted.exact))})")
        params.extend(sorted(wanted.exact))
    for v6, low, high in wanted.ranges:
        parts.append("ip_between(client_ip, ?, ?, ?)")
        params.extend([int(v6), str(low), str(high)])
    return "(" + " OR ".join(parts) + ")", params


# `fold` is casefold(), registered on every connection (SQLite's own lower() knows ASCII only)
SQLITE = Dialect(time_column="time", time_param=utc_text, fold="fold", fold_value=str.casefold,
                 contains="instr({column}, ?) > 0", ip_match=_ip_match)


def _dt(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


@translate_errors(sqlite3.Error, lambda store, exc: _store_error(store.path, exc))
class SqliteStore(EventStore):
    def __init__(self, path: str):
        self.path = path
        self.description = f"SQLite {path}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            conn = self._conn()
            conn.executescript(_SCHEMA)
            if "attempts" not in {row[1] for row in conn.execute("PRAGMA table_info(blobs)")}:  # older stores
                conn.execute("ALTER TABLE blobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"Cannot open the SQLite store at {path}: {exc}. Check that the folder exists and is writable, "
                "or set AUDIT_STORE=sqlite:///another/path.db"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-32768")  # 32 MB: the id index of a busy tenant stays in memory
        conn.create_function("ip_between", 4, _ip_between, deterministic=True)
        conn.create_function("fold", 1, _fold, deterministic=True)
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self):
        """A write transaction that takes the lock up front (no upgrade deadlocks between processes)."""
        return _Transaction(self._conn())

    # --- ingest side -------------------------------------------------------------------------
    def store_blobs(self, batch: Sequence[tuple[BlobRecord, Sequence[EventRow]]]) -> int:
        rows = [row for _, blob_rows in batch for row in blob_rows]
        with self._write() as conn:
            # Every row gets the next position; the UNIQUE id index drops the ones already stored, and
            # their raw JSON is removed again with one range delete. Both tables are appended to in
            # position order, which is what makes this fast (no lookup per row before inserting).
            first = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
            before = conn.total_changes
            conn.executemany(_INSERT_EVENT, ((first + n, *row[:-1]) for n, row in enumerate(rows)))
            added = conn.total_changes - before
            conn.executemany("INSERT INTO raw_events(seq, json) VALUES (?, ?)",
                             ((first + n, row.raw) for n, row in enumerate(rows)))
            if added < len(rows):
                conn.execute("DELETE FROM raw_events WHERE seq >= ? AND seq NOT IN "
                             "(SELECT seq FROM events WHERE seq >= ?)", (first, first))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(first + len(rows)),))
            for blob, blob_rows in batch:
                self._upsert_blob(conn, blob, len(blob_rows), "stored")
        return added

    def record_lost_blob(self, blob: BlobRecord) -> None:
        with self._write() as conn:
            self._upsert_blob(conn, blob, 0, "lost")

    def record_blob_failure(self, blob: BlobRecord, give_up_after: int) -> BlobRecord:
        with self._write() as conn:
            row = conn.execute("SELECT attempts FROM blobs WHERE content_id = ? AND status = 'retrying'",
                               (blob.content_id,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            recorded = replace(blob, events=0, status="lost" if attempts >= give_up_after else "retrying",
                               attempts=attempts)
            self._upsert_blob(conn, recorded, 0, recorded.status)
        return recorded

    @staticmethod
    def _upsert_blob(conn, blob: BlobRecord, events: int, status: str) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO blobs(content_id, content_type, content_created, content_expiration, events, "
            "status, error_code, error_message, recorded_at, attempts) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (blob.content_id, blob.content_type, blob.content_created, blob.content_expiration, events, status,
             blob.error_code, blob.error_message, utc_text(datetime.now(timezone.utc)), blob.attempts),
        )

    def known_blob_ids(self, content_type: str, content_ids: Iterable[str]) -> set[str]:
        return _present(self._conn(), "blobs", "content_id", list(content_ids), "status <> 'retrying'")

    def get_checkpoint(self, content_type: str) -> Checkpoint:
        row = self._conn().execute(
            "SELECT listed_until, last_success, last_error FROM checkpoints WHERE content_type = ?", (content_type,)
        ).fetchone()
        if row is None:
            return Checkpoint(content_type)
        return Checkpoint(content_type, _dt(row[0]), _dt(row[1]), row[2])

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints(content_type, listed_until, last_success, last_error) "
                "VALUES (?,?,?,?)",
                (checkpoint.content_type,
                 utc_text(checkpoint.listed_until) if checkpoint.listed_until else None,
                 utc_text(checkpoint.last_success) if checkpoint.last_success else None,
                 checkpoint.last_error),
            )

    def blob_issues(self) -> list[BlobRecord]:
        rows = self._conn().execute(
            "SELECT content_id, content_type, content_created, content_expiration, events, status, error_code, "
            "error_message, attempts FROM blobs WHERE status <> 'stored' OR error_code <> '' ORDER BY content_created"
        ).fetchall()
        return [BlobRecord(*row) for row in rows]

    def check(self, full: bool = False) -> str:
        conn = self._conn()
        for table in [None] if full else ["meta", "checkpoints", "blobs", "leases", "watchlists"]:
            problem = conn.execute(f"PRAGMA quick_check({table or 1})").fetchone()[0]
            if problem != "ok":
                return f"The event store file {self.path} is damaged ({problem}). {_DAMAGED_ADVICE}"
        return ""

    def prune(self, before: datetime) -> int:
        cutoff = utc_text(before)
        now = utc_text(datetime.now(timezone.utc))
        with self._write() as conn:
            conn.execute("DELETE FROM raw_events WHERE seq IN (SELECT seq FROM events WHERE time < ?)", (cutoff,))
            removed = conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
            if removed:
                conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            # a stored blob's id is only needed while the API can still list it
            conn.execute("DELETE FROM blobs WHERE status = 'stored' AND content_expiration < ?", (now,))
        return removed

    def try_lease(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row and row[0] != owner and row[1] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO leases(name, owner, expires) VALUES (?,?,?)",
                         (name, owner, now + seconds))
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease_holder(self, name: str) -> str | None:
        row = self._conn().execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
        return row[0] if row and row[1] > time.time() else None

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- reading side ------------------------------------------------------------------------
    def query(self, flt: Filter, limit: int = 100, offset: int = 0) -> list[EventRow]:
        where, params = SQLITE.where(flt)
        sql = (f"SELECT {', '.join('e.' + c for c in _NARROW)}, r.json FROM "
               f"(SELECT * FROM events WHERE {where} ORDER BY time DESC, seq DESC LIMIT ? OFFSET ?) e "
               f"JOIN raw_events r ON r.seq = e.seq ORDER BY e.time DESC, e.seq DESC")
        return [EventRow(*row) for row in self._conn().execute(sql, params + [limit, offset])]

    def count(self, flt: Filter) -> int:
        where, params = SQLITE.where(flt)
        return self._conn().execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0]

    def iter_events(self, flt: Filter | None = None) -> Iterator[EventRow]:
        where, params = SQLITE.where(flt or Filter())
        # a connection of its own, so a long export does not hold up this thread's other reads
        conn = self._connect()
        try:
            cursor = conn.execute(
                f"SELECT {', '.join('e.' + c for c in _NARROW)}, r.json FROM events e "
                f"JOIN raw_events r ON r.seq = e.seq WHERE {where}", params)
            for row in cursor:
                yield EventRow(*row)
        finally:
            conn.close()

    def stats(self) -> StoreStats:
        conn = self._conn()
        total, first, last = conn.execute("SELECT count(*), min(time), max(time) FROM events").fetchone()
        per_type = dict(conn.execute("SELECT content_type, count(*) FROM events GROUP BY content_type"))
        return StoreStats(total, first, last, per_type)

    def data_version(self) -> tuple[int, int]:
        values = dict(self._conn().execute("SELECT key, value FROM meta WHERE key IN ('next_seq', 'generation')"))
        return int(values["next_seq"]) - 1, int(values["generation"])

    def rows_since(self, position: int, limit: int = 50_000) -> list[tuple]:
        return self._conn().execute(
            f"SELECT seq, {', '.join(_NARROW)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (position, limit)).fetchall()

    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        found = {}
        conn = self._conn()
        positions = list(positions)
        for i in range(0, len(positions), 500):
            chunk = positions[i:i + 500]
            for row in conn.execute(
                    f"SELECT e.seq, {', '.join('e.' + c for c in _NARROW)}, r.json FROM events e "
                    f"JOIN raw_events r ON r.seq = e.seq WHERE e.seq IN ({', '.join('?' * len(chunk))})", chunk):
                found[row[0]] = EventRow(*row[1:])
        return [found[p] for p in positions if p in found]

    def save_watchlist(self, name: str, payload: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO watchlists(name, payload, saved_at) VALUES (?, ?, ?)",
                         (name, payload, utc_text(datetime.now(timezone.utc))))

    def watchlists(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT name, payload FROM watchlists ORDER BY name"))

    def delete_watchlist(self, name: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM watchlists WHERE name = ?", (name,))

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # e.g. a full disk at commit: the next transaction must be able to begin
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
