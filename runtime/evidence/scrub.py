"""Scrubbing secrets out of everything an evidence package contains.

An evidence package is made to be handed to people outside the process (reviewers, auditors, an
incident channel), so it must never carry a credential — even when a careless caller passes one
in: a token copied into an audit detail, a database URL with its password in a health document,
an API secret pasted into a metrics HELP text.  :class:`Scrubber` is applied to every text before
it is written, in addition to (never instead of) the runtime keeping secrets out of those
sources in the first place.

It builds on :class:`spark.runtime.logs.Redactor` (the log filter's rules: the known secret values,
``Bearer …``, ``signature=…``, ``api_secret=…``, ``password=…``, PostgreSQL URL passwords) and
adds what a file can hold that a log line rarely does: passwords in URLs of any scheme, PEM
private-key blocks, listenKeys, API keys and the URL-/JSON-escaped forms of the known values.
Structured data (:meth:`Scrubber.scrub_json`) is scrubbed by key as well as by value, so
``{"api_secret": 12345678}`` loses its value even though a number does not look like a secret.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from spark.core.secret import Secret
from spark.runtime.logs import REDACTED, Redactor

__all__ = ["REDACTED", "SECRET_KEY", "Scrubber", "is_secret_key"]

# Key names whose values are secret whatever they look like.  Wider than the config loader's
# list on purpose: a false positive costs one readable value in a package, a false negative
# leaks a credential.  ``api_key`` is here although a Binance API key is an identifier rather
# than a secret, because together with a leaked secret it is the account, and a package is
# shared.
SECRET_KEY = re.compile(
    r"(?i)(secret|token|passw(or)?d|passphrase|private[_-]?key|api[_-]?key|apikey|"
    r"listen[_-]?key|authorization|credential|signature|cookie)"
)

# Shapes the log redactor does not know (it already handles Bearer, signature=, api_secret=,
# secret=, password=, token= and PostgreSQL URLs).
_EXTRA_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in a URL of any scheme (mysql, redis, amqp, https, …).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@\s/?#]+(@)"), rf"\1{REDACTED}\2"),
    # A whole PEM private key (an Ed25519 key file's contents pasted somewhere).
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
                re.DOTALL), REDACTED),
    # key=value / "key": "value" for the keys the log redactor does not cover.
    (re.compile(r"(?i)((?:private[_-]?key|api[_-]?key|apikey|x-mbx-apikey|listen[_-]?key|"
                r"passphrase|authorization|cookie)[\"']?\s*[=:]\s*[\"']?)"
                r"(?!\*\*\*)(?:bearer\s+)?[^\s&\"',;}]+"),
     rf"\1{REDACTED}"),
)


_PERCENT = re.compile(r"%[0-9A-F]{2}")
_LISTEN_KEY = re.compile(r"(?i)listen[_-]?key")


def is_secret_key(key: str) -> bool:
    """True when a mapping key names something whose value must not be written out."""
    return SECRET_KEY.search(key) is not None


class Scrubber:
    """Replaces known secret values and credential-shaped text with ``***``.

    ``known_secrets`` are the values the caller knows (control tokens, API secret, database
    password); each is also removed in its URL-encoded and JSON-escaped spelling, since that is
    how a value copied into a URL or a JSON document reads.  :attr:`redactions` counts what was
    replaced, so the package's INDEX can say that its inputs contained secrets (which is a bug
    worth chasing in whatever produced them).
    """

    def __init__(self, known_secrets: Iterable[str | Secret] = ()) -> None:
        values = {s.reveal() if isinstance(s, Secret) else s for s in known_secrets}
        spellings: set[str] = set()
        for value in filter(None, values):
            encoded = (quote(value, safe=""), quote_plus(value))
            spellings.update((value, json.dumps(value)[1:-1], *encoded))
            spellings.update(_PERCENT.sub(lambda m: m.group(0).lower(), e) for e in encoded)
        self._spellings = frozenset(spellings)
        self._redactor = Redactor(spellings)
        self.redactions = 0

    def fork(self) -> Scrubber:
        """A scrubber for the same secrets with its own :attr:`redactions` count."""
        twin = Scrubber()
        twin._spellings = self._spellings
        twin._redactor = Redactor(self._spellings)
        return twin

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced; idempotent (scrubbing twice changes nothing)."""
        out = self._redactor(text)
        for pattern, replacement in _EXTRA_PATTERNS:
            out = pattern.sub(replacement, out)
        if out != text:
            self.redactions += max(1, out.count(REDACTED) - text.count(REDACTED))
        return out

    def scrub_json(self, value: Any) -> Any:
        """A JSON-ready copy of ``value``: strings scrubbed, keys scrubbed, the values under
        secret-looking keys replaced whole, and what JSON cannot hold (NaN, Decimal, datetime,
        tuples, other objects) turned into plain JSON types."""
        return self.scrub_tree(value, json_safe=True)

    def scrub_tree(self, value: Any, *, json_safe: bool = False, _secret: bool = False) -> Any:
        """A scrubbed copy of nested mappings and lists (see :meth:`scrub_json`).

        Structure is kept: a table under a secret-looking key (``tokens = {admin = "…"}``) keeps
        its keys, and every value inside it becomes ``***``.  The one exception is a table
        named like a listenKey (the ``[listenkey]`` config section holds intervals, not keys):
        its values are judged by their own keys.  Booleans and None are never secret.  With
        ``json_safe`` false, dates and other TOML-native values pass through unchanged.
        """
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = str(key)
                secret = _secret or (is_secret_key(name) and not (
                    _LISTEN_KEY.fullmatch(name) and isinstance(item, Mapping)))
                out[self(name)] = self.scrub_tree(item, json_safe=json_safe, _secret=secret)
            return out
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_tree(item, json_safe=json_safe, _secret=_secret) for item in value]
        if _secret:
            self.redactions += 1
            return REDACTED
        if isinstance(value, str):
            return self(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) or not json_safe else str(value)
        if not json_safe and isinstance(value, dt.datetime | dt.date | dt.time):
            return value
        return self(str(value))
