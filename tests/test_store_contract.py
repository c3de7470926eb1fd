"""One suite every EventStore backend must pass (SQLite, and Cosmos DB against a real Cosmos DB REST server
on loopback): the promises ingest and the dashboard rely on."""
from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.index import ActivityIndex
from eventstore import ActivityQuery, Filter, WorkItem
from eventstore.model import parse_utc
from eventstore.sqlite import SqliteStore
from ingest.feedstate import BlobRecord, Checkpoint, FeedState
from ingest.normalize import normalize

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(params=["sqlite", "cosmos"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "contract.db"))
    else:
        store = request.getfixturevalue("cosmos_server").store(retention_days=30)
    yield store
    store.close()


@pytest.fixture
def feed(backend):
    return FeedState(backend)


def record(i: int, user: str = "Megan.B@contoso.com", ip: str = "203.0.113.9", operation: str = "FileAccessed",
           age_hours: float = 1.0, **extra) -> dict:
    when = (NOW - timedelta(hours=age_hours)).strftime("%Y-%m-%dT%H:%M:%S")
    return {"Id": f"00000000-0000-4000-8000-{i:012d}", "CreationTime": when, "Operation": operation,
            "UserId": user, "ClientIP": ip, "Workload": "SharePoint", "RecordType": 6, **extra}


def blob(name: str, records: list[dict], content_type: str = "Audit.SharePoint"):
    created = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [normalize(r, content_type, created) for r in records]
    return BlobRecord(name, content_type, created, "2099-01-01T00:00:00Z"), rows


def test_store_dedupes_on_record_id_across_blobs(backend, feed):
    assert feed.store_blobs([blob("b1", [record(1), record(2)])]) == 2
    assert feed.store_blobs([blob("b2", [record(2), record(3), record(3)])]) == 1
    ids = sorted(r.id for r in backend.iter_events())
    assert len(ids) == 3 == len(set(ids))
    assert feed.known_ids("Audit.SharePoint", ["b1", "b2", "b3"]) == {"b1", "b2"}


def test_original_record_is_kept_whole(backend, feed):
    original = record(7, Subject="<script>alert(1)</script>", Nested={"a": [1, 2]})
    feed.store_blobs([blob("b", [original])])
    (row,) = list(backend.iter_events())
    import json

    assert json.loads(row.raw) == original


def test_original_record_comes_back_byte_for_byte_by_position(backend, feed):
    text = '{"Id":"00000000-0000-4000-8000-000000000042", "CreationTime":"%s",  "UserId":"Ünïcødé@contoso.com",' \
           '"Subject":"\\u00e9 <b>x</b>"}' % (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    import json

    row = normalize(json.loads(text), "Audit.Exchange", NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), text)
    feed.store_blobs([(BlobRecord("x", "Audit.Exchange", row.time, "2099-01-01T00:00:00Z"), [row])])
    (position, *narrow) = backend.changes("").rows[0]
    (back,) = backend.events_at([position])
    assert back.raw == text and back == row and tuple(narrow) == row[:-1]


def everything(backend) -> list[tuple]:
    """The whole feed, each position once (as the index keeps it), 7 rows per read."""
    rows, cursor = {}, ""
    while True:
        changes = backend.changes(cursor, limit=7)
        rows.update((row[0], row) for row in changes.rows)
        cursor = changes.cursor
        if changes.caught_up:
            return sorted(rows.values())


