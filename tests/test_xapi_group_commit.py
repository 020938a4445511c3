"""Group commit on SQLite: statements of concurrent requests written in one transaction,
each request keeping its own all-or-nothing (issue #13: ingestion at the raw insert's rate).

The groups are made deterministic by holding the service's write lock while the requests
arrive: they validate, queue, and are written together when it is released. What was
written together is seen by wrapping the store's own ``store_together`` (the real one runs).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from hub_ext.services.events.models import Statement
from tests.events_fixtures import running_service

pytestmark = pytest.mark.asyncio(loop_scope="session")

XAPI = {"X-Experience-API-Version": "1.0.3"}


def client_of(app, key: str, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=app.url + "/services/events/xAPI",
        headers=XAPI,
        auth=httpx.BasicAuth(key, secret),
        timeout=30,
    )


def statement(i: int, **extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.example.org", "name": f"u{i}"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced", "display": {"en-US": "experienced"}},
        "object": {"objectType": "Activity", "id": f"https://lms.example.org/page/{i}"},
        "context": {"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:ds101"}]}},
        **extra,
    }  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lrs(tmp_path_factory):
    async with running_service(tmp_path_factory.mktemp("group")) as app:
        key, secret = app.store.add_source("lms", course_id="ds101")
        calls: list[list[int]] = []
        real = app.store.store_together

        def recording(batches):
            calls.append([len(rows) for rows, _, _ in batches])
            return real(batches)

        app.store.store_together = recording
        async with client_of(app, key, secret) as client:
            yield app, client, calls


async def held(app, client, bodies: list) -> list[httpx.Response]:
    """POST ``bodies`` at once while the write lock is held; release it when all wait."""
    async with app.write_lock:
        tasks = [asyncio.ensure_future(client.post("/statements", json=b)) for b in bodies]
        await queued(app, len(bodies))
    return await asyncio.gather(*tasks)


async def queued(app, n: int) -> None:
    """Wait (5 s at most) until ``n`` requests wait for the writer."""
    for _ in range(500):
        if len(app.writer._pending) == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(app.writer._pending)} requests queued, not {n}")


async def stored(client, sid: str) -> dict | None:
    r = await client.get("/statements", params={"statementId": sid})
    return r.json() if r.status_code == 200 else None


async def test_concurrent_requests_are_written_in_one_transaction(lrs):
    app, client, calls = lrs
    bodies = [[statement(10 * k + i) for i in range(20)] for k in range(5)]
    calls.clear()
    answers = await held(app, client, bodies)
    assert [r.status_code for r in answers] == [200] * 5
    for body, r in zip(bodies, answers, strict=True):
        assert r.json() == [s["id"] for s in body]
    assert calls == [[20] * 5]
    got = [await stored(client, s["id"]) for body in bodies for s in body]
    assert all(got)
    assert len({s["stored"] for s in got}) == 1  # one write, one stored time


async def test_a_conflict_fails_only_its_own_request(lrs):
    app, client, calls = lrs
    first = statement(1)
    assert (await client.post("/statements", json=[first])).status_code == 200
    changed = copy.deepcopy(first)
    changed["verb"]["display"] = {"en-US": "changed"}
    fresh_a, fresh_d = [statement(2), statement(3)], [statement(4)]
    conflicting = [statement(5), changed]
    retry = [copy.deepcopy(first)]
    calls.clear()
    a, b, c, d = await held(app, client, [fresh_a, conflicting, retry, fresh_d])
    assert (a.status_code, b.status_code, c.status_code, d.status_code) == (200, 409, 200, 200)
    assert b.json()["statement_id"] == first["id"]
    assert calls == [[2, 2, 1, 1]]  # tried together, then request by request
    for s in fresh_a + fresh_d:
        assert await stored(client, s["id"]) is not None
    assert await stored(client, conflicting[0]["id"]) is None  # nothing of the refused one
    assert (await stored(client, first["id"]))["verb"] == first["verb"]


async def test_the_same_batch_twice_in_one_group_is_stored_once(lrs):
    """A client that retries a batch whose answer it did not get, while the first is
    still queued: both get 200, and each statement is stored once."""
    app, client, _ = lrs
    batch = [statement(i) for i in range(30, 40)]
    one, two = await held(app, client, [batch, copy.deepcopy(batch)])
    assert one.status_code == two.status_code == 200
    assert one.json() == two.json() == [s["id"] for s in batch]
    with app.store.engine.connect() as conn:
        from sqlalchemy import func, select

        from hub_ext.services.events.models import Statement

        t = Statement.__table__
        n = conn.execute(select(func.count()).where(t.c.id.in_([s["id"] for s in batch]))).scalar()
    assert n == len(batch)


async def test_consistent_through_stays_below_a_group_not_yet_written(lrs):
    app, client, _ = lrs
    body = [statement(50)]
    async with app.write_lock:
        task = asyncio.ensure_future(client.post("/statements", json=body))
        await queued(app, 1)
        r = await client.get("/statements", params={"since": "2000-01-01T00:00:00Z"})
        promised = r.headers["X-Experience-API-Consistent-Through"]
    assert (await task).status_code == 200
    got = await stored(client, body[0]["id"])
    assert got["stored"] > promised  # stored after the promise: the next poll sees it


async def test_one_request_a_transaction_when_configured(tmp_path):
    async with running_service(tmp_path, group_commit=1) as app:
        key, secret = app.store.add_source("lms", course_id="ds101")
        calls = []
        real = app.store.store_together
        app.store.store_together = lambda batches: calls.append(len(batches)) or real(batches)
        async with client_of(app, key, secret) as client:
            answers = await held(app, client, [[statement(i)] for i in range(3)])
    assert [r.status_code for r in answers] == [200] * 3
    assert calls == [1, 1, 1]


async def test_a_void_from_another_course_in_the_same_group_voids_nothing(lrs):
    """Written together is not written as one source: stat200's source, in the same
    transaction as ds101's statement, cannot void it (each row keeps its own course)."""
    app, client, calls = lrs
    key, secret = app.store.add_source("other-lms", course_id="stat200")
    await app._load_sources()  # known at once (else at the next refresh)
    target = statement(60)
    void = {
        "actor": target["actor"],
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": target["id"]},
    }
    calls.clear()
    async with client_of(app, key, secret) as other:
        async with app.write_lock:
            mine = asyncio.ensure_future(client.post("/statements", json=[target]))
            theirs = asyncio.ensure_future(other.post("/statements", json=[void]))
            await queued(app, 2)
        assert (await mine).status_code == 200
        assert (await theirs).status_code == 200  # xAPI: a void of an unknown id is not refused
        assert calls == [[1, 1]]  # one transaction
        assert (
            await other.get("/statements", params={"statementId": target["id"]})
        ).status_code == 404
    got = await stored(client, target["id"])
    assert got is not None  # not voided: still readable by its own course
    r = await client.get("/statements", params={"voidedStatementId": target["id"]})
    assert r.status_code == 404


