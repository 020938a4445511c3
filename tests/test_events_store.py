"""The event store on SQLite and PostgreSQL: read-only URLs, WAL, the hub's server-action
events through jupyter_events, and the query plumbing the notebooks rely on."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from hub_ext.services.events import queries as q
from hub_ext.services.events.hubevents import SERVER_ACTION_SCHEMA, ServerActionHandler
from hub_ext.services.events.models import Source, Statement
from hub_ext.services.events.store import Conflict, EventStore, make_engine
from hub_ext.services.events.xapi import VOIDED, to_row, validate_statement
from tests.events_fixtures import new_database, postgres_url  # noqa: F401

STATEMENT = {
    "actor": {"account": {"homePage": "https://hub.example.edu", "name": "alice"}},
    "verb": {"id": "http://id.tincanapi.com/verb/viewed"},
    "object": {"id": "https://hub.example.edu/materials/ds101/week01"},
    "result": {"score": {"raw": 55, "min": 0, "max": 100}},
    "context": {"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:ds101"}]}},
    "timestamp": "2026-09-14T10:15:00Z",
}


def rows(n: int, learner="alice") -> list[dict]:
    out = []
    for i in range(n):
        s = copy.deepcopy(STATEMENT)
        s["actor"]["account"]["name"] = f"{learner}{i % 3}"
        validate_statement(s)
        out.append(to_row(s, stored=datetime.now(UTC), source="test", course_id="ds101"))
    return out


def exercise(store: EventStore) -> None:
    """What every backend must do: atomic batches, conflicts, queries."""
    store.create()
    batch = rows(10)
    assert store.store_statements(batch) == 10
    assert store.store_statements(batch) == 0  # the same statements again: nothing new
    changed = copy.deepcopy(batch[:2])
    changed[1]["raw"]["verb"]["id"] = "http://adlnet.gov/expapi/verbs/attempted"
    changed[0] = rows(1)[0]  # a new one, stored only if the batch is
    with pytest.raises(Conflict):
        store.store_statements(changed)
    assert store.count(Statement) == 10
    s = q.summary(store.engine, "ds101")
    assert (s["events"], s["active_learners"]) == (10, 3)
    heat = q.heatmap(store.engine, "ds101")["resources"]
    assert heat == [
        {
            "resource": STATEMENT["object"]["id"],
            "type": "",
            "title": "",
            "clicks": 10,
            "events": 10,
            "learners": 3,
        }
    ]

    # a voiding statement voids only its own course's statements, and the hub's only the hub
    hub_row = to_row(validate_statement(copy.deepcopy(STATEMENT)), stored=datetime.now(UTC),
                     source="hub", course_id="ds101")  # fmt: skip
    store.insert_ignore(Statement.__table__, [hub_row])
    voids = []
    for course, source, target in [("stat200", "lms", batch[0]), ("ds101", "lms", hub_row),
                                   ("ds101", "lms", batch[1])]:  # fmt: skip
        v = {"actor": STATEMENT["actor"], "verb": {"id": VOIDED},
             "object": {"objectType": "StatementRef", "id": target["id"]}}  # fmt: skip
        voids.append(to_row(v, stored=datetime.now(UTC), source=source, course_id=course))
    assert store.store_statements(voids) == 3
    with store.engine.connect() as conn:
        voided = set(conn.execute(select(Statement.id).where(Statement.voided)).scalars())
    assert voided == {batch[1]["id"]}
    assert store.get_statement(batch[1]["id"], voided=True, course_id="ds101") is not None
    assert store.get_statement(batch[2]["id"], course_id="stat200") is None
    assert store.get_statement(hub_row["id"], course_id="ds101", hide_sources=("hub",)) is None
    got, _, _ = store.query_statements(course_id="ds101", hide_sources=("hub",), limit=100)
    # nine left of the batch, and the two voiding statements of ds101
    assert len(got) == 11 and hub_row["id"] not in {g["id"] for g in got}
    assert store.query_statements(course_id="stat200", limit=100)[0] == [voids[0]["raw"]]


def test_sqlite_store_uses_wal_and_its_readonly_url_refuses_writes(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    exercise(store)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert store.readonly_url == f"sqlite:///file:{tmp_path / 'events.sqlite'}?mode=ro&uri=true"
    ro = make_engine(store.readonly_url)
    with ro.connect() as conn:
        assert conn.execute(select(Statement.id)).first() is not None
        with pytest.raises(DBAPIError, match="readonly|read-only"):
            conn.execute(
                insert(Source).values(name="x", key="x", secret_hash="x", created=datetime.now())
            )
    ro.dispose()
    with pytest.raises(ValueError, match="in-memory"):
        EventStore("sqlite://").readonly_url  # noqa: B018


def test_postgresql_store_and_a_select_only_role(postgres_url):  # noqa: F811
    store = EventStore(postgres_url)
    exercise(store)
    store.add_source("lms", "ds101")
    ro_url = store.create_readonly_role("notebooks", "pw-for-test")
    assert "default_transaction_read_only" in ro_url and "notebooks" in ro_url
    ro = make_engine(ro_url)
    with ro.connect() as conn:
        assert conn.execute(select(Statement.id)).first() is not None
        with pytest.raises(DBAPIError):
            conn.execute(select(Source.secret_hash)).all()  # the credentials table is not theirs
    with ro.connect() as conn:
        with pytest.raises(DBAPIError):
            conn.execute(text("SET default_transaction_read_only = off"))
            conn.execute(
                insert(Statement.__table__).values(**{k: v for k, v in rows(1)[0].items()})
            )
    ro.dispose()
    store.dispose()


def test_server_action_events_through_jupyter_events(tmp_path):
    """JupyterHub's own schema file, registered in a jupyter_events EventLogger as the hub
    does, and the exact emit call of jupyterhub/handlers/base.py."""
    import jupyterhub
    from jupyter_events import EventLogger

    db = f"sqlite:///{tmp_path / 'events.sqlite'}"
    handler = ServerActionHandler(db, home="https://hub.example.edu")
    logger = EventLogger(handlers=[handler])
    for schema in (Path(jupyterhub.__file__).parent / "event-schemas").glob("**/*.yaml"):
        logger.register_event_schema(schema)
    logger.emit(
        schema_id=SERVER_ACTION_SCHEMA,
        data={"action": "start", "username": "alice", "servername": "ds101"},
    )
    logger.emit(
        schema_id=SERVER_ACTION_SCHEMA,
        data={"action": "stop", "username": "alice", "servername": "ds101"},
    )
    logger.emit(
        schema_id=SERVER_ACTION_SCHEMA,
        data={"action": "start", "username": "bob", "servername": ""},
    )
    handler.flush()
    store = EventStore(db)
    with store.engine.connect() as conn:
        got = conn.execute(
            select(Statement.learner, Statement.course_id, Statement.verb).order_by(Statement.pk)
        ).all()
    assert got == [
        ("alice", "ds101", "http://adlnet.gov/expapi/verbs/launched"),
        ("alice", "ds101", "http://adlnet.gov/expapi/verbs/exited"),
        ("bob", None, "http://adlnet.gov/expapi/verbs/launched"),  # the default server is no course
    ]
    handler.close()
    store.dispose()


def test_handler_ignores_other_events_and_never_raises(tmp_path):
    handler = ServerActionHandler(f"sqlite:///{tmp_path / 'e.db'}")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, {"__schema__": "other"}, None, None)
    handler.emit(record)
    bad = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        {"__schema__": SERVER_ACTION_SCHEMA, "action": "start"},
        None,
        None,
    )
    handler.handleError = lambda r: setattr(handler, "failed", r)  # logging's default prints
    handler.emit(bad)  # no username: reported through handleError, not raised
    assert handler.failed is bad and handler._thread is None


def test_respond_never_leaks_a_traceback():
    def broken(_request):
        raise RuntimeError("password=hunter2 in a connection string")

    status, body = q.respond({"args": {}}, broken)
    assert status == 500 and "hunter2" not in body and json.loads(body)["error"]
    status, body = q.respond('{"args": {"x": ["1"]}, "path": {}}', lambda r: {}, allowed=("y",))
    assert status == 400 and json.loads(body)["parameter"] == "x"
    assert json.loads(body)["error"] == "bad_parameter" and "x" in json.loads(body)["message"]
    status, body = q.respond({"args": {}}, lambda r: None)
    assert status == 404 and set(json.loads(body)) == {"error", "message"}


@pytest.mark.parametrize(
    "args,call,message",
    [
        ({"n": ["x"]}, lambda r: q.param_int(r, "n"), "not a whole number"),
        ({"n": ["0"]}, lambda r: q.param_int(r, "n", minimum=1), "below the minimum"),
        ({"d": ["2026-02-30"]}, lambda r: q.param_date(r, "d"), "not a date"),
        ({"m": ["x"]}, lambda r: q.param_choice(r, "m", ("a", "b"), "a"), "not one of a, b"),
        ({}, lambda r: q.param_str(r, "s", required=True), "is required"),
    ],
)
def test_parameter_helpers(args, call, message):
    with pytest.raises(q.BadParameter, match=message):
        call({"args": args, "path": {}})


def test_sources_cli_shows_the_secret_once_and_stores_a_hash(tmp_path, capsys):
    from hub_ext.cli import main

    db = f"sqlite:///{tmp_path / 'events.sqlite'}"

    def cli(*args) -> tuple[int, str, str]:
        status = main(["events", *args, "--db", db])
        out = capsys.readouterr()
        return status, out.out, out.err

    status, out, _ = cli("add-source", "moodle", "--course", "ds101")
    assert status == 0
    secret = out.split("secret:")[1].split()[0]
    key = out.split("key:")[1].split()[0]
    status, listed, _ = cli("sources")
    assert "moodle" in listed and key in listed and secret not in listed
    store = EventStore(db)
    assert store.check_source(key, secret)["course_id"] == "ds101"
    assert store.check_source(key, secret + "x") is None
    with store.engine.connect() as conn:
        assert secret not in str(conn.execute(select(Source.secret_hash)).all())
    status, _, err = cli("add-source", "moodle", "--course", "stat200")
    assert status == 1 and "exists already" in err  # names are unique
    assert cli("remove-source", "moodle")[0] == 0
    assert store.check_source(key, secret) is None
    assert cli("readonly-url")[1].strip() == store.readonly_url
    store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_hubs_own_statements_have_their_side_rows(backend, tmp_path, request):
    """The grading's results (and the hub's activity records) are written by
    ``add_statements``: a second publication adds nothing, and ``related_activities`` finds
    them by their context's course as it finds an LMS's statements (before, they were
    inserted without side rows, so that filter missed them)."""
    from hub_ext.services.events.models import StatementActivity
    from hub_ext.services.grading.statements import run_statements

    url = (
        f"sqlite:///{tmp_path / 'e.sqlite'}"
        if backend == "sqlite"  # the session's server, a database of this test's own
        else new_database(request.getfixturevalue("postgres_url"), "side_rows")
    )
    store = EventStore(url)
    store.create()
    at = datetime(2026, 10, 5, 12, tzinfo=UTC)
    done = {
        "id": "sub-1", "course_id": "ds101", "learner": "alice", "assignment_id": "a1",
        "attempt": 1, "submitted_at": at, "late_days": 0, "penalty": 0, "run_run": 1,
        "run_status": "graded", "run_score": 8, "run_final_score": 8, "run_max_score": 10,
        "run_result": {"seconds": 1.0}, "run_finished_at": at, "manual_revision": 0,
        "manual_at": None,
    }  # fmt: skip
    graded = run_statements(done, assignment_title="A1", home="https://hub.example.edu")
    assert store.add_statements(graded) == 2
    assert store.add_statements(graded + graded) == 0  # published again: nothing new
    lms = rows(1)
    store.store_statements(lms)
    found, _, _ = store.query_statements(
        activity="urn:hub-ext:course:ds101", related_activities=True, course_id="ds101"
    )
    assert {s["id"] for s in found} == {r["id"] for r in graded + lms}
    # their one context activity is their course's IRI: a column says so, not a side row
    assert store.count(StatementActivity) == 0
    store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_statements_come_in_stored_order_and_every_page_has_each_once(backend, tmp_path, request):
    """xAPI 1.0.3 (Communication 2.1.3): the statements of a GET are ordered by ``stored``,
    newest first unless ``ascending``. Insertion order (the pk) is not stored order: an
    import stamps every row of a file with the time it began while the service goes on
    storing later ones between them, and on PostgreSQL concurrent writers commit in either
    order. Pages (``more``) go on after the last statement seen, by the same order: each
    statement is on one page. Before, they were ordered by pk, and a filter by ``since``
    and ``until`` sorted every match to answer one page."""
    url = (
        f"sqlite:///{tmp_path / 'e.sqlite'}"
        if backend == "sqlite"
        else new_database(request.getfixturevalue("postgres_url"), "stored_order")
    )
    store = EventStore(url)
    store.create()
    import_began = datetime(2026, 10, 5, 12, tzinfo=UTC)
    batches = []
    for k in range(4):  # an import's batches, the service's statements stored between them
        imported = rows(3)
        for r in imported:
            r["stored"] = import_began.replace(tzinfo=None)
        live = rows(2)
        for i, r in enumerate(live):
            r["stored"] = datetime(2026, 10, 5, 13, k, i)
        batches += [imported, live]
    for batch in batches:
        store.store_statements(batch)
    by_stored = sorted(
        (r for b in batches for r in b), key=lambda r: (r["stored"], store_pk(store, r["id"]))
    )
    since = datetime(2026, 10, 5, 11, tzinfo=UTC)
    until = datetime(2026, 10, 6, tzinfo=UTC)
    for ascending in (False, True):
        want = [r["id"] for r in (by_stored if ascending else reversed(by_stored))]
        for filters in ({}, {"since": since, "until": until}):
            got, after = [], None
            while True:
                page, after, _ = store.query_statements(
                    course_id="ds101", limit=3, ascending=ascending, after=after, **filters
                )
                got += [s["id"] for s in page]
                if after is None:
                    break
            assert got == want, (ascending, filters)
    store.dispose()


def store_pk(store: EventStore, statement_id: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(Statement.pk).where(Statement.id == statement_id)).scalar_one()


def test_a_since_and_until_page_reads_the_index_in_order_without_sorting(tmp_path):
    """The GET's usual query (the source's course, not the hub's records, ``since`` and the
    Consistent-Through as ``until``) on SQLite: the (course, stored) index in order, no sort
    of every match (it was a sort of 30,000 rows, with their JSON, for a page of 500)."""
    from sqlalchemy import event

    store = EventStore(f"sqlite:///{tmp_path / 'e.sqlite'}")
    store.create()
    store.store_statements(rows(20))
    others = rows(200)  # another course's, so that the course narrows the search
    for r in others:
        r["course_id"] = "stat200"
    store.store_statements(others)
    store.analyze()
    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT STATEMENTS.PK"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC)
    for after in (None, (datetime.now(UTC).replace(tzinfo=None), 10**6)):
        page, _, _ = store.query_statements(
            course_id="ds101", hide_sources=("hub",), since=since, until=until, after=after
        )
        assert len(page) == 20
    event.remove(store.engine, "before_cursor_execute", capture)
    assert len(seen) == 2
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            plan = " | ".join(
                r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "TEMP B-TREE" not in plan, plan  # no sort: an index in stored order
            assert "ix_statements_course_stored" in plan or "ix_statements_stored" in plan, plan
    store.dispose()


def test_a_negative_checkpoint_interval_is_refused_by_name():
    from hub_ext.services.events.service import EventsService

    with pytest.raises(ValueError, match="checkpoint_interval must not be negative, not -1"):
        EventsService(checkpoint_interval=-1)
