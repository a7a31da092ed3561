"""The whole ``spark.toml`` schema as frozen attrs classes.

Every section of CONTRACT §3 is a class here; every key is a field with a default, a one-line
``doc`` (the sample ``spark.toml`` says the same) and, where a value can be out of range, a
``check`` (see :mod:`spark.config.checks`).  The loader (:mod:`spark.config.loader`) structures
a parsed TOML document into :class:`SparkConfig`, collecting every problem with its dotted key.

Secrets are not part of this schema on purpose: they come from the environment only
(:class:`spark.config.secrets.Secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from spark.config import checks
from spark.core.trade_window import TradeWindow

EXCHANGE_MODES = ("sim", "spot-testnet", "futures-testnet", "spot", "futures")
LIVE_POLICIES = ("dry_run", "confirm_required", "auto")


def setting(default: Any, doc: str, check: checks.Check | None = None) -> Any:
    """A config key: its default, what it means, and what values it accepts."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, dict):
        return attrs.field(factory=lambda: dict(default), metadata=meta)
    return attrs.field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    return attrs.field(factory=cls, metadata={"doc": doc, "check": None})


@attrs.frozen
class RuntimeConfig:
    shutdown_grace_s: float = setting(10.0, "Seconds a graceful stop may take.", checks.gt(0))
    allow_root: bool = setting(False, "Allow running as root (refused otherwise).")
    log_level: str = setting(
        "INFO", "DEBUG, INFO, WARNING or ERROR.",
        checks.one_of(("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    log_format: str = setting(
        "auto",
        "auto (JSON lines unless stderr is a TTY), json or console.",
        checks.one_of(("auto", "json", "console")),
    )
    state_dir: str = setting("var", "Folder for runtime state (order write-ahead log).")
    kill_switch: bool = setting(False, "Start with the kill switch engaged (SPARK_KILL_SWITCH=1).")


@attrs.frozen
class ExchangeConfig:
    mode: str = setting("sim", "sim, spot-testnet, futures-testnet, spot or futures.",
                        checks.one_of(EXCHANGE_MODES))
    rest_url: str = setting("", "REST base URL; empty = the mode's default (sim: own venue).")
    ws_url: str = setting("", "Websocket base URL for streams; empty = the mode's default.")
    ws_api_url: str = setting("", "Spot WebSocket API URL; empty = the mode's default.")
    recv_window_ms: int = setting(5000, "recvWindow sent with signed requests.",
                                  checks.between(1, 60000))
    request_timeout_s: float = setting(10.0, "Timeout of one REST request.", checks.gt(0))
    max_in_flight: int = setting(8, "REST requests in flight at once.", checks.between(1, 256))
    weight_share: float = setting(
        0.8, "Share of the account's request-weight budget this runtime may use.",
        checks.all_of(checks.gt(0), checks.between(0, 1)),
    )


@attrs.frozen
class ControlConfig:
    host: str = setting("127.0.0.1", "Control port address (loopback unless tokens are set).")
    port: int = setting(4001, "Control port (0 = any free port).", checks.port)
    rate_limit_per_min: int = setting(60, "Private calls per token per minute.", checks.ge(1))
    admin_rate_limit_per_min: int = setting(10, "Admin calls per token per minute.", checks.ge(1))
    max_body_bytes: int = setting(65536, "Largest request body accepted.", checks.ge(256))


@attrs.frozen
class DatabaseConfig:
    url: str = setting("sqlite:///var/spark.db", "SQLAlchemy URL (DATABASE_URL overrides).")
    connect_timeout_s: float = setting(5.0, "Connect timeout.", checks.gt(0))


@attrs.frozen
class RiskConfig:
    max_notional: Decimal = setting(Decimal(20), "Largest order notional (quote currency).",
                                    checks.gt(0))
    whitelist: tuple[str, ...] = setting(("BTCUSDT", "ETHUSDT", "BNBUSDT"),
                                         "Symbols that may be traded.", checks.symbols)
    trade_window: str = setting("07:00-23:30", "HH:MM-HH:MM local trading hours; may cross "
                                "midnight; 00:00-24:00 = always.", checks.trade_window)
    timezone: str = setting("UTC", "IANA timezone of the trade window.", checks.timezone)
    max_open_orders: int = setting(10, "Open orders at most.", checks.ge(1))
    max_orders_per_minute: int = setting(30, "New orders per rolling minute.", checks.ge(1))
    price_band_bps: Decimal = setting(Decimal(500), "Limit price within this many bps of the "
                                      "reference price.", checks.gt(0))
    max_position_notional: Decimal = setting(Decimal(100), "Largest position per symbol "
                                             "(quote currency at the reference price).",
                                             checks.gt(0))

    @property
    def window(self) -> TradeWindow:
        return TradeWindow.parse(self.trade_window)


@attrs.frozen
class LiveConfig:
    policy: str = setting("dry_run", "dry_run, confirm_required or auto (LIVE_POLICY).",
                          checks.one_of(LIVE_POLICIES))
    execute: bool = setting(False, "Arm sending to a non-sim venue (EXECUTE=true).")
    confirm_timeout_s: float = setting(60.0, "How long a parked order waits for a confirm.",
                                       checks.gt(0))
    on_shutdown: str = setting("leave", "Open orders at shutdown: leave or cancel.",
                               checks.one_of(("leave", "cancel")))
    client_id_prefix: str = setting("spk", "Prefix of every clientOrderId this runtime makes.",
                                    checks.client_id_prefix)


@attrs.frozen
class CircuitBreakerConfig:
    dry_run: bool = setting(False, "Record trips without blocking orders.")
    window_s: float = setting(60.0, "Sliding window of call outcomes.", checks.gt(0))
    min_calls: int = setting(5, "Calls in the window before rates count.", checks.ge(1))
    failure_rate_threshold: float = setting(0.5, "Failure share that trips.",
                                            checks.between(0, 1))
    slow_call_duration_s: float = setting(2.0, "A call slower than this is slow.", checks.gt(0))
    slow_call_rate_threshold: float = setting(0.8, "Slow share that trips.", checks.between(0, 1))
    open_cooldown_s: float = setting(30.0, "Time open before half-open probing.", checks.gt(0))
    half_open_probes: int = setting(3, "Probe calls allowed in half-open.", checks.ge(1))


@attrs.frozen
class DriftGateConfig:
    enabled: bool = setting(True, "Compare live fills with a paper shadow.")
    max_drift_bps: Decimal = setting(Decimal(50), "Fill price drift that closes the gate.",
                                     checks.gt(0))
    max_pnl_delta: Decimal = setting(Decimal(5), "Paper-live PnL gap (quote) that closes it.",
                                     checks.gt(0))
    recovery_observations: int = setting(5, "Healthy fills in a row that reopen it.",
                                         checks.ge(1))
    paper_slippage_bps: Decimal = setting(Decimal(0), "Slippage assumed by the paper fill.",
                                          checks.ge(0))


@attrs.frozen
class ListenKeyConfig:
    keepalive_interval_s: float = setting(1800.0, "Futures listenKey PUT interval (< 60 min).",
                                          checks.between(60, 3300))
    spot_rotate_after_s: float = setting(82800.0, "Rotate the spot WS-API connection after "
                                         "(< 24 h).", checks.between(600, 86000))
    retry_initial_s: float = setting(1.0, "First retry delay after a failed keepalive.",
                                     checks.gt(0))
    retry_max_s: float = setting(60.0, "Largest retry delay.", checks.gt(0))


@attrs.frozen
class WsConfig:
    stall_timeout_s: float = setting(30.0, "No frame for this long = reconnect.", checks.gt(0))
    backoff_initial_s: float = setting(0.25, "First reconnect delay.", checks.gt(0))
    backoff_max_s: float = setting(30.0, "Largest reconnect delay.", checks.gt(0))
    inbox_size: int = setting(1024, "User-data events buffered towards the router.",
                              checks.ge(1))


@attrs.frozen
class WriterConfig:
    inbox_size: int = setting(8192, "Records buffered towards the writer.", checks.ge(1))
    batch_max: int = setting(2048, "Records per transaction at most.", checks.ge(1))
    batch_max_delay_ms: float = setting(0.0, "Longest a record waits for company in its batch.",
                                        checks.ge(0))
    spool_dir: str = setting("var/spool", "Spool for records while the database is down.")
    spool_segment_max_events: int = setting(10000, "Records per spool segment file.",
                                            checks.ge(1))
    retry_initial_s: float = setting(0.5, "First database retry delay.", checks.gt(0))
    retry_max_s: float = setting(30.0, "Largest database retry delay.", checks.gt(0))
    thread_nice: int = setting(
        10, "How far below the event loop the database and export threads run (nice, 0-19; "
        "0 = the loop's own priority).", checks.between(0, 19))


@attrs.frozen
class SupervisionConfig:
    max_restarts: int = setting(5, "Restarts allowed within `within_s`, per supervisor.",
                                checks.ge(0))
    within_s: float = setting(60.0, "Window of the restart intensity.", checks.gt(0))
    backoff_initial_s: float = setting(0.1, "First restart delay.", checks.ge(0))
    backoff_max_s: float = setting(10.0, "Largest restart delay.", checks.ge(0))
    shutdown_deadline_s: float = setting(5.0, "Time an actor gets to stop.", checks.gt(0))
    stall_timeout_s: float = setting(60.0, "An actor silent this long is restarted.",
                                     checks.gt(0))


@attrs.frozen
class MetricsConfig:
    process_metrics: bool = setting(True, "Export process CPU/RSS/fd metrics.")
    loop_lag_interval_s: float = setting(0.5, "Loop-lag sampling interval.", checks.gt(0))


@attrs.frozen
class VenueSymbolConfig:
    price: Decimal = setting(Decimal(100), "Starting price.", checks.gt(0))
    tick_size: Decimal = setting(Decimal("0.01"), "PRICE_FILTER tickSize.", checks.gt(0))
    step_size: Decimal = setting(Decimal("0.00001"), "LOT_SIZE stepSize.", checks.gt(0))
    min_qty: Decimal = setting(Decimal("0.00001"), "LOT_SIZE minQty.", checks.gt(0))
    max_qty: Decimal = setting(Decimal(9000), "LOT_SIZE maxQty.", checks.gt(0))
    min_notional: Decimal = setting(Decimal(5), "NOTIONAL minNotional.", checks.ge(0))
    max_notional: Decimal = setting(Decimal(9000000), "NOTIONAL maxNotional.", checks.gt(0))
    volatility: float = setting(0.0005, "Per-step stddev of the log price.", checks.ge(0))
    drift: float = setting(0.0, "Per-step drift of the log price.")
    spread_ticks: int = setting(1, "Best ask minus best bid, in ticks.", checks.ge(1))
    depth_qty: Decimal = setting(Decimal(1), "Quantity at each book level.", checks.gt(0))
    depth_levels: int = setting(10, "Book levels on each side.", checks.ge(1))
    min_price: Decimal = setting(Decimal(0), "PRICE_FILTER minPrice (0 = one tick).", checks.ge(0))
    max_price: Decimal = setting(Decimal(1000000), "PRICE_FILTER maxPrice.", checks.gt(0))
    max_num_orders: int = setting(200, "MAX_NUM_ORDERS: open orders per symbol.", checks.ge(1))
    base_asset: str = setting("", "Base asset (empty = from the symbol, e.g. BTC).")
    quote_asset: str = setting("", "Quote asset (empty = from the symbol, e.g. USDT).")


def _default_symbols() -> dict[str, VenueSymbolConfig]:
    return {
        "BTCUSDT": VenueSymbolConfig(price=Decimal(45000), step_size=Decimal("0.00001"),
                                     min_qty=Decimal("0.00001"), depth_qty=Decimal("0.5")),
        "ETHUSDT": VenueSymbolConfig(price=Decimal(2500), step_size=Decimal("0.0001"),
                                     min_qty=Decimal("0.0001"), depth_qty=Decimal(5)),
        "BNBUSDT": VenueSymbolConfig(price=Decimal(600), step_size=Decimal("0.001"),
                                     min_qty=Decimal("0.001"), depth_qty=Decimal(20)),
    }


@attrs.frozen
class VenueChaosConfig:
    http_5xx: float = setting(0.0, "Probability of a 5xx before acting.", checks.between(0, 1))
    unknown_status: float = setting(0.0, "Probability of a 503 after placing the order.",
                                    checks.between(0, 1))
    ws_duplicate: float = setting(0.0, "Probability of sending a user-data event twice.",
                                  checks.between(0, 1))
    ws_reorder: float = setting(0.0, "Probability of swapping two user-data events.",
                                checks.between(0, 1))
    latency_ms: float = setting(0.0, "Added REST response latency.", checks.ge(0))
    rate_limit_storm_s: float = setting(0.0, "Answer 429 to everything for this long.",
                                        checks.ge(0))
    clock_skew_ms: int = setting(0, "Venue clock minus host clock.")


@attrs.frozen
class VenueConfig:
    host: str = setting("127.0.0.1", "Address of the simulated venue.")
    port: int = setting(9400, "Port of the simulated venue (0 = any free port).", checks.port)
    seed: int = setting(42, "Seed of the price paths and fault draws.")
    api_key: str = setting("sim-key", "The venue account's API key (its secret comes from "
                           "SIM_API_SECRET, default sim-secret).")
    ed25519_public_key_file: str = setting("", "PEM public key accepted for Ed25519 signing.")
    step_interval_ms: float = setting(250.0, "Wall time between price-path steps.",
                                      checks.gt(0))
    price_csv: str = setting("", "Replay prices from this CSV (symbol,time,price) instead.")
    commission_rate: Decimal = setting(Decimal("0.001"), "Commission per fill.",
                                       checks.between(0, 1))
    weight_limit_1m: int = setting(6000, "REQUEST_WEIGHT per minute.", checks.ge(1))
    order_limit_10s: int = setting(100, "ORDERS per 10 seconds.", checks.ge(1))
    order_limit_1d: int = setting(200000, "ORDERS per day.", checks.ge(1))
    ban_after_429s: int = setting(5, "429s in a minute that earn a 418 ban.", checks.ge(1))
    ban_s: float = setting(120.0, "Length of a 418 ban.", checks.gt(0))
    balances: Mapping[str, Decimal] = setting(
        {"USDT": Decimal(100000), "BTC": Decimal(10), "ETH": Decimal(100), "BNB": Decimal(1000)},
        "Starting balances of the venue account.",
    )
    symbols: Mapping[str, VenueSymbolConfig] = attrs.field(
        factory=_default_symbols,
        metadata={"doc": "Listed symbols with filters and price paths.",
                  "check": checks.symbol_keys},
    )
    chaos: VenueChaosConfig = section(VenueChaosConfig, "Injected faults.")


@attrs.frozen
class SparkConfig:
    """A validated ``spark.toml``."""

    runtime: RuntimeConfig = section(RuntimeConfig, "The process.")
    exchange: ExchangeConfig = section(ExchangeConfig, "Which venue and how to talk to it.")
    control: ControlConfig = section(ControlConfig, "The HTTP control port.")
    database: DatabaseConfig = section(DatabaseConfig, "Persistence.")
    risk: RiskConfig = section(RiskConfig, "Pre-trade limits.")
    live: LiveConfig = section(LiveConfig, "Live-order policy.")
    circuit_breaker: CircuitBreakerConfig = section(CircuitBreakerConfig, "Circuit breaker.")
    drift_gate: DriftGateConfig = section(DriftGateConfig, "Paper-vs-live drift gate.")
    listenkey: ListenKeyConfig = section(ListenKeyConfig, "User-data credential keeper.")
    ws: WsConfig = section(WsConfig, "Websocket reader.")
    writer: WriterConfig = section(WriterConfig, "Database writer.")
    supervision: SupervisionConfig = section(SupervisionConfig, "Supervision tree.")
    metrics: MetricsConfig = section(MetricsConfig, "Prometheus metrics.")
    venue: VenueConfig = section(VenueConfig, "The simulated Binance venue.")

    @property
    def reloadable(self) -> tuple[str, ...]:
        """Sections SIGHUP reloads (CONTRACT §4)."""
        return ("risk", "live", "circuit_breaker", "drift_gate")