def test_the_feed_delivers_every_event_and_each_position_names_one(backend, feed):
    feed.store_blobs([blob("b1", [record(i, age_hours=i % 30) for i in range(1, 40)])])
    feed.store_blobs([blob("b2", [record(i, age_hours=i % 30) for i in range(35, 60)])])  # 5 already stored
    rows = everything(backend)
    assert len(rows) == 59 and len({r[1] for r in rows}) == 59, "every event once, under one position"
    latest = backend.changes("").cursor
    assert backend.changes(latest).remaining == 0
    feed.store_blobs([blob("b3", [record(100)])])
    assert record(100)["Id"] in {r[1] for r in backend.changes(latest).rows}, "what follows the cursor comes next"
    assert backend.horizon() == ""
    events = backend.events_at([rows[3][0], rows[50][0], 10**9])
    assert [e.id for e in events] == [rows[3][1], rows[50][1]], "in the order asked; missing positions left out"
    records = backend.records_at([rows[50][0], rows[3][0], 10**9])
    assert records == {rows[3][0]: events[0].raw, rows[50][0]: events[1].raw}, "the original texts, by position"


def test_blocks_written_by_zlib_read_the_same(tmp_path):
    """Every store before ISA-L was written by zlib, at level 6 and then 2: its blocks read as they did."""
    path = str(tmp_path / "zlib.db")
    with SqliteStore(path) as store:
        FeedState(store).store_blobs([blob("b1", [record(i, age_hours=i % 30) for i in range(1, 300)])])
        rows, texts = everything(store), {e.id: e.raw for e in store.iter_events()}
    conn = sqlite3.connect(path)
    blocks = conn.execute("SELECT first_seq, narrow, raw FROM blocks").fetchall()
    assert len(blocks) > 1
    for n, (first, narrow, raw) in enumerate(blocks):  # (zlib reads what ISA-L wrote, too)
        conn.execute("UPDATE blocks SET narrow = ?, raw = ? WHERE first_seq = ?",
                     (zlib.compress(zlib.decompress(narrow), 6), zlib.compress(zlib.decompress(raw), 2 + n % 5), first))
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        assert everything(store) == rows and {e.id: e.raw for e in store.iter_events()} == texts
        wanted = [position for position, *_ in rows[::7]]
        assert store.records_at(wanted) == {p: texts[i] for p, i, *_ in rows[::7]}


def test_prune_removes_whole_days_and_moves_the_horizon(backend, feed):
    cutoff = NOW - timedelta(hours=49)
    first_kept = cutoff.replace(hour=0, minute=0, second=0)

    def at(moment: datetime) -> float:  # the age that puts a record at this moment, whatever the hour now
        return (NOW - moment) / timedelta(hours=1)

    feed.store_blobs([blob("b", [record(1, age_hours=at(first_kept - timedelta(hours=30))),
                                 record(2, age_hours=at(first_kept - timedelta(seconds=1))),
                                 record(4, age_hours=at(first_kept)), record(3, age_hours=1)])])
    assert backend.prune(cutoff) == 2, "the days before the cutoff's day, whole"
    assert sorted(r.id[-1] for r in backend.iter_events()) == ["3", "4"], "the cutoff's day is kept whole"
    assert backend.horizon() == first_kept.strftime("%Y-%m-%d")
    assert backend.stats().events == 2
    assert feed.store_blobs([blob("again", [record(3)])]) == 0, "what is kept still dedupes"
    # the day before this cutoff's held nothing: still, everything before the cutoff's day is gone
    later = first_kept + timedelta(days=2)
    assert backend.prune(later) == 1 and backend.horizon() == later.strftime("%Y-%m-%d")
    assert [r.id[-1] for r in backend.iter_events()] == ["3"]
    assert backend.prune(cutoff) == 0 and backend.horizon() == later.strftime("%Y-%m-%d"), "never moves back"


def test_checkpoints_and_lost_blobs_round_trip(backend, feed):
    assert feed.checkpoint("DLP.All").listed_until is None
    feed.save(Checkpoint("DLP.All", NOW, NOW, "AF429 for a while"))
    assert feed.checkpoint("DLP.All") == Checkpoint("DLP.All", NOW, NOW, "AF429 for a while")
    lost = BlobRecord("gone$1", "DLP.All", "2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z", 0, "lost", "AF20051", "x")
    feed.record_lost(lost)
    assert feed.issues() == [lost]
    assert "gone$1" in feed.known_ids("DLP.All", ["gone$1"])


