"""The control port's ASGI app: routing, authentication, permissions, rate limits, body
limits, audit and problem responses around a :class:`~spark.runtime.control.backend.
ControlBackend`.

Every private request goes through the same pipeline, in this order:

1. authenticate the bearer token (401 ``missing_token`` / ``malformed_authorization`` /
   ``unknown_token``, with ``WWW-Authenticate: Bearer``);
2. check the route's permission against the token's role (403 ``forbidden``);
3. count the call against the token's rate limit — admin routes have their own, lower limit
   (429 ``rate_limited`` with ``Retry-After``);
4. read the body, if the route has one, counting the bytes actually received (413
   ``body_too_large`` whatever ``Content-Length`` says), parse and validate it (400
   ``invalid_input``/… naming the field);
5. call the backend; its named errors become problems, anything else a bare 500;
6. record the outcome with ``backend.record_audit`` — also for 401/403/429 (who is
   ``anonymous`` when there is no valid token).

Unauthenticated requests never reach the rate limiter, the body reader or the backend, so they
cannot make the process hold state for them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, Literal

import attrs
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from spark.config.schema import ControlConfig
from spark.config.secrets import ControlToken
from spark.runtime.control.auth import ANONYMOUS, Authenticator, AuthFailure, Identity
from spark.runtime.control.backend import ControlBackend
from spark.runtime.control.errors import BodyTooLarge, ControlError, InvalidInput
from spark.runtime.control.exposure import check_exposure
from spark.runtime.control.openapi import openapi_document
from spark.runtime.control.problems import dumps, json_response, problem, problem_from_error
from spark.runtime.control.ratelimit import SlidingWindowLimiter
from spark.runtime.control.routes import ROUTES, RouteSpec
from spark.runtime.control.validation import (
    parse_client_order_id,
    parse_json_object,
    parse_kill_switch,
    parse_order_request,
    parse_reconciliation_id,
    parse_status_filter,
    parse_timestamp,
)

__all__ = ["METRICS_CONTENT_TYPE", "ControlInfo", "build_app"]

log = logging.getLogger("spark.runtime.control")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
RATE_WINDOW_S = 60.0
_AUDIT_PATH_CHARS = 200

Clock = Callable[[], float]
PublicHandler = Callable[[Request], Awaitable[Response]]
PrivateHandler = Callable[[Request, Identity], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


@attrs.frozen
class ControlInfo:
    """What :func:`~spark.runtime.control.serve` needs to know about a built app
    (``app.state.spark_control``)."""

    tokens_configured: bool
    config: ControlConfig


def build_app(
    backend: ControlBackend,
    tokens: Sequence[ControlToken],
    config: ControlConfig,
    *,
    clock: Clock = trio.current_time,
) -> Starlette:
    """The control port app for ``backend``.

    ``clock`` gives the time for rate limiting (seconds, monotonic); tests inject their own.
    Raises :class:`~spark.runtime.control.errors.ControlPortRefused` when ``config.host`` is
    not a loopback address and no token is configured, or when the tokens are unusable
    (unknown role, empty, the same token twice).
    """
    control = _ControlPort(backend, Authenticator(tokens), config, clock)
    check_exposure(config.host, control.auth.configured)
    by_path: dict[str, dict[str, RouteSpec]] = {}
    for spec in ROUTES:
        by_path.setdefault(spec.path, {})[spec.method] = spec
    routes = [
        Route(path, control.dispatcher(specs), methods=list(specs), name=path)
        for path, specs in by_path.items()
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: control.http_error, Exception: control.server_error},
    )
    app.router.redirect_slashes = False  # "/healthz/" is an unknown route, not a redirect
    app.state.spark_control = ControlInfo(control.auth.configured, config)
    return app


class _ControlPort:
    def __init__(self, backend: ControlBackend, auth: Authenticator, config: ControlConfig,
                 clock: Clock) -> None:
        self.backend = backend
        self.auth = auth
        self.config = config
        self.clock = clock
        keys = max(1, len(auth))
        self.private_limiter = SlidingWindowLimiter(config.rate_limit_per_min, RATE_WINDOW_S,
                                                    max_keys=keys)
        self.admin_limiter = SlidingWindowLimiter(config.admin_rate_limit_per_min,
                                                  RATE_WINDOW_S, max_keys=keys)
        self.openapi = dumps(openapi_document(
            private_limit=config.rate_limit_per_min,
            admin_limit=config.admin_rate_limit_per_min,
        ))
        self.public: dict[str, PublicHandler] = {
            "health": self.health,
            "metrics_prom": self.metrics,
            "metrics": self.metrics,
            "healthz": self.healthz,
            "readyz": self.readyz,
            "openapi": self.openapi_json,
        }
        self.private: dict[str, PrivateHandler] = {
            "place_order": self.place_order,
            "list_orders": self.list_orders,
            "get_order": self.get_order,
            "cancel_order": self.cancel_order,
            "confirm_order": self.confirm_order,
            "set_kill_switch": self.set_kill_switch,
            "get_breaker": self.get_breaker,
            "open_breaker": self.open_breaker,
            "close_breaker": self.close_breaker,
            "get_drift_gate": self.get_drift_gate,
            "open_drift_gate": self.open_drift_gate,
            "close_drift_gate": self.close_drift_gate,
            "export_trades": self.export_trades,
            "audit": self.audit,
            "reconciliation": self.reconciliation,
            "ack_reconciliation": self.ack_reconciliation,
        }
        missing = {s.name for s in ROUTES} - set(self.public) - set(self.private)
        if missing:  # pragma: no cover - a route table / handler mismatch is a bug
            raise RuntimeError(f"routes without a handler: {sorted(missing)}")

    # -- routing ------------------------------------------------------------------------
    def dispatcher(self, specs: dict[str, RouteSpec]) -> Endpoint:
        endpoints = {method: self.endpoint(spec) for method, spec in specs.items()}
        if "GET" in endpoints:
            endpoints.setdefault("HEAD", endpoints["GET"])

        async def dispatch(request: Request) -> Response:
            return await endpoints[request.method](request)

        return dispatch

    def endpoint(self, spec: RouteSpec) -> Endpoint:
        if spec.permission is None:
            public = self.public[spec.name]

            async def public_endpoint(request: Request) -> Response:
                return await self._guarded(spec, public, request)

            return public_endpoint
        private = self.private[spec.name]

        async def private_endpoint(request: Request) -> Response:
            response = await self._private(spec, private, request)
            response.headers["Cache-Control"] = "no-store"
            return response

        return private_endpoint

    async def _guarded(self, spec: RouteSpec, handler: PublicHandler,
                       request: Request) -> Response:
        try:
            return await handler(request)
        except ControlError as error:
            return problem_from_error(error)
        except Exception:
            log.exception("control port: %s %s failed", request.method, spec.path)
            return _internal_error()

    async def _private(self, spec: RouteSpec, handler: PrivateHandler,
                       request: Request) -> Response:
        action = f"{request.method} {spec.path}"
        target = self.auth.scrub(_target(request))
        authenticated = self.auth.authenticate(request.headers.get("authorization"))
        if isinstance(authenticated, AuthFailure):
            response = _unauthorized(authenticated)
            self._audit(ANONYMOUS, action, target, response, {"reason": authenticated.reason})
            return response
        identity = authenticated
        assert spec.permission is not None
        if not identity.allows(spec.permission):
            response = problem(
                403, "forbidden",
                f"role '{identity.role}' lacks the '{spec.permission}' permission",
                extra={"permission": str(spec.permission)},
            )
            self._audit(identity.actor, action, target, response,
                        {"reason": "forbidden", "permission": str(spec.permission)})
            return response
        limiter = self.admin_limiter if spec.admin else self.private_limiter
        decision = limiter.check(identity.fingerprint, self.clock())
        if not decision.allowed:
            response = problem(
                429, "rate_limited",
                f"more than {limiter.limit} {'admin ' if spec.admin else ''}calls per minute "
                "with this token",
                extra={"retry_after_s": int(decision.retry_after_header)},
                headers={"Retry-After": decision.retry_after_header},
            )
            self._audit(identity.actor, action, target, response, {"reason": "rate_limited"})
            return response
        detail: dict[str, Any] = {}
        try:
            response = await handler(request, identity)
        except ControlError as error:
            response = problem_from_error(error)
            detail["reason"] = error.reason
        except Exception:
            log.exception("control port: %s failed", action)
            response = _internal_error()
            detail["reason"] = "internal_error"
        detail.update(getattr(request.state, "audit_detail", {}))
        target = getattr(request.state, "audit_target", target)
        self._audit(identity.actor, action, target, response, detail)
        return response

    def _audit(self, actor: str, action: str, target: str, response: Response,
               detail: dict[str, Any]) -> None:
        try:
            self.backend.record_audit(actor, action, target, str(response.status_code), detail)
        except Exception:
            # The call itself has happened; say loudly that its audit record is missing.
            log.exception("control port: could not write the audit record of %s by %s",
                          action, actor)

    # -- errors outside the route table -----------------------------------------------
    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 404:
            response = problem(404, "not_found", "no such route")
        elif status == 405:
            allowed = headers.get("Allow", "")
            response = problem(405, "method_not_allowed",
                               f"the method is not allowed here (allowed: {allowed})",
                               headers=headers)
        else:
            response = problem(status, "http_error", str(exc.detail)[:200], headers=headers)
        path = request.url.path
        if path.startswith("/api/private/") or path == "/api/private":
            # Probing private paths is audited like any other private call.
            authenticated = self.auth.authenticate(request.headers.get("authorization"))
            actor = ANONYMOUS if isinstance(authenticated, AuthFailure) else authenticated.actor
            action = f"{request.method[:16]} {self.auth.scrub(path)[:_AUDIT_PATH_CHARS]}"
            self._audit(actor, action, "", response,
                        {"reason": "not_found" if status == 404 else "http_error"})
        return response

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return _internal_error()

    # -- body ---------------------------------------------------------------------------
    async def read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise InvalidInput("Content-Length", "must be an integer") from None
            if length > limit:
                raise BodyTooLarge(limit)
        chunks: list[bytes] = []
        received = 0
        try:
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    received += len(chunk)
                    if received > limit:
                        raise BodyTooLarge(limit)
                    chunks.append(chunk)
        except ClientDisconnect:
            raise InvalidInput("body", "the client went away before sending all of it") from None
        return b"".join(chunks)

    async def read_json(self, request: Request) -> dict[str, Any]:
        return parse_json_object(await self.read_body(request))

    # -- public handlers ----------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        health = self.backend.health()
        return json_response(health.to_json(), 503 if health.status == "down" else 200)

    async def metrics(self, request: Request) -> Response:
        return Response(self.backend.metrics_text(), media_type=METRICS_CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        if self.backend.live():
            return json_response({"live": True})
        return problem(503, "not_live", "the runtime is not live", extra={"live": False})

    async def readyz(self, request: Request) -> Response:
        ready, reason = self.backend.ready()
        if ready:
            return json_response({"ready": True, "reason": reason})
        return problem(503, reason or "not_ready", f"not ready to trade: {reason}",
                       title="Not ready", extra={"ready": False})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    # -- private handlers ---------------------------------------------------------------
    async def place_order(self, request: Request, identity: Identity) -> Response:
        order = parse_order_request(await self.read_json(request))
        request.state.audit_detail = {
            "symbol": order.symbol, "side": order.side, "type": order.type,
            "quantity": str(order.quantity),
            "price": None if order.price is None else str(order.price),
        }
        if order.client_order_id is not None:
            request.state.audit_target = order.client_order_id
        return json_response(await self.backend.place_order(order, identity.actor))

    async def list_orders(self, request: Request, identity: Identity) -> Response:
        status = parse_status_filter(request.query_params.get("status"))
        return json_response(self.backend.list_orders(status))

    async def get_order(self, request: Request, identity: Identity) -> Response:
        client_order_id = parse_client_order_id(request.path_params["clientOrderId"])
        return json_response(self.backend.get_order(client_order_id))

    async def cancel_order(self, request: Request, identity: Identity) -> Response:
        client_order_id = parse_client_order_id(request.path_params["clientOrderId"])
        return json_response(await self.backend.cancel_order(client_order_id, identity.actor))

    async def confirm_order(self, request: Request, identity: Identity) -> Response:
        client_order_id = parse_client_order_id(request.path_params["clientOrderId"])
        return json_response(await self.backend.confirm_order(client_order_id, identity.actor))

    async def set_kill_switch(self, request: Request, identity: Identity) -> Response:
        engaged = parse_kill_switch(await self.read_json(request))
        request.state.audit_detail = {"engaged": engaged}
        return json_response(await self.backend.set_kill_switch(engaged, identity.actor))

    async def get_breaker(self, request: Request, identity: Identity) -> Response:
        return json_response(self.backend.breaker())

    async def open_breaker(self, request: Request, identity: Identity) -> Response:
        return await self._force_breaker("open", identity)

    async def close_breaker(self, request: Request, identity: Identity) -> Response:
        return await self._force_breaker("close", identity)

    async def _force_breaker(self, state: Literal["open", "close"],
                             identity: Identity) -> Response:
        return json_response(await self.backend.force_breaker(state, identity.actor))

    async def get_drift_gate(self, request: Request, identity: Identity) -> Response:
        return json_response(self.backend.drift_gate())

    async def open_drift_gate(self, request: Request, identity: Identity) -> Response:
        return json_response(await self.backend.force_drift_gate("open", identity.actor))

    async def close_drift_gate(self, request: Request, identity: Identity) -> Response:
        return json_response(await self.backend.force_drift_gate("close", identity.actor))

    async def export_trades(self, request: Request, identity: Identity) -> Response:
        since = parse_timestamp("since", request.query_params.get("since"))
        until = parse_timestamp("until", request.query_params.get("until"))
        if since is not None and until is not None and until <= since:
            raise InvalidInput("until", "must be after since")
        request.state.audit_detail = {
            "since": None if since is None else since.isoformat(),
            "until": None if until is None else until.isoformat(),
        }
        source = self.backend.export_trades(since, until)
        try:
            # Pull the first chunk before answering, so an error the backend raises up front
            # (Unavailable, NotBuilt …) still becomes a proper problem response.
            first: bytes | None = await source.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _aclose(source)
            raise
        return _ExportResponse(
            _Chain(first, source), source, media_type=CSV_CONTENT_TYPE,
            headers={"Content-Disposition": 'attachment; filename="trades.csv"'},
        )

    async def audit(self, request: Request, identity: Identity) -> Response:
        since = parse_timestamp("since", request.query_params.get("since"))
        return json_response(self.backend.audit(since))

    async def reconciliation(self, request: Request, identity: Identity) -> Response:
        return json_response(self.backend.reconciliation())

    async def ack_reconciliation(self, request: Request, identity: Identity) -> Response:
        item = parse_reconciliation_id(request.path_params["id"])
        return json_response(await self.backend.ack_reconciliation(item, identity.actor))


def _target(request: Request) -> str:
    params = request.path_params
    value = params.get("clientOrderId", params.get("id", ""))
    return str(value)[:64]


def _unauthorized(failure: AuthFailure) -> Response:
    challenge = 'Bearer realm="spark"'
    if failure.reason == "unknown_token":
        challenge += ', error="invalid_token"'
    elif failure.reason == "malformed_authorization":
        challenge += ', error="invalid_request"'
    return problem(401, failure.reason, failure.detail, title="Unauthorized",
                   headers={"WWW-Authenticate": challenge})


def _internal_error() -> Response:
    return problem(500, "internal_error",
                   "the runtime failed to handle this request; its log says why")


class _Chain:
    """``first`` (if any), then the rest of ``rest``; a plain iterator object, so there is no
    half-finished async generator to finalize when the client goes away."""

    def __init__(self, first: bytes | None, rest: AsyncIterator[bytes]) -> None:
        self._first = first
        self._rest = rest

    def __aiter__(self) -> _Chain:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._rest.__anext__()


async def _aclose(source: AsyncIterator[bytes]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
        await aclose()


class _ExportResponse(StreamingResponse):
    """A streaming response that always closes the backend's iterator, even when the client
    disconnects halfway."""

    def __init__(self, content: _Chain, source: AsyncIterator[bytes], *, media_type: str,
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _aclose(self._source)
