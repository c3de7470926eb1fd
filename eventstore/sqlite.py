"""The embedded default store: one SQLite file in WAL mode, so the ingest process writes while the dashboard
process reads.

It is the durable record, kept compact (about 160 bytes an event on the simulated tenant; 1.1 KB in the
first layout): events live in blocks of up to 256, all of one UTC day, each block two zlib streams (written and
read by ISA-L's deflate, four times as fast as zlib's at the same size; any zlib reads them) — the
events' original JSON, byte for byte, and their narrow columns, which is all the dashboard's index reads.
A (day, id) table dedupes on the record Id; since a record's copies share its time, they share its day,
so the dedupe set of the days being written stays in the page cache however large the store grows, and a
day is pruned by deleting one key range. Filtering and aggregating is the index's work, not the store's."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import astuple
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import accumulate, groupby
from operator import itemgetter

from isal import isal_zlib

from .base import Changes, EventStore, StoreError, StoreUnavailable, translate_errors
from .model import ActivityEntry, ActivityQuery, EventRow, StoreStats, WorkItem, utc_text

log = logging.getLogger("eventstore.sqlite")
LAYOUT = "2"
BLOCK_ROWS = 256  # zlib's 32 kB window gains little beyond this; a block is ~0.3 ms to read
# ISA-L's level 2 (of 0-3): the bytes of zlib's level 2 (~20 % more than its default 6), at 4.6 times its speed
ZLIB_LEVEL = 2
PRUNE_CHUNK = 20_000  # rows deleted per transaction: the ingest and the dashboard never wait long for a prune
_EPOCH = date(1970, 1, 1)
_COMPRESSING = ThreadPoolExecutor(2, thread_name_prefix="store-compress")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    first_seq INTEGER PRIMARY KEY,  -- the block holds positions first_seq .. first_seq + rows - 1 (arrival order)
    day INTEGER NOT NULL,           -- of every event in it: days since 1970-01-01, UTC
    rows INTEGER NOT NULL,
    narrow BLOB NOT NULL,           -- zlib(JSON: per event, the EventRow fields except raw, then raw's length)
    raw BLOB NOT NULL,              -- zlib(the events' original JSON texts, one after the other)
    lengths BLOB                    -- each text's length in bytes, 4 bytes little-endian (blocks written before
                                    -- 2026-12: NULL, the lengths read from narrow)
);
CREATE INDEX IF NOT EXISTS blocks_by_day ON blocks(day);
CREATE TABLE IF NOT EXISTS ids (day INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (day, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS days (
    day INTEGER NOT NULL, content_type TEXT NOT NULL, events INTEGER NOT NULL, first_time TEXT NOT NULL,
    last_time TEXT NOT NULL, PRIMARY KEY (day, content_type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (
    stream TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL, pending INTEGER NOT NULL, issue INTEGER NOT NULL,
    expires TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (stream, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_pending ON work(stream, at) WHERE pending;
CREATE INDEX IF NOT EXISTS work_issues ON work(at) WHERE issue;
CREATE INDEX IF NOT EXISTS work_expires ON work(expires) WHERE expires <> '';
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watchlists (name TEXT PRIMARY KEY, payload TEXT NOT NULL, saved_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activity (at TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (kind, key));
INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', '1'), ('horizon', ''), ('layout', '2'),
    ('store.id', lower(hex(randomblob(16))));
"""
_STATE_TABLES = ("work", "documents", "leases", "meta", "watchlists", "activity")
# Until the sources kept their own state (2026-11), the store held the live feed's blobs and checkpoints in tables
# of their own; a store that has them has their rows moved into work items and cursor documents once, at open.
_FEED_TABLES = """
CREATE TABLE IF NOT EXISTS blobs (
    content_id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_created TEXT NOT NULL,
    content_expiration TEXT NOT NULL, events INTEGER NOT NULL, status TEXT NOT NULL,
    error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '', recorded_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    content_type TEXT PRIMARY KEY, listed_until TEXT, last_success TEXT, last_error TEXT NOT NULL DEFAULT '',
    queued_until TEXT
);
"""
_MOVE_FEED_TABLES = """
INSERT OR REPLACE INTO work(stream, key, at, pending, issue, expires, detail)
    SELECT content_type, content_id, content_created, status IN ('queued', 'retrying'),
        status IN ('lost', 'retrying') OR (status = 'stored' AND error_code <> ''),
        CASE status WHEN 'stored' THEN content_expiration ELSE '' END,
        json_object('expiration', content_expiration, 'events', events, 'status', status, 'error_code', error_code,
                    'error_message', error_message, 'attempts', attempts)
    FROM blobs;
INSERT OR REPLACE INTO documents(kind, key, payload)
    SELECT 'cursor', content_type, json_object('listed_until', listed_until, 'last_success', last_success,
                                               'last_error', last_error, 'queued_until', queued_until)
    FROM checkpoints;
DROP TABLE blobs;
DROP TABLE checkpoints;
"""
_DAMAGED_ADVICE = ("Stop the dashboard and the sync, then restore the file from a backup — or move it aside and "
                   "sync again, which brings back the last 7 days (what the Management Activity API keeps).")