def test_a_blob_that_keeps_failing_is_retried_then_lost(backend, feed):
    failing = BlobRecord("bad$1", "DLP.All", "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", 0, "lost", "MALFORMED",
                         "not JSON")
    first = feed.record_failure(failing, give_up_after=3)
    assert (first.status, first.attempts) == ("retrying", 1)
    assert feed.known_ids("DLP.All", ["bad$1"]) == set(), "a retrying blob is fetched again next pass"
    assert feed.record_failure(failing, give_up_after=3).attempts == 2
    last = feed.record_failure(failing, give_up_after=3)
    assert (last.status, last.attempts) == ("lost", 3)
    assert feed.known_ids("DLP.All", ["bad$1"]) == {"bad$1"}
    assert [(b.content_id, b.status, b.attempts) for b in feed.issues()] == [("bad$1", "lost", 3)]
    # stored after all (the answer was good this time): no longer an issue, and no attempts carried over
    repaired = BlobRecord("bad$2", "DLP.All", "2026-01-03T00:00:00Z", "2026-01-09T00:00:00Z")
    feed.record_failure(replace(repaired, error_code="TOO_SLOW"), give_up_after=3)
    feed.store_blobs([(repaired, [])])
    assert "bad$2" in feed.known_ids("DLP.All", ["bad$2"])
    assert [b.content_id for b in feed.issues()] == ["bad$1"]


def test_one_lease_holder_at_a_time(backend):
    assert backend.try_lease("sync", "a", 60)
    assert not backend.try_lease("sync", "b", 60)
    assert backend.try_lease("sync", "a", 60)  # renew
    assert backend.lease_holder("sync") == "a"
    backend.release_lease("sync", "a")
    assert backend.try_lease("sync", "b", 60)


def test_racing_writers_never_share_a_position(backend, feed):
    def write(k):
        feed.store_blobs([blob(f"w{k}", [record(1000 * k + i) for i in range(20)])])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = everything(backend)
    assert len(rows) == 80 == len({row[1] for row in rows})


def test_index_keeps_in_step_and_follows_retention(backend, feed):
    index = ActivityIndex(backend)
    feed.store_blobs([blob("b1", [record(1), record(2, age_hours=100)])])
    index.refresh()
    assert index.count(Filter()) == 2
    feed.store_blobs([blob("b2", [record(3, age_hours=0.5)])])
    index.refresh()
    assert index.count(Filter()) == 3 == backend.stats().events
    assert backend.prune(NOW - timedelta(hours=48)) == 1
    index.refresh()
    assert index.count(Filter()) == 2 == backend.stats().events
    rows = backend.events_at([p for _, p in index.page(Filter(), limit=5)])
    assert [r.id for r in rows] == [r.id for r in sorted(backend.iter_events(), key=lambda r: r.time, reverse=True)]
    index.close()


def test_events_without_a_blob_are_stored_once_beside_those_of_blobs(backend, feed):
    """The backfill's path: events with no blob bookkeeping, deduped against what the feed stored."""
    feed.store_blobs([blob("b1", [record(1), record(2)])])
    _, rows = blob("unused", [record(2), record(3), record(3), record(4, age_hours=30)])
    assert backend.store_events(rows) == 2
    assert backend.store_events(rows) == 0
    assert sorted(r.id for r in backend.iter_events()) == [record(i)["Id"] for i in (1, 2, 3, 4)]
    assert all(json.loads(r.raw)["Id"] == r.id for r in backend.iter_events())  # each row with its own record
    assert feed.known_ids("Audit.SharePoint", ["b1", "unused"]) == {"b1"}


def test_documents_by_kind_round_trip(backend):
    """Leads, their review marks and the backfill's progress live here, shared by every process on the store."""
    backend.put_documents("lead", {"a1": '{"x": 1}', "b\\2/#?": '{"x": 2}'})
    backend.put_documents("lead", {"a1": '{"x": 3}'})
    backend.put_documents("backfill", {"a1": "{}"})
    assert backend.documents("lead") == {"a1": '{"x": 3}', "b\\2/#?": '{"x": 2}'}
    assert backend.documents("backfill") == {"a1": "{}"} and backend.documents("none") == {}


