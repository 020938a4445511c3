"""Importers: CSV exports -> the event store, streaming, idempotent, with line numbers.

Three formats:

- **OULAD** (Kuzilek J., Hlosta M., Zdrahal Z. (2017), "Open University Learning Analytics
  dataset", Scientific Data 4:170171, doi:10.1038/sdata.2017.171, CC BY 4.0). A module
  presentation (``code_module`` AAA, ``code_presentation`` 2013J) becomes the course
  ``aaa-2013j`` (:func:`oulad_course_id`). OULAD dates are days from the start of the
  presentation; the start is not published, so a nominal one is used: 1 February of the
  year for a "B" presentation, 1 October for a "J" one (:func:`oulad_start`). Rows:
  studentInfo + studentRegistration -> ``enrolments``; vle -> ``resources``; assessments ->
  ``assessments``; studentAssessment -> one statement per submission (verb completed, score);
  studentVle -> one statement per row (verb viewed, ``sum_click`` in the clicks extension).
- **FutureLearn** partner exports (files ``<course>-<run>_<export>.csv``; :data:`FUTURELEARN_EXPORTS`
  lists them with their columns, :func:`futurelearn_export` tells one from its name or header).
  What is a learning event of one learner at one time becomes xAPI statements; the rest
  becomes rows of a small table, because it is not an event:

  - step-activity -> a *viewed* statement at first_visited_at and a *completed* one at
    last_completed_at;
  - question-response -> one *answered* statement per submission (a quiz answer is a
    learning event): the question (``week.step.question``) as a ``cmi.interaction``
    activity with its ``interactionType`` where FutureLearn's question type maps to one,
    ``result.success`` and ``result.response``, the step as the context's parent;
  - enrolments -> ``enrolments``; team-members -> ``team_members`` (people: who the team
    is, so that the analytics leave them out; their names are not kept);
  - video-stats -> ``video_stats``: FutureLearn's aggregates over every viewer of a video
    step (no learner, no time: nothing to make an event of);
  - weekly-sentiment-, archetype- and leaving-survey-responses -> ``survey_responses``:
    answers to a question about the course, not activity in it (the sentiment survey is
    anonymous; a leaver's answer is dated by when they left).
- **Moodle** log export (``Time, User full name, Affected user, Event context, Component,
  Event name, Description, Origin, IP address``) -> one statement per line. The IP address
  is not stored.

Every file is read row by row and written in batches (constant memory whatever its size).
Statement ids are UUIDv5s of what identifies the row, so importing a file twice stores
nothing new: OULAD rows by line number (the release never changes; its click table has
identical rows that are distinct events), FutureLearn step rows by learner and step,
FutureLearn answers by learner, question, time, response and their rank among identical
consecutive rows (a learner may submit the same answer twice in one second), FutureLearn
table rows by their key (the export's id, or the step), Moodle
lines by their content and their rank among identical consecutive lines (a newer export
of the same log has more lines on top). A bad line is skipped and reported with its file
and line number; the import then ends with a non-zero status.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ...courses import COURSE_ID_PATTERN
from .models import (
    Assessment,
    Course,
    Enrolment,
    Resource,
    Statement,
    SurveyResponse,
    TeamMember,
    VideoStats,
)
from .queries import DAY_TIMESTAMPS
from .store import EventStore
from .xapi import CLICKS_EXTENSION, course_iri, to_row

__all__ = [
    "FUTURELEARN_EXPORTS",
    "ImportReport",
    "LineError",
    "Progress",
    "futurelearn_export",
    "import_futurelearn",
    "import_moodle_log",
    "import_oulad",
    "oulad_course_id",
    "oulad_start",
]

#: the namespace of the UUIDv5 statement ids importers make
NAMESPACE = uuid.UUID("5b1f4c5e-8f0a-4c36-9a53-2f1f0e6b7d21")
OULAD_HOME = "https://analyse.kmi.open.ac.uk/open_dataset"
VIEWED = "http://id.tincanapi.com/verb/viewed"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
ANSWERED = "http://adlnet.gov/expapi/verbs/answered"
_COURSE_RE = re.compile(COURSE_ID_PATTERN)
BATCH = 2000


class LineError(ValueError):
    """A bad row; the importer reports it with the file and line."""


@dataclass
class ImportReport:
    """What an import did: rows read and new rows per table, and the bad lines."""

    read: dict[str, int] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    max_problems: int = 50

    def problem(self, path: Path, line: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(f"{path}:{line}: {message}")

    def add(self, table: str, read: int = 0, new: int = 0) -> None:
        self.read[table] = self.read.get(table, 0) + read
        self.new[table] = self.new.get(table, 0) + new


class Progress:
    """A one-line progress bar on stderr: bytes read of a file, rows, rate.

    ``Progress(enabled=None)`` draws only when stderr is a terminal.
    """

    def __init__(
        self, enabled: bool | None = None, stream=None, clock: Callable[[], float] = time.monotonic
    ):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.clock = clock
        self._last = 0.0

    def start(self, label: str, total_bytes: int) -> None:
        self.label, self.total, self.rows, self.t0 = label, max(total_bytes, 1), 0, self.clock()
        self._last = 0.0

    def update(self, done_bytes: int, rows: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        frac = min(done_bytes / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = rows / max(now - self.t0, 1e-9)
        self.stream.write(
            f"\r{self.label:<28} [{bar:<30}] {frac:6.1%} {rows:>10,} rows {rate:>9,.0f}/s"
        )
        self.stream.flush()

    def finish(self, done_bytes: int, rows: int) -> None:
        if self.enabled:
            self.update(done_bytes, rows, force=True)
            self.stream.write("\n")
            self.stream.flush()


class _CountingFile:
    """A text file that counts the characters read (for the progress bar)."""

    def __init__(self, f):
        self.f, self.done = f, 0

    def __iter__(self):
        for line in self.f:
            self.done += len(line)
            yield line


def _rows(
    path: Path, progress: Progress, label: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict]]:
    """(line number, row dict) for each data row of a CSV file; checks the header."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        counting = _CountingFile(f)
        reader = csv.DictReader(counting)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise LineError(
                f"{path}:1: missing column(s) {', '.join(missing)} (found: {', '.join(header)})"
            )
        progress.start(label, os.path.getsize(path))
        n = 0
        for row in reader:
            n += 1
            if None in row or any(v is None for v in row.values()):
                yield reader.line_num, {"__bad__": f"expected {len(header)} fields"}
            else:
                yield reader.line_num, row
            progress.update(counting.done, n)
        progress.finish(counting.done, n)


