"""``spark-runtime canary``: the Day-0 check — one small order through the whole path.

The canary is the operator's proof, before trading for real, that the *running* runtime does
what it claims end to end: an order goes out through the control port, the venue acknowledges
and fills it, the database holds the rows, the metrics moved, the latency is within the SLO, and
an evidence package records all of it.  It talks to the runtime exactly as an operator would
(control port, token, database URL from the config file — see :mod:`.evidence.build`); it
imports nothing of the running process.

Every line of its go/no-go checklist is a check that ran, with what it measured: nothing is
asserted that was not looked at.  A check that could not run (the control port is down, so the
order was never placed) is not listed as passed — the report says the order was not placed and
the run fails.

Safety:

* Without all three of ``--arm --confirm --execute`` it is a dry run: the same pre-flight checks,
  a description of what it would do, and nothing placed.
* It places nothing when any pre-flight check fails (an unreachable database included: an order
  whose persistence cannot be verified is not a canary).
* The order carries a client order id the canary chooses (``<prefix>-cnry…``, with the
  runtime's ``[live] client_id_prefix`` so reconciliation counts it as ours).  The POST is never
  retried; if its answer is lost, the canary asks the runtime about that id instead, so a
  timeout can never turn into a second order.
* The pre-flight filter check runs the runtime's own risk guard (:func:`spark.core.risk.evaluate`)
  over the venue's published filters and book, so "your quantity is below the venue's minimum
  notional" is said before anything is sent.

Polling respects the control port's per-token rate limit (backoff, ``Retry-After`` on 429).
Exit codes: 0 when every check passed; 1 when any failed; 2 for usage/config problems.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import attrs
import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import SQLAlchemyError

from spark.core.breaker import BreakerState
from spark.core.intents import OrderIntent, OrderType, Side
from spark.core.risk import IncompleteFilters, RiskContext, SymbolRules, evaluate
from spark.core.trading_state import TradingState
from spark.exchange.errors import ExchangeError
from spark.exchange.responses import parse_exchange_info
from spark.exchange.venues import venue_profile
from spark.runtime.evidence.build import (
    DatabaseStatus,
    DatabaseUnreachable,
    EvidenceTarget,
    TargetError,
    build_evidence,
    check_database,
    resolve_target,
)
from spark.runtime.evidence.errors import EvidenceError
from spark.runtime.evidence.package import verify_package
from spark.runtime.evidence.slo import SloTargets
from spark.storage import schema
from spark.storage.engine import make_engine, mask_text

__all__ = [
    "ACK_SLO_MS",
    "CanaryOptions",
    "CanaryReport",
    "Check",
    "canary_main",
    "run_canary",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

ACK_SLO_MS = SloTargets().place_ack_p95_s * 1000.0
PLACED = "spark_live_orders_placed_total"
FILLS = "spark_live_fills_total"
ACK_COUNT = "spark_order_place_ack_seconds_count"
ACK_SUM = "spark_order_place_ack_seconds_sum"
COUNTERS = (PLACED, FILLS, ACK_COUNT)

PASS = "pass"
FAIL = "FAIL"

HEALTH = "/api/public/health"
METRICS = "/api/public/metrics/prom"
ORDERS = "/api/private/orders"
AUDIT = "/api/private/audit"
ACKED = frozenset({"NEW", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"})
FINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "DRY_RUN"})


# -- what the report holds -----------------------------------------------------------------


@attrs.frozen
class Check:
    """One go/no-go line: what was checked, whether it held, and what was measured."""

    phase: str
    name: str
    passed: bool
    measured: str

    @property
    def status(self) -> str:
        return PASS if self.passed else FAIL

    def as_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "check": self.name, "passed": self.passed,
                "measured": self.measured}


@attrs.frozen
class CanaryOptions:
    """What the operator asked for.  ``execute`` only when all three flags were given;
    ``missing_flags`` names the ones that were not."""

    symbol: str
    qty: Decimal
    side: str = "BUY"
    execute: bool = False
    missing_flags: tuple[str, ...] = ("--arm", "--confirm", "--execute")
    out_dir: str = "evidence"
    fill_timeout_s: float = 30.0
    settle_timeout_s: float = 15.0


@attrs.frozen
class Moment:
    """One timeline entry: ``at_ms`` epoch ms on ``clock`` (``host`` or ``venue``)."""

    label: str
    at_ms: int
    clock: str
    note: str = ""


@attrs.define
class CanaryReport:
    """Everything the canary saw, in the order it saw it; rendered for people and as JSON."""

    options: CanaryOptions
    config_path: str
    control_url: str
    database: str
    mode: str
    started_ms: int
    checks: list[Check] = attrs.Factory(list)
    plan: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    reference_price: Decimal | None = None
    quote_asset: str = ""
    client_order_id: str | None = None
    order: dict[str, Any] | None = None
    timeline: list[Moment] = attrs.Factory(list)
    db_rows: dict[str, list[dict[str, Any]]] = attrs.Factory(dict)
    metrics_before: dict[str, float] = attrs.Factory(dict)
    metrics_after: dict[str, float] = attrs.Factory(dict)
    ack_ms_runtime: float | None = None
    ack_ms_roundtrip: float | None = None
    package: Path | None = None

    def add(self, phase: str, name: str, passed: bool, measured: str) -> bool:
        self.checks.append(Check(phase, name, passed, measured))
        return passed

    @property
    def ok(self) -> bool:
        """GO only when checks ran and every one passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_json(self) -> dict[str, Any]:
        o = self.options
        return {
            "mode": "execute" if o.execute else "dry-run",
            "exchange_mode": self.mode,
            "config": self.config_path,
            "control_url": self.control_url,
            "database": self.database,
            "started": _iso(self.started_ms),
            "request": {"symbol": o.symbol, "side": o.side, "type": "MARKET",
                        "quantity": str(o.qty)},
            "reference_price": None if self.reference_price is None
            else str(self.reference_price),
            "clientOrderId": self.client_order_id,
            "order": self.order,
            "timeline": [{"event": m.label, "at": _iso(m.at_ms), "clock": m.clock,
                          "note": m.note} for m in self.timeline],
            "database_rows": self.db_rows,
            "metrics": {name: {"before": self.metrics_before.get(name),
                               "after": self.metrics_after.get(name)}
                        for name in (*COUNTERS, ACK_SUM)},
            "latency": {"place_ack_ms_runtime": self.ack_ms_runtime,
                        "place_ack_ms_control_port": self.ack_ms_roundtrip,
                        "slo_ms": ACK_SLO_MS},
            "checks": [c.as_json() for c in self.checks],
            "go": self.ok,
            "notes": self.notes,
            "evidence": None if self.package is None else str(self.package),
        }

    def render(self) -> str:
        return "\n".join(_render(self)) + "\n"


