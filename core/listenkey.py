"""Keeping the user-data credential alive: the listenKey keeper's decisions, without I/O.

Binance has two different credentials for user data (see ``shared/binance/NOTES.md``):

* **USD-M futures** — a listenKey. ``POST /fapi/v1/listenKey`` creates one (or returns and
  extends the existing one), ``PUT`` extends it by 60 minutes, ``DELETE`` closes it. A ``PUT``
  answered ``-1125`` or a ``listenKeyExpired`` event means the key is gone: create a new one and
  reconnect the socket with it. :class:`FuturesKeySchedule` decides when to do which.
* **Spot** — a WebSocket-API subscription (``userDataStream.subscribe.signature``). There is
  nothing to extend; instead the *connection* lives at most 24 h, and a subscription lives only as
  long as its connection. :class:`SpotSubscriptionSchedule` rotates the connection before the
  limit **without a gap**: open the new connection, subscribe on it, and only then close the old
  one. During the overlap both connections deliver the same events; the deduplicator
  (:mod:`spark.core.dedup`) removes the copies.

Both are driven the same way by the keeper actor::

    while True:
        action = schedule.next_action(trio.current_time())
        ...perform it (awaiting the REST call / connect / subscribe inline)...
        schedule.on_result(result, trio.current_time())

and events from the user-data reader (``listenKeyExpired``, ``eventStreamTerminated``,
``serverShutdown``, a dropped connection) go to ``schedule.on_event(event, now)``.
:class:`Wait` says until when nothing is due (``until=None``: only an input can change that,
which happens only while an action's result is outstanding — the actor bounds every action with
its own timeout and reports a failure when it fires).

Time is monotonic seconds (``trio.current_time()``), never wall-clock: a wall-clock jump must not
make a key look expired or fresh.

**Conservative clocks.** The venue starts a key's 60 minutes (or a connection's 24 h) somewhere
between our request and its answer. The schedules take the *issue* time of the request as the
start of validity (keys) and of the connection's life (connections): the venue's deadline is never
earlier than ours, so "our deadline has not passed" implies "the venue's has not either".

**Counters** (CONTRACT §6):

* ``keepalives`` → ``spark_listenkey_keepalive_total``: futures PUTs that succeeded (plus a
  ``POST`` that returned the key we already had, which extends it just like a PUT), and spot
  re-subscriptions made while the previous subscription still covered (planned rotations and
  ``serverShutdown`` hand-overs: the spot analogue of a keepalive).
* ``renewals`` → ``spark_listenkey_renewals_total``: futures keys created to replace a lost one
  (``-1125``, ``listenKeyExpired``, or a key we had to presume lapsed after its PUTs kept
  failing), and spot subscriptions made after coverage was lost (``eventStreamTerminated``, a
  dropped connection, the 24 h limit reached). The very first key / subscription counts as
  neither.

**Reconcile signal.** User-data events carry no sequence number; whenever coverage may have had a
gap (first credential, renewal, any recovery) :meth:`take_reconcile_due` turns True once, and the
runtime reconciles over REST (:mod:`spark.core.reconcile`). A seamless rotation or keepalive does
not set it.
"""

from __future__ import annotations

import enum
import random
from typing import Final

import attrs

from spark.config.schema import ListenKeyConfig
from spark.core.userdata_errors import (
    InvalidScheduleConfig,
    ScheduleStopped,
    UnexpectedResult,
)
from spark.exchange.events import ListenKeyExpired, ServerShutdown, StreamTerminated, UserEvent
from spark.supervision.policy import Backoff, BackoffState

__all__ = [
    "KEY_VALIDITY_S",
    "MAX_CONNECTION_AGE_S",
    "Action",
    "CloseOld",
    "Connect",
    "ConnectFailed",
    "Connected",
    "ConnectionLost",
    "CreateKey",
    "DeleteKey",
    "FuturesEvent",
    "FuturesKeySchedule",
    "FuturesResult",
    "Keepalive",
    "KeepaliveOk",
    "KeyCreated",
    "KeyDeleted",
    "KeyExpired",
    "KeyUnknown",
    "OpenRotation",
    "RequestFailed",
    "ShutdownNotice",
    "SpotEvent",
    "SpotResult",
    "SpotSubscriptionSchedule",
    "Stopped",
    "Subscribe",
    "SubscribeFailed",
    "Subscribed",
    "SubscriptionEnded",
    "Wait",
    "schedule_event",
]

