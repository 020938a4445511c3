"""Points from an executed notebook, by nbgrader's rules, outside the sandbox.

Nothing here runs a learner's code: it reads the notebook the grader assembled from the
kernel's replies (see :mod:`hub_ext.services.grading.autograde`), so nothing the learner's code
printed or wrote to a file is taken for a score. The rules are nbgrader's
(``utils.determine_grade``), re-implemented:

- a test cell scores 0 if it raised (an ``error`` output, or an error reply when the
  kernel's error display was suppressed: nbgrader's ``Execute`` adds that output too) or
  wrote to stderr; a numeric result (``execute_result``, ``text/plain``) between 0 and its
  points is partial credit; a non-numeric or negative result, or none, is full marks;
- a test cell that did not run (the notebook stopped before it) scores 0;
- a manually graded answer scores 0 if unchanged from the student version ("No
  response"), else waits for a teacher (``points`` None); a task always waits.

One difference, on purpose: a result above the cell's points is 0 with a message, where
nbgrader stops the whole autograde with an error.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from nbformat import NotebookNode

from .notebooks import PreparedSubmission

__all__ = ["CellRun", "TestResult", "feedback_notebook", "redactor", "score"]

#: longest message kept for one test (the error's last line)
MESSAGE_CHARS = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class CellRun:
    """What the grader saw of one code cell: whether it ran and the kernel's reply."""

    ran: bool
    status: str | None = None  # "ok" / "error" (from the execute reply)
    ename: str = ""
    evalue: str = ""


@dataclass(frozen=True)
class TestResult:
    """The outcome of one graded cell (``points`` None: a teacher grades it)."""

    grade_id: str
    cell: int  # 1-based, in the prepared notebook
    kind: str  # "tests", "manual" or "task"
    points: float | None
    max_points: float
    status: str  # passed, partial, failed, not_run, no_response, needs_manual
    message: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _last_line(text: str) -> str:
    lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def redactor(prepared: PreparedSubmission):
    """A function that removes the hidden tests' lines from a text shown to the learner.

    A learner's code that captured a hidden test as it ran could print it into an output
    or an error message; this removes every hidden line (of six or more characters) that
    appears verbatim. It cannot catch an encoded copy (see the package docstring).
    """
    hidden = sorted(
        {
            line.strip()
            for cell in prepared.source.cells.values()
            for line in cell.hidden_lines
            if len(line.strip()) >= 6
        },
        key=len,
        reverse=True,
    )

    def redact(text: str) -> str:
        for line in hidden:
            if line in text:
                text = text.replace(line, "[hidden test]")
        return text

    return redact


def _error_text(output: NotebookNode) -> str:
    """``ename: evalue`` (the last line of a multi-line value), as a traceback ends."""
    ename = str(output.get("ename") or "Error")
    evalue = _last_line(str(output.get("evalue") or ""))
    return f"{ename}: {evalue}" if evalue else ename


def _partial(output: NotebookNode, max_points: float) -> tuple[float, str]:
    """nbgrader's ``get_partial_grade``: (points, message)."""
    value = output.get("data", {}).get("text/plain")
    if isinstance(value, list):
        if len(value) > 1:
            return max_points, ""
        value = value[0] if value else ""
    try:
        grade = float(value)
    except (TypeError, ValueError):
        return max_points, ""
    if grade != grade or grade < 0:
        return max_points, ""
    if grade > max_points:
        return 0.0, f"the test's result {grade:g} is more than its {max_points:g} points"
    return grade, ""


def _grade_test(cell: NotebookNode, run: CellRun | None, max_points: float, not_run: str):
    if run is None or not run.ran:
        return 0.0, "not_run", not_run
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "error":
            return 0.0, "failed", _error_text(output)
        if kind == "stream" and output.get("name") == "stderr":
            return 0.0, "failed", "wrote to stderr: " + _last_line(output.get("text", ""))
        if kind == "execute_result":
            points, message = _partial(output, max_points)
            if message:
                return points, "failed", message
            status = "passed" if points == max_points else "partial"
            return points, status, "" if status == "passed" else f"{points:g} of {max_points:g}"
    if run.status == "error":
        return 0.0, "failed", _error_text({"ename": run.ename, "evalue": run.evalue})
    return max_points, "passed", ""


def score(
    prepared: PreparedSubmission,
    executed: NotebookNode,
    runs: dict[int, CellRun],
    *,
    not_run: str = "not run",
) -> list[TestResult]:
    """The result of every graded cell of ``executed`` (the prepared notebook, run).

    ``runs[i]`` is what the grader saw of cell ``i`` (absent: it never ran); ``not_run``
    is the message of the tests that did not run (why the notebook stopped).
    """
    redact = redactor(prepared)
    results = []
    for i, graded in prepared.graded_cells():
        cell = executed.cells[i]
        if graded.kind == "tests":
            points, status, message = _grade_test(cell, runs.get(i), graded.points, not_run)
        elif graded.kind == "manual":
            if cell.source == graded.student_source:
                points, status, message = 0.0, "no_response", "No response."
            else:
                points, status, message = None, "needs_manual", "graded by a teacher"
        elif graded.kind == "task":
            points, status, message = None, "needs_manual", "graded by a teacher"
        else:
            continue
        results.append(
            TestResult(
                grade_id=graded.grade_id,
                cell=i + 1,
                kind=graded.kind,
                points=points,
                max_points=graded.points,
                status=status,
                message=_short(redact(message)),
            )
        )
    return results


def _redact_output(output: NotebookNode, redact) -> None:
    if "text" in output:
        output["text"] = redact(output["text"])
    if "traceback" in output:
        output["traceback"] = [redact(t) for t in output["traceback"]]
    if "evalue" in output:
        output["evalue"] = redact(output["evalue"])
    for mime, value in list(output.get("data", {}).items()):
        if isinstance(value, str):
            output["data"][mime] = redact(value)


def feedback_notebook(prepared: PreparedSubmission, executed: NotebookNode) -> NotebookNode:
    """The executed notebook as the learner may see it: test cells as the student version
    shows them (hidden tests out again), hidden lines redacted from every output."""
    out = copy.deepcopy(executed)
    redact = redactor(prepared)
    for i, gid in enumerate(prepared.cells):
        cell = out.cells[i]
        if gid is not None and prepared.source.cells[gid].locked:
            cell.source = prepared.source.cells[gid].student_source
        for output in cell.get("outputs", []):
            _redact_output(output, redact)
    return out