# -- running it ------------------------------------------------------------------------------


class _Unreachable(Exception):
    """The control port did not answer at all (connection refused, timeout)."""


class Canary:
    """One canary run against one runtime.  Blocking (httpx's sync client): a CLI command
    does one thing at a time.  ``clock`` (epoch seconds), ``perf`` (monotonic seconds) and
    ``sleep`` are injectable so the timing logic can be driven by hand."""

    def __init__(
        self,
        target: EvidenceTarget,
        options: CanaryOptions,
        *,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = target
        self.options = options
        self._clock = clock
        self._perf = perf
        self._sleep = sleep
        cfg = target.config
        self.report = CanaryReport(
            options=options,
            config_path=target.config_path,
            control_url=mask_text(target.control_url),
            database=target.source()["database"],
            mode=cfg.exchange.mode,
            started_ms=self._now_ms(),
        )
        self._http = httpx.Client(
            base_url=target.control_url, timeout=15.0, transport=transport,
            headers={"Authorization": f"Bearer {target.token.reveal()}"})
        # The venue is asked for public data only, and never sees the control token.
        self._venue = httpx.Client(timeout=10.0, transport=transport)
        self._health: dict[str, Any] = {}

    def close(self) -> None:
        self._http.close()
        self._venue.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- HTTP helpers --------------------------------------------------------------------

    def _get(self, path: str, **params: str) -> httpx.Response:
        """A GET to the control port, waiting out one 429 (``Retry-After``, at most 10 s)."""
        for attempt in range(2):
            try:
                response = self._http.get(path, params=params or None)
            except httpx.HTTPError as exc:
                raise _Unreachable(f"{type(exc).__name__}: {exc}") from None
            if response.status_code != 429 or attempt:
                return response
            self._sleep(min(10.0, _retry_after(response)))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> CanaryReport:
        """Pre-flight always; the order, its checks and the evidence only when armed and
        every pre-flight check passed."""
        report = self.report
        try:
            reachable = self._preflight()
            if not self.options.execute:
                report.plan = self._plan()
                return report
            if not (reachable and report.ok):
                report.notes.append(f"order not placed: {len(report.failed)} pre-flight "
                                    "check(s) failed")
                return report
            self._execute()
            return report
        finally:
            self.close()

    # -- pre-flight ------------------------------------------------------------------------

    def _preflight(self) -> bool:
        r = self.report
        phase = "pre-flight"
        started = self._perf()
        try:
            live = self._get("/healthz")
        except _Unreachable as exc:
            r.add(phase, "control port answers", False,
                  f"{self.report.control_url}: {exc}")
            r.notes.append("the control port did not answer, so health, readiness, token, "
                           "metrics and the venue's filters were not checked")
            self._check_database(phase)
            return False
        r.add(phase, "control port answers (GET /healthz)", live.status_code == 200,
              f"HTTP {live.status_code} in {_ms(self._perf() - started)}")
        try:
            self._check_health(phase)
            ready = self._get("/readyz")
            body = _json_or_empty(ready)
            r.add(phase, "runtime is ready to trade (GET /readyz)",
                  ready.status_code == 200 and body.get("ready") is True,
                  f"HTTP {ready.status_code}, reason {body.get('reason', '?')!r}")
            since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            audit = self._get(AUDIT, since=since)
            r.add(phase, "token is an admin token (GET /api/private/audit)",
                  audit.status_code == 200, _token_verdict(audit.status_code))
        except _Unreachable as exc:
            r.add(phase, "control port keeps answering", False, str(exc))
            self._check_database(phase)
            return False
        self._check_database(phase)
        try:
            before = self._scrape_counters()
        except (_Unreachable, ValueError) as exc:
            r.add(phase, "metrics scrape has the order-path counters", False, str(exc))
        else:
            missing = [n for n in COUNTERS if n not in before]
            r.add(phase, "metrics scrape has the order-path counters", not missing,
                  ", ".join(f"{n} = {before[n]:g}" for n in COUNTERS if n in before)
                  + (f"; missing: {', '.join(missing)}" if missing else ""))
        self._check_filters(phase)
        return True

    def _check_health(self, phase: str) -> None:
        r = self.report
        response = self._get(HEALTH)
        health = _json_or_empty(response)
        self._health = health
        status = health.get("status", "?")
        r.add(phase, "runtime health is ok", response.status_code == 200 and status == "ok",
              f"HTTP {response.status_code}, status {status!r}")
        actors = health.get("actors") or {}
        down = sorted(n for n, a in actors.items() if _field(a, "state") != "running")
        restarts = sum(int(_field(a, "restarts") or 0) for a in actors.values())
        r.add(phase, "every actor is running", bool(actors) and not down,
              f"{len(actors) - len(down)} of {len(actors)} running, {restarts} restart(s)"
              + (f"; not running: {', '.join(down)}" if down else ""))
        engaged = health.get("kill_switch")
        r.add(phase, "kill switch is off", engaged is False,
              "off" if engaged is False else f"engaged={engaged!r}")
        breaker = _field(health.get("circuit_breaker"), "state")
        r.add(phase, "circuit breaker is closed", breaker == BreakerState.CLOSED,
              f"state {breaker}")
        trading = health.get("trading_state")
        r.add(phase, "trading state is ACTIVE", trading == TradingState.ACTIVE,
              f"state {trading}")
        gate = _field(health.get("drift_gate"), "state")
        r.add(phase, "drift gate is open", gate == "open", f"state {gate}")
        venue = health.get("venue") or {}
        age = venue.get("last_event_age_s")
        age_text = "no event yet" if age is None else f"last event {float(age):.1f} s ago"
        r.add(phase, "venue is connected", venue.get("connected") is True,
              f"connected={venue.get('connected')!r}, {age_text}")
        db = health.get("database") or {}
        spooled = db.get("spooled_events")
        r.add(phase, "runtime writes to its database (nothing spooled)",
              db.get("ok") is True and spooled == 0,
              f"ok={db.get('ok')!r}, {spooled} event(s) spooled")

    def _check_database(self, phase: str) -> DatabaseStatus | None:
        try:
            status = check_database(self.target.database_url)
        except DatabaseUnreachable as exc:
            self.report.add(phase, "canary can read the runtime's database", False, str(exc))
            return None
        self.report.add(phase, "canary can read the runtime's database", True,
                        status.describe())
        return status

    def _scrape_counters(self) -> dict[str, float]:
        response = self._get(METRICS)
        if response.status_code != 200:
            raise ValueError(f"GET {METRICS}: HTTP {response.status_code}")
        return counters(response.text)

    def _venue_url(self) -> tuple[str, str]:
        """The venue's REST origin and product: the address health reports (the simulated
        venue the runtime started), else the one the config names."""
        cfg = self.target.config
        product = "futures" if cfg.exchange.mode.startswith("futures") else "spot"
        reported = (self._health.get("venue") or {}).get("url")
        if isinstance(reported, str) and reported:
            return reported.rstrip("/"), product
        profile = venue_profile(cfg.exchange.mode, rest_url=cfg.exchange.rest_url or None,
                                ws_url=cfg.exchange.ws_url or None,
                                sim_product=product)  # type: ignore[arg-type]
        return profile.rest_url, product

    def _check_filters(self, phase: str) -> None:
        """Would the runtime's risk guard accept this order, against the venue's filters and
        book right now and the file's ``[risk]`` limits (position assumed flat)?"""
        o = self.options
        name = f"{o.side} {o.qty} {o.symbol} passes the venue's filters and [risk] limits"
        origin, product = self._venue_url()
        api = "/fapi/v1" if product == "futures" else "/api/v3"
        try:
            info_r = self._venue.get(f"{origin}{api}/exchangeInfo", params={"symbol": o.symbol})
            book_r = self._venue.get(f"{origin}{api}/ticker/bookTicker",
                                     params={"symbol": o.symbol})
        except httpx.HTTPError as exc:
            self.report.add(phase, name, False, f"venue {origin} not readable: "
                            f"{type(exc).__name__}")
            return
        if info_r.status_code != 200 or book_r.status_code != 200:
            self.report.add(phase, name, False,
                            f"venue {origin}: exchangeInfo HTTP {info_r.status_code}, "
                            f"bookTicker HTTP {book_r.status_code} (unknown symbol?)")
            return
        try:
            info = parse_exchange_info(info_r.json())
            filters = info.symbol(o.symbol)
            if filters is None:
                raise ValueError(f"the venue does not list {o.symbol}")
            rules = SymbolRules.from_exchange(filters)
            book = book_r.json()
            reference = (Decimal(str(book["bidPrice"])) + Decimal(str(book["askPrice"]))) / 2
        except (ExchangeError, IncompleteFilters, ValueError, KeyError, TypeError,
                InvalidOperation) as exc:
            self.report.add(phase, name, False, f"venue {origin}: {exc}")
            return
        self.report.reference_price = reference
        self.report.quote_asset = filters.quote_asset
        intent = OrderIntent(
            client_order_id="canary-preflight", symbol=o.symbol, side=Side(o.side),
            type=OrderType.MARKET, quantity=o.qty, source="canary",
            created_ms=self._now_ms())
        ctx = RiskContext(
            trading_state=TradingState.ACTIVE, kill_switch=False,
            breaker_state=BreakerState.CLOSED, gate_open=True,
            reference_prices={o.symbol: reference}, rules={o.symbol: rules},
            positions={o.symbol: Decimal(0)})
        decision = evaluate(intent, ctx, self.target.config.risk, self._now_ms(), self._perf())
        notional = (o.qty * reference).quantize(Decimal("0.01"))
        quote = filters.quote_asset
        limits = (f"venue minNotional {_plain(rules.min_notional)} {quote}, stepSize "
                  f"{_plain(rules.step_size)}, [risk] max_notional "
                  f"{_plain(self.target.config.risk.max_notional)} {quote}")
        if decision.approved:
            self.report.add(phase, name, True,
                            f"notional ≈ {notional} {quote} at mid {_plain(reference)}; "
                            f"{limits}; assumes a flat position")
            return
        measured = f"the risk guard would reject it: {decision.reason} ({decision.detail})"
        if decision.reason == "min_notional":
            least = minimum_quantity(rules, reference)
            measured = (f"notional ≈ {notional} {quote} is below the venue's minimum notional "
                        f"{_plain(rules.min_notional)} {quote} for {o.symbol}: the venue would "
                        f"reject --qty {o.qty}; use at least --qty {least} at the current "
                        f"price {_plain(reference)}")
        self.report.add(phase, name, False, measured)

    def _plan(self) -> list[str]:
        o = self.options
        r = self.report
        price = ("" if r.reference_price is None else
                 f" (≈ {(o.qty * r.reference_price).quantize(Decimal('0.01'))} "
                 f"{r.quote_asset} at {_plain(r.reference_price)})")
        return [
            f"place MARKET {o.side} {o.qty} {o.symbol}{price} through {r.control_url} "
            f"with a clientOrderId of its own ({self.target.config.live.client_id_prefix}-cnry…)",
            f"wait for the ACK and a final state (up to {o.fill_timeout_s:g} s), polling "
            "GET /api/private/orders/{id}",
            f"check the orders, executions and trades rows for it in {r.database}",
            f"check that {', '.join(COUNTERS)} increased",
            f"compare place→ACK with the SLO (p95 ≤ {ACK_SLO_MS:g} ms)",
            f"build an evidence package under {o.out_dir}/ and verify it",
        ]

    # -- the order ---------------------------------------------------------------------------

    def _execute(self) -> None:
        r = self.report
        o = self.options
        cfg = self.target.config
        cid = canary_client_id(cfg.live.client_id_prefix, self._clock())
        r.client_order_id = cid
        try:
            before = self._scrape_counters()
        except (_Unreachable, ValueError) as exc:
            r.add("order", "metrics readable before the order", False, str(exc))
            return
        r.metrics_before = before
        body = {"symbol": o.symbol, "side": o.side, "type": "MARKET",
                "quantity": str(o.qty), "clientOrderId": cid}
        sent = self._now_ms()
        t0 = self._perf()
        r.timeline.append(Moment("sent", sent, "host", f"POST {ORDERS}"))
        try:
            response: httpx.Response | None = self._http.post(ORDERS, json=body)
        except httpx.HTTPError as exc:
            # Never re-sent: ask about the id instead (the POST may have been placed).
            r.notes.append(f"the POST got no answer ({type(exc).__name__}); asked the runtime "
                           f"about {cid} instead of sending again")
            response = None
        t1 = self._perf()
        order = self._acknowledge(cid, response, t0, t1)
        if order is None:
            return
        final = self._await_final(cid, order, t0)
        if final is None:
            return
        self._check_latency()
        self._check_database_rows(cid, final)
        self._check_evidence()

    def _acknowledge(self, cid: str, response: httpx.Response | None, t0: float,
                     t1: float) -> dict[str, Any] | None:
        """The ACK check (a confirm first, when the runtime parks orders); the order JSON, or
        None when there is nothing more to check."""
        r = self.report
        name = "order acknowledged by the venue"
        if response is None:
            try:
                response = self._get(f"{ORDERS}/{cid}")
            except _Unreachable as exc:
                r.add("order", name, False, f"no answer to the POST nor to GET: {exc}")
                return None
            if response.status_code == 404:
                r.add("order", name, False, "no answer to the POST and the runtime does not "
                      "know the order: nothing was placed")
                return None
            t1 = self._perf()
        order = _json_or_empty(response)
        if response.status_code != 200:
            reason = order.get("reason") or order.get("title") or "error"
            r.add("order", name, False,
                  f"HTTP {response.status_code}: {reason} — {order.get('detail', '')}".rstrip(
                      " —"))
            return None
        if order.get("status") == "PARKED":
            # live.policy = confirm_required: --confirm is the operator's confirmation.
            t0 = self._perf()
            try:
                confirmed = self._http.post(f"{ORDERS}/{cid}/confirm")
            except httpx.HTTPError as exc:
                r.add("order", "parked order confirmed", False, f"{type(exc).__name__}")
                return None
            t1 = self._perf()
            order = _json_or_empty(confirmed)
            if not r.add("order", "parked order confirmed", confirmed.status_code == 200,
                         f"HTTP {confirmed.status_code}, status {order.get('status')}"):
                return None
            r.timeline.append(Moment("confirmed", self._now_ms(), "host",
                                     "live.policy confirm_required"))
        status = order.get("status")
        if status == "DRY_RUN":
            r.add("order", name, False, "the runtime's live.policy is dry_run: the order was "
                  "recorded, not sent (set LIVE_POLICY / [live] policy)")
            return None
        roundtrip_ms = (t1 - t0) * 1000.0
        if status in ACKED and order.get("orderId") is not None:
            r.ack_ms_roundtrip = roundtrip_ms
            r.timeline.append(Moment("ACK", self._now_ms(), "host",
                                     f"HTTP 200, status {status}, venue orderId "
                                     f"{order.get('orderId')}"))
            r.add("order", name, True, f"status {status}, venue orderId {order['orderId']}, "
                  f"{roundtrip_ms:.0f} ms through the control port")
            r.order = order
            return order
        # Accepted but the venue's answer is still outstanding (PENDING/UNKNOWN): the poll
        # below sees the ACK when it comes.
        r.notes.append(f"the POST returned status {status} without a venue orderId; "
                       "waiting for the ACK")
        r.order = order
        return order

    def _await_final(self, cid: str, order: dict[str, Any], t0: float) -> dict[str, Any] | None:
        r = self.report
        o = self.options
        seen = {str(order.get("status"))}
        acked = any(c.name == "order acknowledged by the venue" for c in r.checks)
        deadline = self._perf() + o.fill_timeout_s
        delay = 0.1
        while str(order.get("status")) not in FINAL and self._perf() < deadline:
            self._sleep(delay)
            delay = min(1.0, delay * 1.5)
            try:
                response = self._get(f"{ORDERS}/{cid}")
            except _Unreachable as exc:
                r.add("order", "order reached a final state", False, f"lost the runtime: {exc}")
                return None
            if response.status_code != 200:
                continue
            order = _json_or_empty(response)
            status = str(order.get("status"))
            if status not in seen:
                seen.add(status)
                r.timeline.append(Moment(f"seen {status}", self._now_ms(), "host",
                                         "GET /api/private/orders/{id}"))
            if not acked and status in ACKED and order.get("orderId") is not None:
                acked = True
                r.add("order", "order acknowledged by the venue", True,
                      f"status {status}, venue orderId {order['orderId']} (seen by polling "
                      f"after {(self._perf() - t0) * 1000:.0f} ms)")
        r.order = order
        status = str(order.get("status"))
        if not acked:
            r.add("order", "order acknowledged by the venue", False,
                  f"status {status} after {o.fill_timeout_s:g} s, no venue orderId")
            return None
        passed = status == "FILLED"
        r.add("order", "order FILLED", passed,
              f"status {status}, executedQty {order.get('executedQty')}, avgPrice "
              f"{order.get('avgPrice')}, cumulativeQuoteQty {order.get('cumulativeQuoteQty')}")
        return order if status in FINAL else None

    def _settled_counters(self) -> dict[str, float]:
        """Metrics after the order, re-scraped until every counter moved (they are updated
        as the events arrive, which may trail the order's final state a little)."""
        before = self.report.metrics_before
        deadline = self._perf() + self.options.settle_timeout_s
        after: dict[str, float] = {}
        while True:
            try:
                after = self._scrape_counters()
            except (_Unreachable, ValueError):
                after = {}
            moved = all(after.get(n, 0.0) > before.get(n, 0.0) for n in COUNTERS)
            if moved or self._perf() >= deadline:
                return after
            self._sleep(0.25)

    def _check_latency(self) -> None:
        r = self.report
        after = self._settled_counters()
        r.metrics_after = after
        if not after:
            r.add("metrics", "metrics readable after the order", False,
                  f"GET {METRICS} failed")
            return
        before = r.metrics_before
        for name in COUNTERS:
            delta = after.get(name, 0.0) - before.get(name, 0.0)
            note = "" if delta <= 1 else " (other orders were placed meanwhile)"
            r.add("metrics", f"{name} incremented", delta >= 1,
                  f"{before.get(name, 0.0):g} → {after.get(name, 0.0):g} ({delta:+g}){note}")
        count = after.get(ACK_COUNT, 0.0) - before.get(ACK_COUNT, 0.0)
        total = after.get(ACK_SUM, 0.0) - before.get(ACK_SUM, 0.0)
        if count < 1:
            r.add("latency", f"place→ACK within the SLO (p95 ≤ {ACK_SLO_MS:g} ms)", False,
                  "no ACK latency was observed (spark_order_place_ack_seconds did not move)")
            return
        ms = total / count * 1000.0
        r.ack_ms_runtime = ms
        what = ("this order" if count == 1 else
                f"mean of {count:g} ACKs in the window: other orders were placed meanwhile")
        r.add("latency", f"place→ACK within the SLO (p95 ≤ {ACK_SLO_MS:g} ms)",
              ms <= ACK_SLO_MS, f"{ms:.1f} ms ({what}; spark_order_place_ack_seconds) "
              f"vs {ACK_SLO_MS:g} ms")

    def _check_database_rows(self, cid: str, order: Mapping[str, Any]) -> None:
        """The rows the writer should have committed for this order; re-read until they are
        complete or the settle timeout passes (the writer batches, so they trail a little)."""
        r = self.report
        deadline = self._perf() + self.options.settle_timeout_s
        rows: dict[str, list[dict[str, Any]]] = {}
        while True:
            try:
                rows = order_rows(self.target.database_url, cid)
            except (SQLAlchemyError, DatabaseUnreachable) as exc:
                r.add("database", "rows readable", False, _db_error(exc))
                return
            if _rows_complete(rows, order) or self._perf() >= deadline:
                break
            self._sleep(0.25)
        r.db_rows = rows
        self._timeline_from_executions(rows["executions"])
        status = order.get("status")
        executed = _dec(order.get("executedQty"))
        orders = rows["orders"]
        if orders:
            row = orders[0]
            r.add("database", "orders row", row["status"] == status
                  and _dec(row["executed_qty"]) == executed,
                  f"status {row['status']}, executed {row['executed_qty']}, venue orderId "
                  f"{row['venue_order_id']}")
        else:
            r.add("database", "orders row", False, f"no row for {cid}")
        execs = rows["executions"]
        kinds = ", ".join(f"{e['execution_type']}/{e['order_status']}" for e in execs)
        r.add("database", "executions rows", bool(execs)
              and any(e["order_status"] == status for e in execs),
              f"{len(execs)} row(s): {kinds or 'none'}")
        trades = rows["trades"]
        filled = sum((_dec(t["qty"]) for t in trades), Decimal(0))
        r.add("database", "trades rows", bool(trades) and filled == executed,
              f"{len(trades)} row(s), quantity {_plain(filled)} vs executedQty "
              f"{_plain(executed)}")

    def _timeline_from_executions(self, executions: Sequence[Mapping[str, Any]]) -> None:
        seen: set[str] = set()
        for e in executions:
            label = "NEW" if e["execution_type"] == "NEW" else str(e["order_status"])
            if label in ("NEW", "FILLED") and label not in seen:
                seen.add(label)
                self.report.timeline.append(Moment(
                    label, int(e["transaction_ms"]), "venue",
                    f"executions: {e['execution_type']}/{e['order_status']}"))
        # Stable: at equal times the order of discovery stays (NEW before FILLED).
        self.report.timeline.sort(key=lambda m: m.at_ms)

    def _check_evidence(self) -> None:
        r = self.report
        extra = {
            "canary-report.md": _report_for_package(r).encode(),
            "canary.json": (json.dumps(r.as_json(), indent=2, default=str) + "\n").encode(),
        }
        try:
            package = build_evidence(self.target, self.options.out_dir, extra_files=extra)
        except (EvidenceError, OSError) as exc:
            r.add("evidence", "evidence package built", False, f"{type(exc).__name__}: {exc}")
            return
        r.package = package
        verified = verify_package(package)
        r.add("evidence", "evidence package verifies", verified.ok,
              f"{len(verified.checked)} file(s) hashed, {len(verified.findings)} problem(s): "
              f"{package}")


# -- helpers (pure) ----------------------------------------------------------------------------


def counters(exposition: str) -> dict[str, float]:
    """The canary's counters from a Prometheus text exposition, summed over label sets."""
    wanted = {*COUNTERS, ACK_SUM}
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in wanted and not math.isnan(sample.value):
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def minimum_quantity(rules: SymbolRules, price: Decimal) -> Decimal:
    """The smallest quantity on the venue's step grid whose notional at ``price`` reaches the
    minimum notional."""
    need = rules.min_notional / price
    if need <= rules.min_qty:
        return rules.min_qty
    steps = ((need - rules.min_qty) / rules.step_size).to_integral_value(ROUND_CEILING)
    return (rules.min_qty + steps * rules.step_size).normalize()


def canary_client_id(prefix: str, now_s: float) -> str:
    """``<prefix>-cnry<YYMMDDHHMMSS><4 random>``: ours by prefix (so reconciliation knows it),
    recognisable as a canary, at most 29 characters (Binance allows 36)."""
    stamp = dt.datetime.fromtimestamp(now_s, dt.UTC).strftime("%y%m%d%H%M%S")
    return f"{prefix}-cnry{stamp}{secrets.randbelow(10_000):04d}"


def order_rows(url: str, cid: str) -> dict[str, list[dict[str, Any]]]:
    """The ``orders``, ``executions`` and ``trades`` rows of one client order id, as plain
    JSON-ready dicts (amounts as text)."""
    engine = make_engine(url, connect_timeout_s=5.0)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for table, order_by in ((schema.orders, None),
                                    (schema.executions, schema.executions.c.transaction_ms),
                                    (schema.trades, schema.trades.c.trade_ms)):
                query = sa.select(table).where(table.c.client_order_id == cid)
                if order_by is not None:
                    query = query.order_by(order_by, table.c.id)
                out[table.name] = [
                    {k: _jsonable(v) for k, v in row._mapping.items()}
                    for row in conn.execute(query)
                ]
    finally:
        engine.dispose()
    return out


def _rows_complete(rows: Mapping[str, list[dict[str, Any]]], order: Mapping[str, Any]) -> bool:
    if not rows.get("orders") or rows["orders"][0]["status"] != order.get("status"):
        return False
    executed = _dec(order.get("executedQty"))
    filled = sum((_dec(t["qty"]) for t in rows.get("trades", [])), Decimal(0))
    return filled == executed and any(
        e["order_status"] == order.get("status") for e in rows.get("executions", []))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _plain(value)
    return value


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("NaN")


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``5``, ``0.00012``)."""
    text = format(value.normalize(), "f")
    return text


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _token_verdict(status: int) -> str:
    if status == 200:
        return "HTTP 200: admin token accepted"
    if status == 401:
        return "HTTP 401: the runtime does not know SPARK_CONTROL_TOKEN"
    if status == 403:
        return "HTTP 403: SPARK_CONTROL_TOKEN is not an admin token (the audit needs admin)"
    return f"HTTP {status}"


def _db_error(exc: BaseException) -> str:
    if isinstance(exc, DatabaseUnreachable):
        return str(exc)
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return mask_text(text[0] if text else type(exc).__name__)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- rendering ---------------------------------------------------------------------------------


def _render(r: CanaryReport) -> list[str]:
    o = r.options
    title = ("EXECUTE — one real order" if o.execute
             else "DRY RUN — nothing will be placed")
    lines = [f"Spark canary ({title})", ""]
    real = r.mode in ("spot", "futures")
    lines += [
        f"  config        {r.config_path}",
        f"  exchange      {r.mode}" + ("  (REAL MONEY)" if real else ""),
        f"  control port  {r.control_url}",
        f"  database      {r.database}",
        f"  order         MARKET {o.side} {o.qty} {o.symbol}"
        + ("" if r.reference_price is None else
           f"  (≈ {(o.qty * r.reference_price).quantize(Decimal('0.01'))} {r.quote_asset} "
           f"at mid {_plain(r.reference_price)})"),
        f"  started       {_iso(r.started_ms)}",
        "",
    ]
    if r.client_order_id is not None:
        lines += _order_section(r)
    if r.plan:
        missing = ", ".join(o.missing_flags)
        lines += [f"Dry run: nothing was placed (missing {missing}). "
                  "With --arm --confirm --execute the canary would:"]
        lines += [f"  {i}. {step}" for i, step in enumerate(r.plan, 1)]
        lines.append("")
    lines.append("Go / no-go checklist")
    width = max((len(c.name) for c in r.checks), default=0)
    phase = ""
    for c in r.checks:
        if c.phase != phase:
            phase = c.phase
            lines.append(f"  {phase}")
        lines.append(f"    [{c.status:>4}] {c.name.ljust(width)}  {c.measured}")
    lines.append("")
    lines += [f"Note: {n}" for n in r.notes]
    if r.notes:
        lines.append("")
    failed = len(r.failed)
    scope = "pre-flight " if not o.execute else ""
    if r.ok:
        lines.append(f"GO: all {len(r.checks)} {scope}checks passed.")
    else:
        lines.append(f"NO-GO: {failed} of {len(r.checks)} {scope}check(s) failed: "
                     + "; ".join(c.name for c in r.failed) + ".")
    if r.package is not None:
        lines.append(f"Evidence package: {r.package}  "
                     f"(check it with: spark-runtime evidence verify {r.package})")
    return lines


def _order_section(r: CanaryReport) -> list[str]:
    order = r.order or {}
    lines = ["Order evidence", f"  clientOrderId   {r.client_order_id}",
             f"  venue orderId   {order.get('orderId', '-')}",
             f"  final status    {order.get('status', '-')}  executedQty "
             f"{order.get('executedQty', '-')}  avgPrice {order.get('avgPrice', '-')}"]
    for t in r.db_rows.get("trades", []):
        lines.append(f"  trade           id {t['trade_id']}: {t['qty']} @ {t['price']}, "
                     f"commission {t['commission']} {t['commission_asset'] or ''}".rstrip())
    if r.timeline:
        sent = next((m.at_ms for m in r.timeline if m.label == "sent"), r.timeline[0].at_ms)
        lines += ["", "Timeline (ms after sent; venue times are on the venue's clock)"]
        for m in r.timeline:
            lines.append(f"  {m.label:<12} {_iso(m.at_ms)}  {m.at_ms - sent:+6d} ms  "
                         f"[{m.clock}] {m.note}")
    if r.db_rows:
        lines += ["", "Database records"]
        for table in ("orders", "executions", "trades"):
            lines.append(f"  {table:<11} {len(r.db_rows.get(table, []))} row(s)")
    if r.metrics_after:
        lines += ["", "Metrics (before → after)"]
        for name in COUNTERS:
            b, a = r.metrics_before.get(name, 0.0), r.metrics_after.get(name, 0.0)
            lines.append(f"  {name:<40} {b:g} → {a:g}  ({a - b:+g})")
    if r.ack_ms_runtime is not None or r.ack_ms_roundtrip is not None:
        lines += ["", f"Latency vs SLO (place→ACK p95 ≤ {ACK_SLO_MS:g} ms)"]
        if r.ack_ms_runtime is not None:
            verdict = "within" if r.ack_ms_runtime <= ACK_SLO_MS else "OVER"
            lines.append(f"  runtime (send → venue ACK)         {r.ack_ms_runtime:8.1f} ms  "
                         f"{verdict}")
        if r.ack_ms_roundtrip is not None:
            lines.append(f"  control port round trip (for info) {r.ack_ms_roundtrip:8.1f} ms  "
                         "(adds the risk guard and HTTP)")
    lines.append("")
    return lines


def _report_for_package(r: CanaryReport) -> str:
    body = r.render()
    return ("# Canary report\n\nWritten into this package before the package itself was "
            "verified; `spark-runtime evidence verify` checks it.\n\n```text\n" + body
            + "```\n")


# -- entry point ---------------------------------------------------------------------------


def run_canary(target: EvidenceTarget, options: CanaryOptions, **kwargs: Any) -> CanaryReport:
    """Run one canary against ``target``; see :class:`Canary` for the keyword arguments."""
    return Canary(target, options, **kwargs).run()


def canary_main(
    config_path: str | os.PathLike[str],
    *,
    symbol: str,
    qty: str,
    side: str = "BUY",
    arm: bool = False,
    confirm: bool = False,
    execute: bool = False,
    out_dir: str = "evidence",
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``spark-runtime canary``: print the report; 0 when every check passed, 1 when any
    failed, 2 when the command cannot run as asked (bad quantity, config, environment)."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        quantity = Decimal(qty)
    except InvalidOperation:
        quantity = Decimal("NaN")
    if not quantity.is_finite() or quantity <= 0:
        print(f"spark-runtime canary: --qty {qty!r} is not a positive decimal number",
              file=stderr)
        return EXIT_USAGE
    if side.upper() not in (Side.BUY, Side.SELL):
        print(f"spark-runtime canary: --side {side!r} is not BUY or SELL", file=stderr)
        return EXIT_USAGE
    try:
        target = resolve_target(config_path, env)
    except TargetError as exc:
        print(f"spark-runtime canary: {exc}", file=stderr)
        for problem in exc.problems:
            print(problem, file=stderr)
        return EXIT_USAGE
    flags = {"--arm": arm, "--confirm": confirm, "--execute": execute}
    missing = tuple(flag for flag, given in flags.items() if not given)
    options = CanaryOptions(symbol=symbol.upper(), qty=quantity, side=side.upper(),
                            execute=not missing, missing_flags=missing, out_dir=out_dir)
    report = run_canary(target, options)
    stdout.write(report.render())
    stdout.flush()
    return EXIT_OK if report.ok else EXIT_FAILURE
