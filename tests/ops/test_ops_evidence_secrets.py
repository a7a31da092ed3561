"""Secrets never reach an evidence package, whatever a careless caller feeds in."""

from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops_helpers import make_package

from spark.config import SparkConfig, loads
from spark.config.sample import render_sample
from spark.core.secret import Secret
from spark.runtime.evidence import (
    ConfigNotRedactable,
    InvalidPackageInput,
    Scrubber,
    compute_slos,
    redact_config,
    verify_package,
)
from spark.runtime.metrics import Metrics

# Known to the caller (passed as known_secrets) ...
TOKEN = "tok-Vq7Lm2Xr9Kp4Zt8N"
API_SECRET = "Hs3k+D9f/Q2wLx7=PzR5mVb1NcT8yGj4"
DB_PASSWORD = "pw-Mn6Bv3Cx9Zq2"
# ... and not known, caught by their shape.
SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
OTHER_BEARER = "eyJhbGciOiJIUzI1NiJ9.unknownBearerZ9"
REDIS_PASSWORD = "redisPw-4455xq"
PEM_BODY = "MC4CAQAwBQYDK2VwBCIEIPrivateKeyMaterialZZZZZZZZZZZZZZ"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----"
PLANTED = (TOKEN, API_SECRET, DB_PASSWORD, SIGNATURE, LISTEN_KEY, OTHER_BEARER, REDIS_PASSWORD,
           PEM_BODY, quote(API_SECRET, safe=""), json.dumps(API_SECRET)[1:-1])

CARELESS_CONFIG = f"""\
# database password was {DB_PASSWORD} until the rotation
[exchange]
mode = "sim"
api_secret = "{API_SECRET}"

[database]
url = "postgresql+psycopg://spark:{DB_PASSWORD}@db:5432/spark"

[control]
tokens = ["admin:{TOKEN}"]

[venue]
api_key = "sim-key"
"""


def careless_inputs() -> dict[str, object]:
    metrics = Metrics(process=False)
    metrics.exchange_requests_total.labels(
        f"/api/v3/order?timestamp=1&signature={SIGNATURE}", "200").inc()
    metrics_text = metrics.exposition().decode() + (
        f"# HELP spark_debug_info leaked api_secret={API_SECRET} here\n"
        f'spark_debug_info{{note="token: {TOKEN}"}} 1.0\n')
    return {
        "audit": [
            {"actor": "admin:fp-1a2b", "action": "POST /api/private/kill-switch",
             "target": "kill_switch", "result": "200",
             "detail": {"note": f"ran curl -H 'Authorization: Bearer {TOKEN}' by hand",
                        "authorization": f"Bearer {OTHER_BEARER}",
                        "query": f"recvWindow=5000&k={quote(API_SECRET, safe='')}",
                        "listenKey": LISTEN_KEY,
                        "pem": PEM}},
            {"actor": "signal:SIGUSR1", "action": "kill_switch", "target": "on", "result": "ok",
             "detail": {"url": f"/private/ws?listenKey={LISTEN_KEY}&events=ORDER_TRADE_UPDATE",
                        "api_secret": 12345678, "tokens": ["admin", TOKEN]}},
        ],
        "health": {
            "status": "degraded",
            "database": {"ok": False, "url": f"postgresql+psycopg://spark:{DB_PASSWORD}@db/spark",
                         "error": f'password authentication failed: "{DB_PASSWORD}"'},
            "cache": f"redis://default:{REDIS_PASSWORD}@cache:6379/0",
            "api_secret": API_SECRET,
            "control": {"token_configured": True},
        },
        "metrics_text": metrics_text,
        "slo": compute_slos(metrics_text),
        "trades_csv_chunks": [b"id,note\r\n", b"1,tok-Vq7L", b"m2Xr9Kp4Zt8N\r\n",
                              f"2,{json.dumps(API_SECRET)}\r\n".encode()],
        "config_redacted_toml": CARELESS_CONFIG,
        "extra_files": {"notes.txt": f"token={TOKEN}\n{PEM}\n".encode()},
        "known_secrets": [TOKEN, Secret(API_SECRET), DB_PASSWORD],
        "source": {"database": f"postgresql://spark:{DB_PASSWORD}@db/spark",
                   "control port": "http://127.0.0.1:4001"},
    }


