"""Autograding in the real bubblewrap sandbox, and submissions that attack it.

Real parts: bubblewrap, a real ipykernel in it, nbclient driving it from outside, the
fixture assignment of ``tests/grading_fixtures.py``. Nothing is faked. Each malicious
submission must get a clear status and message, and harm nothing: not the host (canary
files), not the grader's files, not another grading running at the same time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
from pathlib import Path

import pytest

from hub_ext.sandbox import SandboxUnavailable
from hub_ext.services.grading.autograde import STATUSES, Autograder
from hub_ext.services.grading.notebooks import prepare_submission
from tests.grading_fixtures import (
    ANSWERS,
    EXPECTED,
    HIDDEN_MARKER,
    MAX_POINTS,
    assignment,
    correct,
    fork_count,
    forked,
    submission,
    with_cell,
)

pytestmark = pytest.mark.slow

MEMORY = 512 * 1024**2
WRONG = ANSWERS["wrong"]


@pytest.fixture
def grader(tmp_path):
    g = Autograder(
        runtime_dir=str(tmp_path / "grading"),
        cell_timeout=4,
        notebook_timeout=90,
        interrupt_grace=3,
        memory_limit=MEMORY,
        pids_limit=64,
        output_limit=256 * 1024,
    )
    try:
        assert g.backend.isolates
    except SandboxUnavailable as e:
        pytest.fail(f"bubblewrap must work here (make setup installs it): {e}")
    return g


@pytest.fixture
def exercise(tmp_path):
    return assignment(tmp_path)


def points(result) -> dict:
    return {t.grade_id: t.points for t in result.tests}


def outputs_text(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


async def grade(grader, source, nb, **kwargs):
    result = await grader.grade(prepare_submission(source, nb), **kwargs)
    assert result.status in STATUSES and result.message
    return result


def no_sandbox_left(grader) -> None:
    """The grading's scratch directory, processes and pids cgroup are gone."""
    root = grader.runtime_dir
    assert os.listdir(os.path.join(root, "sb")) == []
    cgroup = getattr(grader.backend, "pids_cgroup", "")
    if cgroup and os.path.isdir(cgroup):
        mine = [d for d in os.listdir(cgroup) if d.startswith(f"{os.getpid()}-")]
        assert mine == [], mine


# ------------------------------------------------------------------ honest submissions


@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_points_follow_nbgrader_rules(grader, exercise, kind):
    source, student = exercise
    result = await grade(grader, source, submission(student, ANSWERS[kind]))
    assert result.status == "graded", result.message
    assert points(result) == EXPECTED[kind]
    assert result.total == sum(EXPECTED[kind].values()) and result.max_points == MAX_POINTS
    assert result.message == f"graded: {result.total:g} of {MAX_POINTS} points"
    no_sandbox_left(grader)


async def test_messages_say_what_failed(grader, exercise):
    source, student = exercise
    result = await grade(grader, source, submission(student, ANSWERS["partial"]))
    tests = {t.grade_id: t for t in result.tests}
    assert tests["test_mean"].status == "failed"
    assert tests["test_mean"].message == "AssertionError: 3 is not 2"
    assert tests["test_mean_partial"].status == "partial"
    assert tests["test_mean_partial"].message == "1 of 2"
    assert tests["explain"].status == "no_response"
    answered = submission(student, {**ANSWERS["correct"], "explain": "Sum over count."})
    result = await grade(grader, source, answered)
    explain = next(t for t in result.tests if t.grade_id == "explain")
    assert explain.points is None and explain.status == "needs_manual"


