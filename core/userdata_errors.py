"""Errors of the user-data decision cores (listenKey schedule, ws policy, dedup, reconcile,
drift gate, conflation): one small hierarchy, each class with a stable ``reason`` code.

Why named classes: every one of these means "the actor around the core used it wrongly or fed it
inconsistent data" — a bug to surface loudly, never a venue condition to retry. Venue conditions
(a failed PUT, a dropped socket, an order the venue does not know) are *inputs* to the cores and
never raise. Messages never contain a listenKey or any other credential.
"""

from __future__ import annotations

__all__ = [
    "DedupSeedError",
    "DriftInputError",
    "InvalidScheduleConfig",
    "InvalidWsTransition",
    "ReconcileInputError",
    "ScheduleError",
    "ScheduleStopped",
    "UnexpectedResult",
    "UserDataError",
]


class UserDataError(Exception):
    """Base of everything the user-data cores raise on purpose."""

    reason: str = "user_data_error"


class ScheduleError(UserDataError):
    """The listenKey / subscription schedule was driven out of order."""

    reason = "schedule_error"


class UnexpectedResult(ScheduleError):
    """A result arrived that no issued action asked for (wrong kind, nothing in flight)."""

    reason = "unexpected_result"


class ScheduleStopped(ScheduleError):
    """An input arrived after the schedule reported :class:`~spark.core.listenkey.Stopped`."""

    reason = "schedule_stopped"


class InvalidScheduleConfig(ScheduleError, ValueError):
    """Timing parameters that cannot keep the credential alive (e.g. keepalive >= validity)."""

    reason = "invalid_schedule_config"


class InvalidWsTransition(UserDataError):
    """The websocket policy was told something impossible in its current phase."""

    reason = "invalid_ws_transition"


class DedupSeedError(UserDataError, ValueError):
    """Seed data for the deduplicator is unusable (negative trade id, bad window)."""

    reason = "dedup_seed"


class ReconcileInputError(UserDataError, ValueError):
    """Router view and venue snapshot contradict each other in a way no venue state explains
    (a query answered for a different client id, the same client id twice, ...)."""

    reason = "reconcile_input"


class DriftInputError(UserDataError, ValueError):
    """A paper shadow or a live fill with a non-positive price or quantity, or an unknown side."""

    reason = "drift_input"
