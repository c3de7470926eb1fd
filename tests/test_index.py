"""The dashboard's index answers every filter as its meaning says (checked against a plain reading of every stored
event), survives restarts on disk, follows retention without a reload, pages by key, and lets one process write."""
from datetime import datetime, timedelta, timezone

import pytest

from eventstore.entities import NEIGHBOUR_KINDS
from dashboard.graph import build_graph, entity_of, grow, neighbour_edges, node_id, split_node_id
from dashboard.index import ActivityIndex, IndexBusy, Watch
from eventstore import Filter
from eventstore.ip import IpSet
from eventstore.model import fold, utc_text
from eventstore.sqlite import SqliteStore
from ingest.feedstate import BlobRecord, FeedState
from ingest.normalize import normalize
from simulator.tenant import ATTACKER_IP

from .conftest import fill_store


def matches(row, flt: Filter, watch: Watch | None = None) -> bool:
    """What a filter means, written as plainly as possible: the reference every engine must agree with."""
    same = (lambda v: v) if flt.case_sensitive else fold
    if flt.start and row.time < utc_text(flt.start) or flt.end and row.time >= utc_text(flt.end):
        return False
    for column in ("workload", "content_type", "operation", "result_status", "user_id"):
        wanted = getattr(flt, column)
        if wanted and same(getattr(row, column)) not in {same(v) for v in wanted}:
            return False
    if flt.record_type and row.record_type not in flt.record_type:
        return False
    if flt.client_ip and row.client_ip not in IpSet(flt.client_ip):
        return False
    if flt.text and not any(same(flt.text) in same(getattr(row, c))
                            for c in ("user_agent", "object_id", "site_url", "file_name")):
        return False
    if watch and watch.restrict:
        return same(row.user_id) in {same(a) for a in watch.accounts} or row.client_ip in IpSet(watch.networks)
    return True


def expected(store, flt: Filter, watch: Watch | None = None) -> int:
    return sum(1 for row in store.iter_events() if matches(row, flt, watch))


@pytest.fixture(scope="module")
def filled(tmp_path_factory, demo_like_tenant):
    folder = tmp_path_factory.mktemp("index")
    store = SqliteStore(str(folder / "audit.db"))
    fill_store(store, demo_like_tenant)
    index = ActivityIndex(store, str(folder / "audit.db.index"))
    index.refresh()
    index.wait()
    yield store, index
    index.close()
    store.close()


FILTERS = [
    Filter(),
    Filter(operation=("UserLoginFailed",)),
    Filter(user_id=("megan.bowen@contoso.com",)),
    Filter(user_id=("megan.bowen@contoso.com",), case_sensitive=False),
    Filter(client_ip=("198.51.100.0/24",)),
    Filter(client_ip=("2001:db8::/32",)),
    Filter(client_ip=(ATTACKER_IP,), operation=("FileDownloaded",)),
    Filter(text="python-requests"),
    Filter(text="PYTHON-requests", case_sensitive=False),
    Filter(workload=("Exchange",), result_status=("Succeeded",)),
    Filter(workload=("exchange",), case_sensitive=False),
    Filter(record_type=(15, 6)),
    Filter(start=datetime.now(timezone.utc) - timedelta(days=2)),
    Filter(start=datetime.now(timezone.utc) - timedelta(days=5), end=datetime.now(timezone.utc) - timedelta(days=2)),
]


@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
def test_index_counts_equal_what_the_filter_means(filled, flt):
    store, index = filled
    assert index.count(flt) == expected(store, flt)


def test_case_sensitive_user_filter_and_its_hint(filled):
    store, index = filled
    exact = Filter(user_id=("megan.bowen@contoso.com",))
    ignoring = Filter(user_id=("megan.bowen@contoso.com",), case_sensitive=False)
    assert index.count(ignoring) > index.count(exact)
    variants = index.case_variants("user_id", ("megan.bowen@contoso.com",), Filter())
    assert "Megan.Bowen@contoso.com" in set(variants["value"])


