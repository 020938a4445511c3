"""A course extract's per learner and day sums (``learner_days``) are its statements, added up.

The day-level routes (summary, daily and weekly activity, the funnel, segments) read
``learner_days`` where the extract keeps it instead of every statement of the course (on a
course of 860,000 statements, seconds a request). A sum that drifts from the statements is
a figure a teacher acts on that is wrong, so each test here adds the statements up itself,
in Python, from the store, and compares: after a new extract, after updates that add to a
day already summed and void a statement of one, on SQLite and on PostgreSQL (whose updates
copy statements again), and on an extract of an earlier release, which had no sums.

Real parts: the OULAD import (click-table head) and the FutureLearn slice, the event
store's own writes (PostgreSQL from Debian's package), the analytics service's extracts.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from hub_ext.services.analytics.extracts import CourseExtracts
from hub_ext.services.events import queries as q
from hub_ext.services.events.models import EXTRACT_METADATA, Statement, TeamMember
from hub_ext.services.events.store import EventStore, make_engine
from hub_ext.services.events.xapi import VOIDED, to_row, validate_statement
from tests.events_fixtures import new_database, oulad_store, postgres_url  # noqa: F401

COURSE = "ds101"
OTHER = "ma201"
EXPERIENCED = "http://adlnet.gov/expapi/verbs/experienced"


@contextlib.contextmanager
def extracts_of(store: EventStore, root):
    extracts = CourseExtracts(store_url=store.readonly_url, root=str(root))
    try:
        yield extracts
    finally:
        extracts.close()


def expected_sums(store: EventStore, course: str) -> dict:
    """(learner, day) -> [events, clicks, first, last] of the course's live statements,
    added up here from the store's rows."""
    S = Statement.__table__
    sums: dict = {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(S.c.learner, S.c.day, S.c.verb, S.c.clicks, S.c.timestamp).where(
                S.c.course_id == course, S.c.voided.is_(False)
            )
        )
        for learner, day, verb, clicks, ts in rows:
            s = sums.setdefault((learner, day), [0, 0, ts, ts])
            s[0] += 1
            s[1] += clicks if verb == q.VIEWED else 0
            s[2], s[3] = min(s[2], ts), max(s[3], ts)
    return sums