def _checked_rows(
    path: Path, progress: Progress, label: str, required: tuple[str, ...], report: ImportReport
) -> Iterator[tuple[int, dict]]:
    """:func:`_rows`, with each malformed row reported (and left out)."""
    for line, row in _rows(path, progress, label, required):
        if "__bad__" in row:
            report.problem(path, line, row["__bad__"])
        else:
            yield line, row


def _required(row: dict, key: str) -> str:
    """The row's ``key``, stripped; a :class:`LineError` if it is empty."""
    value = row[key].strip()
    if not value:
        raise LineError(f"{key} is empty")
    return value


def _int(row: dict, key: str, *, optional: bool = False) -> int | None:
    value = row[key].strip()
    if value == "" and optional:
        return None
    try:
        return int(float(value)) if "." in value else int(value)
    except ValueError:
        raise LineError(f"{key} {value!r} is not a whole number") from None


def _float(row: dict, key: str, *, optional: bool = False) -> float | None:
    value = row[key].strip()
    if value == "" and optional:
        return None
    try:
        return float(value)
    except ValueError:
        raise LineError(f"{key} {value!r} is not a number") from None


def _sid(*parts) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


#: the tables importers write
_MODELS = (
    Statement,
    Enrolment,
    Resource,
    Assessment,
    Course,
    TeamMember,
    VideoStats,
    SurveyResponse,
)


class _Writer:
    """Batches rows per table and writes them idempotently.

    Statements go through :meth:`~.store.EventStore.add_statements`, as every writer beside
    the events service's: stamped when their batch is written, a little ahead of the clock
    (not when the import began, which a client syncing by the service's
    ``X-Experience-API-Consistent-Through`` would miss), with their side rows (the course's
    ``related_activities``). Statements already stored (an import again) keep their time.
    """

    def __init__(self, store: EventStore, report: ImportReport, batch: int = BATCH, clock=None):
        self.store, self.report, self.batch = store, report, batch
        self.pending: dict[str, list[dict]] = {}
        self.models = {m.__tablename__: m for m in _MODELS}
        self.clock = clock or (lambda: datetime.now(UTC))

    def add(self, table: str, row: dict) -> None:
        rows = self.pending.setdefault(table, [])
        rows.append(row)
        if len(rows) >= self.batch:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        for name in [table] if table else list(self.pending):
            rows = self.pending.get(name) or []
            if not rows:
                continue
            model = self.models[name]
            if name == "statements":
                new = self._statements(rows)
            else:
                new = self._upsert(model, rows)
            self.report.add(name, read=len(rows), new=new)
            self.pending[name] = []

    def _statements(self, rows: list[dict]) -> int:
        """Insert a batch of statement rows, stamped when written; the number new."""
        return self.store.add_statements(rows, clock=self.clock)

    def _upsert(self, model, rows: list[dict]) -> int:
        """Upsert rows that may carry different columns; count the keys that were new."""
        from sqlalchemy import tuple_

        keys = [c.name for c in model.__table__.primary_key.columns]
        with self.store.engine.begin() as conn:
            cols = [model.__table__.c[k] for k in keys]
            wanted = {tuple(r[k] for k in keys) for r in rows}
            have = set()
            wanted_list = list(wanted)
            for i in range(0, len(wanted_list), 400):
                chunk = wanted_list[i : i + 400]
                q = (
                    model.__table__.select()
                    .with_only_columns(*cols)
                    .where(tuple_(*cols).in_(chunk))
                )
                have.update(tuple(r) for r in conn.execute(q))
            merged: dict[tuple, dict] = {}
            for r in rows:  # one row per key (PostgreSQL refuses to update a row twice)
                k = tuple(r[k] for k in keys)
                merged[k] = {**merged.get(k, {}), **r}
            groups: dict[tuple, list[dict]] = {}
            for r in merged.values():
                groups.setdefault(tuple(sorted(r)), []).append(r)
            for group in groups.values():
                self.store.upsert(model, group, conn=conn, only_given=True)
        return len(wanted - have)


