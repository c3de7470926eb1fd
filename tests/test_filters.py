"""filters.py: a view survives the URL, and becomes the Filter the analyst meant."""
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.filters import FilterInputError, View

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def params_of(view):
    return {k: v if isinstance(v, list) else [v] for k, v in view.to_params().items()}


def test_default_view_has_an_empty_url_and_means_last_7_days_case_sensitive():
    assert View().to_params() == {}
    flt = View().to_filter(NOW)
    assert flt.start == datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc) and flt.case_sensitive


def test_every_field_survives_the_url():
    view = View(period="custom", start=datetime(2026, 11, 20, 3, 10), end=datetime(2026, 11, 20, 4, 0),
                workload=("Exchange",),
                operation=("UserLoginFailed", "Add member to role."), record_type=("15",), user="a@c.com, B@c.com",
                ip="198.51.100.0/24", text="python", case_sensitive=False, watchlist="admins", watch_mode="restrict",
                relationship="IP → user", cap=70, stack_by="operation", node="ip:198.51.100.9")
    assert View.from_params(params_of(view)) == view
    flt = view.to_filter(NOW)
    assert flt.user_id == ("a@c.com", "B@c.com") and flt.record_type == (15,)
    assert (flt.start, flt.end) == (datetime(2026, 11, 20, 3, 10, tzinfo=timezone.utc),
                                    datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)), "to the minute"
    assert view.to_params()["start"] == "2026-11-20T03:10"


def test_a_link_from_before_ranges_had_hours_still_means_whole_days():
    view = View.from_params({"period": ["custom"], "start": ["2026-11-20"], "end": ["2026-11-22"]})
    flt = view.to_filter(NOW)
    assert (flt.start, flt.end) == (datetime(2026, 11, 20, tzinfo=timezone.utc),
                                    datetime(2026, 11, 23, tzinfo=timezone.utc)), "the 'to' day included"


def test_a_span_picked_on_the_timeline_becomes_a_custom_range():
    view = View().narrowed(datetime(2026, 11, 24, 3, 12, 40, tzinfo=timezone.utc),
                           datetime(2026, 11, 24, 4, 2, 5, tzinfo=timezone.utc))
    assert (view.period, view.start, view.end) == ("custom", datetime(2026, 11, 24, 3, 12),
                                                   datetime(2026, 11, 24, 4, 2))


def test_a_hand_edited_url_falls_back_instead_of_failing():
    view = View.from_params({"period": ["fortnight"], "cap": ["lots"], "relationship": ["<script>"],
                             "start": ["yesterday"], "watch_mode": ["delete"]})
    assert view == View()


def test_bad_ip_is_a_clear_input_error():
    with pytest.raises(FilterInputError, match="not an IP address"):
        View(ip="198.51.100.300").to_filter(NOW)


def test_pivot_narrows_to_the_entity():
    assert View().pivot("user", "Megan@c.com").user == "Megan@c.com"
    assert View().pivot("ip", "198.51.100.9").ip == "198.51.100.9"
    assert View().pivot("operation", "FileDownloaded").operation == ("FileDownloaded",)


def test_nodes_expanded_in_place_are_kept_in_the_url_and_toggle():
    view = View().expanding("ip:198.51.100.9").expanding('["operation","Send","user:a@c.com"]')
    assert View.from_params({k: v if isinstance(v, list) else [v] for k, v in view.to_params().items()}) == view
    assert view.expanding("ip:198.51.100.9").expand == ('["operation","Send","user:a@c.com"]',)
    many = View()
    for n in range(8):
        many = many.expanding(f"ip:192.0.2.{n}")
    assert many.expand == tuple(f"ip:192.0.2.{n}" for n in range(3, 8)), "the oldest closes when a sixth opens"


def test_the_longest_range_is_offered_once_there_is_history_that_old():
    from dashboard.filters import periods

    assert "last 180 days" not in periods(7) and "last 90 days" in periods(7)
    assert "last 180 days" in periods(120)
    assert View.from_params({"period": ["last 180 days"]}).to_filter().start.date() < \
        View.from_params({"period": ["last 90 days"]}).to_filter().start.date()


def test_a_span_picked_on_the_timeline_keeps_every_event_of_the_bars_it_touches():
    from dashboard.filters import covering

    minute = timedelta(minutes=1)
    t0 = datetime(2026, 11, 30, 3, 10, tzinfo=timezone.utc)
    bars = [(t0 + k * minute, t0 + (k + 1) * minute) for k in range(20)]
    # dragged from inside 03:12 to inside 03:25: both bars whole, not cut at the mouse
    picked = covering(t0 + 2 * minute + timedelta(seconds=40), t0 + 15 * minute + timedelta(seconds=20), bars)
    assert picked == (t0 + 2 * minute, t0 + 16 * minute)
    assert covering(t0 + 3 * minute, t0 + 5 * minute, bars) == (t0 + 3 * minute, t0 + 5 * minute), "on the edges"
    far = datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert covering(far, far + minute, bars) == (far, far + minute), "no bar: as picked"
