"""``docs/RUNBOOK.md`` says only true things about the command line, the control port and the
alerts: every alert's ``runbook_url`` lands on a heading, every internal link resolves, every
``spark-runtime …`` command in it parses (and its command path has ``--help``), and every
control-port route it curls exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from spark.runtime.cli import build_parser, main
from spark.runtime.control.routes import ROUTES

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
ALERTS = REPO / "dashboards" / "alerts.yml"
DASHBOARDS_README = REPO / "dashboards" / "README.md"
RUNBOOK_URL = "https://github.com/spark/spark-runtime/blob/main/docs/RUNBOOK.md#"
CONTROL_BASES = ("$SPARK_CONTROL_URL", "http://127.0.0.1:4001")


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def split_markdown(text: str) -> tuple[list[str], list[str]]:
    """``(prose lines, code block lines)``; fences may be indented (inside list items)."""
    prose: list[str] = []
    code: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    assert not inside, "an unclosed code block"
    return prose, code


def headings(text: str) -> list[str]:
    prose, _ = split_markdown(text)
    return [slug(line.lstrip("#")) for line in prose if re.match(r"^#{1,6} ", line)]


def shell_commands(lines: list[str]) -> Iterator[list[str]]:
    """Each simple command of shell lines as tokens (pipes, ``&&`` and ``;`` split commands;
    redirections and comments dropped)."""
    joined = "\n".join(lines).replace("\\\n", " ")
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("|", "||", "&&", ";", "&", ";;"):
                if command:
                    yield command
                command = []
            else:
                command.append(token)


def strip_command(tokens: list[str]) -> list[str]:
    """Drop what precedes the program (``VAR=x``, ``sudo -u user``) and what follows a
    redirection."""
    out: list[str] = []
    for token in tokens:
        if token and token[0] in "<>":
            if out and out[-1].isdigit():
                out.pop()
            break
        out.append(token)
    while out:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", out[0]) or out[0] in ("exec", "time", "env"):
            out = out[1:]
        elif out[0] == "sudo":
            out = out[1:]
            while out and out[0].startswith("-"):
                out = out[2:] if out[0] in ("-u", "-g") else out[1:]
        else:
            break
    return out


def runbook_cli_commands() -> list[list[str]]:
    """The arguments of every ``spark-runtime`` command in a code block or an inline code span
    of the runbook."""
    text = RUNBOOK.read_text()
    prose, code = split_markdown(text)
    found = []
    for tokens in shell_commands(code):
        program = strip_command(tokens)
        if program and Path(program[0]).name == "spark-runtime":
            found.append(program[1:])
    for span in re.findall(r"`(spark-runtime [^`]+)`", "\n".join(prose)):
        found.append(shlex.split(span)[1:])
    return found


def runbook_curls() -> list[tuple[str, str]]:
    """``(method, path)`` of every curl to the control port in the runbook's code blocks."""
    _, code = split_markdown(RUNBOOK.read_text())
    calls = []
    for tokens in shell_commands(code):
        program = strip_command(tokens)
        if not program or program[0] != "curl":
            continue
        method = "GET"
        for flag, value in itertools.pairwise(program):
            if flag == "-X":
                method = value
        for token in program[1:]:
            for base in CONTROL_BASES:
                if token.startswith(base + "/"):
                    calls.append((method, token[len(base):].split("?", 1)[0]))
    return calls


def subcommand_path(args: list[str]) -> list[str]:
    """The leading subcommand names of ``args`` (``["ctl", "breaker"]``)."""
    parser: argparse.ArgumentParser = build_parser()
    path = []
    for token in args:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or token not in subparsers[0].choices:
            break
        parser = subparsers[0].choices[token]
        path.append(token)
    return path


# -- alerts and anchors ----------------------------------------------------------------------


def test_every_alerts_runbook_anchor_is_a_heading() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    urls = {rule["alert"]: rule["annotations"]["runbook_url"]
            for group in rules["groups"] for rule in group["rules"]}
    assert len(urls) == 16
    anchors = set(headings(RUNBOOK.read_text()))
    for alert, url in urls.items():
        assert url.startswith(RUNBOOK_URL), (alert, url)
        anchor = url[len(RUNBOOK_URL):]
        assert anchor in anchors, f"{alert}: no heading for #{anchor} in docs/RUNBOOK.md"


def test_the_dashboards_readme_anchors_are_headings_too() -> None:
    table = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \| `Spark\w+` \|",
                       DASHBOARDS_README.read_text(), flags=re.M)
    assert len(table) == 16
    found = set(headings(RUNBOOK.read_text()))
    for anchor, suggested in table:
        assert anchor in found, anchor
        assert slug(suggested) == anchor  # the README's suggested heading gives that anchor


def test_headings_are_unique_and_every_internal_link_resolves() -> None:
    text = RUNBOOK.read_text()
    found = headings(text)
    duplicates = sorted({h for h in found if found.count(h) > 1})
    assert not duplicates, f"duplicate headings get -1 anchors on GitHub: {duplicates}"
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) > 20
    assert sorted(set(links) - set(found)) == []


def test_slug_follows_github() -> None:
    assert slug("Clock drift (-1021)") == "clock-drift--1021"
    assert slug("listenKey keepalive") == "listenkey-keepalive"
    assert slug("Rate limits and bans (429 and 418)") == "rate-limits-and-bans-429-and-418"


# -- commands ------------------------------------------------------------------------------------


def test_the_extractor_finds_commands_where_a_shell_would() -> None:
    lines = ["sudo -u spark VAR=1 spark-runtime ctl status --json | jq . > out 2> err",
             "systemctl kill -s SIGUSR1 spark-runtime && /opt/x/bin/spark-runtime db upgrade",
             "curl -s -X POST \"$SPARK_CONTROL_URL/api/private/kill-switch?x=1\""]
    programs = [strip_command(c) for c in shell_commands(lines)]
    assert ["spark-runtime", "ctl", "status", "--json"] in programs
    assert ["/opt/x/bin/spark-runtime", "db", "upgrade"] in programs
    assert ["systemctl", "kill", "-s", "SIGUSR1", "spark-runtime"] in programs


def test_every_spark_runtime_command_in_the_runbook_parses() -> None:
    commands = runbook_cli_commands()
    assert len(commands) >= 30
    parser = build_parser()
    for args in commands:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                namespace = parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"spark-runtime {' '.join(args)}: exit {exc.code}: {stderr.getvalue()}")
        handler = namespace.handler
        assert not handler.__qualname__.startswith("_not_built"), args


def test_every_command_path_of_the_runbook_has_help() -> None:
    paths = {tuple(subcommand_path(args)) for args in runbook_cli_commands()}
    assert len(paths) >= 15
    for path in sorted(paths):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0
        assert out.getvalue().startswith(f"usage: spark-runtime {' '.join(path)}".rstrip())


def test_the_runbook_covers_every_top_level_command() -> None:
    used = {args[0] for args in runbook_cli_commands() if args}
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) <= used


def test_every_control_port_call_in_the_runbook_exists() -> None:
    calls = runbook_curls()
    assert len(calls) >= 8
    routes = [(spec.method, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", spec.path) + "$"))
              for spec in ROUTES]
    for method, path in calls:
        assert any(m == method and rx.match(path) for m, rx in routes), f"{method} {path}"
