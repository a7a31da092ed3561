"""The ``venue_link`` sub-supervisor: listenKey keeper, user-data reader, market reader.

One factory, :func:`build_venue_link`, returns the child spec of a ``one_for_all`` supervisor to
put into the runtime's ``trading`` tree, and the handles the rest of the runtime needs: the
receive side of the user-data channel (the router's input), the ``Published[PriceBoard]`` (risk
guard, router), and stats for ``/api/public/health`` → ``venue``.

Why ``one_for_all``: the keeper and the user-data reader share one credential (a listenKey, or a
spot subscription that lives on the reader's socket); when either restarts the other's state is
meaningless. The market reader is independent in principle, but restarting it along costs one
reconnect and keeps "the venue link restarted" a single, simple event for the router (which
reconciles on the ``StreamUp(gap=True)`` that follows).

Children (start order; stopped in reverse):

* futures: ``keeper`` (:class:`~spark.actors.keeper.FuturesKeeper`) → ``user_stream``
  (:class:`~spark.actors.user_stream.FuturesUserStream`) → ``market_stream``;
* spot: ``user_stream`` (:class:`~spark.actors.user_stream.SpotUserStream`, which runs the
  :class:`~spark.actors.keeper.SpotKeeper` inside: a spot subscription cannot outlive its socket)
  → ``market_stream``.

The user-data channel and the ``Published`` objects are created here, outside any incarnation,
so they survive restarts of the sub-tree and of the router alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import trio

from spark.actors.keeper import FuturesKeeper, KeeperStats, ListenKeyGrant, SpotKeeper
from spark.actors.market_stream import MarketStream
from spark.actors.messages import PriceBoard, UserStreamItem
from spark.actors.streamio import UserStreamStats
from spark.actors.user_stream import FuturesUserStream, SpotUserStream, StreamTuning
from spark.config.schema import SparkConfig
from spark.core.clock import SYSTEM_CLOCK, WallClock
from spark.core.published import Published
from spark.exchange.credentials import Credentials
from spark.exchange.rest import RestClient
from spark.exchange.venues import VenueProfile
from spark.runtime.metrics import Metrics
from spark.supervision import (
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    Strategy,
    SupervisionObserver,
    Supervisor,
)

__all__ = ["VenueLinkHandles", "build_venue_link"]

ROUTER_CHANNEL_BATCHES = 64
"""``UserEvents`` batches (up to ``batch_max`` events each) queued towards the router before
the readers feel backpressure; the readers' own buffer (``[ws] inbox_size`` events) is behind."""

DELETE_TIMEOUT_S = 3.0


@attrs.define(eq=False)
class VenueLinkHandles:
    """What the runtime wiring needs from the venue link."""

    events: trio.MemoryReceiveChannel[UserStreamItem]
    """The router's input: ``UserEvents`` / ``StreamUp`` / ``StreamDown``, in order."""
    prices: Published[PriceBoard]
    user_stats: UserStreamStats
    keeper_stats: KeeperStats
    supervisor: Supervisor
    market: MarketStream
    user_stream: FuturesUserStream | SpotUserStream
    keeper: FuturesKeeper | SpotKeeper
    listen_key: Published[ListenKeyGrant | None] | None = None  # futures only

    @property
    def connected(self) -> bool:
        """A user-data subscription is serving (health ``venue.connected``)."""
        return self.user_stats.connected

    def last_event_age_s(self) -> float | None:
        """Seconds since the last user-data frame (events, or answers to our probes; health
        ``venue.last_event_age``); None before the first."""
        return self.user_stats.last_frame_age_s()


def build_venue_link(
    *,
    config: SparkConfig,
    profile: VenueProfile,
    rest: RestClient,
    credentials: Credentials,
    metrics: Metrics,
    clock: WallClock = SYSTEM_CLOCK,
    symbols: Sequence[str] | None = None,
    observer: SupervisionObserver | None = None,
    tuning: StreamTuning | None = None,
    router_channel_batches: int = ROUTER_CHANNEL_BATCHES,
    stale_after_s: float = 10.0,
    name: str = "venue_link",
    rng: random.Random | None = None,
) -> tuple[ChildSpec, VenueLinkHandles]:
    """The ``venue_link`` one_for_all supervisor as a child spec, and its handles.

    ``symbols`` defaults to ``[risk] whitelist``. ``rest`` must be the runtime's client for
    ``profile`` (futures listenKey calls; spot: its server-time offset signs the subscription).
    """
    sup_cfg = config.supervision
    heartbeat = min(5.0, sup_cfg.stall_timeout_s / 4)
    tuning = tuning if tuning is not None else StreamTuning(heartbeat_s=heartbeat)
    send, receive = trio.open_memory_channel[UserStreamItem](router_channel_batches)
    market = MarketStream(
        profile=profile,
        symbols=tuple(symbols if symbols is not None else config.risk.whitelist),
        ws=config.ws,
        metrics=metrics,
        stale_after_s=stale_after_s,
        heartbeat_s=tuning.heartbeat_s,
        connect_timeout_s=tuning.connect_timeout_s,
        rng=rng,
    )
    deadline = sup_cfg.shutdown_deadline_s
    stall = sup_cfg.stall_timeout_s
    children: list[ChildSpec] = []
    keeper: FuturesKeeper | SpotKeeper
    user: FuturesUserStream | SpotUserStream
    listen_key: Published[ListenKeyGrant | None] | None = None
    if profile.product == "futures":
        keeper = FuturesKeeper(rest, config.listenkey, metrics, heartbeat_s=tuning.heartbeat_s,
                               delete_timeout_s=min(DELETE_TIMEOUT_S, deadline), rng=rng)
        listen_key = keeper.grant
        user = FuturesUserStream(profile=profile, grants=keeper.grant, keeper_events=keeper.events,
                                 out=send, ws=config.ws, metrics=metrics, clock=clock,
                                 tuning=tuning, rng=rng)
        children.append(ChildSpec("keeper", keeper.run, Restart.PERMANENT,
                                  shutdown_deadline_s=max(deadline, DELETE_TIMEOUT_S + 1.0),
                                  stall_deadline_s=stall))
    else:
        keeper = SpotKeeper(
            credentials, config.listenkey, metrics,
            timestamp=lambda: rest.time_offset.timestamp(clock.now_ms()),
            resync_time=rest.sync_time,
            recv_window_ms=config.exchange.recv_window_ms,
            heartbeat_s=tuning.heartbeat_s, rng=rng,
        )
        user = SpotUserStream(profile=profile, keeper=keeper, out=send, ws=config.ws,
                              metrics=metrics, clock=clock, tuning=tuning)
    children.append(ChildSpec("user_stream", user.run, Restart.PERMANENT,
                              shutdown_deadline_s=deadline, stall_deadline_s=stall))
    children.append(ChildSpec("market_stream", market.run, Restart.PERMANENT,
                              shutdown_deadline_s=deadline, stall_deadline_s=stall))
    supervisor = Supervisor(
        name,
        children,
        strategy=Strategy.ONE_FOR_ALL,
        intensity=Intensity(max_restarts=sup_cfg.max_restarts, within_s=sup_cfg.within_s),
        backoff=Backoff(initial_s=sup_cfg.backoff_initial_s, max_s=sup_cfg.backoff_max_s),
        observer=observer,
        rng=rng,
    )
    handles = VenueLinkHandles(
        events=receive,
        prices=market.board,
        user_stats=user.stats,
        keeper_stats=keeper.stats,
        supervisor=supervisor,
        market=market,
        user_stream=user,
        keeper=keeper,
        listen_key=listen_key,
    )
    return supervisor.as_child_spec(), handles
