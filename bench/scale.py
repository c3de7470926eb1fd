"""Scale on one machine: stores of 1M, 5M and 20M events spread evenly over 90 days, and per size what the design
is judged by — store and index bytes per event, a dashboard start with the index on disk to its first graph
data, user → IP over 7 days, one user, one IP, the Events page at page 1 and page 10,000, a finished sync
visible, the dashboard's peak memory, ingest into a store of that size against an empty one, and the longest
stall of the ingest and of the dashboard while a day is pruned. The previous design (all events in an in-memory
index, OFFSET paging) is measured in the same run where it still fits in memory.

    .venv/bin/python bench/scale.py [--sizes 1M,5M,20M] [--workdir DIR] [--previous 1M,5M]

How the stores are built (no HTTP: bench/ingest.py measures that path): the simulated tenant generates one week of
realistic records — its users, addresses, sign-ins, mail, files, its weekday and hour rhythm. Each of the 90 days
takes the records of the same weekday, each copied as often as the size needs with a fresh Id and its
CreationTime moved to that day (a few minutes apart per copy), in its original JSON; they are written through
the store's own path (dedupe, blocks, compression) in batches of 5,000, as a sync writes them."""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from eventstore.model import EventRow, Filter, utc_text  # noqa: E402
from ingest.feedstate import CONTENT_TYPES, BlobRecord, FeedState  # noqa: E402

DAYS = 90
NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
FIRST_DAY = (NOW - timedelta(days=DAYS - 1)).replace(hour=0)
ONE_USER = "Megan.Bowen@contoso.com"


def size_of(text: str) -> int:
    return int(float(text.rstrip("MmKk")) * (1_000_000 if text[-1] in "Mm" else 1_000 if text[-1] in "Kk" else 1))


def source_week(events_per_week: int) -> dict[int, list[EventRow]]:
    """A week of the simulated tenant, by weekday."""
    from ingest.normalize import decode_blob
    from simulator.tenant import SimulatedTenant

    start = (NOW - timedelta(days=7)).replace(hour=0)
    tenant = SimulatedTenant(start, seed=7, events_per_week=events_per_week)
    by_weekday: dict[int, list[EventRow]] = {d: [] for d in range(7)}
    for content_type in CONTENT_TYPES:
        for blob in tenant.blobs_created(content_type, start, start + timedelta(days=7), NOW):
            body = tenant.blob_json(content_type, blob.index)
            for row in decode_blob(body, content_type, utc_text(blob.created)).rows:
                if row.time >= utc_text(start):
                    by_weekday[datetime.fromisoformat(row.time[:10]).weekday()].append(row)
    return by_weekday


def copy_to(row: EventRow, day: datetime, jitter: int) -> EventRow:
    """The same record on another day: a fresh Id, its time moved, its original JSON changed in just those two."""
    old = datetime.fromisoformat(row.time.replace("Z", "+00:00"))
    when = day.replace(hour=old.hour, minute=old.minute, second=old.second) + timedelta(seconds=jitter)
    when = min(when, day + timedelta(hours=23, minutes=59, seconds=59))
    new_id = str(uuid.UUID(int=random.getrandbits(128), version=4))
    raw = row.raw.replace(row.id, new_id, 1).replace(f'"{row.time[:19]}', f'"{when:%Y-%m-%dT%H:%M:%S}', 1)
    return row._replace(id=new_id, time=utc_text(when), raw=raw)


