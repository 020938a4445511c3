"""The grading service's decisions, with a clock the test holds: every refusal and every
boundary (the moment itself, one microsecond before, one after)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub_ext.courses import Assignment, LatePolicy
from hub_ext.services.grading.policy import (
    REFUSALS,
    Accepted,
    Refusal,
    fetch_refusal,
    late_penalty,
    session_end,
    submission_refusal,
)

RELEASE = datetime(2026, 10, 1, tzinfo=UTC)
DUE = datetime(2026, 10, 8, tzinfo=UTC)
UNTIL = datetime(2026, 10, 11, tzinfo=UTC)
TICK = timedelta(microseconds=1)

BASE = Assignment(
    id="week1", title="Week 1", notebook=Path("squares.ipynb"), release_at=RELEASE, due_at=DUE
)
PENALISED = replace(BASE, late=LatePolicy(penalty_per_day=0.1, until=UNTIL))


def decide(assignment=BASE, now=RELEASE, *, used=0, fetched=None):
    return submission_refusal(assignment, now, attempts_used=used, first_fetch_at=fetched)


def refused(decision, code: str) -> str:
    assert isinstance(decision, Refusal), decision
    assert decision.code == code and code in REFUSALS
    assert not decision.accepted
    return decision.message


def test_release_is_the_first_moment():
    message = refused(decide(now=RELEASE - TICK), "not_released")
    assert "Week 1 is released at 2026-10-01 00:00:00 UTC" in message
    assert decide(now=RELEASE) == Accepted(0, 0.0)
    assert fetch_refusal(BASE, RELEASE - TICK).code == "not_released"
    assert "cannot be fetched before" in fetch_refusal(BASE, RELEASE - TICK).message
    assert fetch_refusal(BASE, RELEASE) is None
    # a fetch after the due date loses nothing: allowed (the submission says no)
    assert fetch_refusal(BASE, UNTIL + timedelta(days=30)) is None


def test_due_is_exclusive_and_late_work_refused():
    assert decide(now=DUE - TICK) == Accepted(0, 0.0)
    message = refused(decide(now=DUE), "past_due")
    assert "was due at 2026-10-08 00:00:00 UTC" in message and "refused" in message


def test_a_late_policy_counts_each_day_or_part_of_one():
    assert decide(PENALISED, DUE - TICK) == Accepted(0, 0.0)
    assert decide(PENALISED, DUE) == Accepted(1, 0.1)  # the moment itself is late
    assert decide(PENALISED, DUE + timedelta(seconds=1)) == Accepted(1, 0.1)
    assert decide(PENALISED, DUE + timedelta(days=1)) == Accepted(1, 0.1)
    assert decide(PENALISED, DUE + timedelta(days=1) + TICK) == Accepted(2, 0.2)
    assert decide(PENALISED, UNTIL - TICK) == Accepted(3, pytest.approx(0.3))
    message = refused(decide(PENALISED, UNTIL), "past_late_limit")
    assert "due at 2026-10-08 00:00:00 UTC" in message
    assert "accepted until 2026-10-10 23:59:59 UTC" in message


def test_the_penalty_never_takes_more_than_every_point():
    steep = replace(BASE, late=LatePolicy(penalty_per_day=0.4, until=UNTIL))
    assert late_penalty(steep, DUE + timedelta(hours=49)) == (3, 1.0)
    assert late_penalty(steep, DUE - TICK) == (0, 0.0)


def test_attempts_count_to_the_limit():
    limited = replace(BASE, attempts=2)
    assert decide(limited, used=0) == Accepted()
    assert decide(limited, used=1) == Accepted()
    message = refused(decide(limited, used=2), "no_attempts_left")
    assert "2 of 2 used" in message
    assert decide(BASE, used=1000) == Accepted()  # None: unlimited


def test_a_timed_session_starts_at_the_first_fetch():
    timed = replace(BASE, timed=90 * 60)
    started = RELEASE + timedelta(hours=2)
    end = started + timedelta(minutes=90)
    assert session_end(timed, started) == end
    assert session_end(timed, None) is None and session_end(BASE, started) is None
    assert "fetch it first" in refused(decide(timed, started), "not_fetched")
    assert decide(timed, end - TICK, fetched=started) == Accepted()
    message = refused(decide(timed, end, fetched=started), "session_over")
    assert "started at 2026-10-01 02:00:00 UTC" in message
    assert "ended at 2026-10-01 03:30:00 UTC" in message and "90 minute(s)" in message


def test_the_window_is_checked_before_the_learners_own_state():
    timed = replace(BASE, timed=60, attempts=1)
    refused(decide(timed, RELEASE - TICK, used=5), "not_released")
    refused(decide(timed, DUE, used=5, fetched=RELEASE), "past_due")
    # session over and attempts used: the session is named (it is the later fact)
    refused(decide(timed, DUE - TICK, used=1, fetched=RELEASE), "session_over")
    refused(
        decide(timed, RELEASE + timedelta(seconds=59), used=1, fetched=RELEASE), "no_attempts_left"
    )
