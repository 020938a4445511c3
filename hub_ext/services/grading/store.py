"""What the grading service keeps: fetches, submissions (the history), grading runs, manual grades.

One SQL database through SQLAlchemy (SQLite in the service's data directory by default,
WAL journal, file 0600; PostgreSQL by URL), engines made as the event store makes them.
Everything here is synchronous; the service calls it from threads.

- ``fetches``: who fetched which assignment, first and last (the first starts a timed session);
- ``submissions``: every attempt, with its number, moment, SHA-256, size, lateness and the
  notebook itself. **Never deleted, never overwritten**: the store has no call that would,
  and the database refuses it (a trigger), so a bug elsewhere cannot lose work;
- ``runs``: each grading of a submission (run 1 at submission, one more per regrade):
  ``queued`` -> ``running`` -> ``done``, with the result, the learner's feedback notebook,
  the points and the final score (after manual points and the late penalty). A run's
  result and its ``done`` are written in one transaction, and only by the claim that
  started it (``tries``), so a run is done once;
- ``manual_grades``: a teacher's points and comment per manually graded cell, appended
  (the latest per cell counts; earlier ones stay as the record).

Attempt numbers are unique per learner and assignment (a constraint): two submissions at
the same moment cannot both take the last attempt; the loser is decided again.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from ..events.store import _insert, make_engine
from .policy import Accepted, Refusal

__all__ = ["GradingStore", "Job", "final_score", "metadata"]

metadata = MetaData()
_ID = String(64)

fetches = Table(
    "fetches",
    metadata,
    Column("course_id", _ID, primary_key=True),
    Column("assignment_id", _ID, primary_key=True),
    Column("learner", String(255), primary_key=True),
    Column("first_fetched_at", DateTime, nullable=False),
    Column("last_fetched_at", DateTime, nullable=False),
    Column("count", Integer, nullable=False),
)
submissions = Table(
    "submissions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("course_id", _ID, nullable=False),
    Column("assignment_id", _ID, nullable=False),
    Column("learner", String(255), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("submitted_at", DateTime, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("notebook", LargeBinary, nullable=False),
    Column("late_days", Integer, nullable=False),
    Column("penalty", Float, nullable=False),
    UniqueConstraint("course_id", "assignment_id", "learner", "attempt"),
    Index("ix_submissions_course_assignment", "course_id", "assignment_id"),
)
runs = Table(
    "runs",
    metadata,
    Column("submission_id", String(36), ForeignKey("submissions.id"), primary_key=True),
    Column("run", Integer, primary_key=True),
    #: why it was queued: "submitted" or "regrade"
    Column("reason", String(16), nullable=False),
    Column("state", String(8), nullable=False),
    Column("queued_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    #: how many times a worker claimed it (more than one: it was interrupted and graded again)
    Column("tries", Integer, nullable=False, default=0),
    Column("status", String(32)),
    Column("result", JSON),
    Column("feedback", LargeBinary),
    Column("source_version", String(16)),
    Column("score", Float),
    Column("max_score", Float),
    Column("final_score", Float),
    #: its statements are in the event store
    Column("published", Boolean, nullable=False, default=False),
    Index("ix_runs_state", "state", "queued_at"),
)
manual_grades = Table(
    "manual_grades",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("submission_id", String(36), ForeignKey("submissions.id"), nullable=False),
    Column("grade_id", String(255), nullable=False),
    Column("points", Float, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("grader", String(255), nullable=False),
    Column("at", DateTime, nullable=False),
    Index("ix_manual_submission", "submission_id"),
)

# the database itself refuses to lose a submission
_KEEP = "submissions are kept as they were handed in: never changed, never deleted"
for _dialect, _ddl in (
    (
        "sqlite",
        [
            f"CREATE TRIGGER submissions_no_update BEFORE UPDATE ON submissions "
            f"BEGIN SELECT RAISE(ABORT, '{_KEEP}'); END",
            f"CREATE TRIGGER submissions_no_delete BEFORE DELETE ON submissions "
            f"BEGIN SELECT RAISE(ABORT, '{_KEEP}'); END",
        ],
    ),
    (
        "postgresql",
        [
            "CREATE OR REPLACE FUNCTION hub_ext_keep_submissions() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{_KEEP}'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER submissions_keep BEFORE UPDATE OR DELETE ON submissions "
            "FOR EACH ROW EXECUTE FUNCTION hub_ext_keep_submissions()",
        ],
    ),
):
    for _statement in _ddl:
        event.listen(submissions, "after_create", DDL(_statement).execute_if(dialect=_dialect))


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _aware_dict(row: dict) -> dict:
    return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _row(row) -> dict:
    """A row as a dict, its times aware (UTC) again."""
    return _aware_dict(dict(row._mapping))


def final_score(result: dict | None, manual: dict[str, float], penalty: float) -> float | None:
    """The points that count: the tests' points, a teacher's for the manually graded cells
    (else what the autograder gave them: 0 for no response), minus the late penalty."""
    if not result or result.get("max_points") is None:
        return None
    points = 0.0
    for test in result.get("tests", []):
        if test["grade_id"] in manual and test["kind"] in ("manual", "task"):
            points += manual[test["grade_id"]]
        else:
            points += test.get("points") or 0.0
    return round(max(points, 0.0) * (1.0 - penalty), 4)


@dataclass(frozen=True)
class Job:
    """A claimed run: what a worker needs to grade it."""

    submission_id: str
    run: int
    tries: int
    course_id: str
    assignment_id: str
    learner: str
    attempt: int
    submitted_at: datetime


#: the submission's columns that go with its runs (not the notebook: it is large)
_SUBMISSION_COLUMNS = [c for c in submissions.c if c.name != "notebook"]
_RUN_COLUMNS = [c for c in runs.c if c.name not in ("feedback", "submission_id")]


class GradingStore:
    """The grading database behind one URL. ``GradingStore(url).create()`` makes the tables."""

    def __init__(self, url: str):
        self.url = url
        u = make_url(url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            # 0600 before SQLite opens it (its -wal and -shm files take the same mode)
            path = Path(u.database)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            path.chmod(0o600)
        self.engine = make_engine(url)

    def __repr__(self) -> str:
        return f"<GradingStore {make_url(self.url).render_as_string(hide_password=True)}>"

    def create(self) -> None:
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ fetches

    def record_fetch(self, course: str, assignment: str, learner: str, now: datetime) -> dict:
        """Record a fetch; the learner's fetch row (``first_fetched_at`` is the first's)."""
        key = and_(
            fetches.c.course_id == course,
            fetches.c.assignment_id == assignment,
            fetches.c.learner == learner,
        )
        row = {"course_id": course, "assignment_id": assignment, "learner": learner}
        moment = _naive(now)
        with self.engine.begin() as conn:
            conn.execute(
                _insert(self.engine, fetches).on_conflict_do_nothing(),
                [{**row, "first_fetched_at": moment, "last_fetched_at": moment, "count": 0}],
            )
            conn.execute(
                update(fetches).where(key).values(last_fetched_at=moment, count=fetches.c.count + 1)
            )
            return _row(conn.execute(select(fetches).where(key)).one())

    def fetches(self, course: str, assignment: str | None = None, learner: str | None = None):
        q = select(fetches).where(fetches.c.course_id == course)
        if assignment is not None:
            q = q.where(fetches.c.assignment_id == assignment)
        if learner is not None:
            q = q.where(fetches.c.learner == learner)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(fetches.c.first_fetched_at, fetches.c.learner))
            return [_row(r) for r in rows]

    def first_fetch(self, course: str, assignment: str, learner: str) -> datetime | None:
        found = self.fetches(course, assignment, learner)
        return found[0]["first_fetched_at"] if found else None

    # ------------------------------------------------------------------ submissions

    def submit(
        self,
        course: str,
        assignment: str,
        learner: str,
        notebook: bytes,
        now: datetime,
        decide: Callable[[int, datetime | None], Refusal | Accepted],
    ) -> Refusal | dict:
        """Keep a submission and queue its first run, if ``decide(attempts_used, first_fetch)``
        accepts it; the refusal otherwise. Decided in the transaction that stores it."""
        for _ in range(5):
            try:
                with self.engine.begin() as conn:
                    return self._submit(conn, course, assignment, learner, notebook, now, decide)
            except IntegrityError:
                continue  # another attempt took this number meanwhile: decide again
        raise RuntimeError("could not number the attempt (five concurrent submissions)")

    def _submit(self, conn, course, assignment, learner, notebook, now, decide):
        mine = and_(
            submissions.c.course_id == course,
            submissions.c.assignment_id == assignment,
            submissions.c.learner == learner,
        )
        used = conn.execute(select(func.count()).select_from(submissions).where(mine)).scalar()
        first = conn.execute(
            select(fetches.c.first_fetched_at).where(
                fetches.c.course_id == course,
                fetches.c.assignment_id == assignment,
                fetches.c.learner == learner,
            )
        ).scalar()
        decision = decide(used, _aware(first))
        if isinstance(decision, Refusal):
            return decision
        row = {
            "id": str(uuid.uuid4()),
            "course_id": course,
            "assignment_id": assignment,
            "learner": learner,
            "attempt": used + 1,
            "submitted_at": _naive(now),
            "sha256": hashlib.sha256(notebook).hexdigest(),
            "size": len(notebook),
            "notebook": notebook,
            "late_days": decision.late_days,
            "penalty": decision.penalty,
        }
        conn.execute(submissions.insert(), [row])
        self._queue(conn, row["id"], 1, "submitted", now)
        row.pop("notebook")
        return _aware_dict(row)

    def _queue(self, conn, submission_id: str, run: int, reason: str, now: datetime) -> None:
        conn.execute(
            runs.insert(),
            [
                {
                    "submission_id": submission_id,
                    "run": run,
                    "reason": reason,
                    "state": "queued",
                    "queued_at": _naive(now),
                    "tries": 0,
                    "published": False,
                }
            ],
        )

    def submission(self, submission_id: str) -> dict | None:
        """A submission (without its notebook) with its runs, newest last; None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*_SUBMISSION_COLUMNS).where(submissions.c.id == submission_id)
            ).first()
            if row is None:
                return None
            out = _row(row)
            out["runs"] = [
                _row(r)
                for r in conn.execute(
                    select(*_RUN_COLUMNS)
                    .where(runs.c.submission_id == submission_id)
                    .order_by(runs.c.run)
                )
            ]
            out["manual"] = self._manual(conn, [submission_id]).get(submission_id, {})
        return out

    def notebook(self, submission_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(submissions.c.notebook).where(submissions.c.id == submission_id)
            ).scalar()

    def submissions(
        self, course: str, assignment: str | None = None, learner: str | None = None
    ) -> list[dict]:
        """Submissions (no notebooks), oldest first, each with its latest run (``latest``)
        and latest done run (``graded``)."""
        q = select(*_SUBMISSION_COLUMNS).where(submissions.c.course_id == course)
        if assignment is not None:
            q = q.where(submissions.c.assignment_id == assignment)
        if learner is not None:
            q = q.where(submissions.c.learner == learner)
        with self.engine.connect() as conn:
            found = [
                _row(r)
                for r in conn.execute(q.order_by(submissions.c.submitted_at, submissions.c.attempt))
            ]
            ids = [s["id"] for s in found]
            by_submission: dict[str, list[dict]] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for r in conn.execute(
                    select(runs.c.submission_id, *_RUN_COLUMNS)
                    .where(runs.c.submission_id.in_(chunk))
                    .order_by(runs.c.run)
                ):
                    by_submission.setdefault(r.submission_id, []).append(_row(r))
        for s in found:
            mine = by_submission.get(s["id"], [])
            s["latest"] = mine[-1] if mine else None
            done = [r for r in mine if r["state"] == "done"]
            s["graded"] = done[-1] if done else None
        return found

    def feedback(self, submission_id: str) -> tuple[int, bytes] | None:
        """(run, feedback notebook) of the latest done run, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.run, runs.c.feedback)
                .where(runs.c.submission_id == submission_id, runs.c.state == "done")
                .order_by(runs.c.run.desc())
                .limit(1)
            ).first()
        return (row.run, row.feedback) if row is not None and row.feedback is not None else None

    # ------------------------------------------------------------------ manual grades

    def _manual(self, conn, ids: Iterable[str]) -> dict[str, dict[str, dict]]:
        """submission -> grade_id -> the latest manual grade."""
        out: dict[str, dict[str, dict]] = {}
        for r in conn.execute(
            select(manual_grades)
            .where(manual_grades.c.submission_id.in_(list(ids)))
            .order_by(manual_grades.c.pk)
        ):
            out.setdefault(r.submission_id, {})[r.grade_id] = _row(r)
        return out

    def _manual_points(self, conn, submission_id: str) -> dict[str, float]:
        grades = self._manual(conn, [submission_id]).get(submission_id, {})
        return {gid: g["points"] for gid, g in grades.items()}

    def add_manual(
        self, submission_id: str, grades: dict[str, tuple[float, str]], grader: str, now: datetime
    ) -> None:
        """Record a teacher's ``grades`` (grade_id -> (points, comment)) and the runs' new
        final scores, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(
                manual_grades.insert(),
                [
                    {
                        "submission_id": submission_id,
                        "grade_id": gid,
                        "points": float(points),
                        "comment": comment,
                        "grader": grader,
                        "at": _naive(now),
                    }
                    for gid, (points, comment) in grades.items()
                ],
            )
            self._refresh_final(conn, submission_id)

    def _refresh_final(self, conn, submission_id: str) -> None:
        penalty = conn.execute(
            select(submissions.c.penalty).where(submissions.c.id == submission_id)
        ).scalar_one()
        manual = self._manual_points(conn, submission_id)
        for r in conn.execute(
            select(runs.c.run, runs.c.result, runs.c.final_score).where(
                runs.c.submission_id == submission_id, runs.c.state == "done"
            )
        ).all():
            final = final_score(r.result, manual, penalty)
            if final == r.final_score:
                continue
            conn.execute(
                update(runs)
                .where(runs.c.submission_id == submission_id, runs.c.run == r.run)
                # a new final score is published again: a new ``scored`` statement
                .values(final_score=final, published=False)
            )

    # ------------------------------------------------------------------ the queue

    def requeue_interrupted(self) -> int:
        """Runs left ``running`` (the service stopped or died mid-grading) go back to
        ``queued``; how many. Call once at start, before any worker claims."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(runs)
                .where(runs.c.state == "running")
                .values(state="queued", started_at=None)
            ).rowcount

    def claim(self, now: datetime) -> Job | None:
        """Take the oldest queued run (state ``running``, one more try); None if none."""
        while True:
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(runs.c.submission_id, runs.c.run, runs.c.tries)
                    .where(runs.c.state == "queued")
                    .order_by(runs.c.queued_at, runs.c.submission_id, runs.c.run)
                    .limit(1)
                ).first()
                if row is None:
                    return None
                taken = conn.execute(
                    update(runs)
                    .where(
                        runs.c.submission_id == row.submission_id,
                        runs.c.run == row.run,
                        runs.c.state == "queued",
                    )
                    .values(state="running", started_at=_naive(now), tries=row.tries + 1)
                ).rowcount
                if not taken:
                    continue  # another worker took it between the two statements
                s = conn.execute(
                    select(*_SUBMISSION_COLUMNS).where(submissions.c.id == row.submission_id)
                ).one()
                return Job(
                    submission_id=s.id,
                    run=row.run,
                    tries=row.tries + 1,
                    course_id=s.course_id,
                    assignment_id=s.assignment_id,
                    learner=s.learner,
                    attempt=s.attempt,
                    submitted_at=_aware(s.submitted_at),
                )

    def release(self, job: Job, *, count_try: bool = True) -> None:
        """Put a claimed run back in the queue; ``count_try=False`` when nothing was tried
        (no sandbox could be made), so waiting for one never uses up the run's tries."""
        tries = job.tries if count_try else job.tries - 1
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(*self._claimed(job))
                .values(state="queued", started_at=None, tries=tries)
            )

    @staticmethod
    def _claimed(job: Job):
        return (
            runs.c.submission_id == job.submission_id,
            runs.c.run == job.run,
            runs.c.state == "running",
            runs.c.tries == job.tries,
        )

    def finish(
        self,
        job: Job,
        *,
        now: datetime,
        status: str,
        result: dict,
        feedback: bytes | None,
        source_version: str | None,
    ) -> bool:
        """Write a run's result and ``done`` in one transaction; False if this claim no
        longer holds the run (it was requeued and claimed again): nothing is written."""
        with self.engine.begin() as conn:
            penalty = conn.execute(
                select(submissions.c.penalty).where(submissions.c.id == job.submission_id)
            ).scalar_one()
            manual = self._manual_points(conn, job.submission_id)
            done = conn.execute(
                update(runs)
                .where(*self._claimed(job))
                .values(
                    state="done",
                    finished_at=_naive(now),
                    status=status,
                    result=result,
                    feedback=feedback,
                    source_version=source_version,
                    score=result.get("total"),
                    max_score=result.get("max_points"),
                    final_score=final_score(result, manual, penalty),
                )
            ).rowcount
        return bool(done)

    def unpublished(self) -> list[dict]:
        """Done runs whose statements are not in the event store yet (or whose final score
        changed since: a teacher graded by hand), with their submission, and
        ``manual_revision`` (the latest manual grade's pk, 0 if none) and ``manual_at``."""
        of_submission = manual_grades.c.submission_id == submissions.c.id
        revision = select(func.coalesce(func.max(manual_grades.c.pk), 0)).where(of_submission)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    *_SUBMISSION_COLUMNS,
                    *[c.label(f"run_{c.name}") for c in _RUN_COLUMNS],
                    revision.scalar_subquery().label("manual_revision"),
                    select(func.max(manual_grades.c.at))
                    .where(of_submission)
                    .scalar_subquery()
                    .label("manual_at"),
                )
                .join(runs, runs.c.submission_id == submissions.c.id)
                .where(runs.c.state == "done", runs.c.published.is_(False))
                .order_by(runs.c.finished_at)
            )
            return [_row(r) for r in rows]

    def mark_published(self, submission_id: str, run: int, manual_revision: int = 0) -> None:
        """The run's statements are stored, as of ``manual_revision``: a manual grade
        recorded since leaves it to publish again."""
        newer = select(manual_grades.c.pk).where(
            manual_grades.c.submission_id == submission_id,
            manual_grades.c.pk > manual_revision,
        )
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.submission_id == submission_id, runs.c.run == run, ~newer.exists())
                .values(published=True)
            )

    def regrade(self, course: str, assignment: str, now: datetime) -> list[dict]:
        """A new run for the latest submission of every learner (unless one is waiting
        already); the runs queued, as ``{submission_id, learner, run}``."""
        queued = []
        with self.engine.begin() as conn:
            latest = (
                select(submissions.c.learner, func.max(submissions.c.attempt).label("attempt"))
                .where(submissions.c.course_id == course, submissions.c.assignment_id == assignment)
                .group_by(submissions.c.learner)
                .subquery()
            )
            for sid, learner in conn.execute(
                select(submissions.c.id, submissions.c.learner)
                .join(
                    latest,
                    and_(
                        submissions.c.learner == latest.c.learner,
                        submissions.c.attempt == latest.c.attempt,
                    ),
                )
                .where(submissions.c.course_id == course, submissions.c.assignment_id == assignment)
                .order_by(submissions.c.learner)
            ).all():
                mine = conn.execute(
                    select(runs.c.run, runs.c.state).where(runs.c.submission_id == sid)
                ).all()
                if any(state != "done" for _, state in mine):
                    continue  # a run is waiting: it will read the new tests anyway
                run = max((r for r, _ in mine), default=0) + 1
                self._queue(conn, sid, run, "regrade", now)
                queued.append({"submission_id": sid, "learner": learner, "run": run})
        return queued

    def counts(self) -> dict[str, int]:
        """Runs by state (for the health answer and the tests)."""
        with self.engine.connect() as conn:
            return dict(
                conn.execute(select(runs.c.state, func.count()).group_by(runs.c.state)).all()
            )