def test_user_ip_edges_sum_to_the_events_that_have_both(filled):
    store, index = filled
    edges = index.edges(Filter(), ("user", "ip"))
    both = sum(1 for r in store.iter_events() if r.user_id and r.client_ip)
    assert int(edges["n"].sum()) == both


def test_the_planted_spray_stands_out(filled, demo_like_tenant):
    _, index = filled
    failed_from_attacker = index.edges(Filter(operation=("UserLoginFailed",), client_ip=(ATTACKER_IP,)), ("ip", "user"))
    assert len(failed_from_attacker) >= 30  # one IP, ~40 users, within minutes
    info = index.entity_summary(Filter(), {"ip": ATTACKER_IP})
    assert info["last"] - info["first"] < timedelta(hours=1)
    assert set(info["related"]["operation"]["value"]) >= {"UserLoginFailed", "UserLoggedIn", "FileDownloaded"}


def test_an_operation_stays_attached_to_the_user_who_did_it(filled, demo_like_tenant):
    """user → IP → operation: many users download from the office IPs, but only the victim downloads from the
    attacker's address, so the attacker's FileDownloaded must lead back to the victim alone."""
    store, index = filled
    graph = build_graph(index.edges(Filter(), ("user", "ip", "operation")), cap=300)
    from_attacker = [link for link in graph.links if link.source == f"ip:{ATTACKER_IP}"
                     and graph.find(link.target).value == "FileDownloaded"]
    assert from_attacker and {split_node_id(graph.find(k.target).scope)[1] for k in from_attacker} == \
        {demo_like_tenant.victim.upn}
    truth = sum(1 for r in store.iter_events() if r.client_ip == ATTACKER_IP and r.operation == "FileDownloaded")
    assert sum(k.count for k in from_attacker) == truth


def test_who_did_what_to_whom_is_a_path(filled, demo_like_tenant):
    """user → operation → target: the victim's account made the guest a Global Administrator."""
    _, index = filled
    victim, guest = demo_like_tenant.victim.upn, demo_like_tenant.users[200].upn
    graph = build_graph(index.edges(Filter(user_id=(victim,)), ("user", "operation", "object")), cap=300)
    assigned = node_id("operation", "Add member to role.", node_id("user", victim))
    assert (f"user:{victim}", assigned) in {(k.source, k.target) for k in graph.links}
    assert (assigned, f"object:{guest}") in {(k.source, k.target) for k in graph.links}


def test_a_node_expanded_in_place_brings_its_neighbours_of_every_kind(filled):
    _, index = filled
    chain = ("user", "ip")
    edges = index.edges(Filter(), chain)
    key = ("ip", ATTACKER_IP, "")
    info = index.entity_summary(Filter(), entity_of(*key), related=NEIGHBOUR_KINDS, top=8)
    extra = neighbour_edges(key, info["related"], chain)
    graph = build_graph(edges, cap=10)
    before = {n.id: (n.x, n.y) for n in graph.nodes}
    assert f"ip:{ATTACKER_IP}" in before
    added = grow(graph, f"ip:{ATTACKER_IP}", extra)
    kinds = {n.kind for n in added}
    assert {"operation", "object"} <= kinds, "an IP's operations and targets are drawn although the chain is user → IP"
    assert {n.id: (n.x, n.y) for n in graph.nodes if n.id in before} == before, "nothing already drawn moves"
    assert len(graph.nodes) == 10 + len(added), "added beyond the cap of 10"
    assert {graph.find(k.target).value for k in graph.links if k.source == f"ip:{ATTACKER_IP}"} >= \
        {"UserLoginFailed", "FileDownloaded"}


