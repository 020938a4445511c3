"""nbgrader notebooks without running anything: the source check, the student version, the
prepared submission, and the pure builders of a grading's sandbox (nothing is faked: none
of this starts a process)."""

from __future__ import annotations

import copy
import json

import nbformat
import pytest

from hub_ext.sandbox.bubblewrap import bwrap_argv, default_pids_cgroup
from hub_ext.services.grading.autograde import GradingLimits, kernel_launch
from hub_ext.services.grading.notebooks import (
    CODE_STUB,
    TEXT_STUB,
    AssignmentError,
    check_source,
    definitions,
    load_source,
    prepare_submission,
)
from tests.grading_fixtures import (
    HIDDEN_MARKER,
    MAX_POINTS,
    _meta,
    assignment,
    correct,
    source_notebook,
)

LIMITS = GradingLimits(
    cell_timeout=5,
    notebook_timeout=60,
    memory=512 * 1024**2,
    pids=64,
    cpu=1,
    output=1024**2,
    startup_timeout=30,
    interrupt_grace=3,
)


def by_id(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


# ------------------------------------------------------------------ the source check


def test_the_fixture_assignment_is_fine(tmp_path):
    assert check_source(source_notebook()) == []
    source, _ = assignment(tmp_path)
    assert source.max_points == MAX_POINTS
    assert {gid: c.kind for gid, c in source.cells.items()} == {
        "setup": "readonly",
        "squares": "answer",
        "test_squares": "tests",
        "mean": "answer",
        "test_mean": "tests",
        "test_mean_partial": "tests",
        "explain": "manual",
    }


def broken(change) -> nbformat.NotebookNode:
    nb = source_notebook()
    change(nb)
    return nb


def _set(gid, **meta):
    def change(nb):
        by_id(nb, gid).metadata.nbgrader.update(meta)

    return change


@pytest.mark.parametrize(
    ("change", "cell", "grade_id", "words"),
    [
        (
            _set("test_mean", grade_id="test_squares"),
            6,
            "test_squares",
            "duplicate grade_id (also cell 4)",
        ),
        (
            lambda nb: by_id(nb, "test_mean").metadata.nbgrader.pop("points"),
            6,
            "test_mean",
            "without points",
        ),
        (_set("test_mean", points=-1), 6, "test_mean", "0 or more"),
        (_set("test_mean", points="two"), 6, "test_mean", "must be a number"),
        (_set("setup", points=3), 2, "setup", "not graded"),
        (_set("test_mean", grade_id=""), 6, None, "without a grade_id"),
        (_set("explain", solution=False), 8, "explain", "markdown test cell"),
        (_set("test_mean", grade="yes"), 6, "test_mean", "true or false"),
        (_set("test_mean", schema_version=9), 6, "test_mean", "schema_version"),
        (_set("squares", solution=False, locked=True), 3, "squares", "solution region in a cell"),
        (_set("test_squares", grade=False), 4, "test_squares", "hidden tests in a cell"),
    ],
)
def test_each_problem_names_the_cell_and_grade_id(change, cell, grade_id, words):
    problems = check_source(broken(change), "ds101/week1.ipynb")
    assert any(
        p.cell == cell and p.grade_id == grade_id and words in p.message for p in problems
    ), [str(p) for p in problems]
    found = next(p for p in problems if words in p.message)
    assert str(found).startswith(f"ds101/week1.ipynb, cell {cell}")


def test_regions_syntax_and_no_graded_cells():
    def unclosed(nb):
        by_id(nb, "squares").source = "def squares(n):\n    ### BEGIN SOLUTION\n    return []\n"

    def syntax(nb):
        by_id(nb, "test_mean").source = "assert mean([1]) ==\n"

    for change, words in (
        (unclosed, "'BEGIN SOLUTION' without 'END SOLUTION'"),
        (syntax, "does not compile"),
    ):
        assert any(words in p.message for p in check_source(broken(change))), words

    def nothing_graded(nb):
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)
            cell.source = cell.source.replace("### BEGIN", "#").replace("### END", "#")

    (problem,) = check_source(broken(nothing_graded), "empty.ipynb")
    assert problem.cell is None and "no graded cells" in problem.message


