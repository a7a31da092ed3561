"""Rate limits (429 + Retry-After, sliding), body limits (413) and input validation (400)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from control_double import (
    ADMIN_TOKEN,
    PROBLEM,
    TRADER_TOKEN,
    VIEWER_TOKEN,
    SettableClock,
    Start,
    bearer,
)

from spark.config.schema import ControlConfig

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


def problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, object] = r.json()
    return body


# -- rate limits --------------------------------------------------------------------------
async def test_admin_routes_allow_10_per_minute_and_the_window_slides(control: Start) -> None:
    clock = SettableClock()
    h = await control(clock=clock)
    admin = bearer(ADMIN_TOKEN)

    async def audit() -> httpx.Response:
        return await h.client.get("/api/private/audit", headers=admin)

    for _ in range(5):  # t = 0
        assert (await audit()).status_code == 200
    clock.advance(30)
    for _ in range(5):  # t = 30
        assert (await audit()).status_code == 200
    r = await audit()
    body = problem(r, 429)
    assert body["reason"] == "rate_limited"
    assert r.headers["retry-after"] == "30"  # the t=0 calls leave the window at t=60
    assert h.backend.records[-1].result == "429"

    clock.advance(15)  # t = 45: still ten calls inside (15, 45]
    r = await audit()
    assert r.status_code == 429 and r.headers["retry-after"] == "15"
    clock.advance(15)  # t = 60: the five t=0 calls have slid out, the five t=30 ones remain
    for _ in range(5):
        assert (await audit()).status_code == 200
    r = await audit()
    assert r.status_code == 429 and r.headers["retry-after"] == "30"

    # Private (non-admin) routes have their own, larger budget for the same token.
    assert (await h.client.get("/api/private/orders", headers=admin)).status_code == 200


async def test_private_routes_allow_60_per_minute_per_token(control: Start) -> None:
    clock = SettableClock()
    h = await control(clock=clock)
    trader = bearer(TRADER_TOKEN)
    for n in range(60):
        clock.advance(0.5)
        r = await h.client.get("/api/private/orders", headers=trader)
        assert r.status_code == 200, n
    r = await h.client.get("/api/private/orders", headers=trader)
    problem(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["retry-after"] == "31"  # the first call (+0.5 s) leaves at +60.5 s; now +30
    # Other tokens are not affected.
    assert (await h.client.get("/api/private/orders", headers=bearer(VIEWER_TOKEN))).is_success
    # When the first call leaves the window there is room for exactly one more: the refused
    # call was not counted.
    clock.advance(30.5)
    assert (await h.client.get("/api/private/orders", headers=trader)).is_success
    problem(await h.client.get("/api/private/orders", headers=trader), 429)


async def test_retry_after_is_at_least_one_second(control: Start) -> None:
    clock = SettableClock()
    h = await control(clock=clock, config=ControlConfig(admin_rate_limit_per_min=1))
    admin = bearer(ADMIN_TOKEN)
    assert (await h.client.get("/api/private/audit", headers=admin)).is_success
    clock.advance(59.9)
    r = await h.client.get("/api/private/audit", headers=admin)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    clock.advance(0.1)
    assert (await h.client.get("/api/private/audit", headers=admin)).is_success


async def test_unauthenticated_requests_do_not_touch_the_limiter(control: Start) -> None:
    h = await control(config=ControlConfig(rate_limit_per_min=1))
    for n in range(20):
        r = await h.client.get("/api/private/orders", headers=bearer(f"guess-{n:04d}-abcdefgh"))
        assert r.status_code == 401
    assert (await h.client.get("/api/private/orders", headers=bearer(VIEWER_TOKEN))).is_success


# -- body size ----------------------------------------------------------------------------
async def test_oversize_bodies_are_413(control: Start) -> None:
    h = await control(config=ControlConfig(max_body_bytes=1024))
    trader = bearer(TRADER_TOKEN)
    padding = {"clientOrderId": "x" * 2000}
    # With an honest Content-Length.
    r = await h.client.post("/api/private/orders", json={**ORDER, **padding}, headers=trader)
    body = problem(r, 413)
    assert body["reason"] == "body_too_large" and body["max_body_bytes"] == 1024

    # Chunked, no Content-Length at all: the bytes received are counted.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"symbol": "BTCUSDT", "pad": "'
        for _ in range(64):
            yield b"y" * 512
        yield b'"}'

    r = await h.client.post("/api/private/orders", content=chunks(),
                            headers={**trader, "Content-Type": "application/json"})
    problem(r, 413)
    assert h.backend.orders == {}
    assert [rec.result for rec in h.backend.records] == ["413", "413"]

    # At the limit is fine (the field is then rejected on its merits: 400, not 413).
    exact = b'{"symbol": "' + b"A" * (1024 - 14) + b'"}'
    assert len(exact) == 1024
    r = await h.client.post("/api/private/orders", content=exact,
                            headers={**trader, "Content-Type": "application/json"})
    assert problem(r, 400)["field"] == "symbol"


async def test_chunked_body_under_the_limit_is_accepted(control: Start) -> None:
    h = await control()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"symbol": "BTCUSDT", "side": "SELL",'
        yield b' "type": "MARKET", "quantity": "0.5"}'

    r = await h.client.post("/api/private/orders", content=chunks(),
                            headers=bearer(TRADER_TOKEN))
    assert r.status_code == 200, r.text
    assert r.json()["side"] == "SELL"


# -- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ORDER, "symbol": None}, "symbol"),
        ({k: v for k, v in ORDER.items() if k != "symbol"}, "symbol"),
        ({**ORDER, "symbol": "BTC-USDT"}, "symbol"),
        ({**ORDER, "side": "HOLD"}, "side"),
        ({**ORDER, "type": "STOP"}, "type"),
        ({**ORDER, "quantity": "abc"}, "quantity"),
        ({**ORDER, "quantity": "-1"}, "quantity"),
        ({**ORDER, "quantity": "0"}, "quantity"),
        ({**ORDER, "quantity": "NaN"}, "quantity"),
        ({**ORDER, "quantity": True}, "quantity"),
        ({**ORDER, "type": "LIMIT"}, "price"),
        ({**ORDER, "price": "100"}, "price"),
        ({**ORDER, "type": "LIMIT", "price": "1", "timeInForce": "DAY"}, "timeInForce"),
        ({**ORDER, "clientOrderId": "has space"}, "clientOrderId"),
        ({**ORDER, "leverage": 100}, "leverage"),
    ],
)
async def test_bad_order_fields_are_400_naming_the_field(control: Start, body: object,
                                                         field: str) -> None:
    h = await control()
    r = await h.client.post("/api/private/orders", json=body, headers=bearer(TRADER_TOKEN))
    problem_body = problem(r, 400)
    assert problem_body["field"] == field
    assert str(problem_body["detail"]).startswith(f"{field}: ")
    assert h.backend.orders == {}


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"", "body"),
        (b'{"engaged": "yes"}', "engaged"),
        (b"{}", "engaged"),
        (b'{"engaged": true, "why": "x"}', "why"),
    ],
)
async def test_bad_kill_switch_bodies_are_400(control: Start, content: bytes,
                                              field: str) -> None:
    h = await control()
    r = await h.client.post("/api/private/kill-switch", content=content,
                            headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/json"})
    assert problem(r, 400)["field"] == field
    assert h.backend.kill_switch is False


async def test_bad_path_and_query_parameters_are_400(control: Start) -> None:
    h = await control()
    trader = bearer(TRADER_TOKEN)
    r = await h.client.get("/api/private/orders/" + "x" * 40, headers=trader)
    assert problem(r, 400)["field"] == "clientOrderId"
    r = await h.client.get("/api/private/export/trades.csv", params={"since": "yesterday"},
                           headers=trader)
    assert problem(r, 400)["field"] == "since"
    r = await h.client.get("/api/private/export/trades.csv",
                           params={"since": "2024-05-02", "until": "2024-05-01"}, headers=trader)
    assert problem(r, 400)["field"] == "until"
    r = await h.client.get("/api/private/orders", params={"status": "OPEN!"}, headers=trader)
    assert problem(r, 400)["field"] == "status"
    # The backend's own InvalidInput is a 400 too.
    r = await h.client.get("/api/private/orders", params={"status": "weird"}, headers=trader)
    assert problem(r, 400)["field"] == "status"