KEY_VALIDITY_S: Final = 3600.0
"""A futures listenKey lives 60 minutes after its creation or last PUT."""

MAX_CONNECTION_AGE_S: Final = 86400.0
"""Binance closes a websocket connection (WS API or stream) after 24 hours."""

_DEFAULT_JITTER: Final = 0.2

# --- actions (what the keeper actor must do next) -------------------------------------------


@attrs.frozen
class CreateKey:
    """Futures: ``POST /fapi/v1/listenKey``; answer :class:`KeyCreated` or
    :class:`RequestFailed`."""


@attrs.frozen
class Keepalive:
    """Futures: ``PUT /fapi/v1/listenKey``; answer :class:`KeepaliveOk`, :class:`KeyUnknown`
    (``-1125``) or :class:`RequestFailed`."""

    key: str = attrs.field(repr=False)


@attrs.frozen
class DeleteKey:
    """Futures, at shutdown: ``DELETE /fapi/v1/listenKey``; answer :class:`KeyDeleted` or
    :class:`RequestFailed` (either way the schedule then stops)."""

    key: str = attrs.field(repr=False)


@attrs.frozen
class Connect:
    """(Re)connect the user-data socket.

    Futures: hand ``listen_key`` to the user-data reader, which (re)connects with it; no result
    is expected (the reader's own reconnect policy, :mod:`spark.core.ws_policy`, owns the socket).
    Spot: open WS-API connection ``conn_id`` while no subscription covers; answer
    :class:`Connected` or :class:`ConnectFailed`.
    """

    conn_id: int
    listen_key: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class OpenRotation:
    """Spot: open WS-API connection ``conn_id`` *in addition to* ``replaces``, which keeps
    serving until the new one is subscribed; answer :class:`Connected` or :class:`ConnectFailed`."""

    conn_id: int
    replaces: int


@attrs.frozen
class Subscribe:
    """Spot: send ``userDataStream.subscribe.signature`` on ``conn_id``; answer
    :class:`Subscribed` or :class:`SubscribeFailed`."""

    conn_id: int


@attrs.frozen
class CloseOld:
    """Spot: close connection ``conn_id`` (replaced, useless, or at its age limit). No result."""

    conn_id: int
    reason: str


@attrs.frozen
class Wait:
    """Nothing to do before ``until`` (monotonic seconds); ``None``: until an input arrives."""

    until: float | None


@attrs.frozen
class Stopped:
    """The schedule has finished its shutdown; the actor may exit."""


Action = (
    CreateKey | Keepalive | DeleteKey | Connect | OpenRotation | Subscribe | CloseOld | Wait
    | Stopped
)

# --- results (answers to actions) -------------------------------------------------------------


@attrs.frozen
class KeyCreated:
    key: str = attrs.field(repr=False)


@attrs.frozen
class KeepaliveOk:
    key: str = attrs.field(repr=False)


@attrs.frozen
class KeyUnknown:
    """``-1125 This listenKey does not exist.`` in answer to a PUT."""

    key: str = attrs.field(repr=False)


@attrs.frozen
class RequestFailed:
    """The in-flight futures request failed transiently (5xx, timeout, 429, transport)."""

    reason: str = "failed"


@attrs.frozen
class KeyDeleted:
    pass


@attrs.frozen
class Connected:
    conn_id: int


@attrs.frozen
class ConnectFailed:
    conn_id: int
    reason: str = "failed"


@attrs.frozen
class Subscribed:
    conn_id: int
    subscription_id: int


@attrs.frozen
class SubscribeFailed:
    conn_id: int
    reason: str = "failed"


FuturesResult = KeyCreated | KeepaliveOk | KeyUnknown | RequestFailed | KeyDeleted
SpotResult = Connected | ConnectFailed | Subscribed | SubscribeFailed

