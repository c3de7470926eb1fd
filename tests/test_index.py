"""The dashboard's in-memory index must answer exactly as the store does, and keep in step with it."""
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.index import ActivityIndex, Watch
from eventstore import Filter
from eventstore.sqlite import SqliteStore
from ingest.simulator.tenant import ATTACKER_IP

from .conftest import fill_store


@pytest.fixture(scope="module")
def filled(tmp_path_factory, demo_like_tenant):
    path = str(tmp_path_factory.mktemp("index") / "audit.db")
    store = SqliteStore(path)
    fill_store(store, demo_like_tenant)
    index = ActivityIndex(store)
    index.refresh()
    yield store, index
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
    Filter(start=datetime.now(timezone.utc) - timedelta(days=2)),
]


@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
def test_index_counts_equal_the_store_counts(filled, flt):
    store, index = filled
    assert index.count(flt) == store.count(flt)


def test_case_sensitive_user_filter_and_its_hint(filled):
    store, index = filled
    exact = Filter(user_id=("megan.bowen@contoso.com",))
    ignoring = Filter(user_id=("megan.bowen@contoso.com",), case_sensitive=False)
    assert index.count(ignoring) > index.count(exact)
    variants = index.case_variants("user_id", ("megan.bowen@contoso.com",))
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
    info = index.entity_summary(Filter(), "ip", ATTACKER_IP)
    assert info["last"] - info["first"] < timedelta(hours=1)
    assert set(info["related"]["operation"]["value"]) >= {"UserLoginFailed", "UserLoggedIn", "FileDownloaded"}


def test_restrict_watch_counts_only_listed_entities(filled):
    store, index = filled
    watch = Watch(accounts=("Megan.Bowen@contoso.com",), networks=(ATTACKER_IP,), restrict=True)
    expected = sum(1 for r in store.iter_events() if r.user_id == "Megan.Bowen@contoso.com" or r.client_ip == ATTACKER_IP)
    assert index.count(Filter(), watch) == expected
    total, unmatched = index.watch_matches(Watch(accounts=("nobody@contoso.com", "Megan.Bowen@contoso.com")), Filter())
    assert unmatched == {"nobody@contoso.com"} and total > 0


def test_page_is_newest_first_and_events_come_back_whole(filled):
    store, index = filled
    rows = store.events_at(index.page(Filter(), limit=20))
    assert [r.time for r in rows] == sorted((r.time for r in rows), reverse=True)
    assert all(r.raw.startswith("{") for r in rows)


def test_refresh_is_incremental_and_follows_a_prune(tmp_path, demo_like_tenant):
    store = SqliteStore(str(tmp_path / "a.db"))
    index = ActivityIndex(store)
    now = datetime.now(timezone.utc)
    fill_store(store, demo_like_tenant, now - timedelta(days=3))
    index.refresh()
    first = index.count(Filter())
    assert first == store.count(Filter()) > 0
    fill_store(store, demo_like_tenant, now)
    index.refresh()
    assert index.count(Filter()) == store.count(Filter()) > first
    store.prune(now - timedelta(days=2))
    index.refresh()
    assert index.count(Filter()) == store.count(Filter()) < first
    store.close()
