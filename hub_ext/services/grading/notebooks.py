"""nbgrader-compatible assignment notebooks: check a source, make the student version, prepare
a submission for grading.

Teachers keep writing assignments with nbgrader's "create assignment" toolbar, so the cell
metadata is nbgrader's (``metadata.nbgrader``, schema version 3): ``grade_id``, ``grade``,
``solution``, ``locked``, ``points``, ``task``, ``schema_version``. The cell kinds, as the
toolbar names them:

=========================  ======================================  ==========================
kind                       metadata                                who scores it
=========================  ======================================  ==========================
autograded answer          ``solution``                            nobody (the tests do)
autograder tests           ``grade``, ``locked``, ``points``       the autograder
manually graded answer     ``solution``, ``grade``, ``points``     a teacher (0 if unchanged)
manually graded task       ``task``, ``points`` (markdown)         a teacher
read-only                  ``locked``                              nobody
=========================  ======================================  ==========================

What is ours and not nbgrader's code: the rules are re-implemented from nbgrader's
``nbgraderformat/v3.py``, ``preprocessors/clearsolutions.py``, ``clearhiddentests.py``,
``overwritecells.py`` and ``utils.py`` (``is_locked``, ``compute_checksum``), so the student
version and the prepared submission are what nbgrader makes of the same notebook. The
differences, each on purpose:

- :func:`check_source` reports *every* problem at once, each naming the file, the cell
  (1-based, as Jupyter shows them) and its ``grade_id``, where nbgrader stops at the first;
- :func:`prepare_submission` always puts back the source's graded and locked cells that a
  learner deleted (nbgrader only with ``add_missing_cells``), drops the metadata of cells
  whose ``grade_id`` the source does not know or that repeat one (nbgrader keeps the first
  too), and takes each cell's kind, points and type from the source, never from the
  submission. A learner's own extra cells stay where they are, as in nbgrader.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = [
    "CODE_STUB",
    "TEXT_STUB",
    "AssignmentError",
    "GradedCell",
    "PreparedSubmission",
    "Problem",
    "Source",
    "check_source",
    "definitions",
    "load_source",
    "prepare_submission",
    "read_notebook",
    "student_version",
]

#: what nbgrader's ClearSolutions puts in place of a solution (code cells, Python; markdown)
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
SCHEMA_VERSION = 3
_FLAGS = ("grade", "solution", "locked", "task")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a notebook: where (file, cell, grade_id) and what."""

    path: str
    cell: int | None  # 1-based, as Jupyter numbers them; None for the whole notebook
    grade_id: str | None
    message: str

    def __str__(self) -> str:
        where = [self.path]
        if self.cell is not None:
            where.append(f"cell {self.cell}")
        if self.grade_id:
            where.append(f"grade_id {self.grade_id!r}")
        return f"{', '.join(where)}: {self.message}"


class AssignmentError(ValueError):
    """A notebook that cannot be used, with every :class:`Problem` found (``.problems``)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class GradedCell:
    """A cell of the source that nbgrader knows by its ``grade_id``."""

    index: int  # 0-based position in the source
    grade_id: str
    cell_type: str
    grade: bool
    solution: bool
    locked: bool
    task: bool
    points: float
    #: the source as the learner is given it (solutions stubbed, hidden tests removed)
    student_source: str
    #: the lines of the hidden-test regions (never shown to the learner)
    hidden_lines: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if self.task:
            return "task"
        if self.grade and self.solution:
            return "manual"
        if self.grade:
            return "tests"
        if self.solution:
            return "answer"
        return "readonly"

    @property
    def autograded(self) -> bool:
        """Scored by the autograder (a test cell), rather than by a teacher."""
        return self.kind == "tests"


def read_notebook(path: Path | str, text: str | bytes | None = None) -> NotebookNode:
    """The notebook at ``path`` (or ``text``, named ``path`` in errors), as nbformat 4."""
    try:
        if text is None:
            text = Path(path).read_bytes()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, nbformat.reader.NotJSONError) as e:
        raise AssignmentError([Problem(str(path), None, None, f"not a notebook: {e}")]) from None
    return nb


def _meta(cell: NotebookNode) -> dict | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else None


def _flag(meta: dict, name: str) -> bool:
    return bool(meta.get(name, False))


def is_locked(meta: dict) -> bool:
    """nbgrader's ``utils.is_locked``: solutions never, grade cells always, else ``locked``."""
    if _flag(meta, "solution"):
        return False
    return _flag(meta, "grade") or _flag(meta, "locked")