# --- events (from the user-data reader) -------------------------------------------------------


@attrs.frozen
class KeyExpired:
    """Futures ``listenKeyExpired``; ``key`` as the event names it (None if it does not)."""

    key: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class SubscriptionEnded:
    """Spot ``eventStreamTerminated`` on connection ``conn_id``."""

    conn_id: int


@attrs.frozen
class ConnectionLost:
    """Spot: connection ``conn_id`` closed without being asked to (drop, missed pong, 24 h)."""

    conn_id: int


@attrs.frozen
class ShutdownNotice:
    """Spot ``serverShutdown`` on connection ``conn_id``: it goes away soon."""

    conn_id: int


FuturesEvent = KeyExpired
SpotEvent = SubscriptionEnded | ConnectionLost | ShutdownNotice


def schedule_event(event: UserEvent, conn_id: int | None = None) -> FuturesEvent | SpotEvent | None:
    """The schedule input a decoded user-data event stands for (None: not the keeper's business).

    ``conn_id`` is the spot connection the event arrived on (the WS API's ``serverShutdown``
    names no subscription, so only the reader knows).
    """
    match event:
        case ListenKeyExpired(listen_key=key):
            return KeyExpired(key)
        case StreamTerminated() if conn_id is not None:
            return SubscriptionEnded(conn_id)
        case ServerShutdown() if conn_id is not None:
            return ShutdownNotice(conn_id)
    return None


def _retry_backoff(config: ListenKeyConfig, jitter: float) -> Backoff:
    # healthy_after_s=0: one success is enough to start the next failure streak from scratch;
    # the schedules reset the state explicitly on success anyway.
    return Backoff(
        initial_s=config.retry_initial_s,
        multiplier=2.0,
        max_s=max(config.retry_max_s, config.retry_initial_s),
        jitter=jitter,
        healthy_after_s=0.0,
    )


# --- futures ----------------------------------------------------------------------------------


class _KeyState(enum.Enum):
    NONE = "none"  # no key yet
    LIVE = "live"  # key valid at least until _expires_at
    SUSPECT = "suspect"  # PUTs failed until the key may have lapsed: POST to find out
    DEAD = "dead"  # venue said -1125 / listenKeyExpired


class _Op(enum.Enum):
    CREATE = "create"
    PUT = "put"
    DELETE = "delete"


@attrs.define
class _InFlight:
    op: _Op
    key: str | None = attrs.field(repr=False)
    issued_at: float