async def test_the_assignment_files_are_there_read_only(grader, exercise, tmp_path):
    source, student = exercise
    files = tmp_path / "files"
    files.mkdir()
    (files / "data.csv").write_text("x\n1\n2\n")
    code = (
        "print(open('data.csv').read().split())\n"
        "try:\n    open('data.csv', 'w')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    )
    result = await grade(grader, source, with_cell(correct(student), "setup", code), files=files)
    text = outputs_text(result.executed)
    assert "['x', '1', '2']" in text and "refused" in text
    assert (files / "data.csv").read_text() == "x\n1\n2\n"
    assert result.total == 5


# ------------------------------------------------------------------ resource attacks


async def test_a_fork_bomb_is_contained(grader, exercise):
    source, student = exercise
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    nb = with_cell(
        with_cell(correct(student), "test_squares", bomb), "test_squares", fork_count(1000)
    )
    result = await grade(grader, source, nb)
    assert result.status == "timed_out", result.message
    assert "cell 6" in result.message
    assert 0 < forked(result.executed) < 64  # the pids limit (the kernel's own threads count too)
    assert points(result)["test_squares"] == 2  # ran before the bomb
    no_sandbox_left(grader)


async def test_an_infinite_loop_is_interrupted_and_the_rest_runs(grader, exercise):
    source, student = exercise
    answers = {
        **ANSWERS["correct"],
        "mean": "def mean(xs):\n    return sum(xs) / len(xs)\nwhile True:\n    pass\n",
    }
    result = await grade(grader, source, submission(student, answers))
    assert result.status == "timed_out"
    assert result.message == "cell 5 ran longer than 4s and was interrupted"
    # the loop was interrupted: the tests after it ran (mean was defined before the loop)
    assert points(result) == EXPECTED["correct"]


async def test_a_loop_that_ignores_interrupts_stops_the_notebook(grader, exercise):
    source, student = exercise
    stubborn = (
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
    )
    result = await grade(grader, source, with_cell(correct(student), "test_squares", stubborn))
    assert result.status == "timed_out"
    assert "cell 5 ran longer than 4s and did not stop when interrupted" in result.message
    tests = {t.grade_id: t for t in result.tests}
    assert tests["test_squares"].points == 2
    assert tests["test_mean"].status == "not_run" and tests["test_mean"].points == 0
    assert "did not stop" in tests["test_mean"].message
    no_sandbox_left(grader)


async def test_ten_times_the_memory_limit(grader, exercise):
    source, student = exercise
    hog = f"hog = bytearray({10 * MEMORY})\n"
    result = await grade(grader, source, with_cell(correct(student), "setup", hog))
    assert result.status == "out_of_memory"
    assert result.message == "cell 3 used more than the memory limit (512 MiB)"
    assert result.total == 5  # the tests still ran


async def test_printing_a_gigabyte(grader, exercise):
    source, student = exercise
    flood = "for _ in range(1_000_000):\n    print('x' * 1000)\n"
    result = await grade(grader, source, with_cell(correct(student), "test_squares", flood))
    assert result.status == "output_too_large"
    assert result.message.startswith("cell 5 printed past the output limit (256 KiB)")
    assert len(outputs_text(result.executed)) < 2 * 256 * 1024
    assert result.seconds < 30
    assert points(result)["test_squares"] == 2 and points(result)["test_mean"] == 0
    no_sandbox_left(grader)


async def test_writing_to_the_kernel_s_own_log_does_not_fill_the_disk(grader, exercise):
    """Past the notebook's output: ipykernel forwards what is written to fd 1 and 2 as
    messages (counted against the output limit), but the kernel process keeps its own
    stdout, the run's log file, open at another fd; a submission that finds it writes
    there unseen by the grader (up to its 64 MiB file-size limit). The log of every grading
    is kept: it keeps its newest bytes (the output limit), not the 12 MiB a fd written."""
    source, student = exercise
    flood = (
        "import fcntl, os, stat\nfds = []\n"
        "for fd in range(64):\n"
        "    try:\n        st, fl = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL)\n"
        "    except OSError:\n        continue\n"
        "    if stat.S_ISREG(st.st_mode) and fl & os.O_APPEND:\n        fds.append(fd)\n"
        "chunk = b'z' * 1024**2\n"
        "for _ in range(12):\n    for fd in fds:\n        os.write(fd, chunk)\n"
        "for fd in fds:\n    os.write(fd, b'the-last-words\\n')\n"
        "print('log fds found:', len(fds))\n"
    )
    result = await grade(grader, source, with_cell(correct(student), "setup", flood))
    assert result.status == "graded", result.message
    assert result.total == 5
    found = re.search(r"log fds found: (\d+)", outputs_text(result.executed))
    assert found and int(found[1]) >= 1  # the attack found the log
    logs = list((Path(grader.runtime_dir) / "logs").iterdir())
    assert len(logs) == 1
    text = logs[0].read_bytes()
    assert len(text) < 256 * 1024 + 200, len(text)
    assert text.startswith(b"[hub-ext: ") and b"bytes of earlier output dropped" in text
    assert b"the-last-words" in text
    no_sandbox_left(grader)


async def test_one_huge_message_is_refused_before_it_is_read(grader, exercise):
    source, student = exercise
    # one print of 100 MB: a single ZeroMQ message larger than the grader accepts
    huge = "import sys\nsys.stdout.write('y' * 100_000_000)\nsys.stdout.flush()\n"
    result = await grade(grader, source, with_cell(correct(student), "test_squares", huge))
    assert result.status in ("output_too_large", "out_of_memory"), result.message
    assert len(outputs_text(result.executed)) < 2 * 256 * 1024


# ------------------------------------------------------------------ the filesystem


async def test_deleting_everything_touches_nothing_outside(grader, exercise, tmp_path):
    source, student = exercise
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    files = tmp_path / "files"
    files.mkdir()
    (files / "data.csv").write_text("x\n1\n")
    (tmp_path / "grading").mkdir(exist_ok=True)
    grader_file = tmp_path / "grading" / "keep.txt"
    grader_file.write_text("the grader's")
    wipe = (
        "import os, shutil, subprocess\n"
        "print(subprocess.run(['rm', '-rf', '--no-preserve-root', '/'], capture_output=True).returncode)\n"
        f"print(os.path.exists({str(canary)!r}))\n"
        "shutil.rmtree('/srv', ignore_errors=True)\n"
        "print(sorted(os.listdir('/srv/run')) if os.path.isdir('/srv/run') else 'gone')\n"
    )
    grader.cell_timeout = 120  # rm -rf / walks all of the (read-only) system
    result = await grade(
        grader, source, with_cell(correct(student), "test_squares", wipe), files=files
    )
    assert canary.read_text() == "still here"
    assert (files / "data.csv").read_text() == "x\n1\n"
    assert grader_file.read_text() == "the grader's"
    assert "false" in outputs_text(result.executed).lower()  # the host's canary is not even visible
    # the kernel keeps running on what it had loaded; the tests after it still count
    assert result.status == "graded" and points(result)["test_squares"] == 2
    no_sandbox_left(grader)


async def test_hidden_tests_are_not_in_the_sandbox_before_they_run(grader, exercise):
    source, student = exercise
    search = (
        "import os\nfound = []\n"
        "for root, dirs, names in os.walk('/'):\n"
        "    if root.startswith(('/proc', '/sys', '/dev', '/usr')):\n"
        "        dirs[:] = []\n        continue\n"
        "    for name in names:\n"
        "        try:\n"
        "            with open(os.path.join(root, name), 'rb') as f:\n"
        f"                if {HIDDEN_MARKER.encode()!r} in f.read(10_000_000):\n"
        "                    found.append(os.path.join(root, name))\n"
        "        except OSError:\n            pass\n"
        "print('found', found)\n"
    )
    # ... and a hook that copies each cell as it arrives, printed and raised afterwards
    spy = "seen = []\nget_ipython().events.register('pre_run_cell', lambda info: seen.append(info.raw_cell))\n"
    leak = "print('\\n'.join(seen))\nraise RuntimeError(' '.join(seen))\n"
    nb = with_cell(with_cell(correct(student), "setup", search + spy), "test_squares", leak)
    grader.cell_timeout = 120  # it reads every file it can (the interpreter's too)
    result = await grade(grader, source, nb)
    executed = outputs_text(result.executed)
    assert "found []" in executed
    assert HIDDEN_MARKER in executed  # the spy did copy the test as it ran ...
    # ... but the learner's feedback and messages do not have it
    assert HIDDEN_MARKER not in outputs_text(result.feedback)
    assert HIDDEN_MARKER not in json.dumps(result.as_dict())
    assert "BEGIN HIDDEN" not in json.dumps(result.feedback)
    assert points(result) == EXPECTED["correct"]


# ------------------------------------------------------------------ the network


async def test_no_network_connection_leaves_the_sandbox(grader, exercise):
    source, student = exercise
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        listener.settimeout(15)
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    probe = (
        "import socket\n"
        f"for host, port in (('127.0.0.1', {port}), ('1.1.1.1', 53), ('example.org', 80)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, type(e).__name__)\n"
    )
    result = await grade(grader, source, with_cell(correct(student), "setup", probe))
    listener.close()
    thread.join(timeout=20)
    text = outputs_text(result.executed)
    assert "CONNECTED" not in text and text.count("refused") == 3
    assert accepted == []
    assert result.total == 5


# ------------------------------------------------------------------ tampering with the tests


async def test_rebinding_the_check_function_and_assertion_error_does_not_pass_tests(
    grader, exercise
):
    source, student = exercise
    cheat = (
        "def check_close(got, want):\n    pass\n"
        "import builtins\n"
        "class AssertionError(Exception):\n    pass\n"
        "builtins.AssertionError = AssertionError\n"
    )
    wrong = {"squares": WRONG["squares"], "mean": "def mean(xs):\n    return 0\n"}
    result = await grade(grader, source, with_cell(submission(student, wrong), "setup", cheat))
    assert result.status == "graded"
    tests = {t.grade_id: t for t in result.tests}
    assert tests["test_mean"].points == 0, tests["test_mean"]  # the check function was put back
    assert tests["test_squares"].points == 0 and tests["test_squares"].message.startswith(
        "AssertionError"
    )


@pytest.mark.parametrize(
    "tamper",
    [
        # every later cell is emptied
        "get_ipython().input_transformers_cleanup.append(lambda lines: [])\n",
        # asserts compiled away
        "import ast\nclass NoAsserts(ast.NodeTransformer):\n    def visit_Assert(self, node):\n"
        "        return ast.Pass()\nget_ipython().ast_transformers.append(NoAsserts())\n",
        # errors swallowed and run_cell made to report success
        "ip = get_ipython()\nreal = ip.run_cell\n"
        "def run_cell(raw_cell, *a, **k):\n    return real('pass', *a, **k)\nip.run_cell = run_cell\n",
    ],
    ids=["blank-cells", "no-asserts", "fake-run-cell"],
)
async def test_changing_how_the_kernel_runs_code_is_detected(grader, exercise, tamper):
    source, student = exercise
    nb = with_cell(submission(student, WRONG), "setup", tamper)
    result = await grade(grader, source, nb)
    assert result.status == "tampered", (result.status, result.message)
    assert "before cell 5" in result.message
    assert result.total == 0


async def test_fake_results_and_overwritten_files_are_ignored(grader, exercise):
    source, student = exercise
    fake = (
        "import json, os\n"
        "fake = {'status': 'graded', 'total': 6, 'tests': [{'grade_id': 'test_squares', 'points': 2}]}\n"
        "print(json.dumps(fake))\n"
        "for name in os.listdir('/srv/run'):\n"
        "    try:\n"
        "        with open(os.path.join('/srv/run', name), 'w') as f:\n"
        "            json.dump(fake, f)\n"
        "    except OSError:\n        pass\n"
        "open('/srv/run/result.json', 'w').write(json.dumps(fake))\n"
        "open('/srv/run/executed.ipynb', 'w').write(json.dumps(fake))\n"
    )
    result = await grade(
        grader, source, with_cell(submission(student, ANSWERS["unanswered"]), "setup", fake)
    )
    assert result.status == "graded" and result.total == 0


async def test_editing_a_locked_test_cell_does_not_help(grader, exercise):
    source, student = exercise
    nb = submission(student, WRONG)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_squares":
            cell.source = "pass"
            cell.metadata["nbgrader"]["points"] = 100
    result = await grade(grader, source, nb)
    assert points(result)["test_squares"] == 0 and result.max_points == MAX_POINTS
    assert any("'test_squares' is locked" in note for note in result.notes)


async def test_a_kernel_that_kills_itself_crashed(grader, exercise):
    source, student = exercise
    nb = with_cell(
        correct(student),
        "test_squares",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    )
    result = await grade(grader, source, nb)
    assert result.status == "crashed"
    assert result.message.startswith("the kernel died while cell 5 ran")
    assert points(result)["test_squares"] == 2 and points(result)["test_mean"] == 0


# ------------------------------------------------------------------ isolation between gradings


async def test_two_gradings_at_once_do_not_affect_each_other(grader, exercise):
    source, student = exercise
    meddle = (
        "import os, glob\n"
        "print(sorted(glob.glob('/srv/**', recursive=True))[:50])\n"
        "open('/tmp/shared', 'w').write('from the first')\n"
        "while True:\n    pass\n"
    )
    # (after a pause, so the first has written its file; /tmp itself may hold the mount
    # points of a Python installed under /tmp, as in a clone there)
    check = "import os, time\ntime.sleep(1.5)\nprint('shared', os.path.exists('/tmp/shared'))\n"
    results = await asyncio.gather(
        grade(grader, source, with_cell(submission(student, WRONG), "setup", meddle)),
        grade(grader, source, with_cell(correct(student), "test_squares", check)),
    )
    first, second = results
    assert first.status == "timed_out" and points(first)["test_squares"] == 0
    assert second.status == "graded" and points(second) == EXPECTED["correct"]
    assert "shared False" in outputs_text(second.executed)  # not the first one's /tmp
    no_sandbox_left(grader)


# ------------------------------------------------------------------ no sandbox, no grading


def test_grading_is_refused_without_a_sandbox(tmp_path):
    with pytest.raises(SandboxUnavailable, match="never graded unsandboxed"):
        assert Autograder(sandbox="none").backend
    from traitlets.config import Config

    config = Config()
    config.BubblewrapSandbox.bwrap = str(tmp_path / "no-bwrap")
    with pytest.raises(SandboxUnavailable, match="bubblewrap is not installed"):
        assert Autograder(sandbox="bubblewrap", config=config).backend


async def test_nothing_of_the_grader_s_environment_reaches_the_code(grader, exercise, monkeypatch):
    source, student = exercise
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-for-grading-test")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "proxy-token-for-grading-test")
    look = (
        "import os\nprint(sorted(os.environ))\n"
        "print(open('/proc/1/environ', 'rb').read().count(b'TOKEN'))\n"
        "print('uid', os.getuid(), 'caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )
    result = await grade(grader, source, with_cell(correct(student), "setup", look))
    text = outputs_text(result.executed)
    assert "TOKEN" not in text.replace("count(b'TOKEN')", "")
    assert "token-for-grading-test" not in text
    assert "uid 1000 caps 0000000000000000" in text


async def test_the_whole_notebook_has_a_time_limit(grader, exercise):
    source, student = exercise
    grader.notebook_timeout = 6  # each cell sleeps less than the cell limit (4 s)
    slow = "import time\ntime.sleep(3)\n"
    nb = with_cell(with_cell(correct(student), "setup", slow), "squares", slow)
    nb = with_cell(nb, "test_squares", slow)
    result = await grade(grader, source, nb)
    assert result.status == "timed_out"
    assert result.message.startswith("the notebook ran longer than 6s (stopped in cell")
    assert {t.status for t in result.tests if t.grade_id in ("test_mean", "test_mean_partial")} == {
        "not_run"
    }
    no_sandbox_left(grader)


async def test_hidden_tests_never_reach_the_log_even_at_debug(grader, exercise, caplog):
    """nbclient logs every kernel message at DEBUG (the hidden tests and the learner's code
    with them): whatever the service's log level, the grader's log says none of it."""
    import logging

    source, student = exercise
    with caplog.at_level(logging.DEBUG):
        result = await grade(grader, source, correct(student))
    assert result.status == "graded"
    assert caplog.records, "nothing was logged at all: the test would prove nothing"
    assert HIDDEN_MARKER not in caplog.text
    assert ANSWERS["correct"]["squares"].splitlines()[0] not in caplog.text
    assert result.sandbox == "bubblewrap"
