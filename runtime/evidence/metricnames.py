"""Which metric names a dashboard or alert rule uses, and whether the runtime exposes them.

A dashboard panel or an alert on a misspelt metric does not fail: it shows "No data" or never
fires, which is worse.  These helpers let a test check every PromQL expression in
``dashboards/`` against what the runtime actually exposes — against a freshly built
:class:`spark.runtime.metrics.Metrics` in unit tests, and against a live scrape of the running
runtime in an end-to-end test.

The extraction is deliberately a regular expression over ``spark_…`` and ``process_…`` names
(after removing string literals, so label values cannot look like metrics), not a PromQL parser:
it only needs to find the runtime's own series, and those all carry one of the two prefixes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "dashboard_exprs",
    "exposed_names",
    "metric_names",
    "missing_names",
    "rule_exprs",
    "used_metric_names",
]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"(?<![A-Za-z0-9_:$])((?:spark|process)_[a-z0-9_]*[a-z0-9])(?![A-Za-z0-9_:(])")

# Sample names each exposition family type produces (prometheus-client's text format: a counter
# family ``x`` is exposed as ``x_total``/``x_created``, a histogram as buckets, sum and count).
_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def metric_names(expr: str) -> frozenset[str]:
    """The ``spark_*`` and ``process_*`` metric names a PromQL expression selects.

    String literals are removed first (``{reason="spark_x"}`` names a label value, not a
    metric); function names are not metrics (the lookahead skips ``name(``), and Grafana
    variables (``$spark_x``) are skipped.
    """
    return frozenset(_NAME.findall(_STRING.sub('""', expr)))


def exposed_names(exposition: str) -> frozenset[str]:
    """Every sample name a query may select from this exposition.

    Declared families count even without samples: a labelled metric (``{reason}``) that has not
    been used yet exposes only its ``# HELP``/``# TYPE`` lines, and a dashboard on it is still
    right.  A counter's bare family name is not included: Prometheus stores ``x_total``.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def missing_names(used: Iterable[str], exposition: str) -> list[str]:
    """The names in ``used`` that ``exposition`` does not provide, sorted."""
    exposed = exposed_names(exposition)
    return sorted(set(used) - exposed)


def dashboard_exprs(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, expr)`` for every PromQL expression in a Grafana dashboard's JSON model:
    panel targets (rows' collapsed panels included) and query-type template variables."""
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if isinstance(expr, str):
                yield f"panel {panel.get('id')} {panel.get('title', '')!r}", expr
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, Mapping):
            query = query.get("query")
        if isinstance(query, str):
            yield f"variable {variable.get('name')}", query


def rule_exprs(rules: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(rule name, expr)`` for every alerting and recording rule of a parsed Prometheus
    rules file (``groups: [{rules: [...]}]``)."""
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record") or "?"
            yield str(name), str(rule.get("expr", ""))


def used_metric_names(
    folder: str | Path, load_yaml: Callable[[str], Any] | None = None,
) -> dict[str, frozenset[str]]:
    """``"file: where" → metric names`` for every expression in ``folder``'s dashboards
    (``*.json``) and, given a YAML loader (``yaml.safe_load``; the runtime itself does not
    depend on PyYAML), its rule files (``*.yml`` with ``groups:``).

    For a check against a live scrape::

        used = set().union(*used_metric_names("dashboards", yaml.safe_load).values())
        assert missing_names(used, scraped_text) == []
    """
    found: dict[str, frozenset[str]] = {}
    root = Path(folder)
    for path in sorted(root.glob("*.json")):
        for where, expr in dashboard_exprs(json.loads(path.read_text())):
            found[f"{path.name}: {where}"] = metric_names(expr)
    if load_yaml is not None:
        for path in sorted(root.glob("*.yml")):
            doc = load_yaml(path.read_text())
            if isinstance(doc, Mapping) and "groups" in doc:
                for name, expr in rule_exprs(doc):
                    found[f"{path.name}: {name}"] = metric_names(expr)
    return found
