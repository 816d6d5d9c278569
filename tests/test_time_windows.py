"""The one rule for "HH:MM to HH:MM" windows (`detectors.rules.in_window`), as a camera's armed
hours and a subscription's hours both use it: plain, past midnight, and the whole day."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.feed_items import FeedFilter, FeedItem
from alerts.subscriptions import Route
from detectors.rules import CameraRules, armed_minutes, in_window
from registry.fields import minutes

DAY = np.arange(1440)


@pytest.mark.parametrize(("start", "end", "inside", "outside"), [
    ("08:00", "18:00", ["08:00", "12:30", "17:59"], ["07:59", "18:00", "23:00", "00:00"]),
    ("22:00", "06:00", ["22:00", "23:59", "00:00", "05:59"], ["06:00", "12:00", "21:59"]),  # wraps past midnight
    ("07:00", "07:00", ["07:00", "06:59", "00:00", "23:59"], []),  # the whole day
])
def test_a_window_wrapping_past_midnight_means_the_same_for_armed_hours_and_subscriptions(
        start: str, end: str, inside: list[str], outside: list[str]) -> None:
    window = (minutes(start), minutes(end))
    armed = armed_minutes(CameraRules(armed=(window,)))
    route = Route(1, "webhook", FeedFilter(scope="/1/", unit_id=1), "/1/", window)
    item = FeedItem(1, "/1/", (1,), "flame", 2, "{}")
    for clock, expected in [(c, True) for c in inside] + [(c, False) for c in outside]:
        minute = minutes(clock)
        assert bool(in_window(minute, *window)) is expected, clock
        assert bool(armed[minute]) is expected, clock
        assert route.takes(item, minute) is expected, clock
    assert int(in_window(DAY, *window).sum()) == int(armed.sum())
