"""The control port over real loopback HTTP: public routes, auth, roles, problems, audit."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import jsonschema
import pytest
from control_double import (
    ADMIN_TOKEN,
    ALL_TOKENS,
    PROBLEM,
    TRADER_TOKEN,
    VIEWER_TOKEN,
    NotBuilt,
    Start,
    Unavailable,
    bearer,
)
from prometheus_client.parser import text_string_to_metric_families

from spark.runtime.control import ROUTES, openapi_document

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.00012",
         "price": "45000.50", "clientOrderId": "t-1"}


def assert_problem(response: httpx.Response, status: int,
                   reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    if reason is not None:
        assert body["reason"] == reason
    return body


def no_token_in(text: str) -> None:
    for token in ALL_TOKENS:
        assert token not in text


# -- public -------------------------------------------------------------------------------
async def test_health_shape_and_status_codes(control: Start) -> None:
    h = await control()
    schema = openapi_document()["components"]["schemas"]["Health"]
    for status, code in (("ok", 200), ("degraded", 200), ("down", 503)):
        h.backend.status = status
        r = await h.client.get("/api/public/health")
        assert r.status_code == code
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        jsonschema.validate(body, schema)
        assert body["status"] == status
        assert body["actors"]["writer"] == {"state": "running", "restarts": 2}
        assert body["circuit_breaker"] == {"state": "closed"}
        assert body["kill_switch"] is False
        assert body["trading_state"] == "ACTIVE"
        assert body["drift_gate"] == {"state": "open"}
        assert body["venue"] == {"url": "http://127.0.0.1:9400", "connected": True,
                                 "last_event_age_s": 0.25}
        assert body["database"] == {"ok": True, "spooled_events": 0}


async def test_metrics_routes_serve_prometheus_text(control: Start) -> None:
    h = await control()
    h.backend.kill_switch = True
    for path in ("/api/public/metrics/prom", "/metrics"):
        r = await h.client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        assert "spark_kill_switch_engaged" in families
        [sample] = families["spark_kill_switch_engaged"].samples
        assert sample.value == 1.0


async def test_liveness_and_readiness(control: Start) -> None:
    h = await control()
    assert (await h.client.get("/healthz")).json() == {"live": True}
    r = await h.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "reason": "ok"}
    h.backend.readiness = (False, "venue_disconnected")
    body = assert_problem(await h.client.get("/readyz"), 503, "venue_disconnected")
    assert body["ready"] is False
    h.backend.is_live = False
    assert_problem(await h.client.get("/healthz"), 503, "not_live")


# -- authentication -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_token"),
        ({"Authorization": ""}, "missing_token"),
        ({"Authorization": "Bearer"}, "malformed_authorization"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, "malformed_authorization"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN} extra"}, "malformed_authorization"),
        ({"Authorization": "Bearer not-a-configured-token-123"}, "unknown_token"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, "unknown_token"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, "unknown_token"),
    ],
)
async def test_401_without_a_valid_token(control: Start, headers: dict[str, str],
                                         reason: str) -> None:
    h = await control()
    r = await h.client.get("/api/private/orders", headers=headers)
    assert_problem(r, 401, reason)
    assert r.headers["www-authenticate"].startswith("Bearer")
    no_token_in(r.text)
    no_token_in(str(r.headers))
    [record] = h.backend.records
    assert record.actor == "anonymous"
    assert record.result == "401"
    assert record.action == "GET /api/private/orders"


async def test_bearer_scheme_is_case_insensitive(control: Start) -> None:
    h = await control()
    r = await h.client.get("/api/private/orders",
                           headers={"Authorization": f"bearer {VIEWER_TOKEN}"})
    assert r.status_code == 200


# -- permissions --------------------------------------------------------------------------
async def test_viewer_may_read_but_not_execute_or_administer(control: Start) -> None:
    h = await control()
    viewer = bearer(VIEWER_TOKEN)
    assert (await h.client.get("/api/private/orders", headers=viewer)).status_code == 200
    assert (await h.client.get("/api/private/circuit-breaker", headers=viewer)).status_code == 200
    assert (await h.client.get("/api/private/reconciliation", headers=viewer)).status_code == 200
    body = assert_problem(
        await h.client.post("/api/private/kill-switch", json={"engaged": True}, headers=viewer),
        403, "forbidden")
    assert body["permission"] == "admin"
    body = assert_problem(
        await h.client.post("/api/private/orders", json=ORDER, headers=viewer), 403, "forbidden")
    assert body["permission"] == "execute"
    assert_problem(await h.client.get("/api/private/export/trades.csv", headers=viewer), 403)
    assert_problem(await h.client.post("/api/private/orders/t-1/confirm", headers=viewer), 403)
    assert h.backend.kill_switch is False
    assert h.backend.orders == {}


async def test_trader_places_confirms_cancels_exports_but_cannot_administer(
        control: Start) -> None:
    h = await control()
    trader = bearer(TRADER_TOKEN)
    r = await h.client.post("/api/private/orders", json=ORDER, headers=trader)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PENDING_CONFIRM"
    assert r.json()["quantity"] == "0.00012"  # Decimals stay exact on the wire
    r = await h.client.post("/api/private/orders/t-1/confirm", headers=trader)
    assert r.json()["status"] == "NEW"
    r = await h.client.get("/api/private/orders", params={"status": "open"}, headers=trader)
    assert [o["clientOrderId"] for o in r.json()] == ["t-1"]
    r = await h.client.delete("/api/private/orders/t-1", headers=trader)
    assert r.json()["status"] == "CANCELED"
    r = await h.client.get("/api/private/orders/t-1", headers=trader)
    assert r.json()["status"] == "CANCELED"
    r = await h.client.get("/api/private/export/trades.csv", headers=trader)
    assert r.status_code == 200 and r.text.startswith("trade_id,")
    for method, path, body in (
        ("POST", "/api/private/kill-switch", {"engaged": True}),
        ("POST", "/api/private/circuit-breaker/open", None),
        ("POST", "/api/private/circuit-breaker/close", None),
        ("POST", "/api/private/drift-gate/open", None),
        ("POST", "/api/private/drift-gate/close", None),
        ("GET", "/api/private/audit", None),
        ("POST", "/api/private/reconciliation/rec-1/ack", None),
    ):
        r = await h.client.request(method, path, json=body, headers=trader)
        assert_problem(r, 403, "forbidden")
    assert h.backend.kill_switch is False
    assert h.backend.breaker_state == "closed"
    assert h.backend.gate_state == "open"
    r = await h.client.get("/api/private/drift-gate", headers=trader)
    assert r.status_code == 200 and r.json()["state"] == "open"


async def test_admin_may_do_everything(control: Start) -> None:
    h = await control()
    admin = bearer(ADMIN_TOKEN)
    calls = [
        ("POST", "/api/private/orders", ORDER, 200),
        ("POST", "/api/private/orders/t-1/confirm", None, 200),
        ("GET", "/api/private/orders", None, 200),
        ("GET", "/api/private/orders/t-1", None, 200),
        ("DELETE", "/api/private/orders/t-1", None, 200),
        ("GET", "/api/private/circuit-breaker", None, 200),
        ("POST", "/api/private/circuit-breaker/open", None, 200),
        ("POST", "/api/private/circuit-breaker/close", None, 200),
        ("GET", "/api/private/drift-gate", None, 200),
        ("POST", "/api/private/drift-gate/close", None, 200),
        ("POST", "/api/private/drift-gate/open", None, 200),
        ("GET", "/api/private/export/trades.csv", None, 200),
        ("GET", "/api/private/reconciliation", None, 200),
        ("POST", "/api/private/reconciliation/rec-1/ack", None, 200),
        ("POST", "/api/private/kill-switch", {"engaged": True}, 200),
        ("GET", "/api/private/audit", None, 200),
    ]
    for method, path, body, status in calls:
        r = await h.client.request(method, path, json=body, headers=admin)
        assert r.status_code == status, (method, path, r.text)
    assert h.backend.kill_switch is True
    assert h.backend.reconciliation_items["rec-1"]["acked"] is True
    # The audit route returns what the backend recorded: every call above, by admin.
    r = await h.client.get("/api/private/audit", headers=admin)
    actions = [(e["action"], e["result"]) for e in r.json()]
    assert actions[:len(calls)] == [(f"{m} {_template(p)}", "200") for m, p, _, _ in calls]


def _template(path: str) -> str:
    return (path.replace("/t-1", "/{clientOrderId}").replace("/rec-1/", "/{id}/"))


# -- backend errors → problems -------------------------------------------------------------
async def test_backend_errors_become_problems(control: Start) -> None:
    h = await control()
    admin, trader = bearer(ADMIN_TOKEN), bearer(TRADER_TOKEN)
    assert_problem(await h.client.get("/api/private/orders/nope", headers=trader), 404,
                   "not_found")
    await h.client.post("/api/private/orders", json=ORDER, headers=trader)
    assert_problem(await h.client.post("/api/private/orders", json=ORDER, headers=trader), 409,
                   "conflict")
    await h.client.post("/api/private/kill-switch", json={"engaged": True}, headers=admin)
    body = assert_problem(
        await h.client.post("/api/private/orders", json={**ORDER, "clientOrderId": "t-2"},
                            headers=trader),
        422, "kill_switch")
    assert body["detail"] == "the kill switch is engaged"
    h.backend.failure = NotBuilt("reconciliation")
    body = assert_problem(await h.client.get("/api/private/reconciliation", headers=trader),
                          501, "not_built")
    assert body["feature"] == "reconciliation"
    h.backend.failure = Unavailable("the database is down")
    assert_problem(await h.client.get("/api/private/reconciliation", headers=trader), 503,
                   "unavailable")
    assert_problem(await h.client.get("/api/public/health"), 503, "unavailable")
    h.backend.failure = RuntimeError(f"boom with {ADMIN_TOKEN}")
    r = await h.client.get("/api/private/reconciliation", headers=trader)
    body = assert_problem(r, 500, "internal_error")
    assert "boom" not in r.text
    no_token_in(r.text)
    assert h.backend.records[-1].result == "500"


async def test_unknown_routes_and_methods_are_problems(control: Start) -> None:
    h = await control()
    assert_problem(await h.client.get("/nope"), 404, "not_found")
    assert_problem(await h.client.get("/healthz/"), 404, "not_found")  # no slash redirects
    r = await h.client.get("/api/private/nope", headers=bearer(VIEWER_TOKEN))
    assert_problem(r, 404, "not_found")
    assert h.backend.records[-1].actor.startswith("viewer:")
    assert h.backend.records[-1].result == "404"
    # A token pasted into a URL does not end up in the audit log (nor in the answer).
    r = await h.client.get(f"/api/private/x/{ADMIN_TOKEN}/y")
    assert_problem(r, 404)
    no_token_in(r.text)
    assert h.backend.records[-1].action == "GET /api/private/x/***/y"
    assert h.backend.records[-1].actor == "anonymous"
    r = await h.client.get(f"/api/private/orders/{ADMIN_TOKEN}")
    assert_problem(r, 401)
    assert h.backend.records[-1].target == "***"
    no_token_in(repr(h.backend.records))
    r = await h.client.put("/api/private/orders", headers=bearer(ADMIN_TOKEN))
    assert_problem(r, 405, "method_not_allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
    assert_problem(await h.client.post("/api/public/health"), 405)


# -- audit --------------------------------------------------------------------------------
async def test_every_private_call_is_audited_without_the_token(control: Start) -> None:
    h = await control()
    fingerprints = {t: hashlib.sha256(t.encode()).hexdigest()[:8] for t in ALL_TOKENS}
    await h.client.get("/api/private/orders")  # 401
    await h.client.get("/api/private/orders", headers=bearer("some-unknown-token-abcdef"))
    await h.client.post("/api/private/kill-switch", json={"engaged": True},
                        headers=bearer(VIEWER_TOKEN))  # 403
    await h.client.post("/api/private/orders", json=ORDER, headers=bearer(TRADER_TOKEN))
    await h.client.post("/api/private/orders", json={"symbol": 1},
                        headers=bearer(TRADER_TOKEN))  # 400
    await h.client.post("/api/private/kill-switch", json={"engaged": True},
                        headers=bearer(ADMIN_TOKEN))
    got = [(r.actor, r.action, r.target, r.result) for r in h.backend.records]
    assert got == [
        ("anonymous", "GET /api/private/orders", "", "401"),
        ("anonymous", "GET /api/private/orders", "", "401"),
        (f"viewer:{fingerprints[VIEWER_TOKEN]}", "POST /api/private/kill-switch", "", "403"),
        (f"trader:{fingerprints[TRADER_TOKEN]}", "POST /api/private/orders", "t-1", "200"),
        (f"trader:{fingerprints[TRADER_TOKEN]}", "POST /api/private/orders", "", "400"),
        (f"admin:{fingerprints[ADMIN_TOKEN]}", "POST /api/private/kill-switch", "", "200"),
    ]
    assert h.backend.records[3].detail["quantity"] == "0.00012"
    assert h.backend.records[4].detail["reason"] == "invalid_input"
    assert h.backend.records[5].detail == {"engaged": True}
    no_token_in(repr(h.backend.records))
    r = await h.client.get("/api/private/audit", headers=bearer(ADMIN_TOKEN))
    no_token_in(r.text)


# -- OpenAPI ------------------------------------------------------------------------------
async def test_openapi_document_lists_every_route(control: Start) -> None:
    h = await control()
    r = await h.client.get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    served = {
        (method, getattr(route, "path", None))
        for route in h.app.routes
        for method in getattr(route, "methods", ()) if method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    assert len(served) == len(ROUTES) == 22
    for spec in ROUTES:
        op = doc["paths"][spec.path][spec.method.lower()]
        assert op["operationId"] == spec.name
        if spec.private:
            assert op["x-permission"] == str(spec.permission)
            assert op["security"] == [{"bearer": []}]
            for status in ("401", "403", "429"):
                assert PROBLEM in op["responses"][status]["content"]
            assert "Retry-After" in op["responses"]["429"]["headers"]
        else:
            assert op["security"] == []
    assert doc["paths"]["/api/private/orders"]["post"]["requestBody"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/OrderRequest"}
    assert doc["paths"]["/api/private/kill-switch"]["post"]["x-rate-limit-per-min"] == 10
    assert doc["paths"]["/api/private/orders"]["get"]["x-rate-limit-per-min"] == 60
    assert "413" in doc["paths"]["/api/private/orders"]["post"]["responses"]
