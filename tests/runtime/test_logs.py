"""Secrets never reach a log line, whatever way they are fed in."""

from __future__ import annotations

import io
import json
import logging

import pytest

from spark.core.secret import Secret
from spark.runtime.logs import Redactor, configure

API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TOKEN = "tok-admin-0123456789abcdef"


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    configure("DEBUG", "json", [API_SECRET, TOKEN], stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_spark", False):
            root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_shape(captured: io.StringIO) -> None:
    logging.getLogger("spark.test").info("hello %s", "world", extra={"actor": "writer"})
    [entry] = lines(captured)
    assert entry["msg"] == "hello world"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "spark.test"
    assert entry["actor"] == "writer"
    assert str(entry["ts"]).endswith("Z")


@pytest.mark.parametrize(
    "feed",
    [
        lambda log: log.info("secret is %s", API_SECRET),
        lambda log: log.info(f"inline {API_SECRET} and {TOKEN}"),
        lambda log: log.warning("hdr", extra={"headers": {"Authorization": f"Bearer {TOKEN}"}}),
        lambda log: log.info("Authorization: Bearer some-unknown-token-value"),
        lambda log: log.info("GET /api/v3/order?symbol=BTCUSDT&signature=0123abcdef99"),
        lambda log: log.info("dsn postgresql+psycopg://spark:pgpass99@db/spark"),
        lambda log: log.error("oops", exc_info=ValueError(f"api_secret={API_SECRET}")),
        lambda log: log.info("list", extra={"items": [API_SECRET, 1]}),
    ],
)
def test_secrets_are_redacted(captured: io.StringIO, feed: object) -> None:
    log = logging.getLogger("spark.test")
    feed(log)  # type: ignore[operator]
    text = captured.getvalue()
    assert text
    for leaked in (API_SECRET, TOKEN, "some-unknown-token-value", "0123abcdef99", "pgpass99"):
        assert leaked not in text
    assert "***" in text


def test_secret_wrapper_never_formats_its_value() -> None:
    s = Secret(API_SECRET)
    assert API_SECRET not in f"{s} {s!r} {[s]} {s:>10}"
    assert s.reveal() == API_SECRET
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_redactor_prefers_longest_secret() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r("x abcdefgh y") == "x *** y"


def test_console_format(captured: io.StringIO) -> None:
    stream = io.StringIO()
    configure("INFO", "console", [TOKEN], stream=stream)
    logging.getLogger("spark.x").info("started %s", TOKEN, extra={"port": 4001})
    out = stream.getvalue()
    assert "INFO" in out and "spark.x: started ***" in out and "port=4001" in out
