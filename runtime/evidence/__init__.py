"""Evidence packages (CONTRACT §7) and the checks around them.

* :func:`build_package` / :func:`verify_package` — write ``evidence/<NONCE>/`` with its manifest
  and zip; recompute every hash (:mod:`.package`);
* :func:`compute_slos` — the runbook SLOs from one metrics scrape (:mod:`.slo`);
* :func:`redact_config` and :class:`Scrubber` — nothing secret reaches a package
  (:mod:`.redact`, :mod:`.scrub`);
* :mod:`.metricnames` — which metric names dashboards and alert rules use, and whether an
  exposition provides them;
* :mod:`.cli` — ``evidence verify`` and the control-port scrape that ``evidence build`` uses;
* :mod:`.build` — ``evidence build`` itself: find the runtime and its database from the config
  file, check the database, scrape, package (the canary reuses it).
"""

from spark.runtime.evidence.errors import (
    ConfigNotRedactable,
    EvidenceError,
    InvalidPackageInput,
    ScrapeError,
)
from spark.runtime.evidence.package import (
    MANIFEST,
    NONCE_RE,
    STANDARD_FILES,
    Finding,
    VerifyReport,
    build_package,
    make_nonce,
    verify_package,
    verify_zip,
)
from spark.runtime.evidence.redact import redact_config
from spark.runtime.evidence.scrub import Scrubber
from spark.runtime.evidence.slo import SloResult, SloTargets, compute_slos, histogram_quantile

__all__ = [
    "MANIFEST",
    "NONCE_RE",
    "STANDARD_FILES",
    "ConfigNotRedactable",
    "EvidenceError",
    "Finding",
    "InvalidPackageInput",
    "ScrapeError",
    "Scrubber",
    "SloResult",
    "SloTargets",
    "VerifyReport",
    "build_package",
    "compute_slos",
    "histogram_quantile",
    "make_nonce",
    "redact_config",
    "verify_package",
    "verify_zip",
]
