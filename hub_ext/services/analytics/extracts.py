"""Course-scoped data for notebooks: a read-only extract of one course's events per course.

A published notebook of course X gets ``HUB_EXT_EVENTS_URL`` pointing at
``<data_root>/X/events.sqlite``, mounted read-only in its sandbox: the store's tables
(statements, courses, enrolments, resources, assessments, and FutureLearn's team_members,
video_stats, survey_responses) holding course X's rows only,
and no ``sources`` table. Whatever SQL a notebook runs, it sees its course and nothing
else, and cannot write (the file is on a read-only mount: not even a write lock).

Why an extract rather than PostgreSQL roles with row-level security or a data API:

- it is the same on every tier (SQLite or PostgreSQL store; local, Docker or cluster
  sandbox): a file, mounted read-only; the sandbox needs no network and no credential;
- the notebooks' SQL and ``hub_ext.services.events.queries`` work on it unchanged;
- a course's queries touch only its own rows and indexes (a 10-million-row course does not
  share a B-tree with the rest of the institution), and the extract is analysed (``ANALYZE``)
  for its own distribution.

What an extract has beyond the store's rows is what makes a course's figures fast at the
size of a MOOC (:data:`~..events.models.EXTRACT_METADATA`; on a course of 860,000
statements the routes that read them went from 0.25 to 1.4 s a request to 3 to 100 ms):

- ``learner_days``, the course's live statements added up per learner and day, which the
  day-level routes read instead of every statement of the course; kept in the copy's
  transaction: an update adds up again every day that has a statement it copied or voided
  (:data:`_ROLL_UP`);
- ``resource_sums``, the unfiltered heat-map (per resource, and per resource and week),
  and ``weekly_sums`` and ``funnel_sums``, the weekly activity and funnel: the copy's
  transaction unmarks them (``sums_made``) and notes the resources it touched, a second
  transaction makes them again (the heat-map's of those resources only, or of every one
  when the course's start or staff changed) and marks them
  (:func:`~..events.queries.refresh_sums`); until then the routes read ``learner_days``
  and the statements: slower, never wrong;
- an index of the scored statements (segments' mean scores).

An extract is built once (into a new file, renamed into place) and then brought up to date
in place when its course's data changes (:meth:`CourseExtracts.refresh`, at most every
``min_interval`` seconds): the statements stored since (by primary key, which only grows),
the statements they void, and the small tables again, in one SQLite transaction. On
PostgreSQL "since" is not simply the largest pk copied: pks are taken from a sequence at
insert and concurrent writers commit in any order, so a smaller pk may become visible after
a larger one was copied. There the update copies the statements above a *safe* pk, below
which none can still appear (:func:`advance`: from the snapshots of earlier updates),
again if copied already; see :func:`advance` for how it is known. Readers
(a notebook's pooled connections included) see the old or the new state, never half of it:
the extract is in rollback-journal mode and readers take shared locks, which a read-only
mount allows. The extract's *generation* (the store's per-course watermark it was brought
up to) is the per-course data watermark of the analytics cache: new events in one course
refresh only that course's answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ..events.models import (
    EXTRACT_METADATA,
    Assessment,
    Base,
    Course,
    Enrolment,
    Resource,
    Statement,
    SurveyResponse,
    TeamMember,
    VideoStats,
    learner_days,
)
from ..events.queries import VIEWED, refresh_sums
from ..events.store import create_tables, make_engine
from ..events.xapi import VOIDED

__all__ = ["CourseExtracts", "EXTRACT_NAME", "extract_url"]

EXTRACT_NAME = "events.sqlite"
#: the tables an extract holds, with the column that names the course
TABLES = {
    Statement.__table__: Statement.__table__.c.course_id,
    Course.__table__: Course.__table__.c.id,
    Enrolment.__table__: Enrolment.__table__.c.course_id,
    Resource.__table__: Resource.__table__.c.course_id,
    Assessment.__table__: Assessment.__table__.c.course_id,
    # FutureLearn's other exports (the team, video aggregates, surveys)
    TeamMember.__table__: TeamMember.__table__.c.course_id,
    VideoStats.__table__: VideoStats.__table__.c.course_id,
    SurveyResponse.__table__: SurveyResponse.__table__.c.course_id,
}
_BATCH = 5000
#: PostgreSQL: beside a course's directory (not in it: the sandbox mounts that), the record
#: of how far its extract is final (:func:`advance`): pks and transaction ids of the whole
#: store, which are no course's to read
_PROGRESS = ".{course}.progress.json"
#: the most snapshots an extract remembers (more: the safe pk just advances later)
_MOST_CHECKPOINTS = 100


def advance(progress: dict, xmin: int, xmax: int, top: int) -> dict:
    """The progress of an extract of a PostgreSQL store after an update made in a snapshot
    whose ``xmin`` and ``xmax`` are these and whose largest statement pk is ``top``.

    ``progress``: ``{"safe": pk, "checkpoints": [[top, xmax], ...]}`` (oldest first). Every
    statement with a pk at most ``safe`` that will ever be committed is committed (so in the
    extract); the update copies those above it (copied or not). Why a checkpoint becomes
    safe: a transaction holding a pk at most checkpoint *i*'s ``top`` took it before
    snapshot *i*, and had a transaction id by snapshot *i + 1* (an INSERT takes its id as
    it writes its first row, right after taking the row's pk; the next update is at least
    ``min_interval`` later), so its id is below *i + 1*'s ``xmax``. Once a snapshot's
    ``xmin`` (every transaction below it is over) reaches that, no statement at or below
    *i*'s ``top`` is still to come. The residual assumption is that a writer takes its
    transaction id within one update interval of taking its pk. A long transaction anywhere
    on the server holds ``xmin`` back: the safe pk then lags, and more is copied again; it
    is never wrong.
    """
    safe = progress.get("safe", 0)
    now = [top, xmax]
    # this snapshot is the "next" of the last checkpoint
    candidates = [list(c) for c in progress.get("checkpoints", [])] + [now]
    while len(candidates) >= 2 and xmin >= candidates[1][1]:
        safe = max(safe, candidates.pop(0)[0])
    checkpoints = candidates[:-1]
    if len(checkpoints) < _MOST_CHECKPOINTS and (not checkpoints or checkpoints[-1] != now):
        checkpoints.append(now)
    return {"safe": safe, "checkpoints": checkpoints}


#: statements voided by those copied since the last update (the void came later)
_VOID_NEW = (
    "UPDATE statements SET voided = 1 WHERE voided = 0 AND id IN "
    "(SELECT object_id FROM statements WHERE verb = ? AND pk > ?)"
)


#: learner_days (the per learner and day sums the day-level routes read) brought up to date
#: after the statements above pk ``:since`` were copied and what they void was voided: every
#: (course, day) with such a statement, or with a statement they voided, is added up again
#: from the extract's statements (on a new extract, ``since`` 0: every day). In the copy's
#: transaction, so a reader sees the statements and their sums of one state.
_ROLL_UP = (
    "CREATE TEMP TABLE IF NOT EXISTS touched_days "
    "(course_id TEXT NOT NULL, day INTEGER NOT NULL, PRIMARY KEY (course_id, day))",
    "DELETE FROM temp.touched_days",
    "INSERT OR IGNORE INTO temp.touched_days SELECT course_id, day FROM main.statements "
    "WHERE pk > :since",
    "INSERT OR IGNORE INTO temp.touched_days SELECT course_id, day FROM main.statements "
    "WHERE id IN (SELECT object_id FROM main.statements WHERE verb = :voided AND pk > :since)",
    "DELETE FROM main.learner_days WHERE (course_id, day) IN "
    "(SELECT course_id, day FROM temp.touched_days)",
    "INSERT INTO main.learner_days "
    "(course_id, day, learner, events, clicks, first_ts, last_ts) "
    "SELECT s.course_id, s.day, s.learner, count(*), "
    "coalesce(sum(CASE WHEN s.verb = :viewed THEN s.clicks ELSE 0 END), 0), "
    "min(s.timestamp), max(s.timestamp) "
    "FROM temp.touched_days t JOIN main.statements s "
    "ON s.course_id = t.course_id AND s.day = t.day "
    "WHERE s.voided = 0 GROUP BY s.course_id, s.day, s.learner",
    # the resources whose heat-map sums are to be made again (queries.refresh_sums)
    "INSERT OR IGNORE INTO main.resource_sums_pending (course_id, object_id) "
    "SELECT course_id, object_id FROM main.statements WHERE pk > :since "
    "AND object_type = 'Activity'",
    "INSERT OR IGNORE INTO main.resource_sums_pending (course_id, object_id) "
    "SELECT course_id, object_id FROM main.statements WHERE object_type = 'Activity' AND id IN "
    "(SELECT object_id FROM main.statements WHERE verb = :voided AND pk > :since)",
    # the sums are the course's before this update: not read until made again
    # (queries.refresh_sums)
    "DELETE FROM main.sums_made",
)


#: indexes an extract has beside the store's: the scored statements of a course by learner
#: (segments' mean scores: a scan of every statement of the course without it)
_EXTRACT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_extract_scored ON statements "
    "(course_id, learner, day, score, voided) WHERE score IS NOT NULL",
)


def _add_extract_tables(engine) -> None:
    """What an extract has that the store has not (:data:`EXTRACT_METADATA`'s tables,
    :data:`_EXTRACT_INDEXES`), where missing."""
    EXTRACT_METADATA.create_all(engine)
    with engine.begin() as conn:
        for sql in _EXTRACT_INDEXES:
            conn.exec_driver_sql(sql)


def _roll_up(execute, since: int) -> None:
    """Run :data:`_ROLL_UP` with ``execute(sql, params)`` (a sqlite3 connection's, or a
    SQLAlchemy connection's ``exec_driver_sql``), in the caller's transaction."""
    params = {"since": int(since), "voided": VOIDED, "viewed": VIEWED}
    for sql in _ROLL_UP:
        execute(sql, params)


def extract_url(path: str) -> str:
    """The URL a notebook opens an extract with (read-only)."""
    return f"sqlite:///file:{path}?mode=ro&uri=true"


class CourseExtracts(LoggingConfigurable):
    """Builds and refreshes one read-only extract per course from the event store."""

    store_url = Unicode(
        "",
        config=True,
        help="""SQLAlchemy URL of the event store, read-only (the analytics service reads it
        to build the extracts; notebooks never get it). Empty: every extract is empty.
        Example: ``c.CourseExtracts.store_url = "sqlite:///file:/srv/events.sqlite?mode=ro&uri=true"``""",
    )
    root = Unicode(
        "",
        config=True,
        help="""Directory of the extracts (``<root>/<course>/events.sqlite``, mode 0700).
        Default: ``data`` under the analytics runtime directory.""",
    )
    min_interval = Float(
        5.0,
        config=True,
        help="""Fewest seconds between two rebuilds of one course's extract: events reach
        notebooks within about this time. Default: 5.
        Example: ``c.CourseExtracts.min_interval = 30``""",
    )
    file_mode = Integer(
        0o600,
        config=True,
        help="""Permissions of an extract file; its directory is 0700. Default: 0600 (the
        Docker sandbox, whose user is not the service's, needs 0644).""",
    )
    dir_mode = Integer(
        0o700,
        config=True,
        help="""Permissions of a course's extract directory. Default: 0700 (the Docker
        sandbox's user needs 0755; the runtime directory above it stays 0700).""",
    )
    check_interval = Float(
        1.0,
        config=True,
        help="""Seconds between two looks at a course's watermark in the store. Default: 1.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._engine = None
        #: course -> (generation of the current extract, monotonic time it was built)
        self._built: dict[str, tuple[str, float]] = {}
        self._checked: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: dict[str, asyncio.Task] = {}

    # ------------------------------------------------------------------ paths

    def directory(self, course: str) -> Path:
        return Path(self.root) / course

    def path(self, course: str) -> Path:
        return self.directory(course) / EXTRACT_NAME

    @property
    def engine(self):
        if self._engine is None and self.store_url:
            self._engine = make_engine(self.store_url)
        return self._engine

    # ------------------------------------------------------------------ the watermark

    def store_watermark(self, course: str) -> str:
        """What changes whenever course ``course``'s rows in the store change (blocking)."""
        engine = self.engine
        if engine is None:
            return "no-store"
        S = Statement.__table__
        parts = []
        try:
            with engine.connect() as db:
                parts.append(
                    db.execute(
                        select(func.max(S.c.pk), func.count()).where(S.c.course_id == course)
                    ).one()
                )
                for table, column in list(TABLES.items())[1:]:
                    parts.append(
                        db.execute(
                            select(func.count()).select_from(table).where(column == course)
                        ).one()
                    )
        except Exception as e:  # no tables yet: the events service has not started
            if "no such table" in str(e) or "does not exist" in str(e):
                return "no-tables"
            raise
        return repr(tuple(tuple(p) for p in parts))

    # ------------------------------------------------------------------ building

    def build(self, course: str) -> str:
        """Bring course ``course``'s extract up to date now (blocking); returns its generation."""
        generation = self.store_watermark(course)
        started = time.monotonic()
        if self.path(course).exists():
            rows = self._update(course)
            what = "updated"
        else:
            rows = self._create(course)
            what = "built"
        self._built[course] = (generation, time.monotonic())
        self.log.info(
            "Extract of %s %s: %d rows in %.2fs", course, what, rows, time.monotonic() - started
        )
        return generation

    def _create(self, course: str) -> int:
        directory = self.directory(course)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(self.dir_mode)
        tmp = directory / f".{EXTRACT_NAME}.{uuid.uuid4().hex}.tmp"
        try:
            target = create_engine(f"sqlite:///{tmp}")
            Base.metadata.create_all(target, tables=list(TABLES))
            _add_extract_tables(target)
            target.dispose()
            with sqlite3.connect(tmp) as db:
                db.execute("PRAGMA journal_mode=DELETE")
            rows = self._copy(course, tmp, since=0)
            self._make_sums(tmp, course)
            with sqlite3.connect(tmp) as db:
                db.execute("ANALYZE")
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, self.path(course))
        finally:
            tmp.unlink(missing_ok=True)
        return rows

    def _update(self, course: str) -> int:
        target = create_engine(f"sqlite:///{self.path(course)}", connect_args={"timeout": 60})
        # an extract of an older release: what it lacks (learner_days: added up from every day)
        new_sums = not inspect(target).has_table(learner_days.name)
        create_tables(target, list(TABLES))
        _add_extract_tables(target)
        target.dispose()
        with sqlite3.connect(self.path(course), timeout=60) as db:
            since = db.execute("SELECT COALESCE(MAX(pk), 0) FROM statements").fetchone()[0]
        rows = self._copy(
            course, self.path(course), since=since, sums_since=0 if new_sums else None
        )
        self._make_sums(self.path(course), course)
        return rows

    @staticmethod
    def _make_sums(path: Path, course: str) -> None:
        """The sums an update unmarked, made again in a transaction of their own
        (:func:`~..events.queries.refresh_sums`)."""
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})
        try:
            refresh_sums(engine, course)
        finally:
            engine.dispose()

    def _copy(self, course: str, target: Path, *, since: int, sums_since: int | None = None) -> int:
        """Copy course rows into ``target``: statements with ``pk > since``, the rest whole;
        then learner_days for the days of the statements above ``sums_since`` (default
        the statements copied) and of those they voided."""
        if self.engine is None:
            return 0
        url = make_url(self.store_url)
        if url.get_backend_name() == "sqlite" and url.database:
            return self._copy_sqlite(course, target, url.database, since, sums_since)
        return self._copy_sql(course, target, since, sums_since)

    def _copy_sql(self, course: str, target: Path, since: int, sums_since: int | None) -> int:
        """Copy from a store that is not a SQLite file (PostgreSQL): in one snapshot (a
        REPEATABLE READ transaction), the statements above the extract's safe pk
        (:func:`advance`; ``since`` is 0 for a new extract), the rest whole."""
        out = create_engine(f"sqlite:///{target}", connect_args={"timeout": 60})
        count = 0
        S = Statement.__table__
        try:
            source = self.engine.connect().execution_options(isolation_level="REPEATABLE READ")
            with source as src, src.begin(), out.begin() as dst:
                snapshot = None
                if src.dialect.name == "postgresql":  # first: it is the transaction's snapshot
                    snapshot = src.execute(
                        text(
                            "SELECT pg_snapshot_xmin(s)::text::bigint, "
                            "pg_snapshot_xmax(s)::text::bigint FROM pg_current_snapshot() s"
                        )
                    ).one()
                if snapshot is not None:
                    progress = self._read_progress(course)
                    since = progress["safe"]
                for table, column in TABLES.items():
                    query = select(table).where(column == course)
                    add = insert(table)
                    if table is S:
                        query = query.where(S.c.pk > since).order_by(S.c.pk)
                        add = add.prefix_with("OR REPLACE")  # above the safe pk: copied again
                    else:
                        dst.execute(table.delete())
                    result = src.execution_options(stream_results=True, yield_per=_BATCH).execute(
                        query
                    )
                    for batch in result.mappings().partitions(_BATCH):
                        dst.execute(add, [dict(r) for r in batch])
                        count += len(batch)
                dst.exec_driver_sql(_VOID_NEW, (VOIDED, since))
                _roll_up(dst.exec_driver_sql, since if sums_since is None else sums_since)
                if snapshot is not None:
                    top = src.execute(select(func.coalesce(func.max(S.c.pk), 0))).scalar_one()
            if snapshot is not None:  # after the commit: never ahead of the extract
                self._write_progress(course, advance(progress, *snapshot, top))
        finally:
            out.dispose()
        return count

    def _progress_path(self, course: str) -> Path:
        return Path(self.root) / _PROGRESS.format(course=course)

    def _read_progress(self, course: str) -> dict:
        """None recorded: a new extract, or one made before (which may miss statements:
        copied again)."""
        if not self.path(course).exists():
            return {"safe": 0, "checkpoints": []}
        try:
            return json.loads(self._progress_path(course).read_text())
        except (OSError, ValueError):
            return {"safe": 0, "checkpoints": []}

    def _write_progress(self, course: str, progress: dict) -> None:
        path = self._progress_path(course)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(progress))
        os.replace(tmp, path)

    @staticmethod
    def _copy_sqlite(
        course: str, target: Path, database: str, since: int, sums_since: int | None
    ) -> int:
        """SQLite to SQLite in SQLite itself (ATTACH, INSERT ... SELECT): no Python per row."""
        path = database[len("file:") :] if database.startswith("file:") else database
        path = path.split("?", 1)[0]
        count = 0
        db = sqlite3.connect(target, timeout=60, isolation_level=None)
        try:
            db.execute("ATTACH DATABASE ? AS store", (f"file:{path}?mode=ro",))
            db.execute("BEGIN IMMEDIATE")
            for table, column in TABLES.items():
                where = f"{column.name} = ?"
                if table is Statement.__table__:
                    where += f" AND pk > {int(since)}"
                else:
                    db.execute(f"DELETE FROM main.{table.name}")
                # by name: a column added later is at the end of a table made before
                have = {r[1] for r in db.execute(f"PRAGMA store.table_info({table.name})")}
                names = ", ".join(f'"{c.name}"' for c in table.columns if c.name in have)
                cur = db.execute(
                    f"INSERT INTO main.{table.name} ({names}) "
                    f"SELECT {names} FROM store.{table.name} WHERE {where}",
                    (course,),
                )
                count += cur.rowcount
            db.execute(_VOID_NEW, (VOIDED, since))
            _roll_up(db.execute, since if sums_since is None else sums_since)
            db.execute("COMMIT")
            db.execute("DETACH DATABASE store")
        finally:
            db.close()
        return count

    # ------------------------------------------------------------------ refreshing

    def generation(self, course: str) -> str | None:
        built = self._built.get(course)
        return built[0] if built else None

    async def ensure(self, course: str) -> str:
        """The extract exists (built now if not); its generation."""
        lock = self._locks.setdefault(course, asyncio.Lock())
        async with lock:
            if course not in self._built or not self.path(course).exists():
                # at start: an extract left by the last run is brought up to date
                return await asyncio.to_thread(self.build, course)
            return self._built[course][0]

    async def refresh(self, course: str) -> str:
        """The generation to serve now; starts a rebuild in the background if the data moved."""
        generation = await self.ensure(course)
        now = time.monotonic()
        checked = self._checked.get(course)
        if checked is None or now - checked[1] >= self.check_interval:
            current = await asyncio.to_thread(self.store_watermark, course)
            self._checked[course] = checked = (current, now)
        if checked[0] != generation:
            built_at = self._built[course][1]
            pending = self._pending.get(course)
            if (pending is None or pending.done()) and now - built_at >= self.min_interval:
                self._pending[course] = asyncio.ensure_future(self._rebuild(course))
        return generation

    async def _rebuild(self, course: str) -> None:
        async with self._locks.setdefault(course, asyncio.Lock()):
            try:
                await asyncio.to_thread(self.build, course)
            except Exception:
                self.log.exception(
                    "Extract of %s could not be refreshed (the old one stays)", course
                )

    def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        if self._engine is not None:
            self._engine.dispose()
