"""The ``[database]`` and ``[writer]`` settings storage reads, as small frozen value objects.

The runtime maps its config onto these (``from_config`` accepts any object with the same
attribute names, e.g. the config schema's sections), so storage does not depend on the config
package.  Defaults mirror the sample ``spark.toml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class DatabaseSettings:
    """``[database]``: where the rows go."""

    url: str = "sqlite:///var/spark.db"
    connect_timeout_s: float = attrs.field(default=5.0, validator=_positive)

    @classmethod
    def from_config(cls, section: Any) -> DatabaseSettings:
        """From any object with ``url`` and ``connect_timeout_s`` attributes."""
        return cls(url=str(section.url), connect_timeout_s=float(section.connect_timeout_s))

    def __repr__(self) -> str:  # the URL may carry a password
        from spark.storage.engine import mask_url

        return f"DatabaseSettings(url={mask_url(self.url)!r}, " \
            f"connect_timeout_s={self.connect_timeout_s!r})"


@attrs.frozen(kw_only=True)
class WriterSettings:
    """``[writer]``: batching, spool and retry policy of the writer actor."""

    inbox_size: int = attrs.field(default=8192, validator=_positive)
    batch_max: int = attrs.field(default=2048, validator=_positive)
    batch_max_delay_ms: float = attrs.field(default=0, validator=_not_negative)
    spool_dir: Path = attrs.field(default=Path("var/spool"), converter=Path)
    spool_segment_max_events: int = attrs.field(default=10_000, validator=_positive)
    retry_initial_s: float = attrs.field(default=0.5, validator=_positive)
    retry_max_s: float = attrs.field(default=30.0, validator=_positive)
    thread_nice: int = attrs.field(default=10, validator=attrs.validators.and_(
        attrs.validators.ge(0), attrs.validators.le(19)))

    @classmethod
    def from_config(cls, section: Any) -> WriterSettings:
        """From any object with the ``[writer]`` attribute names."""
        return cls(
            inbox_size=int(section.inbox_size),
            batch_max=int(section.batch_max),
            batch_max_delay_ms=float(section.batch_max_delay_ms),
            spool_dir=Path(section.spool_dir),
            spool_segment_max_events=int(section.spool_segment_max_events),
            retry_initial_s=float(section.retry_initial_s),
            retry_max_s=float(section.retry_max_s),
            thread_nice=int(section.thread_nice),
        )
