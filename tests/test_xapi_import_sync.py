"""An import beside the events service, and a client syncing by Consistent-Through.

Importers (``hub-ext import``) write the store directly, beside the service, which knows
nothing of them. They stamped every statement of a file with the time the import began:
a source polling ``since=<the last X-Experience-API-Consistent-Through>`` while the import
ran was told "everything stored up to here is visible" before the import's later batches
were committed, and those batches, stored "before" its ``since``, never reached it. Now a
batch is stamped a little ahead of the clock when it is written (``importers._Writer``).

Real parts: the events service on loopback (SQLite, and PostgreSQL from Debian's package),
the OULAD importer on the real click table's head (13,905 rows of AAA 2013J) in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from hub_ext.services.events import importers
from hub_ext.services.events.importers import ImportReport, _Writer, import_oulad
from hub_ext.services.events.models import Statement
from hub_ext.services.events.store import EventStore
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


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_source_syncing_during_an_import_gets_every_imported_statement(
    kind, request, tmp_path
):
    traits = {}
    if kind == "postgresql":
        traits["db_url"] = new_database(request.getfixturevalue("postgres_url"), "import_sync")
    async with running_service(tmp_path, **traits) as app:
        url = app.store.engine.url.render_as_string(hide_password=False)
        key, secret = app.store.add_source("lms", course_id="aaa-2013j")
        client = httpx.AsyncClient(
            base_url=app.url + "/services/events/xAPI",
            headers=V,
            auth=httpx.BasicAuth(key, secret),
            timeout=60,
        )
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
        await client.aclose()
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
    want = start + timedelta(seconds=10) + importers.STORED_AHEAD
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
