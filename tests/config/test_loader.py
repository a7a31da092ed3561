from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark.config import ConfigError, SparkConfig, load, loads
from spark.config.sample import render_sample


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, env=env)
    return [str(p) for p in info.value.problems]


def test_empty_file_gives_documented_defaults() -> None:
    cfg = loads("")
    assert cfg == SparkConfig()
    assert cfg.exchange.mode == "sim"
    assert cfg.risk.max_notional == Decimal(20)
    assert cfg.risk.trade_window == "07:00-23:30"
    assert cfg.database.url == "sqlite:///var/spark.db"
    assert cfg.control.port == 4001 and cfg.venue.port == 9400


def test_root_sample_is_valid_and_documents_every_key(repo: Path) -> None:
    text = (repo / "spark.toml").read_text()
    cfg = loads(text)
    assert cfg.exchange.mode == "sim" and cfg.database.url.startswith("sqlite")
    assert text == render_sample(), "spark.toml is out of step with the schema: regenerate it"


def test_values_are_structured_exactly() -> None:
    cfg = loads(
        """
        [risk]
        max_notional = 12.5
        whitelist = ["BTCUSDT"]
        trade_window = "22:00-06:00"
        timezone = "Europe/Berlin"
        [venue.symbols.BTCUSDT]
        price = "45000.10"
        """
    )
    assert cfg.risk.max_notional == Decimal("12.5")
    assert cfg.risk.whitelist == ("BTCUSDT",)
    assert cfg.venue.symbols["BTCUSDT"].price == Decimal("45000.10")
    assert cfg.risk.window.contains_minute(23 * 60) and not cfg.risk.window.contains_minute(12 * 60)


def test_every_problem_is_reported_at_once_with_its_dotted_key() -> None:
    lines = problems_of(
        """
        [risk]
        max_notional = -5
        trade_window = "7-23"
        whitelist = ["BTCUSDT", "eth-usdt"]
        colour = "red"
        [control]
        port = "4001"
        [circuit_breaker]
        failure_rate_threshold = 1.5
        [runtime]
        allow_root = 1
        """
    )
    assert lines == [
        "runtime.allow_root: must be a boolean (true/false), got number 1",
        "control.port: must be an integer, got string '4001'",
        "risk.colour: unknown key",
        "risk.max_notional: must be > 0, got -5",
        "risk.whitelist: 'eth-usdt' is not a symbol (upper-case letters and digits, e.g. BTCUSDT)",
        "risk.trade_window: '7-23' is not HH:MM-HH:MM (e.g. 07:00-23:30)",
        "circuit_breaker.failure_rate_threshold: must be between 0 and 1, got 1.5",
    ]


def test_unknown_section_and_typo_hint() -> None:
    assert problems_of("[riskk]\n") == ["riskk: unknown key (did you mean 'risk'?)"]
    assert problems_of("[risk]\nmax_notionl = 3\n") == [
        "risk.max_notionl: unknown key (did you mean 'max_notional'?)"
    ]


def test_section_of_wrong_type() -> None:
    assert problems_of("risk = 3\n") == ["risk: must be a table, got number 3"]


@pytest.mark.parametrize(
    "window", ["24:00-01:00", "07:60-08:00", "25:00-26:00", "07:00-07:00", "0700-2330", ""]
)
def test_bad_trade_windows(window: str) -> None:
    [line] = problems_of(f'[risk]\ntrade_window = "{window}"\n')
    assert line.startswith("risk.trade_window: ")


def test_bad_timezone() -> None:
    [line] = problems_of('[risk]\ntimezone = "Mars/Olympus"\n')
    assert line.startswith("risk.timezone: unknown timezone")