def test_load_source_reports_every_problem_at_once(tmp_path):
    nb = broken(
        lambda nb: (_set("test_mean", points=-1)(nb), _set("explain", grade_id="setup")(nb))
    )
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(AssignmentError) as e:
        load_source(path)
    assert len(e.value.problems) == 2
    assert f"{path}, cell 6, grade_id 'test_mean'" in str(e.value)
    assert f"{path}, cell 8, grade_id 'setup': duplicate grade_id (also cell 2)" in str(e.value)
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(AssignmentError, match="junk.ipynb: not a notebook"):
        load_source(tmp_path / "junk.ipynb")


# ------------------------------------------------------------------ the student version


def test_student_version_is_what_nbgrader_releases(tmp_path):
    source, student = assignment(tmp_path)
    text = json.dumps(student)
    assert HIDDEN_MARKER not in text and "BEGIN HIDDEN" not in text
    assert "BEGIN SOLUTION" not in text and "range(1, n + 1)" not in text
    squares = by_id(student, "squares").source
    # the stub, indented as the solution region was (nbgrader's ClearSolutions)
    assert (
        squares
        == 'def squares(n):\n    """The first n squares, from 1."""\n    '
        + CODE_STUB.replace("\n", "\n    ")
        + "\n"
    )
    assert by_id(student, "explain").source == TEXT_STUB
    assert by_id(student, "test_squares").source.startswith("assert squares(1) == [1]")
    for cell in student.cells:
        assert cell.get("outputs", []) == []
        meta = cell.metadata.get("nbgrader")
        if meta and (meta["locked"] or meta["grade"] and not meta["solution"]):
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False
        if meta:
            assert len(meta["checksum"]) == 32


# ------------------------------------------------------------------ preparing a submission


def test_locked_cells_come_from_the_source_with_hidden_tests(tmp_path):
    source, student = assignment(tmp_path)
    sub = correct(student)
    by_id(sub, "test_squares").source = "pass  # tests? what tests?"
    by_id(sub, "test_squares").metadata.nbgrader["points"] = 100
    by_id(sub, "setup").source = "def check_close(got, want):\n    pass\n"
    by_id(sub, "test_mean").cell_type = "markdown"
    prepared = prepare_submission(source, sub, "alice/week1.ipynb")
    test = by_id(prepared.nb, "test_squares")
    assert HIDDEN_MARKER in test.source and "what tests" not in test.source
    assert test.metadata.nbgrader["points"] == 2
    assert "math.isclose" in by_id(prepared.nb, "setup").source
    assert by_id(prepared.nb, "test_mean").cell_type == "code"
    assert by_id(prepared.nb, "squares").source == sub.cells[2].source  # the learner's answer
    assert any("'test_squares' is locked" in n for n in prepared.notes)


def test_deleted_cells_are_put_back_and_extra_cells_stay(tmp_path):
    source, student = assignment(tmp_path)
    sub = correct(student)
    sub.cells = [
        c for c in sub.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_mean"
    ]
    mine = nbformat.v4.new_code_cell(
        "helper = 1", metadata=_meta("test_squares", grade=True, points=50)
    )
    invented = nbformat.v4.new_code_cell("x = 2", metadata=_meta("bonus", grade=True, points=50))
    sub.cells.insert(3, mine)  # a copy of a test cell's metadata, before the real one
    sub.cells.append(invented)
    prepared = prepare_submission(source, sub)
    gids = prepared.cells
    assert gids.count("test_mean") == 1 and gids.index("test_mean") == gids.index("mean") + 1
    assert gids.count("test_squares") == 1
    sources = [c.source for c in prepared.nb.cells]
    # the first cell claiming a locked grade_id runs the assignment's version; the learner's
    # invented grade_id is a plain cell, kept
    assert "helper = 1" not in sources and "x = 2" in sources
    plain = [prepared.nb.cells[i] for i, g in enumerate(gids) if g is None]
    assert all("nbgrader" not in c.metadata for c in plain)
    assert any("'test_mean' was missing" in n for n in prepared.notes)
    assert any("'bonus' is not in the assignment" in n for n in prepared.notes)
    for cell in prepared.nb.cells:
        assert cell.get("outputs", []) == []