@pytest.mark.parametrize("case_sensitive", [True, False])
def test_restrict_watch_counts_only_listed_entities(filled, case_sensitive):
    store, index = filled
    watch = Watch(accounts=("megan.bowen@contoso.com",), networks=(ATTACKER_IP, "2001:db8::/32"), restrict=True)
    flt = Filter(case_sensitive=case_sensitive)
    assert index.count(flt, watch) == expected(store, flt, watch)
    total, unmatched = index.watch_matches(Watch(accounts=("nobody@contoso.com", "Megan.Bowen@contoso.com")), Filter())
    assert unmatched == {"nobody@contoso.com"} and total > 0


def test_keyset_pages_walk_every_event_newest_first(filled):
    store, index = filled
    flt = Filter(operation=("UserLoginFailed",))
    walked, after = [], None
    while True:
        keys = index.page(flt, limit=97, after=after)
        if not keys:
            break
        walked.extend(keys)
        after = keys[-1]
    assert len(walked) == len({p for _, p in walked}) == expected(store, flt)
    assert walked == sorted(walked, reverse=True), "newest first, by (time, position)"
    rows = store.events_at([p for _, p in walked[:20]])
    assert all(r.operation == "UserLoginFailed" and r.raw.startswith("{") for r in rows)


# --- one meaning of "ignore case", non-ASCII included ---------------------------------------------------------
HARD = ["Straße@contoso.com", "STRASSE@contoso.com", "strasse@contoso.com", "İpek@contoso.com", "ipek@contoso.com",
        "IPEK@contoso.com", "ΟΔΥΣΣΕΥΣ@contoso.com", "οδυσσευς@contoso.com", "Οδυσσεύς@contoso.com"]


@pytest.fixture
def hard_store(tmp_path):
    store = SqliteStore(str(tmp_path / "hard.db"))
    now = datetime.now(timezone.utc) - timedelta(hours=1)
    rows = [normalize({"Id": f"00000000-0000-4000-8000-{n:012d}", "CreationTime": now.strftime("%Y-%m-%dT%H:%M:%S"),
                       "UserId": user, "Operation": "FileAccessed", "SourceFileName": f"Maße-{user}"},
                      "Audit.SharePoint", utc_text(now)) for n, user in enumerate(HARD)]
    FeedState(store).store_blobs([(BlobRecord("b", "Audit.SharePoint", utc_text(now), "2099-01-01T00:00:00Z"), rows)])
    yield store
    store.close()


@pytest.mark.parametrize("wanted, count", [
    ("strasse@contoso.com", 3),  # ß folds to ss
    ("ipek@contoso.com", 2),  # İ folds to i + a combining dot: not the plain i of ipek / IPEK
    ("İPEK@contoso.com", 1),
    ("οδυσσευσ@contoso.com", 2),  # final ς and Σ fold to σ; the accented ύ of the third stays a different letter
])
def test_ignoring_case_means_unicode_case_folding(hard_store, wanted, count):
    index = ActivityIndex(hard_store)
    index.refresh()
    flt = Filter(user_id=(wanted,), case_sensitive=False)
    assert index.count(flt) == count == expected(hard_store, flt)
    text = Filter(text="MASSE", case_sensitive=False)
    assert index.count(text) == len(HARD) == expected(hard_store, text)
    index.close()


# --- on disk: restarts, rebuilds, one writer, retention -------------------------------------------------------
def test_the_index_survives_a_restart_and_copies_only_what_is_new(tmp_path, demo_like_tenant):
    store = SqliteStore(str(tmp_path / "a.db"))
    now = datetime.now(timezone.utc)
    fill_store(store, demo_like_tenant, now - timedelta(days=3))
    path = str(tmp_path / "a.db.index")
    index = ActivityIndex(store, path)
    index.refresh()
    index.wait()
    first = index.count(Filter())
    assert first == store.stats().events > 0
    index.close()

    fill_store(store, demo_like_tenant, now)
    reopened = ActivityIndex(store, path)
    assert reopened.count(Filter()) == first, "what was indexed is there at once, before any copy"
    copied = []
    original = store.changes
    store.changes = lambda cursor, limit=50_000: copied.append(int(cursor)) or original(cursor, limit)
    reopened.refresh()
    reopened.wait()
    assert copied and min(copied) >= first, "only the events stored since are copied"
    assert reopened.count(Filter()) == store.stats().events > first
    reopened.close()
    store.close()


