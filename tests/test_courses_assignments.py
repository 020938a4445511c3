"""Assignments in the catalog: read once, checked at load, each problem naming the course,
the assignment and its line (and, for the notebook, its cell and grade_id)."""

from __future__ import annotations

from datetime import timedelta

import nbformat
import pytest

from hub_ext.courses import Catalog, CatalogError
from tests.conftest import day, write_catalog
from tests.grading_fixtures import source_notebook, write_source


def catalog_with(tmp_path, assignments, **course):
    write_source(tmp_path)
    entry = {"id": "ds101", "title": "Data", "opens": day(-10), "closes": day(60)}
    return write_catalog(tmp_path, [{**entry, **course, "assignments": assignments}])


def problems(path) -> list[str]:
    with pytest.raises(CatalogError) as e:
        Catalog.load(path)
    return [str(p) for p in e.value.problems]


def test_an_assignment_is_read_with_its_defaults(tmp_path):
    path = catalog_with(
        tmp_path,
        [
            {"id": "week1", "notebook": "squares.ipynb", "due": day(7)},
            {
                "id": "exam",
                "title": "Final exam",
                "notebook": "squares.ipynb",
                "release": day(1),
                "due": day(2),
                "late": {"penalty_per_day": 10, "until": day(5)},
                "attempts": 1,
                "timed": "90m",
                "limits": {"cell_timeout": "30s", "timeout": "5m", "mem_limit": "512M"},
            },
        ],
    )
    course = Catalog.load(path)["ds101"]
    week1, exam = course.assignments
    assert week1.title == "week1" and week1.release_at == course.opens_at
    assert week1.late is None and week1.attempts is None and week1.timed is None
    assert week1.due_at - week1.release_at > timedelta(days=16)  # due at the end of its day
    assert exam.title == "Final exam" and exam.attempts == 1 and exam.timed == 90 * 60
    assert exam.late.penalty_per_day == pytest.approx(0.1) and exam.late.until > exam.due_at
    assert exam.limits == {"cell_timeout": 30, "timeout": 300, "mem_limit": 512 * 1024**2}
    assert course.assignment("exam") is exam and course.assignment("nope") is None
    assert exam.notebook == (tmp_path / "squares.ipynb").resolve()


def test_every_assignment_mistake_is_named_in_one_pass(tmp_path):
    broken = source_notebook()
    for cell in broken.cells:  # no cell scores anything
        cell.metadata.pop("nbgrader", None)
    nbformat.write(broken, str(tmp_path / "plain.ipynb"))
    path = catalog_with(
        tmp_path,
        [
            {"id": "gone", "notebook": "missing.ipynb", "due": day(7)},
            {"id": "plain", "notebook": "plain.ipynb", "due": day(7)},
            {"id": "back", "notebook": "squares.ipynb", "release": day(5), "due": day(3)},
            {"id": "back", "notebook": "squares.ipynb", "due": day(3)},
            {"id": "late", "notebook": "squares.ipynb", "due": day(80)},
            {
                "id": "pen",
                "notebook": "squares.ipynb",
                "due": day(3),
                "late": {"penalty_per_day": 10, "until": day(2)},
            },
            {"id": "Bad Id", "notebook": "squares.ipynb", "due": day(3)},
            {"id": "nodue", "notebook": "squares.ipynb"},
            {"id": "lim", "notebook": "squares.ipynb", "due": day(3), "limits": {"memory": "1G"}},
        ],
    )
    found = problems(path)
    text = "\n".join(found)
    expected = [
        "course 'ds101': assignments: 'gone': ",  # (the path's own message)
        "notebook: file ",
        "missing.ipynb does not exist",
        "'plain': notebook: ",
        "no graded cells",
        "'back': due (",
        "is before release (",
        "'back': duplicate assignment id (item 3 has it too)",
        "'late': due (",
        "after the course's work is reachable",
        "'pen': late.until (",
        "'Bad Id' is not valid",
        "missing required field 'due'",
        "unknown key 'memory' (did you mean 'mem_limit'?)",
    ]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert all(": line " in p for p in found), text  # each at its line


def test_the_summary_counts_assignments(tmp_path, capsys):
    from hub_ext.cli import main

    path = catalog_with(tmp_path, [{"id": "week1", "notebook": "squares.ipynb", "due": day(7)}])
    assert main(["check-catalog", str(path), "--no-kernel-check"]) == 0
    assert "1 assignment(s)" in capsys.readouterr().out
