"""Window planning: the API's rules (≤ 24 h, ≤ 7 days back, contiguous) hold for every cursor."""
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from ingest.windows import MAX_WINDOW, OLDEST, OVERLAP, plan_windows

NOW = datetime(2026, 11, 28, 12, 30, 17, 500000, tzinfo=timezone.utc)


def check_rules(plan, now):
    assert plan.windows, "there is always something to list"
    for start, end in plan.windows:
        assert start < end <= now
        assert end - start <= MAX_WINDOW
        assert start >= now - timedelta(days=7)
    for (_, end), (start, _) in zip(plan.windows, plan.windows[1:]):
        assert end == start  # contiguous: nothing between two windows is skipped
    assert plan.windows[-1][1] == now.replace(microsecond=0)


def test_first_run_starts_at_the_oldest_listable_moment():
    plan = plan_windows(None, NOW)
    check_rules(plan, NOW)
    assert plan.windows[0][0] == NOW.replace(microsecond=0) - OLDEST
    assert len(plan.windows) == 7


def test_next_pass_relists_an_overlap_for_late_content():
    cursor = NOW - timedelta(minutes=5)
    plan = plan_windows(cursor, NOW)
    assert plan.windows == [(cursor.replace(microsecond=0) - OVERLAP, NOW.replace(microsecond=0))]


def test_a_cursor_older_than_the_api_keeps_reports_the_gap():
    cursor = NOW - timedelta(days=9)
    plan = plan_windows(cursor, NOW)
    check_rules(plan, NOW)
    assert plan.gap == (cursor, NOW.replace(microsecond=0) - OLDEST)


@given(st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))))
def test_rules_hold_for_any_cursor(age):
    plan = plan_windows(None if age is None else NOW - age, NOW)
    check_rules(plan, NOW)
    if age is not None and age <= OLDEST - OVERLAP:
        assert plan.windows[0][0] <= NOW - age  # the cursor's moment is listed again
        assert plan.gap is None