async def test_requests_waiting_when_the_writer_is_cancelled_hear_503(lrs):
    """The service stopping cancels the writer's task: the requests it was to write get a
    503 saying so (before, they waited for an answer that never came), and a retry, once
    the service writes again, stores their statements once."""
    app, client, _ = lrs
    bodies = [[statement(700 + k)] for k in range(3)]
    async with app.write_lock:
        tasks = [asyncio.ensure_future(client.post("/statements", json=b)) for b in bodies]
        await queued(app, len(bodies))
        app.writer._drain_task.cancel()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert "stopped while writing these statements" in r.json()["message"]
    assert not app.writer._pending
    for body in bodies:  # retried: stored, once
        assert (await client.post("/statements", json=body)).status_code == 200
        assert (await client.post("/statements", json=body)).status_code == 200
        assert (await stored(client, body[0]["id"]))["id"] == body[0]["id"]


async def test_the_log_is_checkpointed_off_the_requests_path(tmp_path):
    """SQLite checkpoints its write-ahead log in the commit that fills 1,000 pages of it, and
    that request waits for the copy and the sync (half of a raw insert's time with 100,000
    statements stored). The service checkpoints on a thread of its own instead, after
    writes (``checkpoint_interval``); its commits checkpoint only at 10,000 pages (when its
    own checkpoints fall behind). Seen here: the statements reach the database file itself
    although no commit wrote enough log to checkpoint."""
    async with running_service(tmp_path, checkpoint_interval=0.05) as app:
        database = Path(app.store.engine.url.database)
        with app.store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        key, secret = app.store.add_source("lms", course_id="ds101")
        await asyncio.sleep(0.2)  # the source's row checkpointed too: the file as it starts
        before = database.stat().st_size
        async with client_of(app, key, secret) as client:
            for n in range(20):
                batch = [statement(100 * n + i) for i in range(100)]
                assert (await client.post("/statements", json=batch)).status_code == 200
        log = Path(f"{database}-wal").stat().st_size
        assert log < 10_000 * 4096  # no commit reached the backstop
        for _ in range(200):
            if database.stat().st_size > before + 1_000_000:
                break
            await asyncio.sleep(0.05)
        assert database.stat().st_size > before + 1_000_000, (before, database.stat().st_size)
        assert app.store.count(Statement) == 2_000


async def test_sqlite_checkpoints_itself_when_configured(tmp_path):
    async with running_service(tmp_path, checkpoint_interval=0) as app:
        with app.store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1_000
        assert not [t for t in app._tasks if "checkpoint" in repr(t.get_coro())]
