"""Request building: exact bytes on the wire, signing rules, weights, validation; venue URLs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from spark.exchange import codec
from spark.exchange import endpoints as ep
from spark.exchange.codec import RestRequest, encode
from spark.exchange.credentials import Credentials
from spark.exchange.signing import HmacSigner
from spark.exchange.venues import venue_profile

DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
CREDS = Credentials(DOC_KEY, HmacSigner(DOC_SECRET))
SIM = Credentials("sim-key", HmacSigner("sim-secret"))
TS = 1499827319559


def test_documented_order_is_encoded_and_signed_exactly() -> None:
    # The rest-api.md example as a form body: signature over the body, appended last.
    request = RestRequest(ep.SPOT_ORDER_PLACE, (
        ("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
        ("quantity", "1"), ("price", "0.1"),
    ))
    enc = encode(request, CREDS, timestamp_ms=TS, recv_window_ms=5000)
    assert enc.method == "POST" and enc.path == "/api/v3/order" and enc.query == ""
    assert enc.body == (
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        b"&recvWindow=5000&timestamp=1499827319559"
        b"&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    assert ("X-MBX-APIKEY", DOC_KEY) in enc.headers
    assert ("Content-Type", "application/x-www-form-urlencoded") in enc.headers


def test_spot_place_order_params_in_send_order() -> None:
    req = codec.spot_place_order(
        "BTCUSDT", "BUY", "LIMIT", new_client_order_id="spark-1_a",
        quantity=Decimal("0.00012"), price=Decimal("45000.10"), time_in_force="GTC",
        resp_type="FULL",
    )
    enc = encode(req, SIM, timestamp_ms=1700000000000, recv_window_ms=5000)
    assert enc.body.decode().rsplit("&signature=", 1)[0] == (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.00012&price=45000.10"
        "&newClientOrderId=spark-1_a&newOrderRespType=FULL&recvWindow=5000"
        "&timestamp=1700000000000"
    )
    sig = enc.body.decode().rsplit("&signature=", 1)[1]
    assert sig == SIM.signer.sign(enc.body.decode().rsplit("&signature=", 1)[0])
    assert req.endpoint.weight == 1 and req.endpoint.counts_order


def test_market_order_by_quote_quantity_and_tiny_decimal_is_plain() -> None:
    req = codec.spot_place_order("BTCUSDT", "SELL", "MARKET", new_client_order_id="m1",
                                 quote_order_qty=Decimal("1E-7"))
    assert req.params == (("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "MARKET"),
                          ("quoteOrderQty", "0.0000001"), ("newClientOrderId", "m1"),
                          ("newOrderRespType", "ACK"))


def test_encoded_request_repr_hides_key_and_signature() -> None:
    enc = encode(codec.spot_account(), SIM, timestamp_ms=1)
    assert "sim-key" not in repr(enc) and "signature" not in repr(enc)


def test_get_and_delete_carry_signed_query_string() -> None:
    enc = encode(codec.spot_query_order("BTCUSDT", orig_client_order_id="abc-1"), SIM,
                 timestamp_ms=1, recv_window_ms=None)
    assert (enc.method, enc.body) == ("GET", b"")
    query, sig = enc.query.rsplit("&signature=", 1)
    assert query == "symbol=BTCUSDT&origClientOrderId=abc-1&timestamp=1"
    assert sig == SIM.signer.sign(query)
    assert enc.target == f"/api/v3/order?{enc.query}"
    cancel = encode(codec.spot_cancel_order("BTCUSDT", order_id=42), SIM, timestamp_ms=2)
    assert cancel.method == "DELETE"
    assert cancel.query.startswith("symbol=BTCUSDT&orderId=42&timestamp=2&signature=")


@pytest.mark.parametrize(
    ("request_", "target", "weight"),
    [
        (codec.spot_time(), "/api/v3/time", 1),
        (codec.spot_exchange_info(), "/api/v3/exchangeInfo", 20),
        (codec.spot_exchange_info(["BTCUSDT"]), "/api/v3/exchangeInfo?symbol=BTCUSDT", 20),
        (codec.spot_exchange_info(["BTCUSDT", "ETHUSDT"]),
         "/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D", 20),
        (codec.futures_time(), "/fapi/v1/time", 1),
        (codec.futures_exchange_info(), "/fapi/v1/exchangeInfo", 1),
    ],
)
def test_public_requests(request_: RestRequest, target: str, weight: int) -> None:
    enc = encode(request_, None)
    assert enc.target == target
    assert enc.headers == ()
    assert request_.endpoint.weight == weight


def test_signed_query_variants_and_weights() -> None:
    def q(req: RestRequest) -> str:
        return encode(req, SIM, timestamp_ms=7).query.rsplit("&signature=", 1)[0]

    assert q(codec.spot_open_orders("ETHUSDT")) == "symbol=ETHUSDT&timestamp=7"
    assert codec.spot_open_orders("ETHUSDT").endpoint.weight == 6
    assert q(codec.spot_open_orders()) == "timestamp=7"
    assert codec.spot_open_orders().endpoint.weight == 80
    assert q(codec.spot_my_trades("BTCUSDT", from_id=1001, limit=1000)) == (
        "symbol=BTCUSDT&fromId=1001&limit=1000&timestamp=7")
    assert codec.spot_my_trades("BTCUSDT").endpoint.weight == 20
    assert codec.spot_my_trades("BTCUSDT", order_id=5).endpoint.weight == 5
    assert q(codec.spot_my_trades("BTCUSDT", start_time=100, end_time=200)) == (
        "symbol=BTCUSDT&startTime=100&endTime=200&timestamp=7")
    assert q(codec.spot_account()) == "timestamp=7"
    assert codec.spot_account().endpoint.weight == 20
    assert q(codec.futures_open_orders()) == "timestamp=7"
    assert codec.futures_open_orders().endpoint.weight == 40
    assert codec.futures_open_orders("BTCUSDT").endpoint.weight == 1
    assert q(codec.futures_user_trades("BTCUSDT", from_id=3)) == (
        "symbol=BTCUSDT&fromId=3&timestamp=7")
    assert codec.futures_user_trades("BTCUSDT").endpoint.weight == 5
    assert q(codec.futures_query_order("BTCUSDT", orig_client_order_id="x")) == (
        "symbol=BTCUSDT&origClientOrderId=x&timestamp=7")


def test_futures_order_and_listen_key_requests() -> None:
    req = codec.futures_place_order(
        "BTCUSDT", "SELL", "LIMIT", new_client_order_id="f-1", quantity=Decimal("0.002"),
        price=Decimal("60000"), time_in_force="GTX", reduce_only=True, resp_type="RESULT",
    )
    body = encode(req, SIM, timestamp_ms=9, recv_window_ms=3000).body.decode()
    assert body.rsplit("&signature=", 1)[0] == (
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTX&quantity=0.002&reduceOnly=true"
        "&price=60000&newClientOrderId=f-1&newOrderRespType=RESULT&recvWindow=3000&timestamp=9"
    )
    assert req.endpoint.weight == 0 and req.endpoint.counts_order
    for build, method in ((codec.futures_listen_key_create, "POST"),
                          (codec.futures_listen_key_keepalive, "PUT"),
                          (codec.futures_listen_key_close, "DELETE")):
        enc = encode(build(), SIM)
        assert (enc.method, enc.path, enc.query) == (method, "/fapi/v1/listenKey", "")
        assert enc.body == b""  # USER_STREAM: API key only, never signed
        assert ("X-MBX-APIKEY", "sim-key") in enc.headers


def test_ed25519_signature_is_percent_encoded() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from spark.exchange.signing import Ed25519Signer

    creds = Credentials("k", Ed25519Signer(Ed25519PrivateKey.generate()))
    enc = encode(codec.spot_account(), creds, timestamp_ms=1)
    sig = enc.query.split("signature=", 1)[1]
    assert all(ch not in sig for ch in "+/=")  # base64 characters are escaped


@pytest.mark.parametrize(
    "call",
    [
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "LIMIT", new_client_order_id="x",
                                       quantity=Decimal(1)),  # no price / TIF
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="x"),
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="x",
                                       quantity=Decimal(1), quote_order_qty=Decimal(1)),
        lambda: codec.spot_place_order("BTCUSDT", "HOLD", "MARKET",  # type: ignore[arg-type]
                                       new_client_order_id="x", quantity=Decimal(1)),
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="a b",
                                       quantity=Decimal(1)),
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="x" * 37,
                                       quantity=Decimal(1)),
        lambda: codec.spot_place_order("BTCUSDT", "BUY", "MARKET", new_client_order_id="x",
                                       quantity=Decimal(-1)),
        lambda: codec.spot_query_order("BTCUSDT"),
        lambda: codec.spot_my_trades("BTCUSDT", limit=1001),
        lambda: codec.spot_my_trades("BTCUSDT", start_time=0, end_time=86_400_001),
    ],
)
def test_invalid_requests_are_refused_before_sending(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_encode_refuses_unsigned_or_keyless_use() -> None:
    with pytest.raises(ValueError, match="credentials"):
        encode(codec.spot_account(), None, timestamp_ms=1)
    with pytest.raises(ValueError, match="timestamp"):
        encode(codec.spot_account(), SIM)
    with pytest.raises(ValueError, match="recvWindow"):
        encode(codec.spot_account(), SIM, timestamp_ms=1, recv_window_ms=60_001)


def test_venue_profiles() -> None:
    spot = venue_profile("spot")
    assert (spot.rest_url, spot.ws_api_url, spot.market_ws_url) == (
        "https://api.binance.com", "wss://ws-api.binance.com:443/ws-api/v3",
        "wss://stream.binance.com:9443")
    assert spot.live and spot.weight_limit_1m == 6000 and spot.order_limit_10s == 100
    tn = venue_profile("spot-testnet")
    assert (tn.rest_url, tn.ws_api_url, tn.market_ws_url, tn.live) == (
        "https://testnet.binance.vision", "wss://ws-api.testnet.binance.vision/ws-api/v3",
        "wss://stream.testnet.binance.vision", False)
    fut = venue_profile("futures")
    assert (fut.rest_url, fut.market_ws_url, fut.user_data_ws_url, fut.ws_api_url) == (
        "https://fapi.binance.com", "wss://fstream.binance.com/public",
        "wss://fstream.binance.com/private/ws", None)
    assert fut.weight_limit_1m == 2400
    ftn = venue_profile("futures-testnet")
    assert (ftn.rest_url, ftn.market_ws_url) == (
        "https://testnet.binancefuture.com", "wss://fstream.binancefuture.com/public")


def test_sim_profile_is_one_origin_and_overrides_apply() -> None:
    sim = venue_profile("sim", rest_url="http://127.0.0.1:9400/")
    assert (sim.rest_url, sim.ws_api_url, sim.market_ws_url, sim.user_data_ws_url) == (
        "http://127.0.0.1:9400", "ws://127.0.0.1:9400/ws-api/v3", "ws://127.0.0.1:9400", None)
    assert not sim.live and sim.is_sim
    fsim = venue_profile("sim", rest_url="http://h:1", ws_url="ws://h:2", sim_product="futures")
    assert (fsim.rest_url, fsim.user_data_ws_url, fsim.ws_api_url) == (
        "http://h:1", "ws://h:2/private/ws", None)
    assert venue_profile("sim").rest_url == "http://127.0.0.1:9400"
    moved = venue_profile("spot-testnet", rest_url="http://proxy:8080")
    assert moved.rest_url == "http://proxy:8080" and moved.ws_api_url == tn_ws_api()
    redirected = venue_profile("spot", ws_url="ws://127.0.0.1:5/")
    assert redirected.ws_api_url == "ws://127.0.0.1:5/ws-api/v3" and redirected.live
    with pytest.raises(ValueError, match="unknown exchange mode"):
        venue_profile("margin")


def tn_ws_api() -> str:
    return "wss://ws-api.testnet.binance.vision/ws-api/v3"