def all_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of the package, the zip raw and every member of the zip unpacked."""
    found = {path.name: path.read_bytes() for path in folder.iterdir()}
    archive = folder.parent / f"{folder.name}.zip"
    found[archive.name] = archive.read_bytes()
    with zipfile.ZipFile(archive) as z:
        found.update({f"zip:{info.filename}": z.read(info) for info in z.infolist()})
    return found


def test_no_planted_secret_survives_anywhere(tmp_path: Path) -> None:
    folder = make_package(tmp_path, **careless_inputs())
    files = all_bytes(folder)
    assert len(files) == 2 * 9 + 1  # 8 + notes.txt in the folder and in the zip, the zip
    for name, data in files.items():
        for secret in PLANTED:
            assert secret.encode() not in data, f"{secret[:8]}… leaked into {name}"
    assert all(secret not in str(path) for path in tmp_path.rglob("*") for secret in PLANTED)
    # Still a valid package with valid documents, which says that it scrubbed something.
    assert verify_package(folder).ok
    audit = json.loads((folder / "audit.json").read_text())
    assert audit[0]["detail"]["authorization"] == "***"
    assert audit[1]["detail"]["api_secret"] == "***"
    assert audit[1]["detail"]["tokens"] == ["***", "***"]
    health = json.loads((folder / "health.json").read_text())
    assert health["database"]["url"] == "postgresql+psycopg://spark:***@db/spark"
    assert health["control"]["token_configured"] is True
    assert health["cache"] == "redis://default:***@cache:6379/0"
    config = tomllib.loads((folder / "config.redacted.toml").read_text())
    assert config["database"]["url"] == "postgresql+psycopg://spark:***@db:5432/spark"
    assert config["exchange"] == {"mode": "sim", "api_secret": "***"}
    index = (folder / "INDEX.md").read_text()
    assert "the inputs contained secrets" in index


def test_scrubber_knows_the_log_redactors_shapes() -> None:
    scrub = Scrubber(["s3cr3t/value+x"])
    text = ("Authorization: Bearer abc.def-ghi signature=0a1b2c api_secret=xyz "
            "postgresql://u:hunter2@h/db mysql://root:toor@db/x s3cr3t/value+x "
            "s3cr3t%2Fvalue%2Bx s3cr3t%2fvalue%2bx listenKey=AbC123 X-MBX-APIKEY: key123 "
            "password: pa55")
    out = scrub(text)
    for leaked in ("abc.def-ghi", "0a1b2c", "xyz", "hunter2", "toor", "s3cr3t", "AbC123",
                   "key123", "pa55"):
        assert leaked not in out, leaked
    assert "postgresql://u:***@h/db" in out and "mysql://root:***@db/x" in out
    assert scrub.redactions >= 9


def test_scrubber_leaves_ordinary_text_alone() -> None:
    scrub = Scrubber([TOKEN])
    text = ('spark_order_rejections_total{reason="invalid_token"} 3.0\n'
            "https://venue.example/api/v3/order?symbol=BTCUSDT http://127.0.0.1:4001/metrics\n"
            "kill_switch=false token_configured: 1\n")
    assert scrub(text).replace("token_configured: 1", "") == text.replace(
        "token_configured: 1", "")
    assert scrub.scrub_json({"kill_switch": False, "ratio": float("nan"), "n": 3}) == {
        "kill_switch": False, "ratio": "nan", "n": 3}


FRAGMENTS = st.sampled_from([
    "Bearer ", "bearer\t", "token=", "password: ", "api_secret=", "signature=", "listenKey=",
    "Authorization: ", "postgresql://", "redis://", "user", ":", "@", "/", "=", "\"", "'", " ",
    "\n", "&", "abc", "XYZ123", "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----",
    "***", "secret", "}", ",",
])
SECRET_TEXT = st.text(st.characters(codec="ascii", exclude_characters="*\n\r\t "),
                      min_size=4, max_size=12)


@given(st.lists(FRAGMENTS, max_size=25).map("".join))
def test_scrubbing_is_idempotent(text: str) -> None:
    scrub = Scrubber()
    once = scrub(text)
    assert scrub(once) == once


@given(SECRET_TEXT, st.lists(FRAGMENTS, max_size=10).map("".join),
       st.lists(FRAGMENTS, max_size=10).map("".join))
def test_a_known_secret_never_survives(secret: str, before: str, after: str) -> None:
    scrub = Scrubber([secret])
    for text in (before + secret + after, before + quote(secret, safe="") + after):
        assert secret not in scrub(text)
    assert secret not in json.dumps(scrub.scrub_json({"k": [before + secret + after]}))


def test_redact_config_text_drops_comments_and_secrets() -> None:
    out = redact_config(CARELESS_CONFIG)
    for secret in (TOKEN, API_SECRET, DB_PASSWORD):
        assert secret not in out
    assert "rotation" not in out  # comments never survive
    doc = tomllib.loads(out)
    assert doc["control"]["tokens"] == ["***"]
    assert doc["venue"]["api_key"] == "***"
    assert doc["exchange"]["mode"] == "sim"


def test_redact_config_of_a_loaded_config_loads_back() -> None:
    config = SparkConfig()
    again = loads(redact_config(config), env={})
    assert again.venue.api_key == "***"
    # Everything else survives the round trip, [listenkey] included (a table, not a key).
    assert attrs.evolve(again, venue=attrs.evolve(again.venue, api_key="sim-key")) == config


def test_redact_config_of_the_sample_keeps_every_value() -> None:
    sample = render_sample()
    original = tomllib.loads(sample)
    redacted = tomllib.loads(redact_config(sample))
    original["venue"]["api_key"] = "***"
    assert redacted == original


def test_redact_config_refuses_what_it_cannot_parse() -> None:
    with pytest.raises(ConfigNotRedactable) as caught:
        redact_config(f'api_secret = "{API_SECRET}"\n[[broken')
    assert API_SECRET not in str(caught.value)
    assert caught.value.reason == "config_not_redactable"


def test_a_binary_extra_file_with_a_known_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidPackageInput):
        make_package(tmp_path, extra_files={"dump.bin": b"\xff\xfe" + TOKEN.encode()},
                     known_secrets=[TOKEN])
    assert list(tmp_path.iterdir()) == []