def _day(time_text: str) -> int:
    return _day_number(time_text[:10])


@lru_cache(maxsize=4096)
def _day_number(day_text: str) -> int:
    return (date.fromisoformat(day_text) - _EPOCH).days


def _day_text(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id_key(record_id: str) -> bytes:
    """The Id as dedupe key: 17 bytes for a GUID in its canonical (lower-case) form, else its text; a kind byte
    first, so the two forms can never meet."""
    if _CANONICAL_GUID.fullmatch(record_id):
        return b"\x01" + bytes.fromhex(record_id.replace("-", ""))
    return b"\x02" + record_id.encode()


# An event as this store writes it, made by `_encode` (which the ingest runs in its parsing process): (dedupe key,
# day, content type, time, its narrow columns as JSON with its record's length, its record's bytes). A plain tuple:
# it crosses between processes five times as fast as a named one.
Encoded = tuple[bytes, int, str, str, bytes, bytes]


def _encode(row: EventRow) -> Encoded:
    raw = row.raw.encode()
    return (_id_key(row.id), _day(row.time), row.content_type, row.time,
            _narrow_json([*row[:-1], len(raw)]).encode(), raw)


_narrow_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder for every row


def _pack(rows: Sequence[Encoded]) -> tuple[bytes, bytes, bytes]:
    narrow = b"[" + b",".join(map(_NARROW, rows)) + b"]"
    raws = list(map(_RAW, rows))
    return (isal_zlib.compress(narrow, ZLIB_LEVEL), isal_zlib.compress(b"".join(raws), ZLIB_LEVEL),
            struct.pack(f"<{len(raws)}I", *map(len, raws)))


def _narrow(packed: bytes) -> list[list]:
    return json.loads(isal_zlib.decompress(packed))


def _unpack(narrow: bytes, raw: bytes) -> list[EventRow]:
    block = _Block(narrow, raw)
    block.inflate(block.starts[-1])
    return [block.row(n) for n in range(len(block.fields))]


class _Block:
    """A block as read, its rows made only when asked and its records inflated only as far as the rows asked for:
    a detection wants one record of a block's 256."""

    __slots__ = ("fields", "starts", "packed", "data")

    def __init__(self, narrow: bytes, raw: bytes):
        self.fields, self.packed, self.data = _narrow(narrow), raw, b""
        self.starts = list(accumulate((length for *_, length in self.fields), initial=0))

    def inflate(self, end: int) -> bytes:
        """The records' bytes up to at least `end` (another thread may be inflating the same block: never shrink)."""
        data = self.data
        if len(data) < end:
            data = isal_zlib.decompressobj().decompress(self.packed, end)
            if len(data) > len(self.data):
                self.data = data
        return data

    def row(self, n: int) -> EventRow:
        *values, length = self.fields[n]
        start = self.starts[n]
        return EventRow(*values, self.inflate(start + length)[start:start + length].decode())


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


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MB: the dedupe keys of the days being written stay in memory
    # reads through the OS's mapping of the file: blocks read in position order (a detection's records scattered
    # over months) come with the kernel's read-ahead instead of a read call each, twice as fast from a cold disk
    conn.execute("PRAGMA mmap_size=2147483647")  # (SQLite's own ceiling, unless built with a higher one)
    return conn


@translate_errors(sqlite3.Error, lambda store, exc: _store_error(store.path, exc))
class SqliteStore(EventStore):
    encode = staticmethod(_encode)

    def __init__(self, path: str, progress: Callable[[str], None] | None = None):
        """`progress` hears about a one-time upgrade of an older layout (it takes a while on a large store)."""
        self.path = path
        self.description = f"SQLite {path}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, _Block] = OrderedDict()  # recently read blocks (immutable)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            _upgrade_if_older(path, progress or (lambda message: log.warning("%s", message)))
            conn = self._conn()
            conn.executescript(_SCHEMA)
            if not any(column[1] == "lengths" for column in conn.execute("PRAGMA table_info(blocks)")):
                with self._write() as tx:  # a store from before 2026-12 (another process may have just done it)
                    if not any(column[1] == "lengths" for column in tx.execute("PRAGMA table_info(blocks)")):
                        tx.execute("ALTER TABLE blocks ADD COLUMN lengths BLOB")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone():
                with self._write() as tx:
                    if not any(column[1] == "queued_until" for column in tx.execute("PRAGMA table_info(checkpoints)")):
                        tx.execute("ALTER TABLE checkpoints ADD COLUMN queued_until TEXT")  # from before fan-out
                    for statement in _MOVE_FEED_TABLES.split(";"):
                        tx.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"Cannot open the SQLite store at {path}: {exc}. Check that the folder exists and is writable, "
                "or set AUDIT_STORE=sqlite:///another/path.db"
            ) from None

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self):
        """A write transaction that takes the lock up front (no upgrade deadlocks between processes)."""
        return _Transaction(self._conn())

    # --- ingest side -------------------------------------------------------------------------
    def store_events(self, rows: Sequence[EventRow], done: Sequence[WorkItem] = ()) -> int:
        with self._write() as conn:
            added = _insert_events(conn, rows)
            _put_work(conn, done, "REPLACE")
        return added

    def put_work(self, items: Sequence[WorkItem], keep_existing: bool = False) -> None:
        with self._write() as conn:
            _put_work(conn, items, "IGNORE" if keep_existing else "REPLACE")

    def work_items(self, stream: str, keys: Iterable[str]) -> dict[str, WorkItem]:
        values, found, conn = list(keys), {}, self._conn()
        for i in range(0, len(values), 500):  # under SQLite's variable limit
            chunk = values[i:i + 500]
            for row in conn.execute(f"SELECT {_WORK_COLUMNS} FROM work WHERE stream = ? AND key IN "
                                    f"({', '.join('?' * len(chunk))})", [stream, *chunk]):
                found[row[1]] = _work_item(row)
        return found

    def pending_work(self, stream: str) -> tuple[int, str | None]:
        count, oldest = self._conn().execute("SELECT count(*), min(at) FROM work WHERE stream = ? AND pending",
                                             (stream,)).fetchone()
        return count, oldest

    def work_issues(self) -> list[WorkItem]:
        return [_work_item(row) for row in self._conn().execute(
            f"SELECT {_WORK_COLUMNS} FROM work WHERE issue ORDER BY at")]

    def check(self, full: bool = False) -> str:
        conn = self._conn()
        for table in [None] if full else _STATE_TABLES:
            problem = conn.execute(f"PRAGMA quick_check({table or 1})").fetchone()[0]
            if problem != "ok":
                return f"The event store file {self.path} is damaged ({problem}). {_DAMAGED_ADVICE}"
        return ""

    def prune(self, before: datetime) -> int:
        """Whole UTC days before `before`'s day, one day at a time and a few thousand rows per transaction, so
        neither the ingest nor the dashboard ever waits long; the horizon moves once they are gone."""
        conn, removed, cutoff = self._conn(), 0, _day(utc_text(before))
        for (day,) in conn.execute("SELECT DISTINCT day FROM days WHERE day < ? ORDER BY day", (cutoff,)).fetchall():
            for table, key in (("blocks", "first_seq"), ("ids", "id")):
                while True:
                    with self._write() as tx:
                        deleted = tx.execute(f"DELETE FROM {table} WHERE day = ? AND {key} IN (SELECT {key} FROM "
                                             f"{table} WHERE day = ? LIMIT ?)", (day, day, PRUNE_CHUNK)).rowcount
                    if deleted < PRUNE_CHUNK:
                        break
            with self._write() as tx:
                removed += tx.execute("SELECT coalesce(sum(events), 0) FROM days WHERE day = ?", (day,)).fetchone()[0]
                tx.execute("DELETE FROM days WHERE day = ?", (day,))
        with self._write() as tx:
            tx.execute("UPDATE meta SET value = ? WHERE key = 'horizon' AND value < ?", (_day_text(cutoff),) * 2)
            tx.execute("DELETE FROM work WHERE expires <> '' AND expires < ?", (utc_text(datetime.now(timezone.utc)),))
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
    def iter_events(self) -> Iterator[EventRow]:
        # a connection of its own, so a long export does not hold up this thread's other reads
        conn = _connect(self.path)
        try:
            for narrow, raw in conn.execute("SELECT narrow, raw FROM blocks ORDER BY first_seq"):
                yield from _unpack(narrow, raw)
        finally:
            conn.close()

    def stats(self, content_types: Iterable[str] = ()) -> StoreStats:
        conn = self._conn()
        total, first, last = conn.execute("SELECT coalesce(sum(events), 0), min(first_time), max(last_time) "
                                          "FROM days").fetchone()
        per_type = dict(conn.execute("SELECT content_type, sum(events) FROM days GROUP BY content_type"))
        return StoreStats(total, first, last, {ct: per_type[ct] for ct in content_types if ct in per_type})

    def horizon(self) -> str:
        return self.get_meta("horizon") or ""

    def changes(self, cursor: str, limit: int = 50_000) -> Changes:
        """The cursor is the last position delivered: positions are handed out in commit order under the write
        lock, so nothing ever appears behind it and nothing is delivered twice."""
        conn, position, found = self._conn(), int(cursor or 0), []
        (start,) = conn.execute("SELECT coalesce(max(first_seq), 0) FROM blocks WHERE first_seq <= ?",
                                (position + 1,)).fetchone()
        for first, narrow in conn.execute("SELECT first_seq, narrow FROM blocks WHERE first_seq >= ? "
                                          "ORDER BY first_seq", (start,)):
            found.extend((first + n, *values[:-1]) for n, values in enumerate(_narrow(narrow))
                         if first + n > position)
            if len(found) >= limit:
                break
        found = found[:limit]
        last = found[-1][0] if found else position
        (next_seq,) = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return Changes(found, str(last), int(next_seq) - 1 - last)

    def events_at(self, positions: Sequence[int]) -> list[EventRow]:
        found = {}
        for (first, _), inside in self._blocks_holding(positions):
            block = self._block(first)
            block.inflate(block.starts[inside[-1] + 1])  # once, as far as the last row wanted
            found.update((first + n, block.row(n)) for n in inside)
        return [found[p] for p in positions if p in found]

    def records_at(self, positions: Sequence[int]) -> dict[int, str]:
        found = {}
        for (first, _, lengths, raw, narrow), inside in self._blocks_holding(
                positions, ", lengths, raw, CASE WHEN lengths IS NULL THEN narrow END"):
            sizes = struct.unpack(f"<{len(lengths) // 4}I", lengths) if lengths is not None else \
                [row[-1] for row in _narrow(narrow)]
            starts = list(accumulate(sizes[:inside[-1] + 1], initial=0))
            data = isal_zlib.decompressobj().decompress(raw, starts[-1])  # as far as the last record wanted
            found.update((first + n, data[starts[n]:starts[n + 1]].decode()) for n in inside)
        return found

    def _blocks_holding(self, positions: Sequence[int], columns: str = "") -> Iterator[tuple[tuple, list[int]]]:
        """Each block holding some of these positions, once, in position order: (first_seq, rows and `columns`),
        and the offsets in it of the positions it holds. Pruned positions are in none."""
        ordered, at, conn = sorted(set(positions)), 0, self._conn()
        while at < len(ordered):
            block = conn.execute(f"SELECT first_seq, rows{columns} FROM blocks WHERE first_seq <= ? "
                                 "ORDER BY first_seq DESC LIMIT 1", (ordered[at],)).fetchone()
            inside = []
            while at < len(ordered) and block is not None and ordered[at] - block[0] < block[1]:
                inside.append(ordered[at] - block[0])
                at += 1
            if inside:
                yield block, inside
            else:
                at += 1

    def _block(self, first: int) -> _Block:
        with self._lock:
            cached = self._blocks.get(first)
        if cached is None:
            narrow, raw = self._conn().execute("SELECT narrow, raw FROM blocks WHERE first_seq = ?",
                                               (first,)).fetchone()
            cached = _Block(narrow, raw)
            with self._lock:
                self._blocks[first] = cached
                while len(self._blocks) > 64:
                    self._blocks.popitem(last=False)
        return cached

    def save_watchlist(self, name: str, payload: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO watchlists(name, payload, saved_at) VALUES (?, ?, ?)",
                         (name, payload, utc_text(datetime.now(timezone.utc))))

    def watchlists(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT name, payload FROM watchlists ORDER BY name"))

    def delete_watchlist(self, name: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM watchlists WHERE name = ?", (name,))

    def put_documents(self, kind: str, documents: dict[str, str]) -> None:
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO documents(kind, key, payload) VALUES (?, ?, ?)",
                             [(kind, key, payload) for key, payload in documents.items()])

    def documents(self, kind: str) -> dict[str, str]:
        return dict(self._conn().execute("SELECT key, payload FROM documents WHERE kind = ?", (kind,)))

    def record_activity(self, who: str, action: str, detail: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO activity(at, who, action, detail) VALUES (?, ?, ?, ?)",
                         (utc_text(datetime.now(timezone.utc)), who, action, detail))

    def activity(self, query: ActivityQuery = ActivityQuery(), limit: int | None = 1000,
                 offset: int = 0) -> tuple[int, list[ActivityEntry]]:
        where, params = [], []
        for clause, value in (("who = ?", query.who), ("action = ?", query.action), ("at >= ?", query.since),
                              ("at < ?", query.until)):
            if value:
                where.append(clause)
                params.append(value)
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        conn = self._conn()
        total = conn.execute(f"SELECT count(*) FROM activity {condition}", params).fetchone()[0]
        rows = conn.execute(f"SELECT at, who, action, detail FROM activity {condition} ORDER BY rowid DESC "
                            "LIMIT ? OFFSET ?", [*params, -1 if limit is None else limit, offset])
        return total, [tuple(row) for row in rows]

    def activity_facets(self) -> tuple[list[str], list[str]]:
        conn = self._conn()
        return ([who for (who,) in conn.execute("SELECT DISTINCT who FROM activity ORDER BY who")],
                [action for (action,) in conn.execute("SELECT DISTINCT action FROM activity ORDER BY action")])

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _insert_events(conn: sqlite3.Connection, given: Sequence[EventRow | Encoded]) -> int:
    """Store the rows not stored yet (by their day and Id), in blocks per day, at the next positions; keeps the
    per-day counts. Within the caller's transaction. Returns how many were new. Rows come encoded from the ingest's
    parsing process, and the blocks are compressed while SQLite finds which rows are new and adds their Ids and
    counts: this runs on the ingest's busiest thread."""
    rows = [row if type(row) is tuple else _encode(row) for row in given]  # (an EventRow is a named tuple)
    first_of = {}  # (dedupe key, day) -> the first row that has it: a copy within the batch is not stored
    for n, row in enumerate(rows):
        first_of.setdefault(row[:2], n)
    fresh = sorted((day, n) for (_, day), n in first_of.items())  # by day, then in arrival order
    blocks = _pack_blocks(rows, fresh)  # on the guess that none was stored before: compressed while SQLite checks
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (n INTEGER PRIMARY KEY, id BLOB NOT NULL, "
                 "content_type TEXT NOT NULL, time TEXT NOT NULL, day INTEGER NOT NULL)")
    conn.execute("DELETE FROM incoming")
    conn.executemany("INSERT INTO incoming(n, id, day, content_type, time) VALUES (?, ?, ?, ?, ?)",
                     ((n, *rows[n][:4]) for n in first_of.values()))
    if conn.execute("DELETE FROM incoming WHERE EXISTS (SELECT 1 FROM ids WHERE ids.day = incoming.day "
                    "AND ids.id = incoming.id)").rowcount:  # some were stored before: the guess was wrong
        fresh = conn.execute("SELECT day, n FROM incoming ORDER BY day, n").fetchall()
        if not fresh:
            return 0
        blocks = _pack_blocks(rows, fresh)
    conn.execute("INSERT INTO ids(day, id) SELECT day, id FROM incoming")
    conn.execute(
        "INSERT INTO days(day, content_type, events, first_time, last_time) SELECT day, content_type, count(*), "
        "min(time), max(time) FROM incoming GROUP BY day, content_type "
        "ON CONFLICT(day, content_type) DO UPDATE SET events = events + excluded.events, "
        "first_time = min(first_time, excluded.first_time), last_time = max(last_time, excluded.last_time)")
    position = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
    for day, count, packing in blocks:
        conn.execute("INSERT INTO blocks(first_seq, day, rows, narrow, raw, lengths) VALUES (?, ?, ?, ?, ?, ?)",
                     (position, day, count, *packing.result()))
        position += count
    conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(position),))
    return len(fresh)


