"""Our points against nbgrader's own ``nbgrader autograde``, on the same submissions.

Real parts: nbgrader 0.9.6 itself (its command line: ``generate_assignment`` and
``autograde``, with its gradebook in SQLite), our autograder in the bubblewrap sandbox.
The submissions are nbgrader's released student version with the answers filled in, so
both graders get exactly the same notebooks.

Where nbgrader comes from: it is *not* installed into the project's environment (its
wheel enables its Jupyter server and Lab extensions for every server of the environment
it is installed in, which would change the learners' servers that the hub tests start,
and it brings ``notebook`` 7 along). ``make nbgrader-ref`` installs it, without
dependencies (the environment has them all but rapidfuzz), into ``.nbgrader-ref/``; the
test puts that on nbgrader's ``PYTHONPATH`` only. Without it the test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hub_ext.services.grading.autograde import Autograder
from hub_ext.services.grading.notebooks import load_source, prepare_submission, student_version
from tests.grading_fixtures import ANSWERS, EXPECTED, submission, write_source
from tests.hubtest import REPO

pytestmark = pytest.mark.slow

NBGRADER = Path(os.environ.get("HUB_EXT_NBGRADER_REF", REPO / ".nbgrader-ref"))

GRADES = """
import json, sys
from nbgrader.api import Gradebook
out = {}
with Gradebook(sys.argv[1]) as gb:
    for student in sys.argv[2:]:
        sub = gb.find_submission_notebook("squares", "week1", student)
        out[student] = {g.name: g.auto_score for g in sub.grades}
print(json.dumps(out))
"""


def nbgrader(course: Path, *args: str) -> str:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # nbgrader runs `alembic`
        "PYTHONPATH": str(NBGRADER),
        "HOME": str(course),
        "JUPYTER_CONFIG_DIR": str(course / ".jupyter"),
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        [sys.executable, *args], cwd=course, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def nbgrader_course(tmp_path_factory):
    if not (NBGRADER / "nbgrader").is_dir():
        pytest.skip(f"nbgrader is not in {NBGRADER}: run `make nbgrader-ref` to compare with it")
    course = tmp_path_factory.mktemp("nbgrader-course")
    (course / "source" / "week1").mkdir(parents=True)
    write_source(course / "source" / "week1")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'ds101'\nc.Execute.timeout = 60\n"
    )
    nbgrader(course, "-m", "nbgrader", "generate_assignment", "week1", "--force")
    release = nbformat.read(str(course / "release" / "week1" / "squares.ipynb"), as_version=4)
    for kind, answers in ANSWERS.items():
        folder = course / "submitted" / kind / "week1"
        folder.mkdir(parents=True)
        nbformat.write(submission(release, answers), str(folder / "squares.ipynb"))
    nbgrader(course, "-m", "nbgrader", "autograde", "week1", "--create", "--force")
    grades = json.loads(
        nbgrader(course, "-c", GRADES, f"sqlite:///{course / 'gradebook.db'}", *ANSWERS)
    )
    return course, release, grades


def test_our_student_version_is_nbgrader_s(nbgrader_course):
    course, release, _ = nbgrader_course
    ours = student_version(load_source(course / "source" / "week1" / "squares.ipynb"))
    assert [c.source for c in ours.cells] == [c.source for c in release.cells]
    for mine, theirs in zip(ours.cells, release.cells, strict=True):
        mine_meta = mine.metadata.get("nbgrader", {})
        their_meta = theirs.metadata.get("nbgrader", {})
        assert mine_meta.get("checksum") == their_meta.get("checksum")
        assert {k: mine_meta.get(k) for k in ("grade", "solution", "locked", "points")} == {
            k: their_meta.get(k) for k in ("grade", "solution", "locked", "points")
        }


async def test_points_match_nbgrader_autograde(nbgrader_course, tmp_path):
    course, release, grades = nbgrader_course
    source = load_source(course / "source" / "week1" / "squares.ipynb")
    grader = Autograder(runtime_dir=str(tmp_path / "grading"), cell_timeout=30)
    for kind in ANSWERS:
        submitted = nbformat.read(
            str(course / "submitted" / kind / "week1" / "squares.ipynb"), as_version=4
        )
        result = await grader.grade(prepare_submission(source, submitted))
        assert result.status == "graded", (kind, result.message)
        ours = {t.grade_id: t.points for t in result.tests}
        assert ours == grades[kind], kind
        assert ours == EXPECTED[kind], kind
