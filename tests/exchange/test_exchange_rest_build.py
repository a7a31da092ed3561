"""``RestClient._build``: the cheap request builder puts on the wire what ``build_request``
would have put there."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

import httpx
import pytest
import trio
from exchange_stub import SIM_KEY, SIM_SECRET

from spark.exchange import codec
from spark.exchange.credentials import Credentials
from spark.exchange.errors import TransportError
from spark.exchange.rest import RestClient, _Prepared, _SendTrace
from spark.exchange.transport import _serialize
from spark.exchange.venues import venue_profile

CREDS = Credentials.hmac(SIM_KEY, SIM_SECRET)


def same(ours: httpx.Request, reference: httpx.Request) -> None:
    assert ours.method == reference.method
    assert ours.url == reference.url
    assert sorted(ours.headers.multi_items()) == sorted(reference.headers.multi_items())
    assert ours.read() == reference.read()
    assert ours.extensions["timeout"] == reference.extensions["timeout"]
    assert ours.extensions["trace"] is reference.extensions["trace"]


async def test_post_order_built_like_build_request() -> None:
    client = RestClient(venue_profile("sim", rest_url="http://127.0.0.1:9/base"), CREDS)
    try:
        request = codec.spot_place_order(
            symbol="BTCUSDT", side="BUY", order_type="LIMIT", quantity=Decimal("0.001"),
            price=Decimal("100.5"), time_in_force="GTC", new_client_order_id="spk-test-1")
        encoded = codec.encode(request, CREDS, timestamp_ms=1_790_000_000_000,
                               recv_window_ms=5000)
        assert not encoded.query and encoded.body
        reference = client._http.build_request(
            encoded.method, encoded.target, content=encoded.body, headers=encoded.headers)
        wire = _serialize(reference, reference.read()).data
        assert wire.startswith(b"POST /base/api/v3/order HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        first = client._build(encoded, _SendTrace())
        again = client._build(encoded, _SendTrace())  # from the template cache
        assert isinstance(first, _Prepared) and isinstance(again, _Prepared)
        assert again.template is first.template
        for built in (first, again):
            assert built.template.payload(built.body).data == wire
            assert built.template.origin == ("http", "127.0.0.1", 9)
    finally:
        await client.aclose()


def _every_request() -> list[codec.RestRequest]:
    """One of each request the client sends, spot and futures."""
    order = {"symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT",
             "quantity": Decimal("0.001"), "price": Decimal("100.5"), "time_in_force": "GTC",
             "new_client_order_id": "spk-test-1"}
    return [
        codec.spot_time(), codec.spot_exchange_info(), codec.spot_exchange_info(["BTCUSDT"]),
        codec.spot_place_order(**order),  # type: ignore[arg-type]
        codec.spot_query_order("BTCUSDT", orig_client_order_id="spk-test-1"),
        codec.spot_cancel_order("BTCUSDT", orig_client_order_id="spk-test-1"),
        codec.spot_open_orders("BTCUSDT"), codec.spot_account(),
        codec.futures_time(), codec.futures_exchange_info(),
        codec.futures_listen_key_create(), codec.futures_listen_key_keepalive(),
        codec.futures_listen_key_close(),
        codec.futures_place_order(**order),  # type: ignore[arg-type]
        codec.futures_query_order("BTCUSDT", orig_client_order_id="spk-test-1"),
        codec.futures_cancel_order("BTCUSDT", orig_client_order_id="spk-test-1"),
        codec.futures_open_orders("BTCUSDT"),
    ]


async def test_every_request_goes_out_as_build_request_would_send_it() -> None:
    """Byte for byte, bodiless requests included (httpx adds ``Content-Length: 0`` to an
    empty POST or PUT and nothing to a GET or DELETE)."""
    client = RestClient(venue_profile("sim", rest_url="http://127.0.0.1:9"), CREDS)
    try:
        for request in _every_request():
            encoded = codec.encode(
                request, CREDS, recv_window_ms=5000,
                timestamp_ms=1_790_000_000_000 if request.endpoint.security.name == "SIGNED"
                else None)
            reference = client._http.build_request(
                encoded.method, encoded.target, content=encoded.body or None,
                headers=encoded.headers)
            wire = _serialize(reference, reference.read()).data
            built = client._build(encoded, _SendTrace())
            if isinstance(built, _Prepared):
                sent = built.template.payload(built.body).data
            else:
                sent = _serialize(built, built.read()).data
            assert sent == wire, (encoded.method, encoded.path)
    finally:
        await client.aclose()


async def test_a_head_that_cannot_be_sent_safely_is_refused_before_sending() -> None:
    """A CR LF in a header value (here the API key) would let the value forge headers: the
    template refuses it, the call fails as "nothing sent", and the value is not in the text."""
    creds = Credentials.hmac("key\r\nX-Forged: 1", SIM_SECRET)
    client = RestClient(venue_profile("sim", rest_url="http://127.0.0.1:9"), creds)
    try:
        signed = codec.encode(
            codec.spot_place_order(symbol="BTCUSDT", side="BUY", order_type="MARKET",
                                   quantity=Decimal("0.001"), new_client_order_id="spk-x"),
            creds, timestamp_ms=1_790_000_000_000, recv_window_ms=5000)
        assert not signed.query
        with pytest.raises(TransportError, match="before sending") as caught:
            client._build(signed, _SendTrace())
        assert "Forged" not in str(caught.value)
    finally:
        await client.aclose()


async def test_query_requests_take_build_request() -> None:
    client = RestClient(venue_profile("sim", rest_url="http://127.0.0.1:9"), CREDS)
    try:
        encoded = codec.encode(codec.spot_open_orders("BTCUSDT"), CREDS,
                               timestamp_ms=1_790_000_000_000, recv_window_ms=5000)
        assert encoded.query
        trace = _SendTrace()
        same(client._build(encoded, trace), client._http.build_request(
            encoded.method, encoded.target, headers=encoded.headers,
            extensions={"trace": trace}))
    finally:
        await client.aclose()


async def test_cookies_are_neither_kept_nor_sent(nursery: trio.Nursery) -> None:
    """The venue client's jar declines everything: a Set-Cookie answer leaves nothing behind
    and the next request carries no Cookie header."""
    heads: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            heads.append(head)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Set-Cookie: edge=abc; Path=/\r\nContent-Length: 2\r\n\r\n{}")

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    client = RestClient(venue_profile("sim", rest_url=f"http://127.0.0.1:{port}"), CREDS)
    try:
        for _ in range(2):
            response = await client._http.get("/api/v3/time")
            assert response.headers["set-cookie"].startswith("edge=")
        assert len(client._http.cookies) == 0
        assert all(b"cookie:" not in head.lower() for head in heads), heads
    finally:
        await client.aclose()
