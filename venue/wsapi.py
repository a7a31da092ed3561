"""The spot WebSocket API (``/ws-api/v3``) of one connection, sans-IO.

Requests ``{"id", "method", "params"}`` are answered ``{"id", "status": 200, "result",
"rateLimits"}`` or ``{"id", "status", "error": {"code", "msg"}, "rateLimits"}``.  Supported:
``ping``, ``time``, ``session.logon`` / ``session.status`` / ``session.logout`` (Ed25519 keys
only, as on Binance), ``userDataStream.subscribe`` (after logon),
``userDataStream.subscribe.signature`` (any key type, no logon), ``userDataStream.unsubscribe``
and ``session.subscriptions``.  The session remembers its subscriptions; the server asks it
which subscription id an account's events go out under.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import orjson

from spark.venue.accounts import Credential
from spark.venue.auth import (
    check_recv_window,
    check_timestamp,
    verify_signature,
    ws_signature_payload,
)
from spark.venue.core import VenueCore
from spark.venue.errors import (
    HmacNotSupported,
    InvalidJson,
    MandatoryParamMissing,
    RetryableLimit,
    SubscriptionActive,
    SubscriptionInactive,
    Unauthorized,
    UnsupportedOperation,
    VenueError,
)

WEIGHTS = {
    "ping": 1,
    "time": 1,
    "session.logon": 2,
    "session.status": 2,
    "session.logout": 2,
    "session.subscriptions": 2,
    "userDataStream.subscribe": 2,
    "userDataStream.subscribe.signature": 2,
    "userDataStream.unsubscribe": 2,
}


@attrs.frozen
class Subscription:
    id: int
    account: str
    via_logon: bool


def terminated_event(subscription_id: int, now: int) -> bytes:
    return orjson.dumps({"subscriptionId": subscription_id,
                         "event": {"e": "eventStreamTerminated", "E": now}})


def wrap_event(subscription_id: int, event_json: bytes) -> bytes:
    """``{"subscriptionId": N, "event": {...}}`` around an already-serialized event."""
    return b'{"subscriptionId":' + str(subscription_id).encode() + b',"event":' + event_json + b"}"


class WsApiSession:
    """State and request handling of one WebSocket-API connection."""

    def __init__(self, core: VenueCore, *, client: str, connected_at: int,
                 return_rate_limits: bool = True) -> None:
        self.core = core
        self.client = client
        self.connected_at = connected_at
        self.return_rate_limits = return_rate_limits
        self.logon: Credential | None = None
        self.authorized_since = 0
        self.subscriptions: dict[int, Subscription] = {}
        self._next_id = 0
        self._handlers: dict[str, Callable[[dict[str, Any], int], Any]] = {
            "ping": lambda params, now: {},
            "time": lambda params, now: {"serverTime": now},
            "session.logon": self._logon,
            "session.status": lambda params, now: self._status(now),
            "session.logout": self._logout,
            "session.subscriptions": lambda params, now: [
                {"subscriptionId": s} for s in sorted(self.subscriptions)],
            "userDataStream.subscribe": self._subscribe,
            "userDataStream.subscribe.signature": self._subscribe_signature,
            "userDataStream.unsubscribe": self._unsubscribe,
        }
        self._ended: list[int] = []

    @property
    def limit_key(self) -> str:
        return f"api:{self.client}"

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, text: str | bytes, host_ms: int) -> list[bytes]:
        """Answer one request frame; returns the response plus any ``eventStreamTerminated``."""
        now = self.core.now(host_ms)
        request_id: Any = None
        want_limits = self.return_rate_limits
        try:
            try:
                request = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidJson() from None
            if not isinstance(request, dict):
                raise InvalidJson()
            request_id = request.get("id")
            method = request.get("method")
            params = request.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise InvalidJson()
            if isinstance(params.get("returnRateLimits"), bool):
                want_limits = params["returnRateLimits"]
            handler = self._handlers.get(method)
            self.core.limiter.admit(self.limit_key, WEIGHTS.get(method, 1), now)
            if handler is None:
                raise UnsupportedOperation()
            result = handler(params, now)
            reply: dict[str, Any] = {"id": request_id, "status": 200, "result": result}
        except VenueError as exc:
            error: dict[str, Any] = dict(exc.body())
            if isinstance(exc, RetryableLimit):
                error["data"] = {"serverTime": now, "retryAfter": now + exc.retry_after_ms}
            reply = {"id": request_id, "status": exc.status, "error": error}
        if want_limits:
            reply["rateLimits"] = [{
                "rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                "limit": self.core.limiter.weight_limit,
                "count": self.core.limiter.used(self.limit_key, now),
            }]
        frames = [orjson.dumps(reply)]
        ended, self._ended = self._ended, []
        frames.extend(terminated_event(s, now) for s in ended)
        return frames

    # -- subscriptions as seen by the server ------------------------------------------------
    def subscription_for(self, account: str) -> int | None:
        for sub in self.subscriptions.values():
            if sub.account == account:
                return sub.id
        return None

    def terminate_all(self) -> list[int]:
        """End every subscription (admin expiry); the caller sends ``eventStreamTerminated``."""
        ended = sorted(self.subscriptions)
        self.subscriptions.clear()
        return ended

    # -- methods ----------------------------------------------------------------------------
    def _signed(self, params: dict[str, Any], now: int, *, ed25519_only: bool = False,
                ) -> Credential:
        api_key = params.get("apiKey")
        signature = params.get("signature")
        timestamp = params.get("timestamp")
        if not isinstance(api_key, str) or not api_key:
            raise MandatoryParamMissing.named("apiKey")
        if not isinstance(signature, str) or not signature:
            raise MandatoryParamMissing.named("signature")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise MandatoryParamMissing.named("timestamp")
        raw_window = params.get("recvWindow")
        if raw_window is not None and (isinstance(raw_window, bool)
                                       or not isinstance(raw_window, int | float)):
            raise MandatoryParamMissing.named("recvWindow")
        recv_window = check_recv_window(
            None if raw_window is None else Decimal(repr(raw_window)))
        credential = self.core.credential(api_key)
        checked = attrs.evolve(credential, secret=None) if ed25519_only else credential
        verify_signature(checked, ws_signature_payload(params), signature)
        check_timestamp(timestamp, recv_window, now)
        return credential

    def _status(self, now: int) -> dict[str, Any]:
        return {
            "apiKey": self.logon.api_key if self.logon else None,
            "authorizedSince": self.authorized_since if self.logon else None,
            "connectedSince": self.connected_at,
            "returnRateLimits": self.return_rate_limits,
            "serverTime": now,
            "userDataStream": bool(self.subscriptions),
        }

    def _logon(self, params: dict[str, Any], now: int) -> Any:
        api_key = params.get("apiKey")
        known = self.core.credentials.get(api_key) if isinstance(api_key, str) else None
        if known is not None and known.ed25519 is None:
            raise HmacNotSupported()
        credential = self._signed(params, now, ed25519_only=True)
        self.logon = credential
        self.authorized_since = now
        return self._status(now)

    def _logout(self, params: dict[str, Any], now: int) -> Any:
        for sid, sub in list(self.subscriptions.items()):
            if sub.via_logon:
                del self.subscriptions[sid]
                self._ended.append(sid)
        self.logon = None
        return self._status(now)

    def _add(self, account: str, *, via_logon: bool) -> dict[str, int]:
        if self.subscription_for(account) is not None:
            raise SubscriptionActive()
        sid = self._next_id
        self._next_id += 1
        self.subscriptions[sid] = Subscription(sid, account, via_logon)
        return {"subscriptionId": sid}

    def _subscribe(self, params: dict[str, Any], now: int) -> Any:
        if self.logon is None:
            raise Unauthorized()
        return self._add(self.logon.account, via_logon=True)

    def _subscribe_signature(self, params: dict[str, Any], now: int) -> Any:
        credential = self._signed(params, now)
        return self._add(credential.account, via_logon=False)

    def _unsubscribe(self, params: dict[str, Any], now: int) -> Any:
        wanted = params.get("subscriptionId")
        if wanted is None:
            ended = sorted(self.subscriptions)
        elif isinstance(wanted, int) and wanted in self.subscriptions:
            ended = [wanted]
        else:
            ended = []
        if not ended:
            raise SubscriptionInactive()
        for sid in ended:
            del self.subscriptions[sid]
        self._ended.extend(ended)
        return {}
