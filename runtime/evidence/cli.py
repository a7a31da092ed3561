"""What ``spark-runtime evidence …`` runs: verifying a package, and reading a running runtime.

``evidence verify DIR`` is :func:`verify_main`.  ``evidence build`` needs the running runtime:
:func:`scrape` reads its health, metrics and audit trail over the control port (CONTRACT §5),
:func:`stream_trades_csv` streams its trades export, and :func:`build_from_control_port` puts
those together with the SLOs and the redacted config into a package.  These use httpx's
synchronous client: a CLI command does one thing at a time and has no event loop to share.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx

from spark.config.schema import SparkConfig
from spark.core.secret import Secret
from spark.runtime.evidence.errors import ScrapeError
from spark.runtime.evidence.package import build_package, verify_package, verify_zip
from spark.runtime.evidence.redact import redact_config
from spark.runtime.evidence.slo import SloTargets, compute_slos

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_from_control_port",
    "scrape",
    "stream_trades_csv",
    "verify_main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

HEALTH = "/api/public/health"
METRICS = "/api/public/metrics/prom"
AUDIT = "/api/private/audit"
TRADES = "/api/private/export/trades.csv"
DEFAULT_TIMEOUT_S = 10.0


def verify_main(directory: str | os.PathLike[str], out: TextIO | None = None) -> int:
    """``evidence verify``: print a readable report; 0 when every hash holds, 1 on any
    mismatch, 2 when the path is neither a package folder nor a package zip."""
    stream = out if out is not None else sys.stdout
    path = Path(directory)
    if path.is_file() and path.suffix == ".zip":
        report = verify_zip(path)
    elif path.is_dir():
        report = verify_package(path)
    else:
        print(f"{path}: not an evidence package folder or zip", file=stream)
        return EXIT_USAGE
    print(report.render(), file=stream)
    return EXIT_OK if report.ok else EXIT_FAILURE


def _reveal(token: str | Secret) -> str:
    return token.reveal() if isinstance(token, Secret) else token


def _get(client: httpx.Client, path: str, *, ok: tuple[int, ...] = (200,),
         headers: Mapping[str, str] | None = None,
         params: Mapping[str, str] | None = None) -> httpx.Response:
    try:
        response = client.get(path, headers=headers, params=params)
    except httpx.HTTPError as exc:
        # httpx messages name the URL, never the headers (where the token is).
        raise ScrapeError(f"GET {path}", f"{type(exc).__name__}: {exc}") from None
    if response.status_code in (401, 403):
        raise ScrapeError(f"GET {path}", f"the token was refused ({response.status_code}); "
                          "evidence needs an admin token")
    if response.status_code not in ok:
        raise ScrapeError(f"GET {path}", f"unexpected status {response.status_code}")
    return response


def _json(response: httpx.Response, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ScrapeError(f"GET {path}", "the answer is not JSON") from None


def scrape(
    control_url: str,
    token: str | Secret,
    *,
    since: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """``(health, metrics_text, audit)`` from the runtime's control port.

    Health is taken as it is even when the runtime reports itself ``down`` (503): a package
    about an outage is exactly when evidence matters.  The audit trail is a private route and
    needs an admin token.  Raises :class:`ScrapeError` naming the route that failed.
    """
    headers = {"Authorization": f"Bearer {_reveal(token)}"}
    with httpx.Client(base_url=control_url, timeout=timeout_s, transport=transport) as client:
        health = _json(_get(client, HEALTH, ok=(200, 503)), HEALTH)
        if not isinstance(health, dict):
            raise ScrapeError(f"GET {HEALTH}", "the answer is not a JSON object")
        metrics_text = _get(client, METRICS).text
        params = {"since": since} if since else None
        audit = _json(_get(client, AUDIT, headers=headers, params=params), AUDIT)
        if not isinstance(audit, list) or not all(isinstance(e, dict) for e in audit):
            raise ScrapeError(f"GET {AUDIT}", "the answer is not a list of objects")
    return health, metrics_text, audit


def stream_trades_csv(
    control_url: str,
    token: str | Secret,
    *,
    since: str | None = None,
    until: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[bytes]:
    """The trades export, chunk by chunk as the runtime streams it (constant memory).

    A generator: the request starts with the first ``next()`` and the connection closes when
    the generator is exhausted or closed.
    """
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    headers = {"Authorization": f"Bearer {_reveal(token)}"}
    with httpx.Client(base_url=control_url, timeout=timeout_s, transport=transport) as client:
        try:
            with client.stream("GET", TRADES, headers=headers, params=params) as response:
                if response.status_code in (401, 403):
                    raise ScrapeError(f"GET {TRADES}",
                                      f"the token was refused ({response.status_code})")
                if response.status_code != 200:
                    raise ScrapeError(f"GET {TRADES}",
                                      f"unexpected status {response.status_code}")
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ScrapeError(f"GET {TRADES}", f"{type(exc).__name__}: {exc}") from None


def build_from_control_port(
    out_dir: str | os.PathLike[str],
    *,
    control_url: str,
    token: str | Secret,
    config: str | SparkConfig,
    known_secrets: Iterable[str | Secret] = (),
    trades_csv_chunks: Iterable[bytes] | None = None,
    targets: SloTargets = SloTargets(),
    extra_files: Mapping[str, bytes] | None = None,
    source: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Path:
    """Scrape the running runtime and write a package (what ``evidence build`` does).

    ``trades_csv_chunks`` defaults to the control port's trades export; pass the database
    export instead when the CLI reads the database directly.  The token is always treated as
    a known secret.
    """
    health, metrics_text, audit = scrape(control_url, token, transport=transport)
    trades = trades_csv_chunks if trades_csv_chunks is not None else stream_trades_csv(
        control_url, token, transport=transport)
    secrets = [token, *known_secrets]
    return build_package(
        out_dir,
        health=health,
        metrics_text=metrics_text,
        audit=audit,
        trades_csv_chunks=trades,
        config_redacted_toml=redact_config(config),
        slo=compute_slos(metrics_text, targets),
        extra_files=extra_files or {},
        known_secrets=secrets,
        source=source if source is not None else {"control port": control_url},
    )