# --------------------------------------------------------------------------- OULAD


def oulad_course_id(code_module: str, code_presentation: str) -> str:
    """``("AAA", "2013J")`` -> ``"aaa-2013j"`` (a catalog course id)."""
    course_id = f"{code_module.strip()}-{code_presentation.strip()}".lower()
    if not _COURSE_RE.match(course_id):
        raise LineError(
            f"{code_module!r}/{code_presentation!r} does not make a valid course id ({course_id!r})"
        )
    return course_id


def oulad_start(code_presentation: str) -> datetime:
    """The nominal start of a presentation: 2013B -> 2013-02-01, 2013J -> 2013-10-01 (UTC)."""
    m = re.match(r"^(\d{4})([BJ])$", code_presentation.strip())
    if not m:
        raise LineError(
            f"code_presentation {code_presentation!r} is not a year and B or J, e.g. 2013J"
        )
    return datetime(int(m[1]), 2 if m[2] == "B" else 10, 1)


def _actor(learner: str) -> dict:
    return {"objectType": "Agent", "account": {"homePage": OULAD_HOME, "name": learner}}


def _oulad_files(directory: Path) -> dict[str, Path]:
    found = {}
    for name in (
        "courses",
        "assessments",
        "vle",
        "studentInfo",
        "studentRegistration",
        "studentAssessment",
    ):
        for candidate in (directory / f"{name}.csv", directory / "original_format" / f"{name}.csv"):
            if candidate.is_file():
                found[name] = candidate
                break
    for pattern_dir in (directory, directory / "original_format"):
        vle = sorted(pattern_dir.glob("studentVle*.csv")) if pattern_dir.is_dir() else []
        if vle:
            found["studentVle"] = vle[0]
            break
    return found


