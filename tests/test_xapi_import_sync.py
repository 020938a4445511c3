"""Writers beside the events service (an import, the grading), and a client syncing by
Consistent-Through.

Importers (``hub-ext import``) write the store directly, beside the service, which knows
nothing of them. They stamped every statement of a file with the time the import began:
a source polling ``since=<the last X-Experience-API-Consistent-Through>`` while the import
ran was told "everything stored up to here is visible" before the import's later batches
were committed, and those batches, stored "before" its ``since``, never reached it. Now a
batch is stamped a little ahead of the clock when it is written
(``EventStore.add_statements``, which every writer beside the service goes through).

Real parts: the events service on loopback (SQLite, and PostgreSQL from Debian's package),
the OULAD importer on the real click table's head (13,905 rows of AAA 2013J) in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from hub_ext.services.events import importers
from hub_ext.services.events.importers import ImportReport, _Writer, import_oulad
from hub_ext.services.events.models import Statement
from hub_ext.services.events.store import STORED_AHEAD, EventStore
from hub_ext.services.events.xapi import to_row
from tests.events_fixtures import (  # noqa: F401
    new_database,
    poll_since,
    postgres_url,
    running_service,
)

pytestmark = pytest.mark.slow

OULAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "oulad" / "original_format"
V = {"X-Experience-API-Version": "1.0.3"}


@contextlib.asynccontextmanager
async def _service_and_source(kind: str, request, tmp_path, database: str):
    """The events service on ``kind``'s store and an httpx client of an LMS source of
    ``aaa-2013j`` on its xAPI root."""
    traits = {}
    if kind == "postgresql":
        traits["db_url"] = new_database(request.getfixturevalue("postgres_url"), database)
    async with running_service(tmp_path, **traits) as app:
        key, secret = app.store.add_source("lms", course_id="aaa-2013j")
        async with httpx.AsyncClient(
            base_url=app.url + "/services/events/xAPI",
            headers=V,
            auth=httpx.BasicAuth(key, secret),
            timeout=60,
        ) as client:
            yield app, client


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_source_syncing_during_an_import_gets_every_imported_statement(
    kind, request, tmp_path
):
    async with _service_and_source(kind, request, tmp_path, "import_sync") as (app, client):
        url = app.store.engine.url.render_as_string(hide_password=False)
        got: list[str] = []
        since: str | None = None

        async def poll() -> str:
            nonlocal since
            since = await poll_since(client, since, got)
            return since

        def run_import() -> ImportReport:
            store = EventStore(url)
            try:
                return import_oulad(store, OULAD, batch=500)
            finally:
                store.dispose()

        importing = asyncio.ensure_future(asyncio.to_thread(run_import))
        polls_during = 0
        while not importing.done():  # polling while the import's batches are written
            await poll()
            polls_during += 1
            await asyncio.sleep(0.02)
        report = importing.result()
        assert report.new["statements"] == 13_905 and not report.problems
        # the case: polls by since while batches were still to come (28 batches of 500)
        assert polls_during >= 3, polls_during
        with app.store.engine.connect() as conn:
            stored = conn.execute(
                select(Statement.id, Statement.stored).where(Statement.course_id == "aaa-2013j")
            ).all()
        newest = max(s for _, s in stored).replace(tzinfo=UTC)
        deadline = time.monotonic() + 30
        while datetime.fromisoformat(await poll()) <= newest:  # until it promises them all
            assert time.monotonic() < deadline, "Consistent-Through never passed the import"
            await asyncio.sleep(0.2)
    missed = {sid for sid, _ in stored} - set(got)
    twice = [sid for sid, n in Counter(got).items() if n > 1]
    assert not missed and not twice, f"{len(missed)} missed, {len(twice)} read twice"
    assert len(got) == len(stored) == 13_905


def test_a_batch_committed_after_its_stamp_is_stamped_again(tmp_path):
    """A commit that ended after its batch's stamp (a long wait for SQLite's write lock): a
    Consistent-Through given in between may be later than the stamp, so the batch is stamped
    again, later (its rows and their JSON), until a commit ends before its stamp."""
    store = EventStore(f"sqlite:///{tmp_path / 'e.sqlite'}")
    store.create()
    start = datetime(2026, 12, 3, 12, tzinfo=UTC)
    # the clock as the writer reads it: the stamp, the late end of the first commit, the new
    # stamp, the end of the restamp (in time)
    ticks = iter([start, start + timedelta(seconds=9), start + timedelta(seconds=10),
                  start + timedelta(seconds=11)])  # fmt: skip
    writer = _Writer(store, ImportReport(), clock=lambda: next(ticks))
    statement = {
        "id": "0b9c6f8e-2a41-5c1d-9e3f-7a8b6c5d4e3f",
        "actor": {"objectType": "Agent", "account": {"homePage": "https://x.example", "name": "1"}},
        "verb": {"id": importers.VIEWED},
        "object": {"objectType": "Activity", "id": "urn:oulad:site:1"},
        "timestamp": "2013-10-01T00:00:00Z",
    }
    row = to_row(statement, stored=start - timedelta(days=1), source="oulad", course_id="aaa-2013j")
    assert writer._statements([row]) == 1
    with store.engine.connect() as conn:
        stored, raw = conn.execute(select(Statement.stored, Statement.raw)).one()
    want = start + timedelta(seconds=10) + STORED_AHEAD
    assert stored == want.replace(tzinfo=None)
    assert raw["stored"] == want.isoformat().replace("+00:00", "Z")
    assert raw["timestamp"] == "2013-10-01T00:00:00Z"  # the event's own time is kept
    # imported again: already stored, its time kept (nothing is stamped again)
    ticks = iter([start + timedelta(hours=1), start + timedelta(hours=2)])
    again = to_row(dict(statement), stored=start, source="oulad", course_id="aaa-2013j")
    assert writer._statements([again]) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(Statement.stored)).scalar_one() == want.replace(tzinfo=None)
    store.dispose()


def _graded_run(learner: str, at: datetime) -> dict:
    """A done grading run, as :meth:`~hub_ext.services.grading.store.GradingStore.unpublished`
    gives it."""
    return {
        "id": f"sub-{learner}", "course_id": "aaa-2013j", "learner": learner,
        "assignment_id": "a1", "attempt": 1, "submitted_at": at, "late_days": 0,
        "penalty": 0, "run_run": 1, "run_status": "graded", "run_score": 8,
        "run_final_score": 8, "run_max_score": 10, "run_result": {"seconds": 1.0},
        "run_finished_at": at, "manual_revision": 0, "manual_at": None,
    }  # fmt: skip


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_gradings_results_reach_a_source_syncing_by_consistent_through(
    kind, request, tmp_path
):
    """The grading service writes its results beside the events service, as importers do
    (:meth:`~hub_ext.services.events.store.EventStore.add_statements`). It stamped them
    when it built them: a Consistent-Through answered between the building and the commit
    was later than their ``stored``, and a source of the course polling by it never got
    them. The same for the hub's own server records (hidden from sources, but read by
    ``stored`` the same way)."""
    from hub_ext.services.events.hubevents import server_statement
    from hub_ext.services.grading.statements import run_statements

    async with _service_and_source(kind, request, tmp_path, "grading_sync") as (app, client):
        url = app.store.engine.url.render_as_string(hide_password=False)
        got: list[str] = []
        since = await poll_since(client, None, got)
        at = datetime.now(UTC)
        graded = run_statements(
            _graded_run("alice", at), assignment_title="A1", home="https://hub.example.edu"
        )
        hub = [server_statement("start", "alice", "aaa-2013j", at, "https://hub.example.edu")]
        # built, then a poll answered before they are written (the grading's commit waits)
        since = await poll_since(client, since, got)
        assert datetime.fromisoformat(since) > at
        grading = EventStore(url)  # the grading service's own connection to the store
        try:
            assert await asyncio.to_thread(grading.add_statements, graded + hub) == 3
        finally:
            grading.dispose()
        with app.store.engine.connect() as conn:
            newest = conn.execute(select(func.max(Statement.stored))).scalar_one()
        deadline = time.monotonic() + 30
        while datetime.fromisoformat(since) <= newest.replace(tzinfo=UTC):
            assert time.monotonic() < deadline, "Consistent-Through never passed the results"
            await asyncio.sleep(0.2)
            since = await poll_since(client, since, got)
        with app.store.engine.connect() as conn:
            hub_stored = conn.execute(
                select(Statement.stored).where(Statement.id == hub[0]["id"])
            ).scalar_one()
    assert sorted(got) == sorted(r["id"] for r in graded)  # the hub's own record is hidden
    # and the hub's record is stamped as the results are: after the poll that came first
    assert hub_stored.replace(tzinfo=UTC) > at


def test_imported_statements_are_found_by_related_activities(tmp_path):
    """xAPI's ``activity=<course>&related_activities=true`` (the course is a context
    activity, ``grouping``) finds an import's statements as it finds an LMS's: the importers
    write their side rows (before, they wrote none, and that filter found none of them)."""
    store = EventStore(f"sqlite:///{tmp_path / 'e.sqlite'}")
    store.create()
    report = import_oulad(store, OULAD, batch=2_000)
    assert report.new["statements"] == 13_905
    found, more, ids = [], None, set()
    with store.engine.connect() as conn:
        for (raw,) in conn.execute(select(Statement.raw)):
            groups = raw["context"]["contextActivities"]["grouping"]
            if any(a["id"] == "urn:hub-ext:course:aaa-2013j" for a in groups):
                ids.add(raw["id"])
    assert len(ids) == 13_905  # the independent count: every statement names its course
    while True:
        page, more, _ = store.query_statements(
            activity="urn:hub-ext:course:aaa-2013j",
            related_activities=True,
            limit=5_000,
            after=more,
        )
        found += [s["id"] for s in page]
        if not more:
            break
    assert sorted(found) == sorted(ids)
    assert import_oulad(store, OULAD, batch=2_000).new["statements"] == 0  # again: nothing
    store.dispose()
