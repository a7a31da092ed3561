"""Evidence errors: named exceptions, each with a stable ``reason`` code.

Callers (the CLI, the canary) map these to exit codes and one-line messages; the ``reason`` lets
a script tell "the runtime was not reachable" from "the input would have leaked a secret"
without parsing prose.  Texts never carry a secret: they name files and keys, not values.
"""

from __future__ import annotations

__all__ = ["ConfigNotRedactable", "EvidenceError", "InvalidPackageInput", "ScrapeError"]


class EvidenceError(Exception):
    """Base of every error this package raises."""

    reason: str = "evidence_error"


class InvalidPackageInput(EvidenceError):
    """An input to :func:`~spark.runtime.evidence.build_package` cannot be packaged safely
    (an extra file with a path-like or reserved name, a binary file carrying a known secret)."""

    reason = "invalid_input"


class ConfigNotRedactable(EvidenceError):
    """The configuration text is not valid TOML, so it cannot be redacted with certainty and
    is refused rather than copied."""

    reason = "config_not_redactable"


class ScrapeError(EvidenceError):
    """The running runtime's control port could not be read (unreachable, refused the token,
    answered something that is not what CONTRACT §5 promises)."""

    reason = "scrape_failed"

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.what = what