def test_watchlists_are_shared_through_the_store(backend):
    backend.save_watchlist("admins", '{"accounts": ["a@c.com"], "networks": []}')
    backend.save_watchlist("ips", '{"accounts": [], "networks": ["198.51.100.0/24"]}')
    assert list(backend.watchlists()) == ["admins", "ips"]
    backend.delete_watchlist("admins")
    assert list(backend.watchlists()) == ["ips"]


def test_meta_values(backend):
    assert backend.get_meta("demo.tenant_start") is None
    backend.set_meta("demo.tenant_start", "2026-11-21T01:00:00+00:00")
    assert backend.get_meta("demo.tenant_start") == "2026-11-21T01:00:00+00:00"


def test_cosmos_container_is_partitioned_by_day_with_retention_as_ttl(cosmos_server):
    store = cosmos_server.store(retention_days=30)
    assert store.retention_seconds() == 30 * 86400
    indexed = {p["path"] for p in store._events.read()["indexingPolicy"]["includedPaths"]}
    assert "/raw/?" not in indexed and "/_ts/?" in indexed, "writes pay for indexing only what is queried"
    FeedState(store).store_blobs([blob("b", [record(1)])])
    (doc,) = list(store._events.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert doc["day"] == doc["time"][:10] and doc["id"] == "00000000-0000-4000-8000-000000000001"
    store.close()


# --- SQLite: the first layout is upgraded once, in place, losing nothing ----------------------------------------
LAYOUT1 = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL, content_type TEXT NOT NULL,
    workload TEXT NOT NULL, record_type INTEGER, operation TEXT NOT NULL, result_status TEXT NOT NULL,
    user_id TEXT NOT NULL, client_ip TEXT NOT NULL, user_agent TEXT NOT NULL, application TEXT NOT NULL,
    object_id TEXT NOT NULL, site_url TEXT NOT NULL, file_name TEXT NOT NULL);