class FuturesKeySchedule:
    """When to create, extend, replace and delete a USD-M futures listenKey.

    Rules:

    1. No key → ``CreateKey``; the created key → ``Connect(key)``.
    2. PUT every ``keepalive_interval_s`` (measured from the issue time of the last successful
       PUT/POST), well inside the 60-minute validity.
    3. A PUT that fails transiently is retried with jittered exponential backoff
       (``retry_initial_s`` … ``retry_max_s``), as long as the key is still valid by our
       conservative clock. ``expiry_margin_s`` before that clock runs out the key is presumed
       lapsed and we ``POST`` instead: Binance returns (and extends) the existing key if it still
       lives — then nothing else changes — or a new one, which we connect with.
    4. ``-1125`` on a PUT, or ``listenKeyExpired`` naming our key → ``CreateKey`` at once (no
       backoff: this is not a failure of the venue), then ``Connect(new key)``.
    5. :meth:`stop` → ``DeleteKey`` (if we hold a live key) → :class:`Stopped`.

    One request is in flight at a time (the keeper awaits each); results that refer to a key we no
    longer hold are ignored, so a PUT racing with ``listenKeyExpired`` cannot resurrect a key.
    """

    def __init__(
        self,
        config: ListenKeyConfig | None = None,
        *,
        rng: random.Random | None = None,
        key_validity_s: float = KEY_VALIDITY_S,
        expiry_margin_s: float = 120.0,
        jitter: float = _DEFAULT_JITTER,
    ) -> None:
        self._config = config if config is not None else ListenKeyConfig()
        interval = self._config.keepalive_interval_s
        if not 0 < interval < key_validity_s - expiry_margin_s:
            raise InvalidScheduleConfig(
                f"keepalive_interval_s={interval} must be > 0 and leave room for retries before "
                f"the key's validity ({key_validity_s} s minus a {expiry_margin_s} s margin)"
            )
        self._validity = key_validity_s
        self._margin = expiry_margin_s
        self._rng = rng if rng is not None else random.Random()
        self._policy = _retry_backoff(self._config, jitter)
        self._backoff = BackoffState(self._policy)
        self._key: str | None = None
        self._state = _KeyState.NONE
        self._expires_at = 0.0
        self._next_keepalive_at = 0.0
        self._retry_at = 0.0
        self._in_flight: _InFlight | None = None
        self._need_connect = False
        self._conn_seq = 0
        self._stopping = False
        self._stopped = False
        self._reconcile_due = False
        self.keepalives = 0
        self.renewals = 0
        self.keepalive_failures = 0
        self.create_failures = 0

    # -- queries -------------------------------------------------------------------------------

    @property
    def key(self) -> str | None:
        """The key the reader should be using (None before the first one)."""
        return self._key

    @property
    def expires_at(self) -> float | None:
        """Our conservative deadline of the current key (None unless it is live)."""
        return self._expires_at if self._state is _KeyState.LIVE else None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def take_reconcile_due(self) -> bool:
        """True once after every new key (coverage may have had a gap); then False."""
        due, self._reconcile_due = self._reconcile_due, False
        return due

    # -- driving -------------------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """The next thing the keeper must do at ``now`` (see the class docstring)."""
        if self._stopped:
            return Stopped()
        if self._in_flight is not None:
            return Wait(None)
        if self._stopping:
            if self._key is not None and self._state in (_KeyState.LIVE, _KeyState.SUSPECT):
                return self._issue(_Op.DELETE, now)
            self._stopped = True
            return Stopped()
        if self._state is _KeyState.LIVE and now >= self._expires_at - self._margin:
            # Retries did not get a PUT through in time: presume the key lapsed. POST either
            # extends it (same key back) or replaces it; first attempt now.
            self._state = _KeyState.SUSPECT
            self._retry_at = now
        if self._state is not _KeyState.LIVE:
            if now < self._retry_at:
                return Wait(self._retry_at)
            return self._issue(_Op.CREATE, now)
        if self._need_connect:
            self._need_connect = False
            self._conn_seq += 1
            return Connect(self._conn_seq, self._key)
        due = max(self._next_keepalive_at, self._retry_at)
        if now >= due:
            return self._issue(_Op.PUT, now)
        return Wait(min(due, self._expires_at - self._margin))

    def _issue(self, op: _Op, now: float) -> Action:
        self._in_flight = _InFlight(op, self._key, now)
        if op is _Op.CREATE:
            return CreateKey()
        assert self._key is not None
        if op is _Op.PUT:
            return Keepalive(self._key)
        return DeleteKey(self._key)

    def on_result(self, result: FuturesResult, now: float) -> None:
        """The answer to the action in flight."""
        if self._stopped:
            raise ScheduleStopped("result after the schedule stopped")
        flight = self._in_flight
        if flight is None:
            raise UnexpectedResult(f"{type(result).__name__} with no request in flight")
        match result:
            case KeyCreated(key=key):
                self._expect(flight, _Op.CREATE, result)
                self._in_flight = None
                self._on_created(key, flight.issued_at)
            case KeepaliveOk(key=key):
                self._expect(flight, _Op.PUT, result)
                self._in_flight = None
                if key == self._key and self._state is _KeyState.LIVE:
                    self.keepalives += 1
                    self._extend(flight.issued_at)
            case KeyUnknown(key=key):
                self._expect(flight, _Op.PUT, result)
                self._in_flight = None
                self.keepalive_failures += 1
                if key == self._key and self._state is _KeyState.LIVE:
                    self._lose(now)
            case RequestFailed():
                self._in_flight = None
                if flight.op is _Op.DELETE:
                    self._stopped = True
                    return
                if flight.op is _Op.PUT:
                    self.keepalive_failures += 1
                else:
                    self.create_failures += 1
                self._retry_at = now + self._backoff.next_delay(self._rng)
            case KeyDeleted():
                self._expect(flight, _Op.DELETE, result)
                self._in_flight = None
                self._key = None
                self._state = _KeyState.NONE
                self._stopped = True
            case _:
                raise UnexpectedResult(f"{type(result).__name__} is not a futures result")

    def on_event(self, event: FuturesEvent, now: float) -> None:
        """``listenKeyExpired`` from the reader (ignored when it names a key we replaced)."""
        if self._stopped:
            return
        match event:
            case KeyExpired(key=key):
                ours = self._key is not None and (key is None or key == self._key)
                if ours and self._state in (_KeyState.LIVE, _KeyState.SUSPECT):
                    self._lose(now)
            case _:
                raise UnexpectedResult(f"{type(event).__name__} is not a futures event")

    def stop(self, now: float) -> None:
        """Begin shutdown: delete the key once nothing is in flight, then :class:`Stopped`."""
        self._stopping = True

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _expect(flight: _InFlight, op: _Op, result: object) -> None:
        if flight.op is not op:
            raise UnexpectedResult(
                f"{type(result).__name__} while a {flight.op.value} request is in flight"
            )

    def _extend(self, issued_at: float) -> None:
        self._expires_at = issued_at + self._validity
        self._next_keepalive_at = issued_at + self._config.keepalive_interval_s
        self._backoff = BackoffState(self._policy)
        self._retry_at = 0.0

    def _lose(self, now: float) -> None:
        self._state = _KeyState.DEAD
        self._retry_at = now  # the venue dropped the key; replacing it is not a retry

    def _on_created(self, key: str, issued_at: float) -> None:
        previous, state = self._key, self._state
        self._key = key
        self._state = _KeyState.LIVE
        self._extend(issued_at)
        if self._stopping:
            return
        if state is _KeyState.NONE:
            self._need_connect = True
            self._reconcile_due = True
        elif state is _KeyState.SUSPECT and key == previous:
            self.keepalives += 1  # the key was alive after all and is extended now
        else:
            self.renewals += 1
            self._need_connect = True
            self._reconcile_due = True


