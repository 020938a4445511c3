"""What a submission is, in every figure that counts or scores them (issue #12's review
finding): one per learner and assessment, the latest ``completed`` statement, scored by the
latest ``scored`` one, else by its own score.

The store holds what the hub's grading really publishes (:func:`run_statements`: a
``completed`` and a ``scored`` statement per graded run, a ``scored`` again per manual grade,
one run per hand-in) beside OULAD-shaped submissions (one ``completed`` with its score) and
a statement about an assessment that is no hand-in (a learner viewing it). The expected
figures are computed in the test, with pandas, from the statements as stored (not through
:mod:`~hub_ext.services.events.queries`), and the obvious ones are also written out.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from hub_ext.courses import Assignment
from hub_ext.services.events import queries as q
from hub_ext.services.events.models import Assessment, Enrolment, Statement
from hub_ext.services.events.store import EventStore
from hub_ext.services.events.xapi import course_iri, to_row
from hub_ext.services.grading.statements import (
    COMPLETED,
    SCORED,
    assessment_rows,
    assignment_iri,
    run_statements,
)

COURSE = "ds101"
HOME = "https://hub.example.org"
DUE = datetime(2026, 10, 10, 23, 59, tzinfo=UTC)
A1, A2 = assignment_iri(COURSE, "a1"), assignment_iri(COURSE, "a2")


def _run(learner, assignment, *, points, submitted, finished, attempt=1, run=1, revision=0,
         manual_at=None, sub=None):  # fmt: skip
    """A done run as :meth:`GradingStore.unpublished` gives it (the columns run_statements reads)."""
    return {
        "id": sub or f"{learner}-{assignment}-{attempt}",
        "course_id": COURSE,
        "learner": learner,
        "assignment_id": assignment,
        "attempt": attempt,
        "submitted_at": submitted,
        "late_days": max(0, (submitted.date() - DUE.date()).days),
        "penalty": 0,
        "run_run": run,
        "run_status": "graded",
        "run_score": points,
        "run_final_score": points,
        "run_max_score": 10,
        "run_result": {"seconds": 2.5},
        "run_finished_at": finished,
        "manual_revision": revision,
        "manual_at": manual_at,
    }


def _oulad_submission(learner, assessment, *, at, score):
    statement = {
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": learner}},
        "verb": {"id": COMPLETED, "display": {"en-US": "completed"}},
        "object": {"objectType": "Activity", "id": assessment},
        "result": {"score": {"raw": score}},
        "context": {"contextActivities": {"grouping": [{"id": course_iri(COURSE)}]}},
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }
    return to_row(statement, stored=at, source="oulad", course_id=COURSE, learner=learner)


def _viewed(learner, assessment, *, at):
    row = _oulad_submission(learner, assessment, at=at, score=None)
    row["raw"]["verb"] = {"id": "http://id.tincanapi.com/verb/viewed"}
    row["verb"], row["score"] = "http://id.tincanapi.com/verb/viewed", None
    del row["raw"]["result"]
    return row


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('subs') / 'events.sqlite'}")
    store.create()
    opened = DUE - timedelta(days=20)
    assignments = [
        Assignment(
            id=a, title=a.upper(), notebook=Path(f"{a}.ipynb"), release_at=opened, due_at=due
        )
        for a, due in (("a1", DUE), ("a2", DUE + timedelta(days=7)))
    ]
    store.insert_ignore(Assessment.__table__, assessment_rows(COURSE, assignments))
    store.upsert(
        Enrolment,
        [{"course_id": COURSE, "learner": name, "registered_at": datetime(2026, 9, 1),
          "attributes": {}} for name in ("ann", "bob", "cid", "dee")],
    )  # fmt: skip
    t = datetime(2026, 10, 5, 12, tzinfo=UTC)
    rows = []  # a list per publication (a manual grade publishes the run's `completed` again)
    # ann: graded 6/10, then a manual grade of 9/10 (a second `scored`, later)
    rows.append(run_statements(
        _run("ann", "a1", points=6, submitted=t, finished=t + timedelta(minutes=1)),
        assignment_title="A1", home=HOME,
    ))  # fmt: skip
    rows.append(run_statements(
        _run("ann", "a1", points=9, submitted=t, finished=t + timedelta(minutes=1), revision=1,
             manual_at=t + timedelta(days=2)),
        assignment_title="A1", home=HOME,
    ))  # fmt: skip
    # bob: hands in on time (5/10), then again after the due day (7/10): the latest counts
    rows.append(run_statements(
        _run("bob", "a1", points=5, submitted=t, finished=t + timedelta(minutes=1)),
        assignment_title="A1", home=HOME,
    ))  # fmt: skip
    late = DUE + timedelta(days=1)
    rows.append(run_statements(
        _run("bob", "a1", points=7, submitted=late, finished=late + timedelta(minutes=1),
             attempt=2),
        assignment_title="A1", home=HOME,
    ))  # fmt: skip
    # cid: only looked at a1 (no hand-in); dee: an OULAD-shaped submission of a1 (score 40)
    rows.append([_viewed("cid", A1, at=t)])
    rows.append([_oulad_submission("dee", A1, at=t + timedelta(hours=3), score=40)])
    # ann hands in a2 too, graded 10/10
    rows.append(run_statements(
        _run("ann", "a2", points=10, submitted=t + timedelta(days=6),
             finished=t + timedelta(days=6, minutes=1)),
        assignment_title="A2", home=HOME,
    ))  # fmt: skip
    for published in rows:  # as the grading queue publishes (a statement stored once)
        store.insert_ignore(Statement.__table__, published)
    yield store
    store.dispose()


def _expected(store) -> pd.DataFrame:
    """(assessment, learner) -> handed in at, score: from the stored statements, in pandas."""
    with store.engine.connect() as conn:
        df = pd.read_sql(
            "SELECT pk, object_id, learner, verb, timestamp, score FROM statements", conn
        )
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df = df.sort_values(["timestamp", "pk"])
    handed = df[df.verb == COMPLETED].groupby(["object_id", "learner"]).last()
    graded = df[df.verb == SCORED].groupby(["object_id", "learner"]).last()
    out = handed[["timestamp"]].copy()
    out["score"] = handed["score"]
    has = out.index.isin(graded.index)
    out.loc[has, "score"] = graded.loc[out.index[has], "score"].to_numpy()
    return out


def test_assessment_scores_count_one_submission_per_learner(store):
    """Before: a1 had 8 "submissions" (every statement about it: a hub run is two, a
    manual grade one more, a view one) for 3 learners who handed it in."""
    expected = _expected(store)
    got = {a["assessment"]: a for a in q.assessment_scores(store.engine, COURSE)["assessments"]}
    a1 = got[A1]
    e1 = expected.loc[A1]
    assert a1["submitted"] == len(e1) == 3  # ann, bob (once), dee; not cid's view
    assert a1["missing"] == 4 - 3  # cid
    assert a1["late"] == int((e1.timestamp.dt.date > DUE.date()).sum()) == 1  # bob's latest
    scores = sorted(e1.score.tolist())
    assert scores == [40.0, 70.0, 90.0]  # dee's own, bob's latest run, ann's manual grade
    assert a1["scored"] == 3
    assert a1["mean"] == round(statistics.fmean(scores), 2)
    assert a1["median"] == statistics.median(scores)
    assert [b["count"] for b in a1["histogram"]] == [0, 0, 0, 0, 1, 0, 0, 1, 0, 1]
    assert got[A2]["submitted"] == 1 and got[A2]["mean"] == 100.0


def test_learner_profile_takes_the_latest_hand_in_and_grade(store):
    expected = _expected(store)
    for learner, score, status in (("ann", 90.0, "on time"), ("bob", 70.0, "late")):
        profile = q.learner_profile(store.engine, COURSE, learner)
        row = next(a for a in profile["assessments"] if a["assessment"] == A1)
        assert row["score"] == expected.loc[(A1, learner), "score"] == score
        assert row["status"] == status
        assert row["submitted"] == expected.loc[(A1, learner), "timestamp"].to_pydatetime()
    ann = q.learner_profile(store.engine, COURSE, "ann")
    assert ann["activity"]["submissions"] == 2  # a1 and a2, not five statements
    cid = q.learner_profile(store.engine, COURSE, "cid")
    assert [a["status"] for a in cid["assessments"]] == ["missing", "missing"]


def test_summary_counts_hand_ins_not_statements(store):
    expected = _expected(store)
    summary = q.summary(store.engine, COURSE)
    assert summary["submissions"] == len(expected) == 4  # ann a1, ann a2, bob a1, dee a1
    assert summary["events"] == 11  # every statement is still an event
