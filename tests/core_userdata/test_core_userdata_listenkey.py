"""The listenKey / WS-API subscription schedules, driven through 48 simulated hours.

The simulated venues below keep their own clocks and rules (a key lives 60 min after its last
POST/PUT as the venue processed it; a connection is dropped 24 h after the venue accepted it) and
the tests check the schedules against *them*, not against the schedules' own bookkeeping.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.config.schema import ListenKeyConfig
from spark.core.listenkey import (
    KEY_VALIDITY_S,
    MAX_CONNECTION_AGE_S,
    Action,
    CloseOld,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    CreateKey,
    DeleteKey,
    FuturesKeySchedule,
    Keepalive,
    KeepaliveOk,
    KeyCreated,
    KeyDeleted,
    KeyExpired,
    KeyUnknown,
    OpenRotation,
    RequestFailed,
    ShutdownNotice,
    SpotSubscriptionSchedule,
    Stopped,
    Subscribe,
    Subscribed,
    SubscribeFailed,
    SubscriptionEnded,
    Wait,
    schedule_event,
)
from spark.core.userdata_errors import (
    InvalidScheduleConfig,
    ScheduleStopped,
    UnexpectedResult,
)

HOURS_48 = 48 * 3600.0


# --- futures ----------------------------------------------------------------------------------


class FuturesVenue:
    """listenKeys as USD-M futures keeps them: POST returns/extends a live key or makes one."""

    def __init__(self) -> None:
        self.expiry: dict[str, float] = {}
        self._seq = 0

    def live(self, key: str, t: float) -> bool:
        return key in self.expiry and self.expiry[key] > t

    def post(self, t: float) -> str:
        for key in self.expiry:
            if self.live(key, t):
                self.expiry[key] = t + KEY_VALIDITY_S
                return key
        self._seq += 1
        key = f"key{self._seq}"
        self.expiry[key] = t + KEY_VALIDITY_S
        return key

    def put(self, key: str, t: float) -> bool:
        if not self.live(key, t):
            return False
        self.expiry[key] = t + KEY_VALIDITY_S
        return True

    def expire_all(self) -> None:
        self.expiry.clear()


def run_futures(
    seed: int,
    p_fail: float,
    *,
    hours: float = 48.0,
    config: ListenKeyConfig | None = None,
    expire_at: tuple[float, ...] = (),
) -> tuple[FuturesKeySchedule, list[float], list[tuple[float, float]]]:
    """Drive the schedule against :class:`FuturesVenue` and check the keep-alive invariants.

    ``p_fail``: share of requests that fail; half of those fail *after* the venue processed them
    (the answer was lost). ``expire_at``: times at which the venue drops every key and the reader
    reports ``listenKeyExpired``. Returns the schedule, the issue times of successful PUTs, and
    (expiry time, reconnect time) pairs.
    """
    rng = random.Random(seed)
    sched = FuturesKeySchedule(config or ListenKeyConfig(), rng=random.Random(seed + 1))
    venue = FuturesVenue()
    end = hours * 3600
    t = 0.0
    held: str | None = None  # the key the reader is connected with
    put_times: list[float] = []
    pending_expiries = sorted(expire_at)
    outages: list[tuple[float, float]] = []
    outage_start: float | None = None

    def advance(to: float) -> None:
        nonlocal t, outage_start
        while pending_expiries and pending_expiries[0] <= to:
            te = pending_expiries.pop(0)
            check_key_alive(te)
            t = max(t, te)
            venue.expire_all()
            outage_start = t
            sched.on_event(KeyExpired(held), t)
        check_key_alive(to)
        t = max(t, to)

    def check_key_alive(at: float) -> None:
        if held is not None and outage_start is None:
            # The key the reader uses never lapses while we hold it.
            assert venue.live(held, at), f"key lapsed at {at:.1f}"

    steps = 0
    while t < end:
        steps += 1
        assert steps < 100_000
        action: Action = sched.next_action(t)
        latency = rng.uniform(0.02, 2.0)
        fail = rng.random() < p_fail
        lost_answer = fail and rng.random() < 0.5
        match action:
            case Wait(until=until):
                assert until is not None, "nothing in flight in a sequential driver"
                assert until > t, "Wait must make progress"
                # An input (the expiry event) wakes the keeper before `until`.
                advance(min([until, end, *pending_expiries[:1]]))
            case CreateKey():
                processed_at = t + latency / 2
                key = venue.post(processed_at) if not fail or lost_answer else None
                advance(t + latency)
                sched.on_result(KeyCreated(key) if key is not None and not fail
                                else RequestFailed("5xx"), t)
            case Keepalive(key=key):
                assert key == held
                if outage_start is None:
                    # Every PUT is issued while the key is still valid at the venue.
                    assert venue.live(key, t), f"PUT at {t:.1f} after the key lapsed"
                processed_at = t + latency / 2
                issued = t
                ok = venue.put(key, processed_at) if not fail or lost_answer else True
                advance(t + latency)
                if fail:
                    sched.on_result(RequestFailed("timeout"), t)
                elif ok:
                    put_times.append(issued)
                    sched.on_result(KeepaliveOk(key), t)
                else:
                    sched.on_result(KeyUnknown(key), t)
            case Connect(listen_key=key):
                assert key is not None and venue.live(key, t)
                held = key
                if outage_start is not None:
                    outages.append((outage_start, t))
                    outage_start = None
            case _:
                raise AssertionError(f"unexpected {action}")
    return sched, put_times, outages


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), p_fail=st.floats(0.0, 0.6))
def test_futures_key_never_lapses_over_48h_with_failing_puts(seed: int, p_fail: float) -> None:
    sched, put_times, _ = run_futures(seed, p_fail)
    # No key was ever lost, so nothing was renewed; successful PUTs are never closer than the
    # keepalive interval (no spamming) and never further apart than the key's validity.
    assert sched.renewals == 0
    assert len(put_times) == sched.keepalives >= HOURS_48 / (KEY_VALIDITY_S - 120)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *put_times])]
    assert all(1800 - 1e-6 <= g < KEY_VALIDITY_S - 120 for g in gaps)
    if p_fail == 0:
        assert sched.keepalives == HOURS_48 // 1800 - 1 or sched.keepalives == HOURS_48 // 1800
    assert sched.take_reconcile_due() is True  # the first key
    assert sched.take_reconcile_due() is False


def test_futures_failing_puts_are_retried_with_backoff() -> None:
    sched = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(1))
    assert sched.next_action(0.0) == CreateKey()
    sched.on_result(KeyCreated("k1"), 0.5)
    assert sched.next_action(0.5) == Connect(1, "k1")
    assert sched.next_action(0.5) == Wait(1800.0)
    assert sched.next_action(1800.0) == Keepalive("k1")
    sched.on_result(RequestFailed("503"), 1800.2)
    retries = []
    t = 1800.2
    for _ in range(8):
        action = sched.next_action(t)
        assert isinstance(action, Wait) and action.until is not None
        retries.append(action.until - t)
        t = action.until
        assert sched.next_action(t) == Keepalive("k1")
        sched.on_result(RequestFailed("503"), t)
    # 1, 2, 4, 8 ... capped at 60, each reduced by up to 20 % jitter
    for n, delay in enumerate(retries):
        base = min(60.0, 1.0 * 2**n)
        assert 0.8 * base <= delay <= base
    assert sched.keepalive_failures == 9
    sched.next_action(t)
    # success resets the schedule: next PUT 30 min after this one was issued
    action = sched.next_action(t + 100)
    assert action == Keepalive("k1")
    sched.on_result(KeepaliveOk("k1"), t + 100.3)
    assert sched.next_action(t + 101) == Wait(t + 100 + 1800)
    assert sched.renewals == 0


def test_futures_presumes_lapse_before_expiry_and_posts() -> None:
    """When PUTs fail until the key may lapse, POST: same key back = extended, no reconnect."""
    cfg = ListenKeyConfig(keepalive_interval_s=1800, retry_initial_s=1, retry_max_s=60)
    sched = FuturesKeySchedule(cfg, rng=random.Random(2))
    sched.next_action(0.0)
    sched.on_result(KeyCreated("k1"), 0.1)
    assert isinstance(sched.next_action(0.1), Connect)
    t = 1800.0
    while True:
        action = sched.next_action(t)
        if isinstance(action, Wait):
            assert action.until is not None
            t = action.until
            continue
        if isinstance(action, CreateKey):
            break
        assert action == Keepalive("k1")
        sched.on_result(RequestFailed("timeout"), t + 1)
    assert 3600 - 120 <= t < 3600  # switched to POST before our conservative expiry
    sched.on_result(KeyCreated("k1"), t + 0.5)
    assert sched.keepalives == 1 and sched.renewals == 0
    assert sched.next_action(t + 1) == Wait(t + 1800)  # no Connect: same key
    # a different key means it had lapsed: renewal and reconnect
    t2 = t + 1800
    while not isinstance(action := sched.next_action(t2), CreateKey):
        if isinstance(action, Wait):
            assert action.until is not None
            t2 = action.until
        else:
            sched.on_result(RequestFailed("timeout"), t2 + 1)
    sched.on_result(KeyCreated("k2"), t2 + 0.5)
    assert sched.renewals == 1
    assert sched.next_action(t2 + 1) == Connect(2, "k2")
    assert sched.take_reconcile_due() and not sched.take_reconcile_due()


def test_futures_1125_and_expired_event_create_a_new_key_at_once() -> None:
    sched = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(3))
    sched.next_action(0.0)
    sched.on_result(KeyCreated("k1"), 0.1)
    assert sched.next_action(0.2) == Connect(1, "k1")
    assert sched.take_reconcile_due()
    assert sched.next_action(1800.0) == Keepalive("k1")
    sched.on_result(KeyUnknown("k1"), 1800.1)
    assert sched.next_action(1800.1) == CreateKey()  # no backoff
    sched.on_result(KeyCreated("k2"), 1800.3)
    assert sched.next_action(1800.3) == Connect(2, "k2")
    assert sched.renewals == 1 and sched.take_reconcile_due()
    # listenKeyExpired naming an old key is ignored
    sched.on_event(KeyExpired("k1"), 1900.0)
    assert sched.next_action(1900.0) == Wait(1800.1 + 1800)  # from the POST's issue time
    # ... naming the current key (or none) replaces it
    sched.on_event(KeyExpired(None), 2000.0)
    assert sched.next_action(2000.0) == CreateKey()
    sched.on_result(RequestFailed("503"), 2000.5)  # creating fails: now it backs off
    action = sched.next_action(2000.5)
    assert isinstance(action, Wait) and action.until is not None and action.until > 2000.5
    assert sched.next_action(action.until) == CreateKey()
    sched.on_result(KeyCreated("k3"), action.until + 0.2)
    assert sched.next_action(action.until + 0.2) == Connect(3, "k3")
    assert sched.renewals == 2


def test_futures_put_racing_an_expiry_does_not_resurrect_the_key() -> None:
    sched = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(4))
    sched.next_action(0.0)
    sched.on_result(KeyCreated("k1"), 0.1)
    sched.next_action(0.1)
    assert sched.next_action(1800.0) == Keepalive("k1")
    sched.on_event(KeyExpired("k1"), 1800.1)  # arrives while the PUT is in flight
    assert sched.next_action(1800.1) == Wait(None)
    sched.on_result(KeepaliveOk("k1"), 1800.2)
    assert sched.keepalives == 0
    assert sched.next_action(1800.2) == CreateKey()


def test_futures_renews_after_venue_expiries_over_48h() -> None:
    expiries = (5000.0, 40000.0, 100000.0)
    sched, _, outages = run_futures(7, 0.2, expire_at=expiries)
    assert sched.renewals == len(expiries)
    assert [round(a) for a, _ in outages] == [round(e) for e in expiries]
    assert all(b - a < 30 for a, b in outages)  # back on a new key within seconds


def test_futures_shutdown_deletes_the_key() -> None:
    sched = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(5))
    sched.next_action(0.0)
    sched.on_result(KeyCreated("k1"), 0.1)
    sched.next_action(0.1)
    sched.stop(10.0)
    assert sched.next_action(10.0) == DeleteKey("k1")
    sched.on_result(KeyDeleted(), 10.2)
    assert sched.next_action(10.2) == Stopped()
    assert sched.stopped and sched.key is None
    with pytest.raises(ScheduleStopped):
        sched.on_result(KeyDeleted(), 11.0)
    # a failed DELETE still stops (the key lapses by itself within the hour)
    other = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(5))
    other.next_action(0.0)
    other.on_result(KeyCreated("k9"), 0.1)
    other.stop(1.0)
    assert other.next_action(1.0) == DeleteKey("k9")
    other.on_result(RequestFailed("timeout"), 2.0)
    assert other.next_action(2.0) == Stopped()
    # stopping before any key: nothing to delete
    idle = FuturesKeySchedule()
    idle.stop(0.0)
    assert idle.next_action(0.0) == Stopped()


def test_futures_rejects_out_of_order_results_and_bad_config() -> None:
    sched = FuturesKeySchedule(ListenKeyConfig(), rng=random.Random(6))
    with pytest.raises(UnexpectedResult):
        sched.on_result(KeyCreated("k"), 0.0)
    assert sched.next_action(0.0) == CreateKey()
    with pytest.raises(UnexpectedResult):
        sched.on_result(KeepaliveOk("k"), 0.0)
    with pytest.raises(InvalidScheduleConfig):
        FuturesKeySchedule(ListenKeyConfig(keepalive_interval_s=3590))
    assert "k1" not in repr(Keepalive("k1")) and "k1" not in repr(KeyCreated("k1"))


# --- spot -------------------------------------------------------------------------------------


class SpotVenue:
    """WS-API connections as the venue sees them: accepted at some time, dropped at 24 h."""

    def __init__(self) -> None:
        self.accepted_at: dict[int, float] = {}
        self.subscribed: set[int] = set()

    def check(self, at: float, *, covered: bool) -> None:
        for cid, since in self.accepted_at.items():
            assert at - since < MAX_CONNECTION_AGE_S, f"connection {cid} older than 24 h"
        if covered:
            assert self.subscribed, f"no subscribed connection at {at:.1f}"

    def close(self, cid: int) -> None:
        self.accepted_at.pop(cid, None)
        self.subscribed.discard(cid)


def run_spot(
    seed: int,
    p_fail: float,
    *,
    rotate_after_s: float = 82800.0,
    hours: float = 48.0,
) -> tuple[SpotSubscriptionSchedule, SpotVenue, int]:
    """Drive the spot schedule; check at every instant: no connection beyond 24 h and, once the
    first subscription is up, always at least one subscribed connection (no gap)."""
    rng = random.Random(seed)
    cfg = ListenKeyConfig(spot_rotate_after_s=rotate_after_s)
    sched = SpotSubscriptionSchedule(cfg, rng=random.Random(seed + 1))
    venue = SpotVenue()
    end = hours * 3600
    t = 0.0
    covered = False
    closes = 0

    def advance(to: float) -> None:
        nonlocal t
        venue.check(to, covered=covered)
        t = max(t, to)

    steps = 0
    while t < end:
        steps += 1
        assert steps < 100_000
        action = sched.next_action(t)
        latency = rng.uniform(0.02, 3.0)
        fail = rng.random() < p_fail
        match action:
            case Wait(until=until):
                assert until is not None and until > t
                advance(min(until, end))
            case Connect(conn_id=cid) | OpenRotation(conn_id=cid):
                if isinstance(action, OpenRotation):
                    assert action.replaces in venue.subscribed  # the old one still serves
                else:
                    assert not covered
                accepted = t + latency / 2
                advance(t + latency)
                if fail:
                    sched.on_result(ConnectFailed(cid, "refused"), t)
                else:
                    venue.accepted_at[cid] = accepted
                    sched.on_result(Connected(cid), t)
            case Subscribe(conn_id=cid):
                assert cid in venue.accepted_at
                advance(t + latency)
                if fail:
                    sched.on_result(SubscribeFailed(cid, "-1022"), t)
                else:
                    venue.subscribed.add(cid)
                    covered = True
                    sched.on_result(Subscribed(cid, 0), t)
            case CloseOld(conn_id=cid):
                venue.close(cid)
                closes += 1
                venue.check(t, covered=covered)
            case _:
                raise AssertionError(f"unexpected {action}")
        assert len(venue.accepted_at) <= 2
    return sched, venue, closes


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), p_fail=st.floats(0.0, 0.6))
def test_spot_rotation_has_no_gap_and_no_connection_beyond_24h(seed: int, p_fail: float) -> None:
    sched, venue, _ = run_spot(seed, p_fail)
    assert sched.rotations == 2  # at ~23 h and ~46 h
    assert sched.keepalives == 2 and sched.renewals == 0
    assert len(venue.subscribed) == 1
    assert sched.take_reconcile_due() is True  # the first subscription only
    assert sched.take_reconcile_due() is False


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    p_fail=st.floats(0.0, 0.5),
    rotate_after_s=st.floats(600.0, 86000.0),
)
def test_spot_rotation_invariants_hold_for_any_rotation_interval(
    seed: int, p_fail: float, rotate_after_s: float
) -> None:
    sched, _, closes = run_spot(seed, p_fail, rotate_after_s=rotate_after_s)
    assert sched.renewals == 0
    assert sched.rotations >= int(HOURS_48 // (rotate_after_s + 3600)) - 1
    assert closes >= sched.rotations


def _subscribe(sched: SpotSubscriptionSchedule, t: float) -> int:
    action = sched.next_action(t)
    assert isinstance(action, Connect | OpenRotation)
    sched.on_result(Connected(action.conn_id), t)
    assert sched.next_action(t) == Subscribe(action.conn_id)
    sched.on_result(Subscribed(action.conn_id, 7), t)
    return action.conn_id


def test_spot_stream_terminated_resubscribes_on_a_new_connection_at_once() -> None:
    sched = SpotSubscriptionSchedule(ListenKeyConfig(), rng=random.Random(1))
    first = _subscribe(sched, 0.0)
    assert sched.subscription_of(first) == 7
    assert sched.take_reconcile_due()
    sched.on_event(SubscriptionEnded(first), 100.0)
    assert sched.subscribed == ()
    assert sched.next_action(100.0) == CloseOld(first, "ended")
    assert sched.next_action(100.0) == Connect(2)
    sched.on_result(Connected(2), 100.1)
    assert sched.next_action(100.1) == Subscribe(2)
    sched.on_result(Subscribed(2, 0), 100.2)
    assert sched.renewals == 1 and sched.keepalives == 0
    assert sched.take_reconcile_due()  # a gap: reconcile
    assert sched.next_action(100.2) == Wait(100.0 + 82800.0)


def test_spot_dropped_connection_reconnects_after_backoff() -> None:
    sched = SpotSubscriptionSchedule(ListenKeyConfig(), rng=random.Random(2))
    first = _subscribe(sched, 0.0)
    sched.on_event(ConnectionLost(first), 50.0)
    action = sched.next_action(50.0)
    assert isinstance(action, Wait) and action.until is not None
    assert 50.8 <= action.until <= 51.0  # retry_initial_s = 1 with jitter
    assert sched.next_action(action.until) == Connect(2)
    sched.on_result(ConnectFailed(2), action.until + 0.1)
    again = sched.next_action(action.until + 0.1)
    assert isinstance(again, Wait) and again.until is not None
    assert again.until - (action.until + 0.1) >= 1.6  # the streak grows
    assert sched.failures == 1
    # results for a connection lost meanwhile are ignored
    assert sched.next_action(again.until) == Connect(3)
    sched.on_event(ConnectionLost(3), again.until + 0.05)
    sched.on_result(Connected(3), again.until + 0.1)
    assert 3 not in sched.open_connections


def test_spot_server_shutdown_rotates_now_without_gap() -> None:
    sched = SpotSubscriptionSchedule(ListenKeyConfig(), rng=random.Random(3))
    first = _subscribe(sched, 0.0)
    sched.take_reconcile_due()
    sched.on_event(ShutdownNotice(first), 500.0)
    assert sched.next_action(500.0) == OpenRotation(2, replaces=first)
    sched.on_result(Connected(2), 500.1)
    assert sched.next_action(500.1) == Subscribe(2)
    assert sched.subscribed == (first,)
    sched.on_result(Subscribed(2, 0), 500.2)
    assert set(sched.subscribed) == {first, 2}  # the overlap
    assert sched.next_action(500.2) == CloseOld(first, "replaced")
    assert sched.subscribed == (2,) and sched.primary == 2
    assert sched.keepalives == 1 and sched.renewals == 0
    assert not sched.take_reconcile_due()


def test_spot_rotation_failing_until_the_limit_closes_the_old_connection() -> None:
    sched = SpotSubscriptionSchedule(
        ListenKeyConfig(spot_rotate_after_s=86000.0), rng=random.Random(4)
    )
    first = _subscribe(sched, 0.0)
    t = 86000.0
    while True:
        action = sched.next_action(t)
        if isinstance(action, CloseOld):
            break
        if isinstance(action, Wait):
            assert action.until is not None and action.until > t
            t = action.until
            continue
        assert isinstance(action, OpenRotation)
        sched.on_result(ConnectFailed(action.conn_id), t + 1)
        t += 1
    assert action == CloseOld(first, "age_limit")
    assert t == MAX_CONNECTION_AGE_S
    assert isinstance(sched.next_action(t), Wait | Connect)


def test_spot_shutdown_closes_everything() -> None:
    sched = SpotSubscriptionSchedule(ListenKeyConfig(), rng=random.Random(5))
    first = _subscribe(sched, 0.0)
    assert sched.next_action(82800.0) == OpenRotation(2, replaces=first)
    sched.stop(82800.5)
    assert sched.next_action(82800.5) == Wait(None)  # connect in flight
    sched.on_result(Connected(2), 82801.0)
    closed = set()
    while not isinstance(action := sched.next_action(82801.0), Stopped):
        assert isinstance(action, CloseOld) and action.reason == "shutdown"
        closed.add(action.conn_id)
    assert closed == {first, 2}
    with pytest.raises(ScheduleStopped):
        sched.on_result(Connected(2), 82802.0)


def test_spot_rejects_results_out_of_phase_and_bad_config() -> None:
    sched = SpotSubscriptionSchedule(ListenKeyConfig(), rng=random.Random(6))
    assert sched.next_action(0.0) == Connect(1)
    with pytest.raises(UnexpectedResult):
        sched.on_result(Subscribed(1, 0), 0.1)
    with pytest.raises(InvalidScheduleConfig):
        SpotSubscriptionSchedule(ListenKeyConfig(spot_rotate_after_s=90000.0))


def test_decoded_user_events_map_to_schedule_inputs() -> None:
    from spark.exchange.events import (
        ListenKeyExpired,
        ServerShutdown,
        StreamTerminated,
        decode_user_frame,
    )

    assert schedule_event(ListenKeyExpired(1, "k1")) == KeyExpired("k1")
    assert schedule_event(StreamTerminated(1, 3), 4) == SubscriptionEnded(4)
    assert schedule_event(ServerShutdown(None), 4) == ShutdownNotice(4)
    assert schedule_event(ServerShutdown(None)) is None  # which connection? the reader must say
    frame = b'{"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": 1728973001334}}'
    assert schedule_event(decode_user_frame(frame), 2) == SubscriptionEnded(2)