CREATE TABLE raw_events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE blobs (content_id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_created TEXT NOT NULL,
    content_expiration TEXT NOT NULL, events INTEGER NOT NULL, status TEXT NOT NULL,
    error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '', recorded_at TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE checkpoints (content_type TEXT PRIMARY KEY, listed_until TEXT, last_success TEXT,
    last_error TEXT NOT NULL DEFAULT '', events_stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('next_seq', '1'), ('generation', '0'), ('demo.tenant_start', '2026-11-21T01:00:00+00:00');
CREATE TABLE watchlists (name TEXT PRIMARY KEY, payload TEXT NOT NULL, saved_at TEXT NOT NULL);
"""


def test_a_store_of_the_first_layout_is_upgraded_with_everything_in_it(tmp_path, demo_like_tenant):
    import sqlite3

    from .conftest import fill_store

    reference = SqliteStore(str(tmp_path / "reference.db"))
    fill_store(reference, demo_like_tenant)
    events = list(reference.iter_events())
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.executescript(LAYOUT1)
    old.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(n, *row[:-1]) for n, row in enumerate(events, 1)])
    old.executemany("INSERT INTO raw_events VALUES (?, ?)", [(n, row.raw) for n, row in enumerate(events, 1)])
    old.execute("INSERT INTO checkpoints VALUES ('DLP.All', '2026-11-27T10:00:00Z', NULL, 'AF429', 12)")
    old.execute("INSERT INTO blobs VALUES ('gone$1', 'DLP.All', 'x', 'y', 0, 'lost', 'AF20051', 'expired', 'z')")
    old.execute("INSERT INTO watchlists VALUES ('admins', '{\"accounts\": [\"a@c.com\"], \"networks\": []}', 'z')")
    old.commit()
    old.close()
    said = []
    upgraded = SqliteStore(path, progress=said.append)
    assert sorted(upgraded.iter_events()) == sorted(events), "every event, its original JSON byte for byte"
    assert FeedState(upgraded).checkpoint("DLP.All").last_error == "AF429"
    assert [b.content_id for b in FeedState(upgraded).issues()] == ["gone$1"]
    assert list(upgraded.watchlists()) == ["admins"] and upgraded.get_meta("demo.tenant_start")
    assert (tmp_path / "old.db.layout1").exists() and any("Upgraded" in line for line in said)
    assert FeedState(upgraded).store_blobs([(BlobRecord("again", "Audit.SharePoint", "x", "y"), events[:50])]) == 0
    upgraded.close()
    reference.close()


def test_queued_blobs_wait_for_a_worker_and_hold_the_checkpoint_back(backend, feed):
    queued = [BlobRecord(f"q{k}", "Audit.Exchange", f"2026-11-2{k}T00:00:00Z", "2026-12-01T00:00:00Z")
              for k in (3, 1, 2)]
    feed.store_blobs([(queued[0], [])])  # a worker stored this one before its record was written
    feed.record_queued(queued)
    assert feed.pending("Audit.Exchange") == (2, "2026-11-21T00:00:00Z"), "stored stays stored"
    assert feed.pending("DLP.All") == (0, None)
    assert feed.known_ids("Audit.Exchange", ["q1", "q2", "q3"]) == {"q3"}, "a sync still fetches them"
    assert feed.known_ids("Audit.Exchange", ["q1", "q2", "q3"], queued_too=True) == {"q1", "q2", "q3"}
    assert feed.issues() == [], "waiting is not an issue"
    feed.store_blobs([(queued[1], [])])
    feed.record_lost(replace(queued[2], status="lost", error_code="POISON"))
    assert feed.pending("Audit.Exchange") == (0, None)
    checkpoint = Checkpoint("Audit.Exchange", NOW - timedelta(hours=2), NOW, "", NOW - timedelta(hours=1))
    feed.save(checkpoint)
    assert feed.checkpoint("Audit.Exchange") == checkpoint


def test_work_items_are_kept_for_a_source_without_the_store_reading_their_detail(backend):
    hostile = "a/b\\c?d#e"  # a key no Cosmos DB id may hold
    waiting = WorkItem("s1", hostile, "2026-11-02T00:00:00Z", pending=True, detail='{"any": ["thing"]}')
    expired = WorkItem("s1", "done", "2026-11-01T00:00:00Z", expires="2000-01-01T00:00:00Z")
    backend.put_work([waiting, expired])
    assert backend.work_items("s1", [hostile, "done", "missing"]) == {hostile: waiting, "done": expired}
    assert backend.work_items("s2", [hostile]) == {}, "a stream's keys are its own"
    assert backend.pending_work("s1") == (1, "2026-11-02T00:00:00Z") and backend.pending_work("s2") == (0, None)
    failed = replace(waiting, pending=False, issue=True)
    backend.put_work([failed], keep_existing=True)
    assert backend.work_items("s1", [hostile])[hostile] == waiting, "an item recorded already stays as it is"
    backend.put_work([failed])
    backend.store_events([], [WorkItem("s2", "later", "2026-11-03T00:00:00Z", issue=True)])
    assert backend.pending_work("s1") == (0, None)
    assert [(item.stream, item.key) for item in backend.work_issues()] == [("s1", hostile), ("s2", "later")]
    backend.prune(NOW - timedelta(days=400))
    assert backend.work_items("s1", [hostile, "done"]) == {hostile: failed}, "forgotten once it expires"


def _store_before_the_seam(backend, request):
    """The backend's store as it was before the sources kept their own state: blob records and checkpoints in
    tables (SQLite) or documents (Cosmos DB) of their own; reopened."""
    blobs = [("kept$1", "Audit.Exchange", "2026-11-20T00:00:00Z", "2099-01-01T00:00:00Z", 40, "stored", "", "", 0),
             ("fixed$1", "Audit.Exchange", "2026-11-21T00:00:00Z", "2099-01-01T00:00:00Z", 9, "stored", "REPAIRED",
              "2 records repaired", 0),
             ("gone$1", "DLP.All", "2026-11-19T00:00:00Z", "2026-11-26T00:00:00Z", 0, "lost", "AF20051", "expired", 0),
             ("bad$1", "DLP.All", "2026-11-22T00:00:00Z", "2099-01-01T00:00:00Z", 0, "retrying", "MALFORMED", "x", 2),
             ("wait$1", "Audit.Exchange", "2026-11-23T00:00:00Z", "2099-01-01T00:00:00Z", 0, "queued", "", "", 0)]
    if isinstance(backend, SqliteStore):
        import sqlite3

        from eventstore.sqlite import _FEED_TABLES

        backend.close()
        old = sqlite3.connect(backend.path)
        old.executescript(_FEED_TABLES)
        old.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'z', ?)", blobs)
        old.execute("INSERT INTO checkpoints VALUES ('DLP.All', '2026-11-27T10:00:00Z', NULL, 'AF429', "
                    "'2026-11-28T10:00:00Z')")
        old.commit()
        old.close()
        return SqliteStore(backend.path)
    for b in blobs:
        backend._state.upsert_item({"id": f"blob:{b[0]}", "kind": "blob", "name": b[0], **dict(zip(
            ("content_type", "content_created", "content_expiration", "events", "status", "error_code",
             "error_message", "attempts"), b[1:]))})
    backend._state.upsert_item({"id": "checkpoint:DLP.All", "kind": "checkpoint", "name": "DLP.All",
                                "listed_until": "2026-11-27T10:00:00Z", "last_success": None, "last_error": "AF429",
                                "queued_until": "2026-11-28T10:00:00Z"})
    backend._state.delete_item("meta:feed-state.moved", partition_key="meta")
    database = backend._events.container_link.split("/")[1]
    return request.getfixturevalue("cosmos_server").store(database=database, retention_days=30)


def test_a_store_from_before_the_sources_kept_their_own_state_is_moved_losing_nothing(backend, request):
    store = _store_before_the_seam(backend, request)
    feed = FeedState(store)
    assert feed.checkpoint("DLP.All") == Checkpoint("DLP.All", parse_utc("2026-11-27T10:00:00Z"), None, "AF429",
                                                    parse_utc("2026-11-28T10:00:00Z"))
    assert [(b.content_id, b.status, b.error_code, b.attempts) for b in feed.issues()] == [
        ("gone$1", "lost", "AF20051", 0), ("fixed$1", "stored", "REPAIRED", 0), ("bad$1", "retrying", "MALFORMED", 2)]
    assert feed.known_ids("Audit.Exchange", ["kept$1", "fixed$1", "wait$1"]) == {"kept$1", "fixed$1"}
    assert feed.pending("Audit.Exchange") == (1, "2026-11-23T00:00:00Z")
    assert feed.pending("DLP.All") == (1, "2026-11-22T00:00:00Z"), "a retrying blob holds its checkpoint back"
    assert feed.record_failure(BlobRecord("bad$1", "DLP.All", "2026-11-22T00:00:00Z", "2099-01-01T00:00:00Z",
                                          error_code="MALFORMED"), give_up_after=3).status == "lost"
    if isinstance(store, SqliteStore):
        tables = {name for (name,) in store._conn().execute("SELECT name FROM sqlite_master")}
        assert not tables & {"blobs", "checkpoints"}, "moved, not copied"
    else:
        assert store._state_query("blob") == [] == store._state_query("checkpoint"), "moved, not copied"
    store.close()


def test_the_dashboards_activity_log_keeps_who_did_what_newest_first(backend):
    backend.record_activity("ada@contoso.com", "watch-list saved", "admins: 3 accounts, 0 IP entries")
    backend.record_activity("vic@contoso.com", "export", "events.csv: 120 events")
    total, (newest, oldest) = backend.activity()
    assert total == 2 and newest[1:] == ("vic@contoso.com", "export", "events.csv: 120 events")
    assert oldest[1:] == ("ada@contoso.com", "watch-list saved", "admins: 3 accounts, 0 IP entries")
    assert newest[0] >= oldest[0] and newest[0].endswith("Z")
    assert backend.activity(limit=1) == (2, [newest])


def test_the_whole_activity_log_stays_reachable_however_it_is_flooded(backend):
    """A Viewer's scripted exports must not push an earlier entry out of sight: filters by person, action and time,
    pages, and all of it at once."""
    backend.record_activity("ada@contoso.com", "watch-list deleted", "admins")
    for i in range(1005):
        backend.record_activity("vic@contoso.com", "export", f"events.csv #{i}")
    assert backend.activity(limit=1000)[0] == 1006
    assert backend.activity(ActivityQuery(action="watch-list deleted"))[1][0][1:] == (
        "ada@contoso.com", "watch-list deleted", "admins")
    assert [e[1] for e in backend.activity(ActivityQuery(who="ada@contoso.com"))[1]] == ["ada@contoso.com"]
    total, last_page = backend.activity(limit=100, offset=1000)
    assert total == 1006 and len(last_page) == 6 and last_page[-1][2] == "watch-list deleted", "the oldest, last"
    everything = backend.activity(limit=None)[1]
    assert len(everything) == 1006 and everything[-1][2] == "watch-list deleted"
    first = everything[-1][0]
    assert backend.activity(ActivityQuery(since=first, until=first[:-1] + "~"))[0] >= 1
    assert backend.activity(ActivityQuery(until=first))[0] == 0
    assert backend.activity_facets() == (["ada@contoso.com", "vic@contoso.com"], ["export", "watch-list deleted"])


def test_a_store_from_before_the_records_lengths_reads_its_records_and_writes_new_blocks_with_them(tmp_path):
    """Blocks written before 2026-12 have no lengths column: the store adds it when opened, reads the old blocks'
    records through their narrow fields, and the new blocks carry their lengths."""
    import sqlite3

    path = str(tmp_path / "before.db")
    with SqliteStore(path) as store:
        FeedState(store).store_blobs([blob("old", [record(i, age_hours=i % 20) for i in range(1, 300)])])
        texts = {row[0]: event.raw for row, event in zip(everything(store), store.iter_events())}
    conn = sqlite3.connect(path)
    conn.executescript("""
        ALTER TABLE blocks RENAME TO blocks_now;
        DROP INDEX blocks_by_day;
        CREATE TABLE blocks (
            first_seq INTEGER PRIMARY KEY,  -- the block holds positions first_seq .. first_seq + rows - 1
            day INTEGER NOT NULL,           -- of every event in it: days since 1970-01-01, UTC
            rows INTEGER NOT NULL,
            narrow BLOB NOT NULL,           -- zlib(JSON: per event, the EventRow fields except raw, then raw's length)
            raw BLOB NOT NULL               -- zlib(the events' original JSON texts, one after the other)
        );
        CREATE INDEX blocks_by_day ON blocks(day);
        INSERT INTO blocks SELECT first_seq, day, rows, narrow, raw FROM blocks_now;
        DROP TABLE blocks_now;""")  # the table as it was
    conn.close()
    with SqliteStore(path) as store:
        assert store.records_at(list(texts)) == texts, "every old record, byte for byte"
        FeedState(store).store_blobs([blob("new", [record(i) for i in range(300, 310)])])
        new = [row[0] for row in everything(store) if row[0] not in texts]
        assert len(new) == 10 and all(json.loads(store.records_at(new)[p])["Id"] for p in new)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM blocks WHERE lengths IS NULL").fetchone()[0] >= 1
    assert conn.execute("SELECT count(*) FROM blocks WHERE lengths IS NOT NULL").fetchone()[0] == 1
    conn.close()
