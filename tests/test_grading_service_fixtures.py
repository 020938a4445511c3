"""Helpers of the grading service's tests (no tests here): a catalog with assignments of the
nbgrader-style fixture (tests/grading_fixtures.py), and submissions as bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat

from tests.conftest import write_catalog
from tests.grading_fixtures import ANSWERS, assignment, submission, with_cell, write_source


def moment(offset_days: float) -> str:
    """An ISO date-time ``offset_days`` from now (UTC), as the catalog takes it."""
    return (datetime.now(UTC) + timedelta(days=offset_days)).isoformat(timespec="seconds")


def grading_catalog(directory: Path, courses: dict[str, dict]) -> Path:
    """A catalog of ``courses`` (id -> {learners, teachers, assignments}), every assignment
    on the fixture's notebook (``squares.ipynb``) unless it names another."""
    directory.mkdir(parents=True, exist_ok=True)
    write_source(directory)
    entries = []
    for cid, spec in courses.items():
        entries.append(
            {
                "id": cid,
                "title": f"Course {cid}",
                "opens": moment(-30)[:10],
                "closes": moment(60)[:10],
                "learners": spec.get("learners", []),
                "teachers": spec.get("teachers", []),
                "assignments": [
                    {"notebook": "squares.ipynb", **a} for a in spec.get("assignments", [])
                ],
                # anything else of the course as given (e.g. its image)
                **{
                    k: v
                    for k, v in spec.items()
                    if k not in ("learners", "teachers", "assignments")
                },
            }
        )
    return write_catalog(directory, entries)


def student(directory: Path):
    """The fixture's student version (its source written under ``directory``)."""
    return assignment(directory)[1]


def body(directory: Path, kind: str = "correct", *, extra: str | None = None) -> bytes:
    """A submission of the fixture as bytes: ``kind`` one of tests.grading_fixtures.ANSWERS;
    ``extra``: a code cell of the learner's own after the 'squares' answer."""
    nb = submission(student(directory), ANSWERS[kind])
    if extra is not None:
        nb = with_cell(nb, "squares", extra)
    return nbformat.writes(nb).encode()