def extract_sums(extracts: CourseExtracts, course: str) -> dict:
    engine = make_engine(f"sqlite:///{extracts.path(course)}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(q.L)).all()
    finally:
        engine.dispose()
    assert {r.course_id for r in rows} <= {course}  # the course's own rows only
    out = {(r.learner, r.day): [r.events, r.clicks, r.first_ts, r.last_ts] for r in rows}
    assert len(out) == len(rows), "a (learner, day) summed twice"
    return out


def expected_resource_sums(store: EventStore, course: str, staff=(), start=None) -> dict:
    """(resource, week or None) -> [clicks, events, learners] of the course's live Activity
    statements of learners not ``staff``, weeks from the day ``start`` (default: the first
    such statement's day, as for a course with no start of its own), added up here."""
    S = Statement.__table__
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(S.c.object_id, S.c.learner, S.c.day, S.c.verb, S.c.clicks).where(
                S.c.course_id == course, S.c.voided.is_(False), S.c.object_type == "Activity"
            )
        ).all()
    # (a statement of no learner is left out once the course has staff, as SQL's NOT IN
    # leaves out NULL: the figures' own rule, kept here)
    rows = [r for r in rows if not staff or (r.learner is not None and r.learner not in staff)]
    start = min(r.day for r in rows) if start is None else start
    sums: dict = {}
    for r in rows:
        for key in ((r.object_id, None), (r.object_id, (r.day - start) // 7)):
            s = sums.setdefault(key, [0, 0, set()])
            s[0] += r.clicks if r.verb == q.VIEWED else 0
            s[1] += 1
            if r.learner is not None:  # distinct learners: a statement of none is not one
                s[2].add(r.learner)
    return {k: [c, e, len(learners)] for k, (c, e, learners) in sums.items()}


def extract_resource_sums(extracts: CourseExtracts, course: str) -> dict:
    engine = make_engine(f"sqlite:///{extracts.path(course)}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(q.RS)).all()
            assert q._sums_made(conn, course)
    finally:
        engine.dispose()
    out = {(r.object_id, r.week): [r.clicks, r.events, r.learners] for r in rows}
    assert len(out) == len(rows) and {r.course_id for r in rows} <= {course}
    return out


def assert_week_figures_are_the_store_s(extracts: CourseExtracts, store: EventStore) -> None:
    """The extract's weekly activity and funnel (its week sums) are the store's (which has
    no sums: its statements are read)."""
    engine = make_engine(f"sqlite:///{extracts.path(COURSE)}")
    try:
        with engine.connect() as conn:
            assert q._sums_made(conn, COURSE)
        for figure in (q.weekly_engagement, q.funnel):
            assert figure(engine, COURSE) == figure(store.engine, COURSE)
    finally:
        engine.dispose()


def day_level_figures(engine, course: str) -> dict:
    return {
        "summary": q.summary(engine, course),
        "daily": [q.daily_activity(engine, course, measure=m) for m in ("learners", "events", "clicks")],
        "window": q.daily_activity(
            engine, course, since=datetime(2013, 9, 25).date(), until=datetime(2013, 10, 2).date()
        ),
        "weekly": q.weekly_engagement(engine, course),
        "funnel": q.funnel(engine, course),
        "segments": q.segments(engine, course),
        "segments_window": q.segments(engine, course, since=datetime(2013, 10, 1).date()),
        "sentiment": q.sentiment_weekly(engine, course),
        "resources": q.heatmap(engine, course),
        "heatmap": q.resource_weeks(engine, course, limit=40),
        "heatmap_filtered": q.resource_weeks(engine, course, group="final_result:Fail", limit=10),
    }  # fmt: skip


def test_an_oulad_extract_s_sums_are_its_statements_and_give_the_same_figures(
    oulad_store,  # noqa: F811
    tmp_path,
):
    """OULAD AAA 2013J (the click table's head, 15,538 statements): every (learner, day)
    and heat-map sum equals the statements added up here, and every figure read from the
    sums equals the same figure read from the statements (the same extract with its sums
    taken away, as an extract of an earlier release is; or unmarked, as an update leaves them)."""
    course = "aaa-2013j"
    with extracts_of(oulad_store, tmp_path / "data") as extracts:
        extracts.build(course)
        sums = extract_sums(extracts, course)
        assert sums == expected_sums(oulad_store, course)
        assert sum(s[0] for s in sums.values()) == 15_538
        assert sum(s[1] for s in sums.values()) == 61_980  # OULAD's sum_click of the head
        start = (date(2013, 10, 1) - date(1970, 1, 1)).days  # the J presentations' start
        assert extract_resource_sums(extracts, course) == expected_resource_sums(
            oulad_store, course, start=start
        )
        unsummed = tmp_path / "unsummed.sqlite"
        shutil.copy(extracts.path(course), unsummed)
        with sqlite3.connect(unsummed) as db:
            for table in EXTRACT_METADATA.tables:
                db.execute(f"DROP TABLE {table}")
        summed_engine = make_engine(f"sqlite:///{extracts.path(course)}")
        plain_engine = make_engine(f"sqlite:///{unsummed}")
        try:
            with summed_engine.connect() as a, plain_engine.connect() as b:
                assert q._DayLevel(a).summed and not q._DayLevel(b).summed
                assert q._sums_made(a, course) and not q._sums_made(b, course)
            summed = day_level_figures(summed_engine, course)
            plain = day_level_figures(plain_engine, course)
        finally:
            summed_engine.dispose()
            plain_engine.dispose()
        assert summed == plain
        # unmarked (an update's statements, not summed yet): learner_days and the statements
        pending = tmp_path / "pending.sqlite"
        shutil.copy(extracts.path(course), pending)
        with sqlite3.connect(pending) as db:
            db.execute("DELETE FROM sums_made")  # as an update leaves them
            db.execute("UPDATE resource_sums SET clicks = clicks + 1")  # would show if read
            db.execute("UPDATE funnel_sums SET reached = reached + 1")
            db.execute("UPDATE weekly_sums SET events = events + 1")
        pending_engine = make_engine(f"sqlite:///{pending}")
        try:
            with pending_engine.connect() as conn:
                assert not q._sums_made(conn, course) and q._DayLevel(conn).summed
            assert q.resource_weeks(pending_engine, course, limit=40) == plain["heatmap"]
            assert q.funnel(pending_engine, course) == plain["funnel"]
            assert q.weekly_engagement(pending_engine, course) == plain["weekly"]
        finally:
            pending_engine.dispose()
        assert summed == day_level_figures(oulad_store.engine, course)  # the store's own
        assert summed["weekly"]["weeks"][0]["week"] == -2  # days before the start: negative


def statement(learner: str | None, when: datetime, *, verb=q.VIEWED, clicks=1, course=COURSE):
    s = {
        "id": str(uuid.uuid4()),
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": "https://h.example", "name": learner or "nobody"},
        },
        "verb": {"id": verb},
        "object": {"objectType": "Activity", "id": f"https://h.example/step/{when.day}"},
        "timestamp": when.isoformat().replace("+00:00", "Z"),
    }
    validate_statement(s)
    row = to_row(s, stored=datetime.now(UTC), source="lms", course_id=course, learner=learner)
    row["clicks"] = clicks
    row["learner"] = learner  # None: an actor the store maps to no learner
    return row


def void(row: dict) -> dict:
    s = {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://h.example", "name": "t"}},
        "verb": {"id": VOIDED},
        "object": {"objectType": "StatementRef", "id": row["id"]},
    }
    validate_statement(s)
    return to_row(s, stored=datetime.now(UTC), source="lms", course_id=COURSE)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_updates_keep_the_sums_of_what_they_touch_and_only_of_the_course(
    kind,
    tmp_path,
    request,
):
    """Updates: new statements on days and resources already summed and on new ones (with
    another course's beside them in the store), a void of a statement summed two updates
    before, nothing, then a team member and an earlier day (the heat-map's staff and
    weeks change). After each, the extract's per-day and heat-map sums equal the statements added
    up here, and an extract built new from the store; the other course's rows are in
    neither. On PostgreSQL an update copies the statements above its safe pk again: they
    must not be counted twice."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = new_database(request.getfixturevalue("postgres_url"), "day_sums")
    store = EventStore(url)
    store.create()
    day = datetime(2026, 10, 5, 9, tzinfo=UTC)
    try:
        with extracts_of(store, tmp_path / "data") as extracts:
            first = [
                statement("ann", day, clicks=3),
                statement("ann", day + timedelta(hours=5), verb=EXPERIENCED, clicks=7),
                statement("bob", day + timedelta(days=1), clicks=2),
                statement(None, day),  # maps to no learner
                statement("ann", day, clicks=100, course=OTHER),
            ]
            store.store_statements(first)
            extracts.build(COURSE)
            assert extract_sums(extracts, COURSE) == expected_sums(store, COURSE)
            assert extract_resource_sums(extracts, COURSE) == expected_resource_sums(store, COURSE)
            assert_week_figures_are_the_store_s(extracts, store)
            assert extract_sums(extracts, COURSE)[("ann", first[0]["day"])][:2] == [2, 3]

            store.store_statements([
                statement("ann", day + timedelta(hours=1), clicks=4),  # a day summed before
                statement("cy", day + timedelta(days=3), clicks=1),  # a new day
                statement("bob", day + timedelta(days=1), clicks=5, course=OTHER),
            ])  # fmt: skip
            extracts.build(COURSE)
            assert extract_sums(extracts, COURSE) == expected_sums(store, COURSE)
            assert extract_resource_sums(extracts, COURSE) == expected_resource_sums(store, COURSE)
            assert_week_figures_are_the_store_s(extracts, store)

            store.store_statements([void(first[0])])  # summed two updates ago
            extracts.build(COURSE)
            extracts.build(COURSE)  # nothing new: the same sums
            sums = extract_sums(extracts, COURSE)
            assert sums == expected_sums(store, COURSE)
            assert sums[("ann", first[0]["day"])][:2] == [2, 4]  # the 4 clicks, not the 3
            assert (None, first[3]["day"]) in sums  # summed apart, as the statements are

            resources = extract_resource_sums(extracts, COURSE)
            assert resources == expected_resource_sums(store, COURSE)
            assert_week_figures_are_the_store_s(extracts, store)

            # a team member (no longer a learner; no statement of theirs is new), then an
            # earlier day (the weeks move): every resource is summed again each time
            with store.engine.begin() as conn:
                conn.execute(TeamMember.__table__.insert().values(course_id=COURSE, learner="bob"))
            extracts.build(COURSE)
            staffed = extract_resource_sums(extracts, COURSE)
            assert staffed == expected_resource_sums(store, COURSE, staff={"bob"}) != resources
            assert_week_figures_are_the_store_s(extracts, store)
            store.store_statements([statement("dee", day - timedelta(days=9))])
            extracts.build(COURSE)
            moved = extract_resource_sums(extracts, COURSE)
            assert moved == expected_resource_sums(store, COURSE, staff={"bob"}) != staffed
            assert extract_sums(extracts, COURSE) == expected_sums(store, COURSE)
            assert_week_figures_are_the_store_s(extracts, store)

            with extracts_of(store, tmp_path / "fresh") as fresh:
                fresh.build(COURSE)
                assert extract_sums(fresh, COURSE) == extract_sums(extracts, COURSE)
                assert extract_resource_sums(fresh, COURSE) == moved
    finally:
        store.dispose()


def test_an_extract_of_an_earlier_release_gets_the_sums_of_every_day(tmp_path):
    """An extract made before it kept sums has none: its first update adds up every day,
    not only the days of the statements it copies."""
    store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create()
    day = datetime(2026, 10, 5, 9, tzinfo=UTC)
    try:
        with extracts_of(store, tmp_path / "data") as extracts:
            store.store_statements([statement("ann", day + timedelta(days=n)) for n in range(3)])
            extracts.build(COURSE)
            with sqlite3.connect(extracts.path(COURSE)) as db:
                db.execute("DROP TABLE learner_days")
            store.store_statements([statement("bob", day + timedelta(days=7))])
            extracts.build(COURSE)
            sums = extract_sums(extracts, COURSE)
            assert sums == expected_sums(store, COURSE)
            assert len(sums) == 4
    finally:
        store.dispose()
