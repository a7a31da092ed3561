"""spark.exchange — see docs/ARCHITECTURE.md."""

if __name__ != "spark.exchange":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.exchange'; import it under that name")

# The Binance client: a sans-IO codec (signing, codec, responses, events, market, wsapi_codec,
# ratelimit, timesync) and thin Trio transports (rest, wsapi, streams, wsconn); see README.md.
# Import the submodules directly; this package re-exports nothing so that importing one
# piece (e.g. the event decoder in a benchmark) does not pull in httpx or trio-websocket.