def test_definitions_are_what_the_grader_restores():
    code = "import math\nfrom os import path\nX = [1, 2]\nY = open('f')\ndef f():\n    return 1\nclass C:\n    pass\nprint(1)\n"
    restored = definitions(code)
    assert "import math" in restored and "from os import path" in restored
    assert "X = [1, 2]" in restored and "def f" in restored
    assert "open(" not in restored and "class C" not in restored and "print" not in restored
    assert definitions("def broken(:\n") == ""


# ------------------------------------------------------------------ the sandbox to create (pure)


def test_kernel_launch_is_pure_and_locked_down(tmp_path):
    base = {"LANG": "C.UTF-8", "JUPYTERHUB_API_TOKEN": "hub-secret", "PATH": "/x", "HOME": "/root"}
    launch = kernel_launch(
        "ds101/week1/alice",
        scratch=tmp_path / "sb",
        key="kernel-key-1234",
        python="/venv/bin/python",
        limits=LIMITS,
        files=tmp_path / "files",
        base_env=base,
        labels={"course": "ds101"},
    )
    spec = launch.sandbox
    assert spec.network == "none"
    assert spec.argv[:3] == ("/venv/bin/python", "-m", "ipykernel_launcher")
    assert [(str(b.source), b.target, b.writable) for b in spec.binds] == [
        (str(tmp_path / "files"), "/srv/assignment", False)
    ]
    assert spec.env["LANG"] == "C.UTF-8" and spec.env["HOME"] == "/srv/run"
    assert "hub-secret" not in spec.env.values() and "/root" not in spec.env.values()
    assert spec.limits.memory == LIMITS.memory and spec.limits.pids == 64
    assert spec.labels == {"purpose": "grading", "course": "ds101"}
    # the kernel's sockets: the sandbox's paths inside, the host's outside; one key
    assert launch.connection_file["transport"] == "ipc"
    assert launch.connection_file["ip"] == "/srv/run/k"
    assert launch.connection["ip"] == str(tmp_path / "sb" / "k")
    assert launch.connection["key"] == launch.connection_file["key"] == "kernel-key-1234"
    for shown in (repr(launch), repr(spec), " ".join(spec.argv)):
        assert "kernel-key-1234" not in shown
    argv = bwrap_argv(spec)
    assert "--unshare-all" in argv and "--share-net" not in argv
    assert (
        argv[argv.index("--ro-bind", argv.index("--tmpfs")) :].count(str(tmp_path / "files")) == 1
    )
    with pytest.raises(ValueError, match="key"):
        kernel_launch("x", scratch=tmp_path, key="", python="p", limits=LIMITS)


def test_the_pids_cgroup_is_only_for_root(tmp_path, monkeypatch):
    v1 = tmp_path / "v1"
    (v1 / "pids").mkdir(parents=True)
    (v1 / "pids" / "cgroup.procs").write_text("")
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.subtree_control").write_text("cpu memory pids\n")
    none = tmp_path / "none"
    none.mkdir()
    (none / "cgroup.subtree_control").write_text("cpu memory\n")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_pids_cgroup(v1) == str(v1 / "pids" / "hub-ext")
    assert default_pids_cgroup(v2) == str(v2 / "hub-ext")
    assert default_pids_cgroup(none) == ""
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_pids_cgroup(v1) == ""  # as a user, RLIMIT_NPROC holds


def test_a_submission_is_not_changed_by_preparing_it(tmp_path):
    source, student = assignment(tmp_path)
    sub = correct(student)
    before = copy.deepcopy(sub)
    prepare_submission(source, sub)
    assert sub == before