def test_a_damaged_or_foreign_index_is_built_again(tmp_path, demo_like_tenant):
    store = SqliteStore(str(tmp_path / "a.db"))
    fill_store(store, demo_like_tenant, datetime.now(timezone.utc) - timedelta(days=2))
    path = tmp_path / "a.db.index"
    path.write_bytes(b"this is not a DuckDB file" * 1000)
    index = ActivityIndex(store, str(path))
    index.refresh()
    index.wait()
    assert index.count(Filter()) == store.stats().events
    assert list(tmp_path.glob("a.db.index.damaged-*")), "the damaged file is kept aside, not deleted"
    index.close()
    other = SqliteStore(str(tmp_path / "b.db"))  # another store at the same index path: not its index
    index = ActivityIndex(other, str(path))
    index.refresh()
    assert index.count(Filter()) == 0
    index.close()
    other.close()
    store.close()


def test_a_second_process_gets_a_clear_message(tmp_path):
    import subprocess
    import sys

    store = SqliteStore(str(tmp_path / "a.db"))
    path = str(tmp_path / "a.db.index")
    index = ActivityIndex(store, path)
    code = ("import sys; sys.path.insert(0, '.'); from dashboard.index import ActivityIndex, IndexBusy; "
            "from eventstore.sqlite import SqliteStore\n"
            f"try:\n    ActivityIndex(SqliteStore({str(tmp_path / 'a.db')!r}), {path!r})\n"
            "except IndexBusy as busy:\n    print('BUSY', busy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=__file__.rsplit("/tests/", 1)[0])
    assert result.stdout.startswith("BUSY") and "DASHBOARD_INDEX" in result.stdout, result.stdout + result.stderr
    assert IndexBusy
    index.close()
    store.close()


def test_retention_moves_the_horizon_without_a_reload(tmp_path, demo_like_tenant):
    store = SqliteStore(str(tmp_path / "a.db"))
    now = datetime.now(timezone.utc)
    fill_store(store, demo_like_tenant, now)
    index = ActivityIndex(store, str(tmp_path / "a.db.index"))
    index.refresh()
    index.wait()
    before = index.count(Filter())
    cutoff = now - timedelta(days=3)
    removed = store.prune(cutoff)
    assert removed > 0
    appended = []
    original = index._append

    def append(changes):
        appended.extend(changes.rows)
        return original(changes)

    index._append = append
    index.refresh()
    assert not appended, "a prune is followed by deleting old rows, not by copying everything again"
    assert index.count(Filter()) == before - removed == store.stats().events
    horizon = store.horizon()
    assert horizon == cutoff.strftime("%Y-%m-%d")
    assert index.count(Filter(end=datetime.fromisoformat(horizon).replace(tzinfo=timezone.utc))) == 0
    index.close()
    store.close()


def test_the_index_folder_is_made_when_it_does_not_exist(tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    index = ActivityIndex(store, str(tmp_path / "not" / "yet" / "there.index"))  # e.g. data/ beside a Cosmos store
    assert index.count(Filter()) == 0 and (tmp_path / "not" / "yet" / "there.index").exists()
    index.close()
    store.close()


def test_filter_times_compare_to_the_second_as_event_times_do(filled):
    store, index = filled
    row = next(iter(store.iter_events()))
    moment = datetime.fromisoformat(row.time.replace("Z", "+00:00")).replace(microsecond=654321)
    for flt in (Filter(start=moment), Filter(end=moment)):
        assert index.count(flt) == expected(store, flt)