@pytest.mark.parametrize(
    ("toml", "key", "where"),
    [
        ('[exchange]\napi_secret = "abc"\n', "exchange.api_secret", "BINANCE_API_SECRET"),
        ('[exchange]\napi_key = "abc"\n', "exchange.api_key", "BINANCE_API_KEY"),
        ('[control]\ntokens = "admin:x"\n', "control.tokens", "SPARK_CONTROL_TOKENS"),
        ('[venue]\nsecret = "x"\n', "venue.secret", "BINANCE_API_SECRET"),
        (
            '[database]\nurl = "postgresql+psycopg://u:hunter2@db/spark"\n',
            "database.url",
            "DATABASE_URL",
        ),
    ],
)
def test_secret_in_file_names_the_key_and_where_it_belongs(toml: str, key: str, where: str) -> None:
    lines = problems_of(toml)
    assert len(lines) == 1
    assert lines[0].startswith(f"{key}: ")
    assert where in lines[0]
    assert "abc" not in lines[0] and "hunter2" not in lines[0]


def test_env_overrides_apply_on_top_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spark.toml"
    path.write_text('[live]\npolicy = "auto"\n[exchange]\nmode = "sim"\n')
    env = {
        "SPARK_EXCHANGE_MODE": "spot-testnet",
        "DATABASE_URL": "postgresql+psycopg://spark@db/spark",
        "LIVE_POLICY": "confirm_required",
        "EXECUTE": "true",
        "SPARK_KILL_SWITCH": "1",
        "BINANCE_API_KEY": "k",
        "BINANCE_API_SECRET": "very-secret-value",
        "SPARK_CONTROL_TOKENS": "admin:aaaaaaaaaaaaaaaaaaaa,viewer:bbbbbbbbbbbbbbbbbbbb",
    }
    settings = load(path, env=env)
    cfg = settings.config
    assert cfg.exchange.mode == "spot-testnet"
    assert cfg.database.url == "postgresql+psycopg://spark@db/spark"
    assert cfg.live.policy == "confirm_required"
    assert cfg.live.execute is True
    assert cfg.runtime.kill_switch is True
    assert [t.role for t in settings.secrets.control_tokens] == ["admin", "viewer"]
    assert settings.secrets.api_secret is not None
    assert settings.secrets.api_secret.reveal() == "very-secret-value"
    assert "very-secret-value" not in repr(settings)


def test_execute_is_armed_only_by_the_word_true() -> None:
    assert loads("", env={"EXECUTE": "yes"}).live.execute is False
    assert loads("", env={"EXECUTE": "TRUE"}).live.execute is True


def test_bad_env_value_names_the_variable() -> None:
    [line] = problems_of("", env={"LIVE_POLICY": "yolo"})
    assert line == (
        "live.policy: must be one of dry_run, confirm_required, auto; got 'yolo' "
        "(set by LIVE_POLICY)"
    )


def test_bad_control_tokens_never_echo_the_token(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load(path, env={"SPARK_CONTROL_TOKENS": "root:supersecretsupersecret,admin:tinytok"})
    text = str(info.value)
    assert "supersecret" not in text and "tinytok" not in text
    assert "SPARK_CONTROL_TOKENS[0]: role 'root'" in text
    assert "SPARK_CONTROL_TOKENS[1]: token is shorter" in text


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, env={})


@given(st.integers(min_value=-(10**6), max_value=0))
def test_non_positive_notional_is_always_rejected(value: int) -> None:
    with pytest.raises(ConfigError, match=r"^risk\.max_notional: must be > 0"):
        loads(f"[risk]\nmax_notional = {value}\n")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_any_unknown_key_is_an_error(key: str) -> None:
    import attrs

    from spark.config.schema import RiskConfig

    if key in {f.name for f in attrs.fields(RiskConfig)}:
        return
    with pytest.raises(ConfigError, match=rf"^risk\.{key}: "):
        loads(f"[risk]\n{key} = 1\n")


def test_writer_thread_nice_is_a_nice_value_and_reaches_the_writer() -> None:
    from spark.storage.settings import WriterSettings

    [line] = problems_of("[writer]\nthread_nice = 25\n")
    assert line == "writer.thread_nice: must be between 0 and 19, got 25"
    config = loads("[writer]\nthread_nice = 0\n")
    assert WriterSettings.from_config(config.writer).thread_nice == 0
    assert WriterSettings.from_config(loads("").writer).thread_nice == 10
