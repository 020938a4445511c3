"""A finished grading run as xAPI statements in the event store, beside the learner's activity.

Two statements per run, named as the rest of the store names things so the analytics
queries see them with no change:

- actor: the hub account (``account: {homePage: <hub URL>, name: <username>}``), as the
  hub's own server statements (:mod:`..events.hubevents`) name it;
- object: the assignment, ``urn:hub-ext:assignment:<course>:<assignment>`` (an
  ``assessment`` activity), in the course's ``grouping`` (:func:`~..events.xapi.course_iri`);
  it is also a row of the store's ``assessments`` table (:func:`assessment_rows`, with its
  due date), which is what the assessment queries list;
- ``completed`` at the moment of submission and ``scored`` at the end of grading, each
  with the result: ``score`` (``raw`` as a percentage 0..100, ``min`` 0, ``max`` 100,
  ``scaled`` 0..1: the scale the store's ``score`` column and its queries read, as OULAD's
  scores are), ``completion``, ``duration`` (how long the grading took) and extensions with
  the points themselves, the attempt, the run and the grading's status.

A teacher's manual grade changes a run's final score: the run is published again, with a
new ``scored`` statement at the moment of the grade (the ``manual_revision`` extension
says which; the ``completed`` one is the same as before). A learner's score for an
assignment is the latest ``scored`` statement's.

Ids are UUIDv5s of (submission, run, verb, manual revision): a run published twice (the
service died between writing the statements and recording that it did) is stored once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ...courses import Assignment
from ..events.xapi import course_iri, to_row

__all__ = ["COMPLETED", "SCORED", "SOURCE", "assessment_rows", "assignment_iri", "run_statements"]

SCORED = "http://adlnet.gov/expapi/verbs/scored"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
ASSESSMENT = "http://adlnet.gov/expapi/activities/assessment"
#: the ``source`` of the statements (the store tells senders apart by it)
SOURCE = "grading"
NAMESPACE = uuid.UUID("5d2f0c1e-95a4-4a7e-8f0b-2f6f3e8f6a21")
EXTENSION = "urn:hub-ext:grading:"


def assignment_iri(course_id: str, assignment_id: str) -> str:
    return f"urn:hub-ext:assignment:{course_id}:{assignment_id}"


def _duration(seconds: float) -> str:
    return f"PT{max(seconds, 0):.2f}S"


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def assessment_rows(course_id: str, assignments: list[Assignment]) -> list[dict]:
    """The store's ``assessments`` rows of a course's assignments."""
    return [
        {
            "course_id": course_id,
            "assessment_id": assignment_iri(course_id, a.id),
            "type": "assignment",
            "due_at": a.due_at.astimezone(UTC).replace(tzinfo=None),
        }
        for a in assignments
    ]


def run_statements(done: dict, *, assignment_title: str, home: str) -> list[dict]:
    """The ``statements`` rows of one done run (``done``: a row of
    :meth:`~.store.GradingStore.unpublished`: the submission's columns, the run's as ``run_*``)."""
    course, learner = done["course_id"], done["learner"]
    final, max_points = done["run_final_score"], done["run_max_score"]
    seconds = float((done["run_result"] or {}).get("seconds") or 0.0)
    score = {}
    if final is not None and max_points:
        scaled = max(0.0, min(1.0, final / max_points))
        score = {"raw": round(100 * scaled, 2), "min": 0, "max": 100, "scaled": round(scaled, 4)}
    result = {
        "completion": True,
        "duration": _duration(seconds),
        "extensions": {
            EXTENSION + "points": final,
            EXTENSION + "max_points": max_points,
            EXTENSION + "autograded_points": done["run_score"],
            EXTENSION + "late_days": done["late_days"],
            EXTENSION + "penalty": done["penalty"],
            EXTENSION + "status": done["run_status"],
            EXTENSION + "submission": done["id"],
            EXTENSION + "attempt": done["attempt"],
            EXTENSION + "run": done["run_run"],
        },
    }
    revision = done.get("manual_revision") or 0
    if revision:
        result["extensions"][EXTENSION + "manual_revision"] = revision
    if score:
        result["score"] = score
    rows = []
    graded_at = max(done["run_finished_at"], done["manual_at"]) if revision else None
    for verb, display, moment, key in (
        (COMPLETED, "completed", done["submitted_at"], "completed"),
        # the key of a run's first scored statement is as it was before manual revisions
        (SCORED, "scored", graded_at or done["run_finished_at"],
         f"scored|{revision}" if revision else "scored"),
    ):  # fmt: skip
        statement = {
            "id": str(uuid.uuid5(NAMESPACE, f"{done['id']}|{done['run_run']}|{key}")),
            "actor": {"objectType": "Agent", "account": {"homePage": home, "name": learner}},
            "verb": {"id": verb, "display": {"en-US": display}},
            "object": {
                "objectType": "Activity",
                "id": assignment_iri(course, done["assignment_id"]),
                "definition": {"type": ASSESSMENT, "name": {"en": assignment_title}},
            },
            "result": result,
            "context": {"contextActivities": {"grouping": [{"id": course_iri(course)}]}},
            "timestamp": _moment(moment),
        }
        rows.append(
            to_row(
                statement,
                stored=datetime.now(UTC),  # stamped again as written (add_statements)
                source=SOURCE,
                course_id=course,
                learner=learner,
                timestamp=moment,
            )
        )
    return rows
