"""An nbgrader-style assignment and submissions to it, built in code (no fixture files).

The assignment has every kind of nbgrader cell: a read-only setup cell defining a check
function, two autograded answers, test cells (one with hidden tests, one using the check
function, one giving partial credit) and a manually graded markdown answer. A submission is
the student version with answers put in, as a learner would hand it in.
"""

from __future__ import annotations

import copy

import nbformat

from hub_ext.services.grading.notebooks import load_source, student_version

#: in the hidden tests only: it must never reach the learner's code before they run,
#: nor the learner's feedback
HIDDEN_MARKER = "HIDDEN-MARKER-7f3a91"

SETUP = """import math

def check_close(got, want):
    assert math.isclose(got, want), f"{got!r} is not {want!r}"
"""
SQUARES = '''def squares(n):
    """The first n squares, from 1."""
    ### BEGIN SOLUTION
    return [i * i for i in range(1, n + 1)]
    ### END SOLUTION
'''
TEST_SQUARES = f'''assert squares(1) == [1]
assert squares(3) == [1, 4, 9]
### BEGIN HIDDEN TESTS
assert squares(0) == [], "{HIDDEN_MARKER}"
assert squares(10)[-1] == 100
### END HIDDEN TESTS
'''
MEAN = """def mean(xs):
    ### BEGIN SOLUTION
    return sum(xs) / len(xs)
    ### END SOLUTION
"""
TEST_MEAN = "check_close(mean([1, 2, 3]), 2)\n"
TEST_MEAN_PARTIAL = """credit = 0
if mean([2, 4]) == 3:
    credit += 1
if mean([5]) == 5:
    credit += 1
credit
"""
EXPLAIN = "### BEGIN SOLUTION\nThe mean is the sum over the count.\n### END SOLUTION"

ANSWERS = {
    "correct": {
        "squares": "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n",
        "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n",
    },
    "wrong": {
        "squares": "def squares(n):\n    return [i * i for i in range(n)]\n",
        "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n",
    },
    "partial": {
        "squares": "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n",
        "mean": "def mean(xs):\n    return xs[-1]\n",
    },
    "stderr": {
        "squares": (
            "import sys\n\ndef squares(n):\n    print('computing', file=sys.stderr)\n"
            "    return [i * i for i in range(1, n + 1)]\n"
        ),
        "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n",
    },
    "unanswered": {},
}
#: the autograded points of each submission above, per grade_id (nbgrader's rules)
EXPECTED = {
    "correct": {"test_squares": 2, "test_mean": 1, "test_mean_partial": 2, "explain": 0},
    "wrong": {"test_squares": 0, "test_mean": 1, "test_mean_partial": 2, "explain": 0},
    "partial": {"test_squares": 2, "test_mean": 0, "test_mean_partial": 1, "explain": 0},
    "stderr": {"test_squares": 0, "test_mean": 1, "test_mean_partial": 2, "explain": 0},
    "unanswered": {"test_squares": 0, "test_mean": 0, "test_mean_partial": 0, "explain": 0},
}
MAX_POINTS = 6


def _meta(gid, *, grade=False, solution=False, locked=False, points=None, task=False):
    meta = {
        "grade": grade,
        "grade_id": gid,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": task,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def source_notebook() -> nbformat.NotebookNode:
    v4 = nbformat.v4
    nb = v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    nb.cells = [
        v4.new_markdown_cell("# Squares and means"),
        v4.new_code_cell(SETUP, metadata=_meta("setup", locked=True)),
        v4.new_code_cell(SQUARES, metadata=_meta("squares", solution=True)),
        v4.new_code_cell(
            TEST_SQUARES, metadata=_meta("test_squares", grade=True, locked=True, points=2)
        ),
        v4.new_code_cell(MEAN, metadata=_meta("mean", solution=True)),
        v4.new_code_cell(TEST_MEAN, metadata=_meta("test_mean", grade=True, locked=True, points=1)),
        v4.new_code_cell(
            TEST_MEAN_PARTIAL,
            metadata=_meta("test_mean_partial", grade=True, locked=True, points=2),
        ),
        v4.new_markdown_cell(
            EXPLAIN, metadata=_meta("explain", grade=True, solution=True, points=1)
        ),
    ]
    return nb


def write_source(directory) -> str:
    path = directory / "squares.ipynb"
    nbformat.write(source_notebook(), str(path))
    return str(path)


def submission(student: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The student version with ``answers`` (grade_id -> source) in its answer cells."""
    nb = copy.deepcopy(student)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def with_cell(nb: nbformat.NotebookNode, after: str, code: str) -> nbformat.NotebookNode:
    """``nb`` with a learner's own code cell inserted after the cell ``after`` (a grade_id)."""
    nb = copy.deepcopy(nb)
    at = next(
        i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == after
    )
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(code))
    return nb


def assignment(tmp_path):
    """(source, student version) of the assignment, the source written under ``tmp_path``."""
    path = write_source(tmp_path)
    source = load_source(path)
    return source, student_version(source)


def correct(student) -> nbformat.NotebookNode:
    return submission(student, ANSWERS["correct"])


def fork_count(attempts: int) -> str:
    """A learner's cell that forks up to ``attempts`` sleeping children and prints how many
    it got ("forked N"): the sandbox's processes limit must stop it well before."""
    return (
        "import os, time\nforked = 0\n"
        f"for _ in range({attempts}):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
        "    forked += 1\n"
        "print('forked', forked)\n"
    )


def forked(nb) -> int:
    """The N of a :func:`fork_count` cell's output in an executed notebook."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout" and "forked " in output.get("text", ""):
                return int(output["text"].split("forked ")[1].split()[0])
    raise AssertionError("no fork count in the outputs")