def day_events(week: dict[int, list[EventRow]], day: datetime, count: int) -> list[EventRow]:
    source = week[day.weekday()]
    return [copy_to(source[n % len(source)], day, (n // len(source)) * 97) for n in range(count)]


def write(store, rows: list[EventRow]) -> float:
    """Seconds to store these rows the way a sync does (5,000 per transaction)."""
    began = time.perf_counter()
    for i in range(0, len(rows), 5000):
        record = BlobRecord(f"bench${uuid.uuid4().hex}", "Audit.SharePoint", utc_text(NOW), "2099-01-01T00:00:00Z")
        FeedState(store).store_blobs([(record, rows[i:i + 5000])])
    return time.perf_counter() - began


def build(path: str, events: int, week) -> None:
    from eventstore.sqlite import SqliteStore

    per_day = events // DAYS
    with SqliteStore(path) as store:
        for n in range(DAYS):
            write(store, day_events(week, FIRST_DAY + timedelta(days=n), per_day))


def file_bytes(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal", ".wal") if os.path.exists(path + s))


def median(action, repeat: int = 5) -> float:
    """Median seconds of `repeat` runs."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


# --- the dashboard's side, in a process of its own (its memory is what is measured) ---------------------------
def dashboard(store_path: str, index_path: str) -> None:
    """Prints one JSON object: what a dashboard process sees, with the index already on disk."""
    from dashboard.graph import build_graph
    from dashboard.index import ActivityIndex
    from eventstore.sqlite import SqliteStore

    store = SqliteStore(store_path)
    index = ActivityIndex(store, index_path)
    index.refresh()
    week = Filter(start=NOW - timedelta(days=7))
    build_graph(index.edges(week, ("user", "ip")), cap=150)
    out = {"first_graph_at": time.time()}

    from simulator.tenant import ATTACKER_IP

    out["user_ip"] = median(lambda: build_graph(index.edges(week, ("user", "ip")), cap=150))
    out["one_user"] = median(lambda: build_graph(index.edges(Filter(start=week.start, user_id=(ONE_USER,)),
                                                             ("user", "ip")), cap=150))
    out["one_ip"] = median(lambda: build_graph(index.edges(Filter(start=week.start, client_ip=(ATTACKER_IP,)),
                                                           ("ip", "user")), cap=150))
    everything = Filter()
    out["page_1"] = median(lambda: store.events_at([p for _, p in index.page(everything, limit=50)]))
    depth = 50 * 9_999
    key = index._query("SELECT ts, seq FROM ev ORDER BY ts DESC, seq DESC LIMIT 1 OFFSET ?", [depth - 1])
    after = (key["ts"][0].to_pydatetime(), int(key["seq"][0]))
    out["page_10000"] = median(lambda: store.events_at([p for _, p in index.page(everything, limit=50, after=after)]))
    out["page_10000_offset"] = median(lambda: index._query(
        "SELECT seq FROM ev ORDER BY ts DESC, seq DESC LIMIT 50 OFFSET ?", [depth]))
    # a sync completes: an hour of new events arrives in the store
    per_hour = max(1000, store.stats().events // (DAYS * 24))
    write(store, day_events(source_week(20_000), NOW.replace(hour=0), per_hour))
    began = time.perf_counter()
    index.refresh()
    index.wait()
    build_graph(index.edges(week, ("user", "ip")), cap=150)
    out["sync_visible"] = time.perf_counter() - began
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))


def previous_design(store_path: str) -> None:
    """The first version's index: every event's narrow columns in an in-memory DuckDB table, OFFSET paging."""
    import duckdb
    import pandas as pd

    from dashboard.graph import build_graph
    from eventstore.ip import number
    from eventstore.sqlite import SqliteStore
    from simulator.tenant import ATTACKER_IP

    store = SqliteStore(store_path)
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE ev (seq BIGINT, id VARCHAR, ts TIMESTAMP, content_type VARCHAR, workload VARCHAR, "
                "record_type INTEGER, operation VARCHAR, result_status VARCHAR, user_id VARCHAR, client_ip VARCHAR, "
                "user_agent VARCHAR, application VARCHAR, object_id VARCHAR, site_url VARCHAR, file_name VARCHAR, "
                "ip_v6 BOOLEAN, ip_num UHUGEINT)")
    began, cursor = time.perf_counter(), ""
    columns = ["seq", *EventRow._fields[:-1]]
    while True:
        changes = store.changes(cursor, 50_000)
        rows, cursor = changes.rows, changes.cursor
        if not rows:
            break
        frame = pd.DataFrame(rows, columns=columns)
        frame["v6"] = [number(a)[0] for a in frame["client_ip"]]
        frame["num"] = [str(number(a)[1]) if number(a)[1] is not None else None for a in frame["client_ip"]]
        con.register("f", frame)
        con.execute("INSERT INTO ev SELECT seq, id, strptime(time, '%Y-%m-%dT%H:%M:%SZ'), content_type, workload, "
                    "record_type, operation, result_status, user_id, client_ip, user_agent, application, object_id, "
                    "site_url, file_name, v6, CAST(num AS UHUGEINT) FROM f")
        con.unregister("f")
    load = time.perf_counter() - began
    start = (NOW - timedelta(days=7)).replace(tzinfo=None)

    def edges(where, params):
        frame = con.execute(f"SELECT 'user' AS src_kind, user_id AS src, 'ip' AS dst_kind, client_ip AS dst, "
                            f"count(*) AS n FROM ev WHERE ts >= ? {where} AND user_id <> '' AND client_ip <> '' "
                            "GROUP BY ALL", [start, *params]).df()
        return build_graph(frame, cap=150)

    out = {"load_s": load, "user_ip": median(lambda: edges("", [])),
           "one_user": median(lambda: edges("AND user_id = ?", [ONE_USER])),
           "one_ip": median(lambda: edges("AND client_ip = ?", [ATTACKER_IP])),
           "page_10000": median(lambda: con.execute("SELECT seq FROM ev ORDER BY ts DESC, seq DESC LIMIT 50 OFFSET ?",
                                                    [50 * 9_999]).fetchall()),
           "peak_mb": peak_mb()}
    print(json.dumps(out))


def child(mode: str, *args: str) -> tuple[dict, float]:
    began = time.time()
    result = subprocess.run([sys.executable, __file__, f"--{mode}", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1]), began


# --- stalls while a day is pruned ------------------------------------------------------------------------
def prune_stall(store_path: str, index_path: str, week) -> tuple[float, float, float, float]:
    """(longest ingest write while the oldest day is pruned, the same without a prune, longest dashboard query
    while the index follows, the same without) in seconds."""
    from dashboard.index import ActivityIndex
    from eventstore.sqlite import SqliteStore

    writer_store, store = SqliteStore(store_path), SqliteStore(store_path)
    index = ActivityIndex(store, index_path)
    index.refresh()
    index.wait()
    def writes(during) -> float:
        """Longest write of 2,000 events (what a sync commits at a time) while `during` runs."""
        longest, done = 0.0, threading.Event()
        thread = threading.Thread(target=during, args=(done,))
        thread.start()
        while not done.is_set():
            longest = max(longest, write(writer_store, day_events(week, NOW.replace(hour=0), 2000)))
        thread.join()
        return longest

    def idle(done):
        time.sleep(2)
        done.set()

    def pruning(done):
        store.prune(datetime.fromisoformat(store.stats().first_time[:10]).replace(tzinfo=timezone.utc)
                    + timedelta(days=1))
        done.set()

    quiet_write = writes(idle)
    pruned_write = writes(pruning)

    def queries(during) -> float:
        longest, stop = 0.0, threading.Event()
        flt = Filter(start=NOW - timedelta(days=7))
        thread = threading.Thread(target=lambda: (during(), stop.set()))
        thread.start()
        while not stop.is_set():
            began = time.perf_counter()
            index.count(flt)
            index.edges(flt, ("user", "ip"))
            longest = max(longest, time.perf_counter() - began)
        thread.join()
        return longest

    quiet_query = queries(lambda: time.sleep(2))
    following_query = queries(index.refresh)
    index.close()
    store.close()
    writer_store.close()
    return pruned_write, quiet_write, following_query, quiet_query


def ingest_rates(store_path: str, workdir: str, week, rounds: int = 3, events: int = 100_000) -> tuple[float, float]:
    """(events/s into this store, events/s into an empty store), each round writing a day of its own that neither
    store holds yet (dedupe keys are per day: what a store holds of other days costs nothing); medians of rounds
    that alternate between the two, so the machine's noise falls on both alike."""
    from eventstore.sqlite import SqliteStore

    full, empty = [], []
    for n in range(rounds):
        day = NOW.replace(hour=0) + timedelta(days=100 + n + random.randrange(10_000))  # a day nobody wrote yet
        rows = day_events(week, day, events)
        with SqliteStore(store_path) as store:
            full.append(events / write(store, rows))
        path = os.path.join(workdir, f"empty-{n}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        with SqliteStore(path) as store:
            empty.append(events / write(store, rows))
    return statistics.median(full), statistics.median(empty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,5M,20M")
    parser.add_argument("--previous", default="1M,5M", help="sizes to measure the previous design at too")
    parser.add_argument("--workdir", help="where the stores go (kept); default: a fresh temporary folder")
    parser.add_argument("--dashboard", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--previous-design", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dashboard:
        return dashboard(*args.dashboard)
    if args.previous_design:
        return previous_design(*args.previous_design)

    from dashboard.index import ActivityIndex
    from eventstore.sqlite import SqliteStore

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-scale-")
    os.makedirs(workdir, exist_ok=True)
    sizes = [size_of(s) for s in args.sizes.split(",")]
    previous = {size_of(s) for s in args.previous.split(",") if s}
    began = time.perf_counter()
    week = source_week(350_000)
    print(f"source week: {sum(len(v) for v in week.values()):,} simulated events in "
          f"{time.perf_counter() - began:.0f} s; stores in {workdir}")
    for events in sizes:
        path = os.path.join(workdir, f"store-{events // 1_000_000}M.db")
        index_path = path + ".index"
        if not os.path.exists(path):
            began = time.perf_counter()
            build(path, events, week)
            print(f"\n{events:,} events: built in {time.perf_counter() - began:.0f} s")
        else:
            print(f"\n{events:,} events: reusing {path}")
        with SqliteStore(path) as store:
            stored = store.stats().events
            store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"  store            : {file_bytes(path) / stored:6.0f} bytes/event ({file_bytes(path) / 1e9:.2f} GB)")
        built = not os.path.exists(index_path)
        with SqliteStore(path) as store:  # built once; or brought up to date with what earlier runs wrote
            began = time.perf_counter()
            index = ActivityIndex(store, index_path)
            index.refresh()
            index.wait(timeout=7200)
            index.close()
        if built:
            print(f"  index built      : {time.perf_counter() - began:.0f} s from the store (once)")
        print(f"  index            : {file_bytes(index_path) / stored:6.1f} bytes/event")
        result, spawned = child("dashboard", path, index_path)
        print(f"  start → graph    : {result['first_graph_at'] - spawned:.2f} s (a new process: imports, open the "
              "store and the index on disk, user → IP over 7 days)")
        print(f"  user → IP 7 days : {result['user_ip']:.3f} s to graph data ready")
        print(f"  one user / one IP: {result['one_user']:.3f} s / {result['one_ip']:.3f} s")
        print(f"  Events page 1    : {result['page_1']:.3f} s · page 10,000: {result['page_10000']:.3f} s by key "
              f"(OFFSET would take {result['page_10000_offset']:.3f} s)")
        print(f"  sync visible     : {result['sync_visible']:.2f} s after it completed (index copy + graph)")
        print(f"  dashboard peak   : {result['peak_mb']:.0f} MB")
        rate, baseline = ingest_rates(path, workdir, week)
        print(f"  ingest           : {rate:,.0f} events/s into this store, {rate / baseline:.0%} of the rate into an "
              f"empty one ({baseline:,.0f}/s; medians of 3 alternating rounds of 100,000 events of a new day)")
        pruned_write, quiet_write, following, quiet_query = prune_stall(path, index_path, week)
        print(f"  one-day prune    : longest ingest write {pruned_write:.2f} s (without a prune {quiet_write:.2f} s);"
              f" longest dashboard query while the index follows {following:.2f} s (without {quiet_query:.2f} s)")
        if events in previous:
            old, _ = child("previous-design", path)
            print(f"  previous design  : {old['load_s']:.0f} s to load at every start, "
                  f"user → IP {old['user_ip']:.3f} s,"
                  f" one user {old['one_user']:.3f} s, one IP {old['one_ip']:.3f} s, page 10,000 by OFFSET "
                  f"{old['page_10000']:.3f} s, peak {old['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
