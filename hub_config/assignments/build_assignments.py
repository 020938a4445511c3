"""Write the demo's assignment notebooks (``python hub_config/assignments/build_assignments.py``).

Each is a teacher's *source* notebook with nbgrader's cell metadata (``metadata.nbgrader``):
answer cells hold the solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION``,
test cells carry points, and ``### BEGIN HIDDEN TESTS`` marks tests learners never see.
nbgrader's own "create assignment" toolbar writes the same metadata, so a teacher can edit
these in JupyterLab with nbgrader installed, or write their own the same way.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent


def nbgrader(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def week1() -> nbformat.NotebookNode:
    """ds101, week 1: summaries of a small sample, by hand before pandas does it."""
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    nb.cells = [
        new_markdown_cell(
            "# Week 1: describing a sample\n\n"
            "The minutes ten learners spent on last week's exercises are in `minutes`. "
            "Write each function, run the tests below it, and hand the notebook in with\n\n"
            "    python -m hub_ext_assignments submit week1\n\n"
            "in a terminal of your ds101 server. Some tests are hidden: they are run when "
            "your work is graded."
        ),
        new_code_cell(
            "minutes = [12, 35, 7, 48, 22, 22, 90, 15, 31, 18]",
            metadata=nbgrader("data", locked=True),
        ),
        new_markdown_cell("**1.** `mean(xs)`: the arithmetic mean of a non-empty list."),
        new_code_cell(
            "def mean(xs):\n"
            "    ### BEGIN SOLUTION\n"
            "    return sum(xs) / len(xs)\n"
            "    ### END SOLUTION",
            metadata=nbgrader("mean", solution=True),
        ),
        new_code_cell(
            "assert mean([1, 2, 3]) == 2\n"
            "assert abs(mean(minutes) - 30.0) < 1e-9\n"
            "### BEGIN HIDDEN TESTS\n"
            "assert mean([5]) == 5\n"
            "assert abs(mean([0.1, 0.2]) - 0.15) < 1e-12\n"
            "### END HIDDEN TESTS",
            metadata=nbgrader("test_mean", grade=True, locked=True, points=2),
        ),
        new_markdown_cell(
            "**2.** `median(xs)`: the middle value (the mean of the two middle values "
            "for an even count). Do not change `xs`."
        ),
        new_code_cell(
            "def median(xs):\n"
            "    ### BEGIN SOLUTION\n"
            "    s = sorted(xs)\n"
            "    n = len(s)\n"
            "    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n"
            "    ### END SOLUTION",
            metadata=nbgrader("median", solution=True),
        ),
        new_code_cell(
            "assert median([3, 1, 2]) == 2\n"
            "assert median(minutes) == 22\n"
            "### BEGIN HIDDEN TESTS\n"
            "data = [4, 1, 3, 2]\n"
            "assert median(data) == 2.5\n"
            "assert data == [4, 1, 3, 2], 'median changed its argument'\n"
            "### END HIDDEN TESTS",
            metadata=nbgrader("test_median", grade=True, locked=True, points=3),
        ),
        new_markdown_cell(
            "**3.** Mean or median: which would you report for `minutes`, and why? "
            "(graded by your teacher)"
        ),
        new_markdown_cell(
            "### BEGIN SOLUTION\nThe median: one learner's 90 minutes pulls the mean up.\n"
            "### END SOLUTION",
            metadata=nbgrader("explain", grade=True, solution=True, points=1),
        ),
    ]
    return nb


if __name__ == "__main__":
    nbformat.write(week1(), str(HERE / "week1.ipynb"))
    print(f"wrote {HERE / 'week1.ipynb'}")
