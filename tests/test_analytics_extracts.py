"""A course's extract keeps up with a PostgreSQL store whose writers commit out of pk order.

An extract is brought up to date with the statements stored since its last update. It took
"since" to be the largest pk it held. On SQLite that is right (one writer at a time: pks
are given in commit order), on PostgreSQL it is not: pks come from a sequence when a row is
inserted, and concurrent writers (the events service writes each request on its own
connection; an import or the grading write beside it) commit in any order. A statement
whose pk was taken before another's but committed after the extract had copied the other
was never copied: the course's notebooks did not see it, ever, while the extract's
generation said it was up to date.

Real parts: PostgreSQL from Debian's package (the session's server, a database of this
test's own), the event store's own writes, the analytics service's extracts.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from hub_ext.services.analytics.extracts import CourseExtracts
from hub_ext.services.events.models import Statement
from hub_ext.services.events.store import EventStore
from hub_ext.services.events.xapi import to_row, validate_statement
from tests.events_fixtures import new_database, postgres_url  # noqa: F401

COURSE = "ds101"


@contextlib.contextmanager
def store_and_extracts(url: str, root):
    """An event store at ``url`` (made) and the course extracts of it under ``root``."""
    store = EventStore(url)
    store.create()
    extracts = CourseExtracts(store_url=store.readonly_url, root=str(root))
    try:
        yield store, extracts
    finally:
        extracts.close()
        store.dispose()


def statement_row(n: int) -> dict:
    s = {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://h.example", "name": "a"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"objectType": "Activity", "id": f"https://h.example/step/{n}"},
        "timestamp": "2026-10-05T12:00:00Z",
    }
    validate_statement(s)
    return to_row(s, stored=datetime.now(UTC), source="lms", course_id=COURSE)


def extract_ids(extracts: CourseExtracts) -> set[str]:
    with sqlite3.connect(extracts.path(COURSE)) as db:
        return {i for (i,) in db.execute("SELECT id FROM statements")}


def store_ids(store: EventStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(
            conn.execute(select(Statement.id).where(Statement.course_id == COURSE)).scalars()
        )


def test_a_statement_committed_after_a_later_pk_reaches_the_extract(postgres_url, tmp_path):  # noqa: F811
    with store_and_extracts(new_database(postgres_url, "extract_order"), tmp_path) as (
        store,
        extracts,
    ):
        store.store_statements([statement_row(0)])
        extracts.build(COURSE)
        slow = statement_row(1)
        with store.engine.connect() as writer:  # a writer whose commit is slow
            tx = writer.begin()
            writer.execute(Statement.__table__.insert(), [slow])
            fast = statement_row(2)  # another writer: a later pk, committed first
            store.store_statements([fast])
            with store.engine.connect() as conn:
                pks = dict(
                    conn.execute(select(Statement.id, Statement.pk)).all()
                )  # what the committed writer sees
            assert slow["id"] not in pks
            extracts.build(COURSE)  # an update while the slow one is not committed
            assert extract_ids(extracts) == store_ids(store)
            tx.commit()
        with store.engine.connect() as conn:
            got = dict(conn.execute(select(Statement.id, Statement.pk)).all())
        assert got[slow["id"]] < got[fast["id"]]  # the case: its pk is the earlier
        for _ in range(3):  # every update after the commit has it
            extracts.build(COURSE)
            assert extract_ids(extracts) == store_ids(store)
        assert len(extract_ids(extracts)) == 3


def test_an_extract_made_before_is_copied_again_once(postgres_url, tmp_path):  # noqa: F811
    """An extract of a PostgreSQL store made by an earlier release has no record of how far
    it is final (a file beside the course's directory), and may lack statements (it took its largest pk as final): its next update
    copies the course's statements again, and the one after only those above its safe pk."""
    with store_and_extracts(new_database(postgres_url, "extract_before"), tmp_path) as (
        store,
        extracts,
    ):
        store.store_statements([statement_row(n) for n in range(3)])
        extracts.build(COURSE)
        (tmp_path / f".{COURSE}.progress.json").unlink()  # as an earlier release left it
        with sqlite3.connect(extracts.path(COURSE)) as db:
            db.execute("DELETE FROM statements WHERE pk = (SELECT MIN(pk) FROM statements)")
        assert len(extract_ids(extracts)) == 2
        extracts.build(COURSE)
        assert extract_ids(extracts) == store_ids(store)


def test_a_checkpoint_is_safe_once_every_transaction_that_could_hold_its_pks_is_over():
    """:func:`advance`, the rule: checkpoint *i* (its snapshot's largest pk) becomes the
    safe pk once a snapshot's xmin reaches checkpoint *i + 1*'s xmax; never before."""
    from hub_ext.services.analytics.extracts import advance

    p = advance({"safe": 0, "checkpoints": []}, xmin=100, xmax=105, top=10)
    assert p == {"safe": 0, "checkpoints": [[10, 105]]}
    p = advance(p, xmin=104, xmax=110, top=20)  # 104 may still hold a pk <= 10
    assert p["safe"] == 0 and p["checkpoints"] == [[10, 105], [20, 110]]
    p = advance(p, xmin=110, xmax=112, top=25)  # every id below 110 is over: 10 is final
    assert p == {"safe": 10, "checkpoints": [[20, 110], [25, 112]]}
    p = advance(p, xmin=200, xmax=200, top=30)  # all over: 20 and 25 too
    assert p == {"safe": 25, "checkpoints": [[30, 200]]}
    p = advance(p, xmin=200, xmax=200, top=30)  # still nothing running: 30 is final
    assert p == {"safe": 30, "checkpoints": [[30, 200]]}
    # a long transaction holds xmin back: checkpoints pile up to a bound, the safe pk waits
    for n in range(300):
        p = advance(p, xmin=150, xmax=300 + n, top=40 + n)
    assert p["safe"] == 30 and len(p["checkpoints"]) == 100
    p = advance(p, xmin=10_000, xmax=10_000, top=1_000)  # over: the newest kept is final
    assert p["safe"] == 40 + 98 and p["checkpoints"] == [[1_000, 10_000]]


def test_an_extract_made_before_a_column_gets_it_and_every_value_in_its_place(tmp_path):
    """A column added to the statements table (``course_context``) is at the end of an
    extract made before it, and of a store made before it (``ALTER TABLE``): the update
    adds it to the extract and copies by name, so no value lands in another's column."""
    with store_and_extracts(f"sqlite:///{tmp_path / 'store.sqlite'}", tmp_path / "data") as (
        store,
        extracts,
    ):
        store.store_statements([statement_row(0)])
        extracts.build(COURSE)
        with sqlite3.connect(extracts.path(COURSE)) as db:  # as an earlier release made it
            db.execute("ALTER TABLE statements DROP COLUMN course_context")
        store.store_statements([statement_row(n) for n in range(1, 4)])
        extracts.build(COURSE)
        columns = [c.name for c in Statement.__table__.columns if c.name != "raw"]
        listed = ", ".join(columns)
        with sqlite3.connect(extracts.path(COURSE)) as db:
            got = db.execute(f"SELECT {listed} FROM statements ORDER BY pk").fetchall()
        with sqlite3.connect(tmp_path / "store.sqlite") as db:
            want = db.execute(f"SELECT {listed} FROM statements ORDER BY pk").fetchall()
        assert got[1:] == want[1:]  # the first was copied before the column: NULL there
        assert got[0][:-1] == want[0][:-1] and got[0][-1] is None
        assert columns[-1] == "course_context" and want[1][-1] == 0  # it names no course


def test_what_a_course_s_notebooks_see_is_its_tables_only(postgres_url, tmp_path):  # noqa: F811
    """What the sandbox mounts is the course's directory: a notebook lists every table and
    file there, as a malicious one would. The record of how far the extract is final holds
    the whole store's largest pk and transaction ids (how busy the other courses are): it
    is beside the directory, not in it, nor in the extract."""
    from hub_ext.services.analytics.extracts import TABLES
    from hub_ext.services.events.models import EXTRACT_METADATA

    with store_and_extracts(new_database(postgres_url, "extract_tables"), tmp_path) as (
        store,
        extracts,
    ):
        store.store_statements([statement_row(0)])
        extracts.build(COURSE)
        extracts.build(COURSE)
        with sqlite3.connect(extracts.path(COURSE)) as db:
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # the course's rows, and their per-day sums (of the course's rows only)
        assert (
            tables - {"sqlite_stat1", "sqlite_stat4"}
            == {t.name for t in TABLES}
            | {"learner_days", "resource_sums", "resource_sums_basis", "resource_sums_pending"}
            | {"weekly_sums", "funnel_sums", "sums_made"}
            == {t.name for t in TABLES} | set(EXTRACT_METADATA.tables)
        )
        assert [p.name for p in extracts.directory(COURSE).iterdir()] == ["events.sqlite"]
        assert (tmp_path / f".{COURSE}.progress.json").exists()
