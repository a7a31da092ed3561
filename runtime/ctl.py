"""``spark-runtime ctl``: the operator's client for the control port.

Reads ``SPARK_CONTROL_URL`` (default ``http://127.0.0.1:4001``) and ``SPARK_CONTROL_TOKEN``.
Prints readable tables by default and the server's JSON with ``--json``.  Exit codes: 0 when the
control port accepted the request, 1 when it answered with an error or could not be reached,
2 for usage errors (from argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:4001"


class CtlClient:
    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = 15.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> CtlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, path, **kwargs)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    if not rows:
        print("(none)", file=out)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _pairs(data: Mapping[str, Any], out: TextIO, indent: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            print(f"{indent}{key}:", file=out)
            _pairs(value, out, indent + "  ")
        else:
            print(f"{indent}{key}: {_cell(value)}", file=out)


ORDER_COLUMNS = ("clientOrderId", "symbol", "side", "type", "quantity", "price", "status",
                 "executedQty", "orderId")


def _render(action: str, data: Any, out: TextIO) -> None:
    if action == "status":
        actors = data.get("actors", {})
        summary = {k: v for k, v in data.items() if k != "actors"}
        _pairs(summary, out)
        print("actors:", file=out)
        _table([{"actor": name, **info} for name, info in sorted(actors.items())],
               ("actor", "state", "restarts"), out)
    elif action == "orders":
        rows = data if isinstance(data, list) else data.get("orders", [])
        _table(rows, ORDER_COLUMNS, out)
    elif isinstance(data, Mapping):
        _pairs(data, out)
    else:
        print(json.dumps(data, indent=2), file=out)


def run_ctl(args: argparse.Namespace, env: Mapping[str, str] | None = None,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    env = os.environ if env is None else env
    url = env.get("SPARK_CONTROL_URL", DEFAULT_URL)
    token = env.get("SPARK_CONTROL_TOKEN") or None
    action: str = args.ctl_command
    method, path, body = _route(args)
    try:
        with CtlClient(url, token) as client:
            response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        print(f"spark-runtime ctl {action}: cannot reach the control port at {url}: "
              f"{type(exc).__name__}", file=err)
        return 1
    try:
        data = response.json()
    except ValueError:
        data = {"body": response.text}
    if response.status_code >= 400:
        if args.json:
            print(json.dumps(data, indent=2), file=out)
        title = data.get("title", "error") if isinstance(data, Mapping) else "error"
        detail = data.get("detail", "") if isinstance(data, Mapping) else ""
        reason = data.get("reason") if isinstance(data, Mapping) else None
        suffix = f" (reason: {reason})" if reason else ""
        print(f"spark-runtime ctl {action}: {response.status_code} {title}: {detail}{suffix}",
              file=err)
        return 1
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        _render(action, data, out)
    return 0


def _route(args: argparse.Namespace) -> tuple[str, str, Any]:
    action = args.ctl_command
    if action == "status":
        return "GET", "/api/public/health", None
    if action == "order":
        body: dict[str, Any] = {
            "symbol": args.symbol.upper(),
            "side": args.side,
            "type": "LIMIT" if args.limit is not None else "MARKET",
            "quantity": args.qty,
        }
        if args.limit is not None:
            body["price"] = args.limit
            body["timeInForce"] = args.tif or "GTC"
        if args.client_order_id:
            body["clientOrderId"] = args.client_order_id
        return "POST", "/api/private/orders", body
    if action == "orders":
        return "GET", "/api/private/orders" + ("" if args.all else "?status=open"), None
    if action == "confirm":
        return "POST", f"/api/private/orders/{args.client_order_id}/confirm", None
    if action == "cancel":
        return "DELETE", f"/api/private/orders/{args.client_order_id}", None
    if action == "kill-switch":
        return "POST", "/api/private/kill-switch", {"engaged": args.state == "on"}
    if action == "breaker":
        if args.action == "status":
            return "GET", "/api/private/circuit-breaker", None
        return "POST", f"/api/private/circuit-breaker/{args.action}", None
    if action == "drift-gate":
        if args.action == "status":
            return "GET", "/api/private/drift-gate", None
        return "POST", f"/api/private/drift-gate/{args.action}", None
    raise ValueError(action)  # pragma: no cover - argparse restricts the choices
