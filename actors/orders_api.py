"""What the control port (and ``ctl``/``canary``) call to trade: the order path's front door.

Turns a validated HTTP request into an :class:`~spark.core.intents.OrderIntent` with a fixed
``clientOrderId``, hands it to the risk guard, and waits for the answer that travels with it
(rejection from the guard, or the router's ACK / parked / dry-run state).  Maps outcomes onto
the control port's named errors so the HTTP layer can answer with problem+json.
"""

from __future__ import annotations

from typing import Any

import trio

from spark.actors.intent_log import IntentLog, LoggedIntent
from spark.actors.reply import Reply
from spark.actors.risk_guard import PlaceRequest
from spark.actors.router import CancelCmd, ConfirmCmd, OrderRouter
from spark.core.client_ids import ClientIdGenerator, validate_client_id
from spark.core.clock import WallClock
from spark.core.intents import OrderIntent
from spark.runtime.control.backend import OrderRequest
from spark.runtime.control.errors import Conflict, InvalidInput, NotFound, Rejected, Unavailable

ANSWER_TIMEOUT_S = 15.0


class OrdersApi:
    def __init__(
        self,
        *,
        guard: trio.MemorySendChannel[PlaceRequest],
        router: OrderRouter,
        router_inbox: trio.MemorySendChannel[Any],
        prefix: str,
        clock: WallClock,
        intent_log: IntentLog | None = None,
    ) -> None:
        self._guard = guard
        self._intent_log = intent_log
        self._router = router
        self._router_inbox = router_inbox
        self._ids = ClientIdGenerator(prefix, clock.now_ms())
        self._clock = clock

    async def place(self, req: OrderRequest, actor: str) -> dict[str, Any]:
        cid = req.client_order_id
        if cid is None:
            cid = self._ids.next(self._clock.now_ms())
        else:
            problem = validate_client_id(cid)
            if problem:
                raise InvalidInput("clientOrderId", problem)
        intent = OrderIntent(
            client_order_id=cid, symbol=req.symbol,
            side=req.side,  # type: ignore[arg-type]
            type=req.type,  # type: ignore[arg-type]
            quantity=req.quantity, price=req.price,
            time_in_force=(req.time_in_force or ("GTC" if req.type == "LIMIT" else None)),  # type: ignore[arg-type]
            source=actor, created_ms=self._clock.now_ms(),
        )
        reply = Reply()
        # The write-ahead record starts now, so the disk works while the guard and the
        # router do theirs; the send waits for it, a rejection voids it.
        write = None if self._intent_log is None else self._intent_log.begin(
            LoggedIntent.of(intent))
        try:
            await self._guard.send(PlaceRequest(intent, actor, reply, write))
        except BaseException:
            if write is not None:
                write.discard()
            raise
        answer = await reply.wait(ANSWER_TIMEOUT_S)
        if answer is None:
            current = self._router.order_json(cid)
            if current is not None:
                return current  # accepted; the venue's answer is still outstanding
            raise Unavailable(f"no answer for {cid} within {ANSWER_TIMEOUT_S:.0f}s")
        if answer.get("rejected"):
            raise Rejected(str(answer["reason"]), str(answer.get("detail", "")))
        if answer.get("status") == "REJECTED":
            raise Rejected(str(answer.get("reason") or "venue_rejected"),
                           f"the venue rejected {cid}")
        return answer

    async def confirm(self, client_order_id: str, actor: str) -> dict[str, Any]:
        reply = Reply()
        await self._router_inbox.send(ConfirmCmd(client_order_id, actor, reply))
        return self._answer(client_order_id, await reply.wait(ANSWER_TIMEOUT_S))

    async def cancel(self, client_order_id: str, actor: str) -> dict[str, Any]:
        reply = Reply()
        await self._router_inbox.send(CancelCmd(client_order_id, actor, reply))
        return self._answer(client_order_id, await reply.wait(ANSWER_TIMEOUT_S))

    def list(self, status: str | None) -> list[dict[str, Any]]:
        return self._router.orders_json(status)

    def get(self, client_order_id: str) -> dict[str, Any]:
        order = self._router.order_json(client_order_id)
        if order is None:
            raise NotFound(f"no order {client_order_id}")
        return order

    def _answer(self, cid: str, answer: dict[str, Any] | None) -> dict[str, Any]:
        if answer is None:
            current = self._router.order_json(cid)
            if current is None:
                raise Unavailable(f"no answer for {cid}")
            return current
        if answer.get("error") == "not_found":
            raise NotFound(f"no order {cid}")
        if answer.get("error") == "conflict":
            raise Conflict(f"order {cid} is {answer.get('status')}")
        return answer