def _pack_blocks(rows: Sequence[Encoded], fresh: list[tuple[int, int]]) -> list[tuple[int, int, Future]]:
    """(day, rows, its packing under way) for each block of the `fresh` (day, row number)s: zlib lets go of the GIL,
    as SQLite does, so the blocks are compressed on both cores while the caller goes on."""
    blocks = []
    for day, same_day in groupby(fresh, key=_FIRST):
        same_day = [rows[n] for _, n in same_day]
        for start in range(0, len(same_day), BLOCK_ROWS):
            block = same_day[start:start + BLOCK_ROWS]
            blocks.append((day, len(block), _COMPRESSING.submit(_pack, block)))
    return blocks


_FIRST, _NARROW, _RAW = itemgetter(0), itemgetter(4), itemgetter(5)


_WORK_COLUMNS = "stream, key, at, pending, issue, expires, detail"


def _put_work(conn: sqlite3.Connection, items: Sequence[WorkItem], conflict: str) -> None:
    conn.executemany(f"INSERT OR {conflict} INTO work({_WORK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [astuple(item) for item in items])


def _work_item(row: tuple) -> WorkItem:
    stream, key, at, pending, issue, expires, detail = row
    return WorkItem(stream, key, at, bool(pending), bool(issue), expires, detail)


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


# --- the first layout (one row per event, JSON uncompressed), upgraded once ------------------------------
def _upgrade_if_older(path: str, progress: Callable[[str], None]) -> None:
    """A store of the first layout is rebuilt from itself into the compact one, beside it, and swapped in when
    every event is across; the old file stays as `<path>.layout1` until you remove it. Nothing is lost if this
    is interrupted: the old file is untouched until the swap, and the next start begins again."""
    if not os.path.exists(path) or not _is_layout1(path):
        return
    with open(path + ".upgrade.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process starting at the same time waits, then finds it done
        if not _is_layout1(path):
            return
        target = path + ".upgrading"
        for leftover in (target, target + "-wal", target + "-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        old, new = _connect(path), _connect(target)
        try:
            new.executescript(_SCHEMA + _FEED_TABLES)  # moved into work items when the upgraded store opens
            old.execute("BEGIN")  # one snapshot of the old store (and its writers kept out of the way)
            (total,) = old.execute("SELECT count(*) FROM events").fetchone()
            progress(f"Upgrading the event store {path} to the compact layout: {total:,} events (once; the old "
                     f"file is kept as {path}.layout1)")
            with _Transaction(new) as tx:
                for table in _STATE_TABLES + ("blobs", "checkpoints"):
                    columns = [r[1] for r in old.execute(f"PRAGMA table_info({table})")]
                    keep = [c for c in columns if c in {r[1] for r in tx.execute(f"PRAGMA table_info({table})")}]
                    if not keep:
                        continue  # a table the first layout did not have
                    rows = old.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall()
                    tx.executemany(f"INSERT OR REPLACE INTO {table}({', '.join(keep)}) VALUES "
                                   f"({', '.join('?' * len(keep))})", rows)
                tx.execute("UPDATE meta SET value = '1' WHERE key = 'next_seq'")
                tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('store.id', lower(hex(randomblob(16))))")
            moved, position, shown = 0, 0, time.monotonic()
            columns = ", ".join(f"e.{c}" for c in EventRow._fields[:-1])
            while True:
                chunk = old.execute(f"SELECT e.seq, {columns}, r.json FROM events e JOIN raw_events r ON r.seq = e.seq "
                                    "WHERE e.seq > ? ORDER BY e.seq LIMIT 20000", (position,)).fetchall()
                if not chunk:
                    break
                with _Transaction(new) as tx:
                    moved += _insert_events(tx, [EventRow(*row[1:]) for row in chunk])
                position = chunk[-1][0]
                if time.monotonic() - shown > 5:
                    progress(f"Upgrading the event store: {moved:,} of {total:,} events")
                    shown = time.monotonic()
            if moved != total:
                raise sqlite3.DatabaseError(f"the upgrade copied {moved:,} of {total:,} events; the old store "
                                            "is left as it was")
            old.execute("ROLLBACK")
        finally:
            old.close()
            new.close()
        os.replace(path, path + ".layout1")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, path + ".layout1" + suffix)
        os.replace(target, path)
        progress(f"Upgraded the event store {path}: {moved:,} events. The old file {path}.layout1 can be removed.")


def _is_layout1(path: str) -> bool:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'raw_events'").fetchone() \
            is not None
    finally:
        conn.close()