def import_oulad(
    store: EventStore,
    directory: os.PathLike | str,
    *,
    student_vle: os.PathLike | str | None = None,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> ImportReport:
    """Import an OULAD directory (its ``studentVle*.csv`` too unless ``student_vle`` names one)."""
    directory = Path(directory)
    progress = progress or Progress(enabled=False)
    report = ImportReport()
    files = _oulad_files(directory)
    if student_vle is not None:
        files["studentVle"] = Path(student_vle)
    for name in ("courses", "assessments", "vle", "studentInfo", "studentRegistration"):
        if name not in files:
            raise FileNotFoundError(f"{directory}: no {name}.csv (is this the OULAD directory?)")
    store.create()
    w = _Writer(store, report, batch)
    starts: dict[str, datetime] = {}

    def guarded(name, required, handle):
        path = files[name]
        for line, row in _checked_rows(path, progress, name, required, report):
            try:
                handle(row, line)
            except LineError as e:
                report.problem(path, line, str(e))
            except KeyError as e:
                report.problem(path, line, f"unknown {e.args[0]}")
        w.flush()

    def course(row, _line):
        cid = oulad_course_id(row["code_module"], row["code_presentation"])
        start = oulad_start(row["code_presentation"])
        starts[cid] = start
        w.add("courses", {
            "id": cid,
            "title": f"OULAD {row['code_module']} {row['code_presentation']}",
            "starts_at": start,
            "length_days": _int(row, "module_presentation_length"),
            "source": "oulad",
            "attributes": {
                "code_module": row["code_module"], "code_presentation": row["code_presentation"],
                # a click row is a day's clicks on a site: when in the day is not recorded
                "timestamps": DAY_TIMESTAMPS,
            },
        })  # fmt: skip

    def course_of(row):
        cid = oulad_course_id(row["code_module"], row["code_presentation"])
        if cid not in starts:
            raise LineError(
                f"module presentation {row['code_module']} {row['code_presentation']} is not in courses.csv"
            )
        return cid, starts[cid]

    assessment_course: dict[str, tuple[str, datetime, datetime | None]] = {}

    def assessment(row, _line):
        cid, start = course_of(row)
        day = _int(row, "date", optional=True)
        due = start + timedelta(days=day) if day is not None else None
        aid = f"urn:oulad:assessment:{_int(row, 'id_assessment')}"
        assessment_course[row["id_assessment"].strip()] = (cid, start, due)
        w.add("assessments", {
            "course_id": cid, "assessment_id": aid, "type": row["assessment_type"],
            "due_at": due, "weight": _float(row, "weight", optional=True),
        })  # fmt: skip

    def vle(row, _line):
        cid, _start = course_of(row)
        w.add("resources", {
            "course_id": cid, "resource_id": f"urn:oulad:site:{_int(row, 'id_site')}",
            "type": row["activity_type"], "title": f"{row['activity_type']} {row['id_site']}",
            "week_from": _int(row, "week_from", optional=True),
            "week_to": _int(row, "week_to", optional=True),
        })  # fmt: skip

    info_keys = ("gender", "region", "highest_education", "imd_band", "age_band",
                 "num_of_prev_attempts", "studied_credits", "disability")  # fmt: skip

    def info(row, _line):
        cid, _start = course_of(row)
        attrs = {k: row[k] for k in info_keys if k in row}
        for k in ("num_of_prev_attempts", "studied_credits"):
            if k in attrs:
                attrs[k] = _int(row, k, optional=True)
        w.add("enrolments", {
            "course_id": cid, "learner": str(_int(row, "id_student")),
            "final_result": row["final_result"] or None, "attributes": attrs, "source": "oulad",
        })  # fmt: skip

    def registration(row, _line):
        cid, start = course_of(row)
        reg = _int(row, "date_registration", optional=True)
        unreg = _int(row, "date_unregistration", optional=True)
        w.add("enrolments", {
            "course_id": cid, "learner": str(_int(row, "id_student")),
            "registered_at": start + timedelta(days=reg) if reg is not None else None,
            "unregistered_at": start + timedelta(days=unreg) if unreg is not None else None,
            "source": "oulad",
        })  # fmt: skip

    stored = datetime.now(UTC)

    def submission(row, line):
        key = row["id_assessment"].strip()
        if key not in assessment_course:
            raise LineError(f"id_assessment {key!r} is not in assessments.csv")
        cid, start, _due = assessment_course[key]
        learner = str(_int(row, "id_student"))
        day = _int(row, "date_submitted")
        score = _float(row, "score", optional=True)
        banked = _int(row, "is_banked", optional=True)
        result: dict = {"completion": True, "extensions": {"urn:oulad:is_banked": bool(banked)}}
        if score is not None:
            if not 0 <= score <= 100:
                raise LineError(f"score {score} is not between 0 and 100")
            result["score"] = {"raw": score, "min": 0, "max": 100}
        ts = start + timedelta(days=day)
        statement = {
            "id": _sid("oulad", "studentAssessment", key, learner),
            "actor": _actor(learner),
            "verb": {"id": COMPLETED, "display": {"en-US": "completed"}},
            "object": {"objectType": "Activity", "id": f"urn:oulad:assessment:{int(key)}"},
            "result": result,
            "context": {"contextActivities": {"grouping": [{"id": course_iri(cid)}]}},
            "timestamp": ts.isoformat() + "Z",
        }
        w.add("statements", to_row(statement, stored=stored, source="oulad", course_id=cid,
                                   learner=learner, timestamp=ts.replace(tzinfo=UTC)))  # fmt: skip

    def click(row, line):
        cid, start = course_of(row)
        learner = str(_int(row, "id_student"))
        site = _int(row, "id_site")
        clicks = _int(row, "sum_click")
        if clicks < 0:
            raise LineError(f"sum_click {clicks} is negative")
        ts = start + timedelta(days=_int(row, "date"))
        statement = {
            "id": _sid("oulad", "studentVle", line, *row.values()),
            "actor": _actor(learner),
            "verb": {"id": VIEWED, "display": {"en-US": "viewed"}},
            "object": {"objectType": "Activity", "id": f"urn:oulad:site:{site}"},
            "result": {"extensions": {CLICKS_EXTENSION: clicks}},
            "context": {"contextActivities": {"grouping": [{"id": course_iri(cid)}]}},
            "timestamp": ts.isoformat() + "Z",
        }
        w.add("statements", to_row(statement, stored=stored, source="oulad", course_id=cid,
                                   learner=learner, timestamp=ts.replace(tzinfo=UTC)))  # fmt: skip

    guarded("courses", ("code_module", "code_presentation", "module_presentation_length"), course)
    guarded(
        "assessments",
        ("code_module", "code_presentation", "id_assessment", "assessment_type", "date", "weight"),
        assessment,
    )
    guarded(
        "vle",
        ("id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"),
        vle,
    )
    guarded("studentInfo", ("code_module", "code_presentation", "id_student", "final_result"), info)
    guarded(
        "studentRegistration",
        (
            "code_module",
            "code_presentation",
            "id_student",
            "date_registration",
            "date_unregistration",
        ),
        registration,
    )
    if "studentAssessment" in files:
        guarded(
            "studentAssessment",
            ("id_assessment", "id_student", "date_submitted", "is_banked", "score"),
            submission,
        )
    if "studentVle" in files:
        guarded(
            "studentVle",
            ("code_module", "code_presentation", "id_student", "id_site", "date", "sum_click"),
            click,
        )
    if any(report.new.values()):
        store.analyze()  # fresh statistics: SQLite picks its indexes by them
    return report


# --------------------------------------------------------------------------- FutureLearn

_FL_TIME = (
    "%Y-%m-%d %H:%M:%S %Z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
)


def _fl_time(value: str, key: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    for fmt in _FL_TIME:
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return _naive(moment) if moment.tzinfo else moment
    raise LineError(f"{key} {value!r} is not a time such as 2016-09-19 10:17:23 UTC")


def _check_course(course_id: str) -> None:
    if not _COURSE_RE.match(course_id):
        raise ValueError(
            f"course id {course_id!r} is not valid: lowercase letters, digits and dashes"
        )


#: FutureLearn's exports: the file name's suffix -> (the keyword of :func:`import_futurelearn`
#: that takes it, the columns it must have; video-stats has per-device and per-continent
#: percentages after these)
FUTURELEARN_EXPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "enrolments": ("enrolments", ("learner_id", "enrolled_at")),
    "step-activity": ("step_activity", ("learner_id", "step", "week_number", "step_number",
                                        "first_visited_at", "last_completed_at")),
    "question-response": ("question_response", ("learner_id", "quiz_question", "question_type",
                          "week_number", "step_number", "question_number", "response",
                          "cloze_response", "submitted_at", "correct")),
    "video-stats": ("video_stats", ("step_position", "title", "video_duration", "total_views",
                    "total_downloads", "total_caption_views", "total_transcript_views",
                    "viewed_hd", "viewed_five_percent", "viewed_ten_percent",
                    "viewed_twentyfive_percent", "viewed_fifty_percent",
                    "viewed_seventyfive_percent", "viewed_ninetyfive_percent",
                    "viewed_onehundred_percent")),
    "weekly-sentiment-survey-responses": ("sentiment_survey", ("id", "responded_at",
                                          "week_number", "experience_rating", "reason")),
    "archetype-survey-responses": ("archetype_survey", ("id", "learner_id", "responded_at",
                                   "archetype")),
    "leaving-survey-responses": ("leaving_survey", ("id", "learner_id", "left_at",
                                 "leaving_reason", "last_completed_step_at",
                                 "last_completed_step", "last_completed_week_number",
                                 "last_completed_step_number")),
    "team-members": ("team_members", ("id", "first_name", "last_name", "team_role",
                     "user_role")),
}  # fmt: skip
#: video-stats' viewed_*_percent columns -> the share of the video reached
_VIEWED = {"five": 5, "ten": 10, "twentyfive": 25, "fifty": 50, "seventyfive": 75,
           "ninetyfive": 95, "onehundred": 100}  # fmt: skip
#: FutureLearn question types (lowercase, letters only) -> xAPI interaction types
_INTERACTION = {"multiplechoice": "choice", "multiplechoicequestion": "choice",
                "cloze": "fill-in", "clozequestion": "fill-in", "truefalse": "true-false",
                "numeric": "numeric"}  # fmt: skip


def futurelearn_export(path: os.PathLike | str) -> str:
    """Which FutureLearn export ``path`` is (a key of :data:`FUTURELEARN_EXPORTS`): by its
    name's suffix (``ecsa-6_question-response.csv``), else by its header; ``ValueError``
    naming the file and what was expected otherwise."""
    path = Path(path)
    stem = path.name.removesuffix(".csv")
    for export in sorted(FUTURELEARN_EXPORTS, key=len, reverse=True):
        if stem == export or stem.endswith(f"_{export}"):
            return export
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = set(next(csv.reader(f), []))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    found = [e for e, (_kw, cols) in FUTURELEARN_EXPORTS.items() if set(cols) <= header]
    if len(found) == 1:
        return found[0]
    raise ValueError(
        f"{path}: not a FutureLearn export this importer knows: its name does not end in "
        f"_<export>.csv and its header is not one of theirs (exports: "
        f"{', '.join(FUTURELEARN_EXPORTS)})"
    )


def _bool(row: dict, key: str) -> bool:
    value = row[key].strip().lower()
    if value in ("true", "t", "1", "yes"):
        return True
    if value in ("false", "f", "0", "no"):
        return False
    raise LineError(f"{key} {row[key]!r} is not true or false")


def _text(row: dict, key: str, limit: int, *, required: bool = False) -> str | None:
    """The row's ``key``, stripped, at most ``limit`` characters (a column's width); None
    when empty, a :class:`LineError` if it is ``required`` or too long."""
    value = row[key].strip()
    if not value:
        if required:
            raise LineError(f"{key} is empty")
        return None
    if len(value) > limit:
        raise LineError(f"{key} is longer than {limit} characters")
    return value


def _required_time(row: dict, key: str) -> datetime:
    moment = _fl_time(row[key], key)
    if moment is None:
        raise LineError(f"{key} is empty")
    return moment


@dataclass
class _FlRun:
    """What the rows of one FutureLearn import share, and the answers' repeat counter."""

    course_id: str
    home: str
    stored: datetime
    previous: tuple = ()
    repeat: int = 0

    def actor(self, learner: str) -> dict:
        return {"objectType": "Agent", "account": {"homePage": self.home, "name": learner}}

    def iri(self, kind: str, position: str) -> str:
        return f"urn:futurelearn:{self.course_id}:{kind}:{position}"


def _fl_answer(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    """A question-response row -> its *answered* statement."""
    learner = _text(row, "learner_id", 255, required=True)
    question = _required(row, "quiz_question")
    week, step = _int(row, "week_number"), _int(row, "step_number")
    number = _int(row, "question_number")
    if question != f"{week}.{step}.{number}":
        raise LineError(
            f"quiz_question {question!r} is not week_number.step_number.question_number "
            f"({week}.{step}.{number})"
        )
    moment = _required_time(row, "submitted_at")
    success = _bool(row, "correct")
    kind = _INTERACTION.get(re.sub(r"[^a-z]", "", row["question_type"].lower()))
    cloze = row["cloze_response"].strip()
    response = row["response"].strip()
    key = (learner, question, moment, response, cloze, success)
    run.repeat = run.repeat + 1 if key == run.previous else 0
    run.previous = key
    definition = {"type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                  "name": {"en": f"Question {question}"}}  # fmt: skip
    if kind:
        definition["interactionType"] = kind
    if cloze:
        answer = cloze
    elif kind == "choice":  # xAPI's choice response: the choice ids joined by [,]
        answer = "[,]".join(p.strip() for p in response.split(","))
    else:
        answer = response
    statement = {
        "id": _sid("futurelearn", run.course_id, "answer", *key, run.repeat),
        "actor": run.actor(learner),
        "verb": {"id": ANSWERED, "display": {"en-US": "answered"}},
        "object": {"objectType": "Activity", "id": run.iri("question", question),
                   "definition": definition},
        "result": {"success": success, "response": answer},
        "context": {"contextActivities": {
            "parent": [{"id": run.iri("step", f"{week}.{step}")}],
            "grouping": [{"id": course_iri(run.course_id)}]}},
        "timestamp": moment.isoformat() + "Z",
    }  # fmt: skip
    yield "statements", to_row(statement, stored=run.stored, source="futurelearn",
                               course_id=run.course_id, learner=learner,
                               timestamp=moment.replace(tzinfo=UTC))  # fmt: skip


def _step(row: dict, key: str, *, required: bool = False) -> str | None:
    """A step's position, ``week.step`` (``1.3``)."""
    step = _text(row, key, 32, required=required)
    if step is not None and not re.fullmatch(r"[0-9]+\.[0-9]+", step):
        raise LineError(f"{key} {step!r} is not week.step, e.g. 1.3")
    return step


def _fl_video(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    """A video-stats row -> its ``video_stats`` row."""
    step = _step(row, "step_position", required=True)
    known = set(FUTURELEARN_EXPORTS["video-stats"][1])
    yield "video_stats", {
        "course_id": run.course_id, "step": step, "title": _text(row, "title", 255) or "",
        "duration_s": _int(row, "video_duration", optional=True),
        "views": _int(row, "total_views", optional=True),
        "downloads": _int(row, "total_downloads", optional=True),
        "caption_views": _int(row, "total_caption_views", optional=True),
        "transcript_views": _int(row, "total_transcript_views", optional=True),
        "viewed_hd": _float(row, "viewed_hd", optional=True),
        "viewed_percent": {str(n): _float(row, f"viewed_{word}_percent", optional=True)
                           for word, n in _VIEWED.items()},
        "attributes": {k: _float(row, k, optional=True) for k in row if k not in known},
    }  # fmt: skip


def _fl_response(run: _FlRun, row: dict, survey: str, **fields) -> tuple[str, dict]:
    return "survey_responses", {"course_id": run.course_id, "survey": survey,
                                "response_id": _text(row, "id", 64, required=True),
                                "source": "futurelearn",
                                **fields}  # fmt: skip


def _fl_sentiment(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    yield _fl_response(
        run, row, "weekly-sentiment", learner=None,
        responded_at=_required_time(row, "responded_at"), week_number=_int(row, "week_number"),
        step=None, step_at=None, rating=_int(row, "experience_rating"),
        answer=row["reason"].strip() or None,
    )  # fmt: skip


def _fl_archetype(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    yield _fl_response(
        run, row, "archetype", learner=_text(row, "learner_id", 255, required=True),
        responded_at=_required_time(row, "responded_at"), week_number=None, step=None,
        step_at=None, rating=None, answer=_required(row, "archetype"),
    )  # fmt: skip


def _fl_leaving(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    yield _fl_response(
        run, row, "leaving", learner=_text(row, "learner_id", 255, required=True),
        responded_at=_required_time(row, "left_at"),
        week_number=_int(row, "last_completed_week_number", optional=True),
        step=_step(row, "last_completed_step"),
        step_at=_fl_time(row["last_completed_step_at"], "last_completed_step_at"),
        rating=None, answer=row["leaving_reason"].strip() or None,
    )  # fmt: skip


def _fl_team_member(run: _FlRun, row: dict) -> Iterator[tuple[str, dict]]:
    yield "team_members", {"course_id": run.course_id,
                           "learner": _text(row, "id", 255, required=True),
                           "team_role": _text(row, "team_role", 64) or "",
                           "user_role": _text(row, "user_role", 64) or "", "source": "futurelearn"}  # fmt: skip


#: export -> what makes its rows (the exports after enrolments and step-activity)
_FL_ROWS = {
    "question-response": _fl_answer,
    "video-stats": _fl_video,
    "weekly-sentiment-survey-responses": _fl_sentiment,
    "archetype-survey-responses": _fl_archetype,
    "leaving-survey-responses": _fl_leaving,
    "team-members": _fl_team_member,
}


def import_futurelearn(
    store: EventStore,
    course_id: str,
    *,
    step_activity: os.PathLike | str | None = None,
    enrolments: os.PathLike | str | None = None,
    question_response: os.PathLike | str | None = None,
    video_stats: os.PathLike | str | None = None,
    sentiment_survey: os.PathLike | str | None = None,
    archetype_survey: os.PathLike | str | None = None,
    leaving_survey: os.PathLike | str | None = None,
    team_members: os.PathLike | str | None = None,
    home: str = "https://www.futurelearn.com",
    starts_at: datetime | None = None,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> ImportReport:
    """Import a FutureLearn run's exports into ``course_id``: each keyword takes the file of
    one export (:data:`FUTURELEARN_EXPORTS`; ``sentiment_survey`` is the
    weekly-sentiment-survey-responses export, ``archetype_survey`` and ``leaving_survey``
    theirs). Any of them, in any order and in as many calls.

    The exports do not say when the run starts (its first visit is usually a team member's
    preview): ``starts_at`` (the catalog's ``opens``, or ``--start``) sets it, in this call or
    a later one; without it the course's start stays unknown and the analytics count weeks
    from the first learner's event. Enrolments keep their ``role``; the analytics leave the
    team out of every figure, by that role (``organisation_admin``) and by the team-members
    export, when the figure is asked for: whichever file came first, the answer is the same.
    """
    _check_course(course_id)
    progress = progress or Progress(enabled=False)
    report = ImportReport()
    store.create()
    w = _Writer(store, report, batch)
    stored = datetime.now(UTC)

    if enrolments is not None:
        path = Path(enrolments)
        for line, row in _checked_rows(
            path, progress, "enrolments", ("learner_id", "enrolled_at"), report
        ):
            try:
                learner = _required(row, "learner_id")
                attrs = {
                    k: v
                    for k, v in row.items()
                    if k not in ("learner_id", "enrolled_at", "unenrolled_at") and v
                }
                w.add("enrolments", {
                    "course_id": course_id, "learner": learner,
                    "registered_at": _fl_time(row["enrolled_at"], "enrolled_at"),
                    "unregistered_at": _fl_time(row.get("unenrolled_at", ""), "unenrolled_at"),
                    "attributes": attrs, "source": "futurelearn",
                })  # fmt: skip
            except LineError as e:
                report.problem(path, line, str(e))
        w.flush()

    if step_activity is not None:
        path = Path(step_activity)
        required = (
            "learner_id",
            "step",
            "week_number",
            "step_number",
            "first_visited_at",
            "last_completed_at",
        )
        for line, row in _checked_rows(path, progress, "step-activity", required, report):
            try:
                learner = _required(row, "learner_id")
                week, number = _int(row, "week_number"), _int(row, "step_number")
                step = row["step"].strip() or f"{week}.{number}"
                iri = f"urn:futurelearn:{course_id}:step:{step}"
                visited = _fl_time(row["first_visited_at"], "first_visited_at")
                completed = _fl_time(row["last_completed_at"], "last_completed_at")
                if visited is None:
                    raise LineError("first_visited_at is empty")
                w.add("resources", {"course_id": course_id, "resource_id": iri, "type": "step",
                                    "title": f"Step {step}", "week_from": week, "week_to": week})  # fmt: skip
                for verb, name, moment in (
                    (VIEWED, "viewed", visited),
                    (COMPLETED, "completed", completed),
                ):
                    if moment is None:
                        continue
                    statement = {
                        "id": _sid("futurelearn", course_id, learner, step, name),
                        "actor": {"objectType": "Agent", "account": {"homePage": home, "name": learner}},
                        "verb": {"id": verb, "display": {"en-US": name}},
                        "object": {"objectType": "Activity", "id": iri,
                                   "definition": {"name": {"en": f"Step {step}"}}},
                        "context": {"contextActivities": {"grouping": [{"id": course_iri(course_id)}]}},
                        "timestamp": moment.isoformat() + "Z",
                    }  # fmt: skip
                    if name == "completed":
                        statement["result"] = {"completion": True}
                    w.add("statements", to_row(statement, stored=stored, source="futurelearn",
                                               course_id=course_id, learner=learner,
                                               timestamp=moment.replace(tzinfo=UTC)))  # fmt: skip
            except LineError as e:
                report.problem(path, line, str(e))
        w.flush()

    run = _FlRun(course_id, home, stored)
    given = {"question_response": question_response, "video_stats": video_stats,
             "sentiment_survey": sentiment_survey, "archetype_survey": archetype_survey,
             "leaving_survey": leaving_survey, "team_members": team_members}  # fmt: skip
    for export, make in _FL_ROWS.items():
        keyword, required = FUTURELEARN_EXPORTS[export]
        if given[keyword] is None:
            continue
        path = Path(given[keyword])
        for line, row in _checked_rows(path, progress, export, required, report):
            try:
                for table, values in make(run, row):
                    w.add(table, values)
            except LineError as e:
                report.problem(path, line, str(e))
        w.flush()

    with store.engine.begin() as conn:
        from sqlalchemy import select, update

        row = conn.execute(
            select(Course.id, Course.starts_at).where(Course.id == course_id)
        ).first()
        start = _naive(starts_at) if starts_at else None
        if row is None:
            store.upsert(Course, [{"id": course_id, "title": course_id, "starts_at": start,
                                   "source": "futurelearn", "attributes": {}}], conn=conn)  # fmt: skip
        elif start is not None and row.starts_at != start:
            conn.execute(update(Course).where(Course.id == course_id).values(starts_at=start))
    if any(report.new.values()):
        store.analyze()  # fresh statistics: SQLite picks its indexes by them
    return report


# --------------------------------------------------------------------------- Moodle

MOODLE_COLUMNS = ("Time", "User full name", "Affected user", "Event context", "Component",
                  "Event name", "Description", "Origin", "IP address")  # fmt: skip
_MOODLE_TIME = ("%d/%m/%y, %H:%M:%S", "%d/%m/%y, %H:%M", "%d/%m/%Y, %H:%M", "%d %B %Y, %I:%M %p",
                "%d %b %Y, %I:%M:%S %p", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")  # fmt: skip
_USER_ID = re.compile(r"user with id '(\d+)'")
_CMID = re.compile(r"course module id '(\d+)'")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "event"


def _moodle_time(value: str, tz: ZoneInfo, time_format: str | None) -> datetime:
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC).replace(tzinfo=None)
    for fmt in [time_format] if time_format else _MOODLE_TIME:
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return _naive(moment.replace(tzinfo=tz))
    hint = f" (expected {time_format})" if time_format else " such as 22/11/26, 14:05"
    raise LineError(f"Time {value!r} is not a time{hint}")


def import_moodle_log(
    store: EventStore,
    path: os.PathLike | str,
    course_id: str,
    *,
    timezone: str = "UTC",
    time_format: str | None = None,
    home: str = "https://moodle.invalid",
    progress: Progress | None = None,
    batch: int = BATCH,
) -> ImportReport:
    """Import a Moodle log export (CSV) into ``course_id``; times are in ``timezone``.

    The learner is the Moodle user id from the description (``The user with id '5' ...``),
    else the full name. The object is the course module (``urn:moodle:cm:<id>``) when the
    description names one, else the event context. Verbs: an event name ending in "viewed"
    is *viewed*, "...submitted" / "submission created" is *completed*; any other event is
    ``urn:moodle:event:<event-name-slug>``.
    """
    _check_course(course_id)
    tz = ZoneInfo(timezone)
    path = Path(path)
    progress = progress or Progress(enabled=False)
    report = ImportReport()
    store.create()
    w = _Writer(store, report, batch)
    stored = datetime.now(UTC)
    previous, run = None, 0
    for line, row in _checked_rows(path, progress, "moodle log", MOODLE_COLUMNS, report):
        key = tuple(row[c] for c in MOODLE_COLUMNS if c != "IP address")
        run = run + 1 if key == previous else 0
        previous = key
        try:
            moment = _moodle_time(row["Time"], tz, time_format)
            name = row["User full name"].strip()
            if not name:
                raise LineError("User full name is empty")
            m = _USER_ID.search(row["Description"])
            learner = f"moodle-{m[1]}" if m else name
            cm = _CMID.search(row["Description"])
            context = row["Event context"].strip() or "course"
            iri = (
                f"urn:moodle:cm:{cm[1]}"
                if cm
                else f"urn:moodle:{course_id}:context:{_slug(context)}"
            )
            event = row["Event name"].strip()
            lowered = event.lower()
            if lowered.endswith("viewed"):
                verb = {"id": VIEWED, "display": {"en-US": "viewed"}}
            elif "submitted" in lowered or "submission created" in lowered:
                verb = {"id": COMPLETED, "display": {"en-US": "completed"}}
            else:
                verb = {
                    "id": f"urn:moodle:event:{_slug(event)}",
                    "display": {"en-US": event or "event"},
                }
            actor = {"objectType": "Agent", "name": name,
                     "account": {"homePage": home, "name": learner}}  # fmt: skip
            statement = {
                "id": _sid("moodle", course_id, *key, run),
                "actor": actor,
                "verb": verb,
                "object": {"objectType": "Activity", "id": iri,
                           "definition": {"name": {"en": context}}},
                "context": {"contextActivities": {"grouping": [{"id": course_iri(course_id)}]},
                            "platform": "Moodle",
                            "extensions": {"urn:moodle:component": row["Component"],
                                           "urn:moodle:origin": row["Origin"]}},
                "timestamp": moment.isoformat() + "Z",
            }  # fmt: skip
            w.add("statements", to_row(statement, stored=stored, source="moodle",
                                       course_id=course_id, learner=learner,
                                       timestamp=moment.replace(tzinfo=UTC)))  # fmt: skip
            if cm:
                w.add("resources", {"course_id": course_id, "resource_id": iri,
                                    "type": row["Component"], "title": context})  # fmt: skip
        except LineError as e:
            report.problem(path, line, str(e))
    w.flush()
    if any(report.new.values()):
        store.analyze()  # fresh statistics: SQLite picks its indexes by them
    return report