def _regions(source: str, begin: str, end: str) -> tuple[list[str], list[str], str | None]:
    """(lines outside the regions, lines inside, a nesting/closing problem or None)."""
    outside, inside, in_region, problem = [], [], False, None
    for line in source.split("\n"):
        if begin in line:
            if in_region:
                problem = f"nested '{begin}'"
            in_region = True
            inside.append(line)
        elif end in line:
            if not in_region:
                problem = problem or f"'{end}' without '{begin}'"
            in_region = False
        elif in_region:
            inside.append(line)
        else:
            outside.append(line)
    if in_region:
        problem = problem or f"'{begin}' without '{end}'"
    return outside, inside, problem


def _stub_solution(cell: NotebookNode, source: str) -> str:
    """nbgrader's ClearSolutions on one cell: regions become the stub, indented as they were."""
    stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
    new, in_solution, replaced = [], False, False
    for line in source.split("\n"):
        if BEGIN_SOLUTION in line:
            in_solution, replaced = True, True
            indent = re.match(r"\s*", line).group(0)
            new.extend(indent + s for s in stub.split("\n"))
        elif END_SOLUTION in line:
            in_solution = False
        elif not in_solution:
            new.append(line)
    if not replaced and _flag(_meta(cell) or {}, "solution"):
        return stub
    return "\n".join(new)


def check_source(nb: NotebookNode, path: str = "<notebook>") -> list[Problem]:
    """Every problem of an assignment's source notebook (an empty list: it can be used).

    nbgrader's own validation (schema v3) plus what only shows at grading time: no cell
    that scores anything, a test cell without points, points that are not a number or are
    negative, solution or hidden-test regions that do not close or sit in the wrong kind of
    cell, an answer cell without a solution region or whole-cell solution, a test cell that
    does not compile.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    scoring = 0

    def problem(i, gid, message):
        problems.append(Problem(path, i + 1 if i is not None else None, gid, message))

    if nb.metadata.get("kernelspec", {}).get("language", "python") != "python":
        problem(None, None, "only Python notebooks can be autograded here")
    for i, cell in enumerate(nb.cells):
        meta = _meta(cell)
        source = cell.get("source", "")
        for begin, end, what in (
            (BEGIN_SOLUTION, END_SOLUTION, "solution"),
            (BEGIN_HIDDEN, END_HIDDEN, "hidden tests"),
        ):
            _, inside, broken = _regions(source, begin, end)
            if broken:
                problem(i, (meta or {}).get("grade_id"), f"{what} region: {broken}")
            if inside and what == "solution" and not (meta and _flag(meta, "solution")):
                problem(
                    i,
                    (meta or {}).get("grade_id"),
                    "a solution region in a cell that is not an answer cell",
                )
            if (
                inside
                and what == "hidden tests"
                and not (meta and _flag(meta, "grade") and not _flag(meta, "solution"))
            ):
                problem(
                    i,
                    (meta or {}).get("grade_id"),
                    "hidden tests in a cell that is not a test cell",
                )
        if meta is None:
            continue
        flags = {name: meta.get(name, False) for name in _FLAGS}
        gid = meta.get("grade_id")
        for name, value in flags.items():
            if not isinstance(value, bool):
                problem(i, gid, f"{name} must be true or false, not {value!r}")
        if not any(flags.values()):
            continue
        version = meta.get("schema_version", SCHEMA_VERSION)
        if version not in (1, 2, 3):
            problem(i, gid, f"unknown nbgrader schema_version {version!r} (3 is current)")
        if not isinstance(gid, str) or not gid.strip():
            problem(i, None, "an nbgrader cell without a grade_id")
            continue
        if gid in seen:
            problem(i, gid, f"duplicate grade_id (also cell {seen[gid] + 1})")
        seen.setdefault(gid, i)
        if flags["task"] and (flags["solution"] or flags["grade"]):
            problem(i, gid, "a task cell cannot also be an answer or a test")
        if flags["task"] and cell.cell_type != "markdown":
            problem(i, gid, "task cells must be markdown")
        if flags["grade"] or flags["task"]:
            points = meta.get("points")
            if points is None or points == "":
                problem(i, gid, "a graded cell without points")
            else:
                try:
                    value = float(points)
                except (TypeError, ValueError):
                    problem(i, gid, f"points must be a number, not {points!r}")
                else:
                    if value < 0 or value != value:
                        problem(i, gid, f"points must be 0 or more, not {points!r}")
                    elif value > 0:
                        scoring += 1
        elif meta.get("points") not in (None, "", 0, 0.0):
            problem(
                i,
                gid,
                "points on a cell that is not graded (mark it as tests or as a manually graded answer)",
            )
        if cell.cell_type == "markdown" and not flags["task"]:
            if flags["grade"] and not flags["solution"]:
                problem(
                    i, gid, "a markdown test cell: markdown can only be a manually graded answer"
                )
            if flags["solution"] and not flags["grade"]:
                problem(i, gid, "a markdown answer cell must be manually graded (with points)")
        if cell.cell_type == "code" and flags["grade"] and not flags["solution"]:
            try:
                ast.parse(_transform_magics(source))
            except SyntaxError as e:
                problem(i, gid, f"the test cell does not compile: {e.msg} (line {e.lineno})")
    if not scoring:
        problem(None, None, "no graded cells: mark at least one test cell (or answer) with points")
    return problems


def _transform_magics(source: str) -> str:
    """The source as IPython would compile it (``%magic`` and ``!shell`` lines are Python)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover (ipykernel brings IPython)
        return source
    return TransformerManager().transform_cell(source)