# --- spot -------------------------------------------------------------------------------------


class _Phase(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    ENDED = "ended"  # the subscription was terminated; the connection is of no further use


@attrs.define
class _Conn:
    conn_id: int
    opened_at: float
    phase: _Phase
    subscription_id: int | None = None
    retire: bool = False  # serverShutdown: replace as soon as possible


class SpotSubscriptionSchedule:
    """When to open, subscribe, rotate and close spot WS-API connections.

    State: at most one *primary* (subscribed, serving) connection, at most one *candidate* (being
    opened and subscribed), and connections waiting to be closed.

    Rules:

    1. No primary → ``Connect`` a candidate; once :class:`Connected` → ``Subscribe``; once
       :class:`Subscribed` it becomes the primary.
    2. Primary older than ``spot_rotate_after_s`` (age counted from the connect's issue time) or
       marked by ``serverShutdown`` → ``OpenRotation`` a candidate; the old primary keeps serving.
       Only when the candidate is :class:`Subscribed` does it become primary, and then the old one
       is closed (``CloseOld``). Failed attempts are retried with jittered backoff; the
       ``spot_rotate_after_s`` default (23 h) leaves an hour of retries before the 24 h limit.
    3. ``eventStreamTerminated`` on the primary → close it and start over on a new connection at
       once (rule 1). A dropped primary → the same, after a backoff delay (so a venue that keeps
       dropping us is not hammered; the first delay is ``retry_initial_s``).
    4. A primary that reaches :data:`MAX_CONNECTION_AGE_S` by our clock is closed: the venue
       drops it anyway (our clock runs ahead of the venue's, so this never cuts a connection the
       venue would still serve).
    5. :meth:`stop` → close everything → :class:`Stopped`.
    """

    def __init__(
        self,
        config: ListenKeyConfig | None = None,
        *,
        rng: random.Random | None = None,
        max_connection_age_s: float = MAX_CONNECTION_AGE_S,
        jitter: float = _DEFAULT_JITTER,
    ) -> None:
        self._config = config if config is not None else ListenKeyConfig()
        rotate = self._config.spot_rotate_after_s
        if not 0 < rotate < max_connection_age_s:
            raise InvalidScheduleConfig(
                f"spot_rotate_after_s={rotate} must be > 0 and below the connection limit "
                f"({max_connection_age_s} s)"
            )
        self._rotate_after = rotate
        self._max_age = max_connection_age_s
        self._rng = rng if rng is not None else random.Random()
        self._policy = _retry_backoff(self._config, jitter)
        self._backoff = BackoffState(self._policy)
        self._conns: dict[int, _Conn] = {}
        self._primary: int | None = None
        self._candidate: int | None = None
        self._retry_at = 0.0
        self._seq = 0
        self._ever_subscribed = False
        self._stopping = False
        self._stopped = False
        self._reconcile_due = False
        self.keepalives = 0
        self.renewals = 0
        self.rotations = 0
        self.failures = 0

    # -- queries -------------------------------------------------------------------------------

    @property
    def primary(self) -> int | None:
        """The connection whose subscription currently serves user data."""
        return self._primary

    @property
    def subscribed(self) -> tuple[int, ...]:
        """Connections with a live subscription (two during a rotation's overlap)."""
        return tuple(c.conn_id for c in self._conns.values() if c.phase is _Phase.SUBSCRIBED)

    @property
    def open_connections(self) -> tuple[int, ...]:
        """Connections opened (or being opened) and not yet closed or lost."""
        return tuple(self._conns)

    def subscription_of(self, conn_id: int) -> int | None:
        conn = self._conns.get(conn_id)
        return None if conn is None else conn.subscription_id

    @property
    def stopped(self) -> bool:
        return self._stopped

    def take_reconcile_due(self) -> bool:
        """True once after a subscription that followed a gap (or the first one); then False."""
        due, self._reconcile_due = self._reconcile_due, False
        return due

    # -- driving -------------------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """The next thing the keeper must do at ``now`` (see the class docstring)."""
        if self._stopped:
            return Stopped()
        # Connections nobody needs any more: the replaced primary, ended subscriptions, a
        # connection whose subscribe failed.
        for conn in self._conns.values():
            if conn.conn_id not in (self._primary, self._candidate):
                del self._conns[conn.conn_id]
                reason = "ended" if conn.phase is _Phase.ENDED else "replaced"
                return CloseOld(conn.conn_id, reason)
        primary = None if self._primary is None else self._conns[self._primary]
        if primary is not None and now >= primary.opened_at + self._max_age:
            del self._conns[primary.conn_id]
            self._primary = None
            self._retry_at = now
            return CloseOld(primary.conn_id, "age_limit")
        candidate = None if self._candidate is None else self._conns[self._candidate]
        if self._stopping:
            if candidate is not None and candidate.phase in (_Phase.CONNECTING, _Phase.SUBSCRIBING):
                return Wait(None)
            if self._conns:
                cid = next(iter(self._conns))
                del self._conns[cid]
                if cid == self._primary:
                    self._primary = None
                if cid == self._candidate:
                    self._candidate = None
                return CloseOld(cid, "shutdown")
            self._stopped = True
            return Stopped()
        if candidate is not None:
            if candidate.phase is _Phase.CONNECTED:
                candidate.phase = _Phase.SUBSCRIBING
                return Subscribe(candidate.conn_id)
            return Wait(None)  # connect or subscribe in flight
        hard_deadline = None if primary is None else primary.opened_at + self._max_age
        if primary is None or primary.retire or now >= primary.opened_at + self._rotate_after:
            if now < self._retry_at:
                return Wait(self._retry_at if hard_deadline is None
                            else min(self._retry_at, hard_deadline))
            self._seq += 1
            self._candidate = self._seq
            self._conns[self._seq] = _Conn(self._seq, now, _Phase.CONNECTING)
            if primary is None:
                return Connect(self._seq)
            return OpenRotation(self._seq, replaces=primary.conn_id)
        return Wait(primary.opened_at + self._rotate_after)

    def on_result(self, result: SpotResult, now: float) -> None:
        """The answer to a ``Connect`` / ``OpenRotation`` / ``Subscribe``.

        A result for a connection the schedule no longer tracks (it was lost meanwhile) is
        ignored; a result of the wrong kind for the candidate's phase is a bug and raises.
        """
        if self._stopped:
            raise ScheduleStopped("result after the schedule stopped")
        match result:
            case Connected(conn_id=cid):
                conn = self._candidate_in(cid, _Phase.CONNECTING, result)
                if conn is not None:
                    conn.phase = _Phase.CONNECTED
            case ConnectFailed(conn_id=cid):
                conn = self._candidate_in(cid, _Phase.CONNECTING, result)
                if conn is not None:
                    del self._conns[cid]  # never opened: nothing to close
                    self._candidate = None
                    self._fail(now)
            case Subscribed(conn_id=cid, subscription_id=sub):
                conn = self._candidate_in(cid, _Phase.SUBSCRIBING, result)
                if conn is not None:
                    conn.phase = _Phase.SUBSCRIBED
                    conn.subscription_id = sub
                    self._promote(conn)
            case SubscribeFailed(conn_id=cid):
                conn = self._candidate_in(cid, _Phase.SUBSCRIBING, result)
                if conn is not None:
                    self._candidate = None  # stays in _conns: closed by the next action
                    self._fail(now)
            case _:
                raise UnexpectedResult(f"{type(result).__name__} is not a spot result")

    def on_event(self, event: SpotEvent, now: float) -> None:
        """``eventStreamTerminated``, a lost connection, or ``serverShutdown`` on ``conn_id``."""
        if self._stopped:
            return
        match event:
            case SubscriptionEnded(conn_id=cid):
                conn = self._conns.get(cid)
                if conn is None or conn.phase is not _Phase.SUBSCRIBED:
                    return
                conn.phase = _Phase.ENDED
                if cid == self._primary:
                    self._primary = None
                    self._retry_at = now  # the venue ended it; a new one is not a retry
            case ConnectionLost(conn_id=cid):
                conn = self._conns.pop(cid, None)
                if conn is None:
                    return
                if cid == self._primary:
                    self._primary = None
                    self._retry_at = now + self._backoff.next_delay(self._rng)
                elif cid == self._candidate:
                    self._candidate = None
                    self._fail(now)
            case ShutdownNotice(conn_id=cid):
                conn = self._conns.get(cid)
                if conn is None:
                    return
                conn.retire = True
                if cid == self._primary:
                    self._retry_at = now  # reconnect early, no backoff
            case _:
                raise UnexpectedResult(f"{type(event).__name__} is not a spot event")

    def stop(self, now: float) -> None:
        """Begin shutdown: let an in-flight step finish, close every connection, then stop."""
        self._stopping = True

    # -- internals -----------------------------------------------------------------------------

    def _candidate_in(self, cid: int, phase: _Phase, result: object) -> _Conn | None:
        conn = self._conns.get(cid)
        if conn is None:
            return None  # lost meanwhile: stale
        if cid != self._candidate or conn.phase is not phase:
            raise UnexpectedResult(
                f"{type(result).__name__} for connection {cid} in phase {conn.phase.value}"
            )
        return conn

    def _fail(self, now: float) -> None:
        self.failures += 1
        self._retry_at = now + self._backoff.next_delay(self._rng)

    def _promote(self, conn: _Conn) -> None:
        old = None if self._primary is None else self._conns.get(self._primary)
        self._candidate = None
        self._primary = conn.conn_id
        self._backoff = BackoffState(self._policy)
        self._retry_at = 0.0
        if self._stopping:
            return
        if old is not None and old.phase is _Phase.SUBSCRIBED:
            # Seamless hand-over: the old subscription covered until now; it is closed next.
            self.keepalives += 1
            self.rotations += 1
        else:
            if self._ever_subscribed:
                self.renewals += 1
            self._reconcile_due = True
        self._ever_subscribed = True
