"""The ``spark-runtime`` command line (CONTRACT §2).

argparse rather than click/typer: the surface is a fixed tree of subcommands with a handful of
flags each, argparse gives ``--help`` on every level for free, and it keeps the core install free
of a dependency whose only job would be parsing.  Exit codes: 0 ok, 2 usage or config error,
1 runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from spark.config import ConfigError, load

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = "spark.toml"

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command cannot run as asked (exit 2)."""


def _not_built(what: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"spark-runtime {what}: not built yet in this release", file=sys.stderr)
        return EXIT_USAGE

    return handler


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    cfg = settings.config
    overrides = f"; env: {', '.join(settings.overridden)}" if settings.overridden else ""
    print(
        f"{args.config}: ok (exchange {cfg.exchange.mode}, database "
        f"{cfg.database.url.split(':', 1)[0]}, policy {cfg.live.policy}, "
        f"{len(cfg.risk.whitelist)} symbols{overrides})"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from spark.runtime.process import run_from_config

    return run_from_config(args.config)


def cmd_venue(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spark.venue import run_venue_cli

    venue_config = None
    if args.config is not None or Path(DEFAULT_CONFIG).exists():
        try:
            venue_config = load(args.config or DEFAULT_CONFIG).config.venue
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return EXIT_USAGE
    return run_venue_cli(args.host, args.port, args.seed, venue_config)


def _database_url(args: argparse.Namespace) -> str:
    try:
        return load(args.config).config.database.url
    except ConfigError as exc:
        raise UsageError("; ".join(str(p) for p in exc.problems)) from None


def cmd_db(args: argparse.Namespace) -> int:
    from spark.storage import commands
    from spark.storage.errors import StorageError

    url = _database_url(args)
    try:
        if args.db_what == "upgrade":
            revisions = commands.db_upgrade(url)
            print(f"database at revision {', '.join(revisions)}")
        elif args.db_what == "backup":
            commands.db_backup(url, args.file)
            print(f"backed up to {args.file}")
        else:
            commands.db_restore(url, args.file)
            print(f"restored from {args.file}")
    except StorageError as exc:
        print(f"spark-runtime db {args.db_what}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from spark.storage import commands
    from spark.storage.errors import InvalidTimeBound, StorageError
    from spark.storage.export import parse_time_bound

    url = _database_url(args)
    try:
        parse_time_bound(args.since)
        parse_time_bound(args.until)
    except InvalidTimeBound as exc:
        raise UsageError(str(exc)) from None
    try:
        if args.output == "-":
            stats = commands.export_trades(url, args.since, args.until, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as out:
                stats = commands.export_trades(url, args.since, args.until, out)
    except StorageError as exc:
        print(f"spark-runtime export trades: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"exported {stats.rows} trades", file=sys.stderr)
    return EXIT_OK


def cmd_ctl(args: argparse.Namespace) -> int:
    from spark.runtime.ctl import run_ctl

    return run_ctl(args)


def cmd_canary(args: argparse.Namespace) -> int:
    from spark.runtime.canary import canary_main

    return canary_main(args.config, symbol=args.symbol, qty=args.qty, side=args.side,
                       arm=args.arm, confirm=args.confirm, execute=args.execute,
                       out_dir=args.output)


def cmd_evidence(args: argparse.Namespace) -> int:
    if args.evidence_what == "verify":
        from spark.runtime.evidence.cli import verify_main

        return verify_main(args.directory)
    from spark.runtime.evidence.build import build_main

    return build_main(args.config, args.output)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-runtime",
        description="Spark: a hardened live trading runtime for Binance and its simulated venue.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                       help=f"config file (default: {DEFAULT_CONFIG})")

    p = add("run", "Run the supervised runtime until SIGTERM/SIGINT.", cmd_run)
    config_flag(p)

    p = add("check-config", "Validate a config file (exit 0 ok, 2 with one line per problem).",
            cmd_check_config)
    config_flag(p)

    p = add("venue", "Run the simulated Binance venue alone.", cmd_venue)
    p.add_argument("--host", default=None, help="address (default: [venue] host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: [venue] port, 9400)")
    p.add_argument("--seed", type=int, default=None, help="seed of prices and faults")
    p.add_argument("-c", "--config", default=None,
                   help="take [venue] from this file (default: spark.toml if present)")

    ctl = add("ctl", "Client for the control port (SPARK_CONTROL_URL, SPARK_CONTROL_TOKEN).",
              cmd_ctl)
    ctl.add_argument("--json", action="store_true", default=False,
                     help="print JSON for scripts")
    ctl_sub = ctl.add_subparsers(dest="ctl_command", metavar="ACTION", required=True)

    def ctl_add(name: str, help_text: str) -> argparse.ArgumentParser:
        q = ctl_sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print JSON for scripts")
        return q

    ctl_add("status", "Runtime health, trading state, breaker and kill switch.")
    q = ctl_add("order", "Place an order (market unless --limit).")
    q.add_argument("symbol")
    q.add_argument("side", choices=("BUY", "SELL"), type=str.upper)
    q.add_argument("qty")
    q.add_argument("--limit", metavar="PRICE", default=None, help="limit price")
    q.add_argument("--tif", default=None, help="timeInForce for limits (default GTC)")
    q.add_argument("--client-order-id", default=None, help="fix the clientOrderId yourself")
    q = ctl_add("orders", "List orders (open by default).")
    q.add_argument("--all", action="store_true", help="every order, not just open ones")
    q = ctl_add("confirm", "Confirm an order parked by confirm_required.")
    q.add_argument("client_order_id")
    q = ctl_add("cancel", "Cancel an order.")
    q.add_argument("client_order_id")
    q = ctl_add("kill-switch", "Engage or release the kill switch.")
    q.add_argument("state", choices=("on", "off"))
    q = ctl_add("breaker", "Force the circuit breaker open/closed or show it.")
    q.add_argument("action", choices=("open", "close", "status"))
    q = ctl_add("drift-gate", "Open or close the drift gate (close latches) or show it.")
    q.add_argument("action", choices=("open", "close", "status"))

    p = add("canary", "The Day-0 canary: one order through the whole path, then a report.",
            cmd_canary)
    config_flag(p)
    p.add_argument("--symbol", default="BTCUSDT", help="symbol (default: BTCUSDT)")
    p.add_argument("--qty", default="0.00012", help="quantity, base asset (default: 0.00012)")
    p.add_argument("--side", default="BUY", choices=("BUY", "SELL"), type=str.upper,
                   help="side of the MARKET order (default: BUY)")
    p.add_argument("--arm", action="store_true", help="1/3: allow placing a real order")
    p.add_argument("--confirm", action="store_true", help="2/3: confirm it")
    p.add_argument("--execute", action="store_true", help="3/3: send it")
    p.add_argument("-o", "--output", default="evidence",
                   help="where the evidence package goes (default: evidence/)")

    export = add("export", "Export data as CSV.", cmd_export)
    export_sub = export.add_subparsers(dest="export_what", metavar="WHAT", required=True)
    q = export_sub.add_parser("trades", help="Trades as CSV, streamed.",
                              description="Trades as CSV, streamed (constant memory).")
    config_flag(q)
    q.add_argument("--since", default=None, help="ISO 8601 time or epoch ms")
    q.add_argument("--until", default=None, help="ISO 8601 time or epoch ms")
    q.add_argument("-o", "--output", default="-", help="file (default: stdout)")

    evidence = add("evidence", "Build or verify an evidence package.", cmd_evidence)
    evidence_sub = evidence.add_subparsers(dest="evidence_what", metavar="ACTION", required=True)
    q = evidence_sub.add_parser("build", help="Build a package from the running runtime.",
                                description="Build a package from the running runtime.")
    config_flag(q)
    q.add_argument("-o", "--output", default="evidence", help="folder (default: evidence/)")
    q = evidence_sub.add_parser("verify", help="Check every hash of a package.",
                                description="Check every hash of a package.")
    q.add_argument("directory")

    db = add("db", "Database migrations, backup and restore.", cmd_db)
    db_sub = db.add_subparsers(dest="db_what", metavar="ACTION", required=True)
    q = db_sub.add_parser("upgrade", help="Apply migrations.", description="Apply migrations.")
    config_flag(q)
    q = db_sub.add_parser("backup", help="Back up to FILE.", description="Back up to FILE.")
    config_flag(q)
    q.add_argument("file")
    q = db_sub.add_parser("restore", help="Restore from FILE.",
                          description="Restore from FILE into an empty database.")
    config_flag(q)
    q.add_argument("file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"spark-runtime {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