def compute_checksum(cell: NotebookNode) -> str:
    """nbgrader's ``utils.compute_checksum`` (so its autograde sees "unchanged" the same way)."""
    meta = _meta(cell) or {}
    m = hashlib.md5(usedforsecurity=False)
    for part in (
        cell.source,
        cell.cell_type,
        str(_flag(meta, "grade")),
        str(_flag(meta, "solution")),
        str(is_locked(meta)),
        meta["grade_id"],
    ):
        m.update(part.encode("utf-8"))
    if _flag(meta, "grade"):
        m.update(str(float(meta["points"])).encode("utf-8"))
    return m.hexdigest()


@dataclass
class Source:
    """A checked source notebook: the notebook and its graded cells, by grade_id."""

    path: str
    nb: NotebookNode
    cells: dict[str, GradedCell] = field(default_factory=dict)

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.cells.values() if c.grade or c.task)

    @property
    def version(self) -> str:
        """A short hash of the source's graded content (what a regrade compares)."""
        blob = json.dumps([c.__dict__ for c in self.cells.values()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_source(path: Path | str, text: str | bytes | None = None) -> Source:
    """Read and check an assignment's source notebook; :class:`AssignmentError` lists every problem."""
    nb = read_notebook(path, text)
    problems = check_source(nb, str(path))
    if problems:
        raise AssignmentError(problems)
    source = Source(str(path), nb)
    for i, cell in enumerate(nb.cells):
        meta = _meta(cell)
        if not meta or not any(_flag(meta, f) for f in _FLAGS):
            continue
        student = _stub_solution(cell, cell.source) if _flag(meta, "solution") else cell.source
        outside, hidden, _ = _regions(student, BEGIN_HIDDEN, END_HIDDEN)
        source.cells[meta["grade_id"]] = GradedCell(
            index=i,
            grade_id=meta["grade_id"],
            cell_type=cell.cell_type,
            grade=_flag(meta, "grade"),
            solution=_flag(meta, "solution"),
            locked=is_locked(meta),
            task=_flag(meta, "task"),
            points=float(meta.get("points") or 0)
            if (_flag(meta, "grade") or _flag(meta, "task"))
            else 0.0,
            student_source="\n".join(outside),
            hidden_lines=tuple(hidden),
        )
    return source


def _clean_meta(graded: GradedCell, student: bool) -> dict:
    meta: dict[str, Any] = {
        "grade": graded.grade,
        "grade_id": graded.grade_id,
        "locked": graded.locked,
        "schema_version": SCHEMA_VERSION,
        "solution": graded.solution,
        "task": graded.task,
    }
    if graded.grade or graded.task:
        meta["points"] = graded.points
    return meta


def _fresh_cell(cell_type: str, source: str, metadata: dict) -> NotebookNode:
    if cell_type == "code":
        return nbformat.v4.new_code_cell(source, metadata=metadata)
    if cell_type == "raw":
        return nbformat.v4.new_raw_cell(source, metadata=metadata)
    return nbformat.v4.new_markdown_cell(source, metadata=metadata)


def student_version(source: Source) -> NotebookNode:
    """What learners fetch: solutions replaced by nbgrader's stub, hidden tests removed,
    outputs cleared, locked cells marked read-only and undeletable, checksums as nbgrader
    computes them (so nbgrader's own autograde accepts a submission made from it)."""
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(source.nb.metadata))
    out.metadata.pop("celltoolbar", None)
    by_index = {c.index: c for c in source.cells.values()}
    for i, cell in enumerate(source.nb.cells):
        graded = by_index.get(i)
        metadata = {k: copy.deepcopy(v) for k, v in cell.metadata.items() if k != "nbgrader"}
        if graded is None:
            out.cells.append(_fresh_cell(cell.cell_type, cell.source, metadata))
            continue
        metadata["nbgrader"] = _clean_meta(graded, student=True)
        if graded.locked:
            metadata.update(editable=False, deletable=False)
        elif graded.solution or graded.task:
            metadata["deletable"] = False
        new = _fresh_cell(graded.cell_type, graded.student_source, metadata)
        new.metadata["nbgrader"]["checksum"] = compute_checksum(new)
        out.cells.append(new)
    return out


@dataclass
class PreparedSubmission:
    """A submission ready to run: the notebook (with the hidden tests), and how it was made.

    ``cells[i]`` is the grade_id of the prepared notebook's cell ``i`` (or None for a plain
    cell); ``notes`` says what was put back or dropped (for the feedback and the teacher).
    """

    source: Source
    nb: NotebookNode
    cells: list[str | None]
    notes: list[str] = field(default_factory=list)

    def graded_cells(self) -> Iterable[tuple[int, GradedCell]]:
        for i, gid in enumerate(self.cells):
            if gid is not None:
                yield i, self.source.cells[gid]


def prepare_submission(
    source: Source, submitted: NotebookNode, path: str = "<submission>"
) -> PreparedSubmission:
    """The submission as it will run: the learner's answers in the source's frame.

    - every locked cell (tests, read-only) comes from the source, hidden tests included,
      whatever the submission holds under its grade_id (edited, emptied, retyped);
    - answer cells keep the learner's source, with the source's metadata and cell type;
    - graded or locked cells the learner deleted are put back after the cell that came
      before them in the source (or at the start);
    - the learner's own cells stay, their nbgrader metadata dropped (a copied test cell
      must not count twice, an invented grade_id scores nothing);
    - every output is cleared: only what runs now counts.
    """
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(source.nb.metadata))
    cells: list[str | None] = []
    notes: list[str] = []
    used: set[str] = set()
    for j, cell in enumerate(submitted.get("cells", [])):
        meta = _meta(cell) or {}
        gid = meta.get("grade_id")
        text = cell.get("source", "")
        if isinstance(text, list):
            text = "".join(text)
        if not isinstance(gid, str) or gid not in source.cells or gid in used:
            if isinstance(gid, str) and gid:
                notes.append(
                    f"{path}, cell {j + 1}: grade_id {gid!r} "
                    + ("repeated" if gid in used else "is not in the assignment")
                    + ": kept as a plain cell"
                )
            metadata = {k: v for k, v in cell.get("metadata", {}).items() if k != "nbgrader"}
            kind = cell.get("cell_type", "code")
            out.cells.append(
                _fresh_cell(kind if kind in ("code", "markdown", "raw") else "code", text, metadata)
            )
            cells.append(None)
            continue
        graded = source.cells[gid]
        used.add(gid)
        if graded.locked:
            original = source.nb.cells[graded.index].source
            if text != graded.student_source:
                notes.append(
                    f"{path}, cell {j + 1}: grade_id {gid!r} is locked: the assignment's version runs"
                )
            body = original
        else:
            body = text
            if cell.get("cell_type") != graded.cell_type:
                notes.append(
                    f"{path}, cell {j + 1}: grade_id {gid!r} changed type: it is {graded.cell_type} again"
                )
        out.cells.append(
            _fresh_cell(graded.cell_type, body, {"nbgrader": _clean_meta(graded, student=False)})
        )
        cells.append(gid)
    # put back what was deleted, after its predecessor in the source
    order = sorted(source.cells.values(), key=lambda c: c.index)
    for graded in order:
        if graded.grade_id in used:
            continue
        before = [c.grade_id for c in order if c.index < graded.index and c.grade_id in cells]
        at = cells.index(before[-1]) + 1 if before else 0
        body = source.nb.cells[graded.index].source if graded.locked else graded.student_source
        out.cells.insert(
            at,
            _fresh_cell(graded.cell_type, body, {"nbgrader": _clean_meta(graded, student=False)}),
        )
        cells.insert(at, graded.grade_id)
        used.add(graded.grade_id)
        notes.append(f"{path}: grade_id {graded.grade_id!r} was missing: put back")
    return PreparedSubmission(source, out, cells, notes)


def definitions(source_text: str) -> str:
    """The top-level imports, functions, classes and literal constants of ``source_text``.

    The autograder runs these again (from the teacher's locked cells) just before each test
    cell, so that a learner's cell that rebinds a check function or an expected value does
    not change what the tests call. Classes are not redefined (objects made from the old
    class would fail ``isinstance``); a cell that does not parse gives nothing.
    """
    try:
        tree = ast.parse(_transform_magics(source_text))
    except SyntaxError:
        return ""
    kept = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef):
            kept.append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            try:
                ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue
            kept.append(node)
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""
