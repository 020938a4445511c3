"""May this learner fetch or hand in this assignment now? Pure decisions, no clock of their own.

The service asks these with its clock (``GradingService.now``) and what its store knows
(attempts used, the first fetch); tests ask them with any moment they like. Every refusal
has a machine ``code`` and a sentence that names the dates, so a learner reads why and
until when, and a client can act on the code:

================  ==========================================================================
code              when
================  ==========================================================================
not_released      before the assignment's release
past_due          at or after the due moment, and late work is refused
past_late_limit   at or after the late policy's ``until``
not_fetched       a timed assignment submitted before any fetch (the session starts there)
session_over      a timed assignment at or after ``first fetch + timed``
no_attempts_left  every allowed attempt used
================  ==========================================================================

The checks run in that order: the window first (it is the same for everyone), then the
learner's own state. Moments are half-open, as the catalog reads them: a due date of
``2026-10-01`` means "until the end of that day", so ``now == due_at`` is late. A late
submission loses ``penalty_per_day`` for each day *or part of a day* after ``due_at``
(one second late is one day late), at most all of its points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ...courses import Assignment

__all__ = [
    "REFUSALS",
    "Accepted",
    "Refusal",
    "fetch_refusal",
    "late_penalty",
    "session_end",
    "submission_refusal",
    "when",
]

#: every refusal code, and what it means (see the module docstring)
REFUSALS = {
    "not_released": "the assignment is not released yet",
    "past_due": "the due date has passed and late work is refused",
    "past_late_limit": "the last moment for late work has passed",
    "not_fetched": "a timed assignment's session starts with its first fetch",
    "session_over": "the timed session has ended",
    "no_attempts_left": "every allowed attempt is used",
}
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Refusal:
    """No: ``code`` (one of :data:`REFUSALS`) and the sentence a learner reads."""

    code: str
    message: str

    accepted = False


@dataclass(frozen=True)
class Accepted:
    """Yes: ``late_days`` (0 when on time) and the ``penalty`` (a fraction of the points)."""

    late_days: int = 0
    penalty: float = 0.0

    accepted = True


def when(moment: datetime) -> str:
    """A moment as messages show it: ``2026-10-01 23:59:59 UTC`` (one zone for everyone)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _last(moment: datetime) -> str:
    """The last second before a half-open bound: what "until" means to a reader."""
    return when(moment - timedelta(seconds=1))


def session_end(assignment: Assignment, first_fetch_at: datetime | None) -> datetime | None:
    """When a timed session that started at ``first_fetch_at`` ends (None: untimed or not started)."""
    if assignment.timed is None or first_fetch_at is None:
        return None
    return first_fetch_at + timedelta(seconds=assignment.timed)


def late_penalty(assignment: Assignment, now: datetime) -> tuple[int, float]:
    """(days late, penalty fraction) of a submission at ``now``; (0, 0.0) when on time."""
    if now < assignment.due_at:
        return 0, 0.0
    late_days = max(1, math.ceil((now - assignment.due_at) / _DAY))
    per_day = assignment.late.penalty_per_day if assignment.late else 1.0
    return late_days, min(1.0, round(late_days * per_day, 6))


def fetch_refusal(assignment: Assignment, now: datetime) -> Refusal | None:
    """Why ``assignment`` may not be fetched at ``now``, or None.

    Only before release: after the due date a learner may still fetch it to practise (and
    a timed session started then cannot be handed in, which :func:`submission_refusal`
    says), so a fetch never loses anything.
    """
    if now < assignment.release_at:
        return Refusal(
            "not_released",
            f"{assignment.title} is released at {when(assignment.release_at)}; "
            "it cannot be fetched before.",
        )
    return None


def submission_refusal(
    assignment: Assignment,
    now: datetime,
    *,
    attempts_used: int,
    first_fetch_at: datetime | None,
) -> Refusal | Accepted:
    """Whether a submission of ``assignment`` at ``now`` is taken, and how late it is.

    ``attempts_used``: the learner's submissions so far; ``first_fetch_at``: their first
    fetch (None if they never fetched).
    """
    title = assignment.title
    if now < assignment.release_at:
        return Refusal(
            "not_released",
            f"{title} is released at {when(assignment.release_at)}; it cannot be submitted before.",
        )
    due = when(assignment.due_at)
    late = assignment.late
    if now >= assignment.due_at and late is None:
        return Refusal(
            "past_due",
            f"{title} was due at {due}, and late submissions are refused (it is now {when(now)}).",
        )
    if late is not None and now >= late.until:
        return Refusal(
            "past_late_limit",
            f"{title} was due at {due}; late submissions were accepted until "
            f"{_last(late.until)} (it is now {when(now)}).",
        )
    if assignment.timed is not None:
        minutes = f"{assignment.timed / 60:g} minute(s)"
        if first_fetch_at is None:
            return Refusal(
                "not_fetched",
                f"{title} is timed ({minutes} from your first fetch): fetch it first.",
            )
        end = session_end(assignment, first_fetch_at)
        if now >= end:
            return Refusal(
                "session_over",
                f"Your timed session of {title} ({minutes}) started at {when(first_fetch_at)} "
                f"and ended at {when(end)}; it is now {when(now)}.",
            )
    if assignment.attempts is not None and attempts_used >= assignment.attempts:
        return Refusal(
            "no_attempts_left",
            f"No attempts left for {title}: {attempts_used} of {assignment.attempts} used.",
        )
    late_days, penalty = late_penalty(assignment, now)
    return Accepted(late_days, penalty)
