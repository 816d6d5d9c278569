"""Status debouncing on arrays alone."""

from __future__ import annotations

import numpy as np

from detectors.camera_health import HealthRules, HealthTracker

IDS = np.array([1, 2, 3])


def test_offline_at_once_online_after_a_steady_hold_degraded_after_its_hold() -> None:
    tracker = HealthTracker(HealthRules(offline_after=5, degraded_errors=3, online_hold=2, degraded_hold=10))
    changed, _, new = tracker.observe(IDS, np.array([0.1, 0.1, 0.1]), np.array([0, 0, 0]), now=0)
    assert changed.tolist() == []  # online must hold first
    changed, old, new = tracker.observe(IDS, np.array([0.1, 6.0, 0.1]), np.array([0, 0, 9]), now=1.0)
    assert dict(zip(changed.tolist(), new.tolist())) == {2: "offline"}  # offline needs no hold
    changed, old, new = tracker.observe(IDS, np.array([0.1, 7.0, 0.1]), np.array([0, 0, 9]), now=2.5)
    assert dict(zip(changed.tolist(), new.tolist())) == {1: "online"}  # after 2 s of steady packets
    assert old.tolist() == ["unknown"]
    changed, _, new = tracker.observe(IDS, np.array([0.1, 7.0, 0.1]), np.array([0, 0, 9]), now=10.9)
    assert changed.tolist() == []  # degraded has held for 9.9 s only
    changed, _, new = tracker.observe(IDS, np.array([0.1, 7.0, 0.1]), np.array([0, 0, 9]), now=11.1)
    assert dict(zip(changed.tolist(), new.tolist())) == {3: "degraded"}


def test_a_flapping_link_does_not_flap() -> None:
    tracker = HealthTracker(HealthRules(offline_after=5, online_hold=3))
    tracker.observe(IDS[:1], np.array([0.1]), np.array([0]), now=0)
    tracker.observe(IDS[:1], np.array([0.1]), np.array([0]), now=3)  # online
    tracker.observe(IDS[:1], np.array([6.0]), np.array([0]), now=9)  # offline
    changes = []
    for t in range(10, 20):  # packets for one second, silence for the next, again and again
        silence = 0.1 if t % 2 == 0 else 6.0
        changes += tracker.observe(IDS[:1], np.array([silence]), np.array([0]), now=t)[2].tolist()
    assert changes == []  # never online long enough to count


def test_cameras_joining_and_leaving_keep_their_own_state() -> None:
    tracker = HealthTracker(HealthRules(offline_after=5, online_hold=0))
    tracker.observe(np.array([1, 2]), np.array([0.1, 9.0]), np.array([0, 0]), now=0)
    changed, _, new = tracker.observe(np.array([2, 3]), np.array([9.0, 0.1]), np.array([0, 0]), now=1)
    assert dict(zip(changed.tolist(), new.tolist())) == {3: "online"}  # 2 was already offline


def test_state_follows_each_camera_through_reordered_and_changing_id_sets() -> None:
    tracker = HealthTracker(HealthRules(offline_after=5, online_hold=0))
    ids = np.array([40, 7, 19, 3])
    tracker.observe(ids, np.array([9.0, 0.1, 9.0, 0.1]), np.zeros(4), now=0)  # 40, 19 offline; 7, 3 online
    changed, old, new = tracker.observe(np.array([3, 19, 55, 40]), np.array([0.1, 0.1, 9.0, 9.0]), np.zeros(4), now=1)
    # 3 and 40 keep their state; 19 comes back; 55 is new and offline at once
    assert dict(zip(changed.tolist(), zip(old.tolist(), new.tolist()))) == {
        19: ("offline", "online"), 55: ("unknown", "offline")}
