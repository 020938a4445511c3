"""The event store: an SQLAlchemy engine over the tables of :mod:`.models`.

SQLite by default (WAL journal, so the analytics notebooks read while the service writes),
PostgreSQL by URL (``postgresql+psycopg://...``). Everything here is synchronous; the
service calls it from a thread (``asyncio.to_thread``), never on the event loop.

Notebooks get a **read-only** URL (:func:`readonly_url`): SQLite opened with ``mode=ro``;
for PostgreSQL, sessions that default to read-only transactions. That is a guard against
mistakes, not a security boundary on PostgreSQL: give notebooks a role that has only
``SELECT`` (see :meth:`EventStore.create_readonly_role`) and put that role in the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    Engine,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from ...courses import COURSE_ID_PATTERN
from .models import Attachment, Base, Source, Statement
from .related import activity_alternatives, agent_alternatives, insert_related  # xapi: related
from .xapi import VOIDED, actor_key, merge_definition, restamp, same_statement

__all__ = [
    "Conflict",
    "EventStore",
    "HUB_SOURCE",
    "create_tables",
    "STORED_AHEAD",
    "make_engine",
    "readonly_url",
]

#: the ``source`` of the hub's own activity records (server start/stop, activity): no xAPI
#: source may read them, void them or take the name
HUB_SOURCE = "hub"
#: how far ahead of the clock a writer beside the events service stamps ``stored``
#: (:meth:`EventStore.add_statements`)
STORED_AHEAD = timedelta(seconds=5)
_SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COURSE_RE = re.compile(COURSE_ID_PATTERN)


class Conflict(Exception):
    """A statement id that is already stored with different content (xAPI: 409)."""

    def __init__(self, statement_id: str):
        self.statement_id = statement_id
        super().__init__(f"statement {statement_id} already exists with different content")


def readonly_url(url: str) -> str:
    """The same database, opened read-only (the URL the analytics notebooks get)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ValueError("an in-memory SQLite store has no read-only URL")
        path = Path(u.database).resolve()
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    if u.get_backend_name() == "postgresql":
        return u.update_query_dict(
            {"options": "-c default_transaction_read_only=on"}
        ).render_as_string(hide_password=False)
    return url


def _is_readonly_sqlite(url) -> bool:
    return url.get_backend_name() == "sqlite" and url.query.get("mode") == "ro"


#: SQLite's page cache per connection, in KiB (its default, 2 MiB, holds the statements'
#: indexes up to about 10,000 statements; measured: 10% more inserts/s at 200,000 stored)
SQLITE_CACHE_KIB = 64 * 1024


def make_engine(url: str, *, wal_autocheckpoint: int | None = None, **kwargs) -> Engine:
    """An engine for the store; SQLite gets WAL, a busy timeout and foreign keys.

    ``wal_autocheckpoint``: SQLite's, in pages (its default: 1,000), for a writer that
    checkpoints the log itself, off its commits (:meth:`EventStore.checkpoint`).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_engine(u, **kwargs)
        readonly = _is_readonly_sqlite(u)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cursor = dbapi_conn.cursor()
            if readonly:
                cursor.execute("PRAGMA query_only=ON")
            elif u.database and u.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                if wal_autocheckpoint is not None:
                    cursor.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            if u.database and u.database != ":memory:":
                cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **kwargs)


# --------------------------------------------------------------------------- secrets

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, hashed: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


def _insert(engine: Engine, table):
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect."""
    name = engine.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - other databases are not supported
        raise ValueError(f"unsupported database {name!r} (use SQLite or PostgreSQL)")
    return insert(table)


def create_tables(engine: Engine, tables) -> None:
    """Create ``tables`` where they do not exist; to those that do, add the nullable columns
    and the indexes they lack (``ALTER TABLE ... ADD COLUMN``: existing rows get NULL)."""
    Base.metadata.create_all(engine, tables=list(tables))
    found = inspect(engine)
    for table in tables:
        have = {c["name"] for c in found.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have and c.nullable]
        if missing:
            with engine.begin() as conn:
                for column in missing:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(
                        text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )
        for index in table.indexes:
            index.create(engine, checkfirst=True)


class EventStore:
    """The store behind one URL. ``EventStore(url).create()`` makes the tables."""

    def __init__(
        self, url: str, engine: Engine | None = None, *, wal_autocheckpoint: int | None = None
    ):
        self.url = url
        self.engine = engine or make_engine(url, wal_autocheckpoint=wal_autocheckpoint)

    def __repr__(self) -> str:
        return f"<EventStore {make_url(self.url).render_as_string(hide_password=True)}>"

    @property
    def readonly_url(self) -> str:
        return readonly_url(self.url)

    def create(self) -> None:
        """Create the tables and indexes that do not exist yet; a nullable column or an index
        added to a table that exists already is added to it too (``ALTER TABLE ... ADD
        COLUMN``: existing rows get NULL)."""
        create_tables(self.engine, Base.metadata.sorted_tables)

    def dispose(self) -> None:
        self.engine.dispose()

    def checkpoint(self) -> tuple[int, int] | None:
        """SQLite: copy the write-ahead log's committed pages into the database (a PASSIVE
        checkpoint: it waits for no reader and no writer, and stops where a reader still
        needs the log); (pages in the log, pages copied). None on other databases."""
        if self.engine.dialect.name != "sqlite":
            return None
        with self.engine.connect() as conn:
            _busy, log, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return log, copied

    def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk import: SQLite plans better with them)."""
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE"))

    # ------------------------------------------------------------------- writing

    def insert_ignore(self, table, rows: Sequence[dict], conn=None) -> int:
        """Insert rows, skipping those whose key is already there; the number inserted."""
        if not rows:
            return 0
        stmt = _insert(self.engine, table).on_conflict_do_nothing()
        counted = self.engine.dialect.name == "postgresql"
        if counted:  # psycopg's executemany has no rowcount (-1): the inserted rows, returned
            stmt = stmt.returning(next(iter(table.primary_key.columns)))

        def run(c) -> int:
            result = c.execute(stmt, list(rows))
            return len(result.all()) if counted else result.rowcount

        if conn is not None:
            return run(conn)
        with self.engine.begin() as c:
            return run(c)

    def upsert(self, model, rows: Sequence[dict], conn=None, *, only_given: bool = False) -> None:
        """Insert rows, replacing the other columns of rows whose primary key exists.

        With ``only_given``, only the columns the (first) row has are replaced.
        """
        if not rows:
            return
        table = model.__table__
        keys = [c.name for c in table.primary_key.columns]
        stmt = _insert(self.engine, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={
                c.name: stmt.excluded[c.name]
                for c in table.columns
                if c.name not in keys and (not only_given or c.name in rows[0])
            },
        )
        if conn is not None:
            conn.execute(stmt, list(rows))
            return
        with self.engine.begin() as c:
            c.execute(stmt, list(rows))

    def store_statements(
        self,
        rows: Sequence[dict],
        lrs_timestamps: Iterable[str] = (),
        attachments: Sequence[dict] = (),
    ) -> int:
        """Store validated statement rows atomically (all or none); the number new.

        A row whose id is stored already is skipped if the statement is the same, and raises
        :class:`Conflict` (nothing stored) if it differs. ``lrs_timestamps``: the ids of the
        statements that came without a timestamp (the one stored, given by the LRS, is then
        not compared: a retry is the same statement). Voiding statements mark their target.
        ``attachments``: rows of the ``attachments`` table (course_id, sha2, content_type,
        content) stored with them, those already there kept (the same SHA-2, the same data).
        """
        if not rows:
            return 0
        # optimistic: new ids are the common case, and then one INSERT is all it takes
        try:
            with self.engine.begin() as conn:
                return self._insert_new(conn, rows, attachments)
        except IntegrityError:
            pass  # some id is there already: rolled back; now compare, id by id
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    self.insert_ignore(Attachment.__table__, attachments, conn)
                    return self._store(conn, rows, frozenset(lrs_timestamps))
            except IntegrityError:
                # another request stored one of these ids between our check and insert:
                # check again, now it is visible (and compared)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def add_statements(self, rows: Sequence[dict], *, clock=None) -> int:
        """Insert statement rows written beside the events service (imports, the hub's
        activity records, the grading's results), skipping those whose id is stored already
        (a publication or an import again: nothing is compared, these writers' ids are
        deterministic), with their side rows (:mod:`.related`), in one transaction; the
        number inserted.

        The service, which answers Consistent-Through, knows nothing of these writes, so
        their rows are stamped here, when written, a little ahead of the clock
        (:data:`STORED_AHEAD`; ``clock``: the clock, for tests): a Consistent-Through given
        before the commit is earlier than the stamp (the commit comes first), and a source's
        next poll by ``since`` takes the rows in. A commit that ends after its stamp (a long
        wait for SQLite's write lock) is stamped again, later, until one ends before its
        stamp. Rows stored already keep their time.
        """
        if not rows:
            return 0
        clock = clock or (lambda: datetime.now(UTC))
        stamp = clock() + STORED_AHEAD
        for row in rows:
            restamp(row, stamp, lrs_timestamp=False)
        ids = self._insert_beside(rows)
        while ids and clock() >= stamp:  # committed late: stamped again, later
            later = clock() + STORED_AHEAD
            self.restamp_statements(ids, stamp, later)
            stamp = later
        return len(ids)

    def _insert_beside(self, rows: Sequence[dict]) -> list[str]:
        """Insert the rows whose id is new, and their side rows; the ids inserted."""
        table = Statement.__table__
        first = {}  # a batch naming an id twice: its first row
        for row in rows:
            first.setdefault(row["id"], row)
        stmt = _insert(self.engine, table).on_conflict_do_nothing().returning(table.c.id)
        with self.engine.begin() as conn:
            ids = list(conn.execute(stmt, list(first.values())).scalars())
            insert_related(conn, [first[i] for i in ids])  # xapi: related_activities/agents
        return ids

    def restamp_statements(self, ids: Sequence[str], stored: datetime, later: datetime) -> int:
        """Give the statements ``ids`` that have the ``stored`` time ``stored`` the time
        ``later`` instead (in their row and their JSON), in one transaction; the number
        changed. For a writer beside the service whose commit ended after its stamp
        (:class:`~.importers._Writer`)."""
        table = Statement.__table__
        was = stored.astimezone(UTC).replace(tzinfo=None)
        changed = 0
        with self.engine.begin() as conn:
            for chunk in chunked(list(ids), 500):
                found = conn.execute(
                    select(table.c.pk, table.c.raw).where(
                        table.c.id.in_(chunk), table.c.stored == was
                    )
                ).all()
                for pk, raw in found:
                    row = {"raw": raw}
                    restamp(row, later, lrs_timestamp=False)
                    conn.execute(
                        update(table)
                        .where(table.c.pk == pk)
                        .values(stored=row["stored"], raw=row["raw"])
                    )
                changed += len(found)
        return changed

    def store_together(
        self, batches: Sequence[tuple[Sequence[dict], Iterable[str], Sequence[dict]]]
    ) -> list:
        """Store several requests' statements (``batches`` of :meth:`store_statements`'s
        arguments) in one transaction when all are new (the common case); else each on its
        own, as :meth:`store_statements` would, so that one request's conflict is its own.
        Per batch: the number new, or the :class:`Conflict` it met (nothing of it stored).
        """
        rows = [row for batch_rows, _, _ in batches for row in batch_rows]
        if len(batches) > 1 and len({r["id"] for r in rows}) == len(rows):
            try:
                with self.engine.begin() as conn:
                    self._insert_new(conn, rows, [a for _, _, att in batches for a in att])
                return [len(batch_rows) for batch_rows, _, _ in batches]
            except IntegrityError:
                pass  # an id is stored already: rolled back; now request by request
        results: list = []
        for batch in batches:
            try:
                results.append(self.store_statements(*batch))
            except Conflict as e:
                results.append(e)
        return results

    def _insert_new(self, conn, rows: Sequence[dict], attachments: Sequence[dict]) -> int:
        """Insert statement rows whose ids are new (IntegrityError if one is not), their side
        rows, their voids and their attachments, on ``conn``; the number inserted."""
        conn.execute(Statement.__table__.insert(), list(rows))
        insert_related(conn, rows)  # xapi: related_activities/related_agents
        self._void(conn, rows)
        self.insert_ignore(Attachment.__table__, attachments, conn)
        return len(rows)

    def _void(self, conn, rows: Sequence[dict]) -> None:
        """Mark the targets of the voiding statements among ``rows`` as voided.

        A voiding statement voids only a statement of its own course (the ``course_id`` of
        both rows), and only the hub voids the hub's own records; any other target is left
        as it is, as if it were absent (xAPI does not refuse a voiding statement whose target
        is absent, and telling this one apart would tell the sender the id exists).
        """
        table = Statement.__table__
        scopes: dict[tuple, list[str]] = {}
        for r in rows:
            if r["verb"] == VOIDED:
                scope = (r["course_id"], r["source"] == HUB_SOURCE)
                scopes.setdefault(scope, []).append(r["raw"]["object"]["id"].lower())
        for (course_id, by_hub), targets in scopes.items():
            q = update(table).where(
                table.c.id.in_(targets),
                table.c.verb != VOIDED,
                table.c.course_id.is_not_distinct_from(course_id),
            )
            if not by_hub:
                q = q.where(table.c.source != HUB_SOURCE)
            conn.execute(q.values(voided=True))

    def _store(self, conn, rows: Sequence[dict], lrs_timestamps: frozenset = frozenset()) -> int:
        # One SELECT for the ids already stored, then a plain executemany INSERT of the rest
        # (measured: on PostgreSQL, INSERT ... ON CONFLICT ... RETURNING is 1.5-2.5x slower).
        table = Statement.__table__
        ids = [r["id"] for r in rows]
        existing = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for sid, raw in conn.execute(
                select(table.c.id, table.c.raw).where(table.c.id.in_(chunk))
            ):
                existing[sid] = raw
        new = []
        for row in rows:
            old = existing.get(row["id"])
            if old is None:
                new.append(row)
            elif not same_statement(old, row["raw"], lrs_timestamp=row["id"] in lrs_timestamps):
                raise Conflict(row["id"])
        if new:
            conn.execute(table.insert(), new)
            insert_related(conn, new)  # xapi: related_activities/related_agents
        self._void(conn, new)
        return len(new)

    # ------------------------------------------------------------------- sources

    def add_source(self, name: str, course_id: str) -> tuple[str, str]:
        """Register a source of one course; return its (key, secret).

        Only a hash of the secret is kept. The source may read, write and void only
        statements of ``course_id`` (the events service enforces it); a ``ValueError`` says
        what is wrong with a name or course id.
        """
        if not isinstance(name, str) or not _SOURCE_NAME_RE.match(name):
            raise ValueError(
                f"{name!r} is not a source name (letters, digits, '.', '_', '-'; at most 64)"
            )
        if name == HUB_SOURCE:
            raise ValueError(
                f"the source name {HUB_SOURCE!r} is reserved for the hub's own records"
            )
        if not course_id:
            raise ValueError(
                "a source needs a course (--course ID): it may read and write only that course's statements"
            )
        if not _COURSE_RE.match(course_id):
            raise ValueError(
                f"{course_id!r} is not a course id (lowercase letters, digits and dashes, "
                "starting with a letter, 2-32 characters)"
            )
        key = secrets.token_urlsafe(12)
        secret = secrets.token_urlsafe(32)
        row = {
            "name": name,
            "key": key,
            "secret_hash": hash_secret(secret),
            "course_id": course_id,
            "created": datetime.now(UTC).replace(tzinfo=None),
        }
        with self.engine.begin() as conn:
            if conn.execute(select(Source.name).where(Source.name == name)).first():
                raise ValueError(f"a source named {name!r} exists already")
            conn.execute(Source.__table__.insert(), [row])
        return key, secret

    def remove_source(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(Source.__table__.delete().where(Source.name == name)).rowcount > 0

    def sources(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Source.name, Source.key, Source.course_id, Source.created))
            return [dict(r._mapping) for r in rows]

    def source_rows(self) -> dict[str, dict]:
        """Every source by key: name, key, secret_hash (never the secret), course_id.

        What the events service keeps in memory to check credentials without a query each.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Source.name, Source.key, Source.secret_hash, Source.course_id)
            )
            return {r.key: dict(r._mapping) for r in rows}

    def check_source(self, key: str, secret: str) -> dict | None:
        """The source (name, key, course_id) whose credentials these are, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Source.name, Source.key, Source.secret_hash, Source.course_id).where(
                    Source.key == key
                )
            ).first()
        if row is None:
            # spend the same time as a real check, so keys cannot be probed by timing
            verify_secret(secret, _DUMMY_HASH)
            return None
        if not verify_secret(secret, row.secret_hash):
            return None
        return {"name": row.name, "key": row.key, "course_id": row.course_id}

    # ------------------------------------------------------------------- reading

    def get_statement(
        self,
        statement_id: str,
        *,
        voided: bool = False,
        course_id: str | None = None,
        hide_sources: Sequence[str] = (),
    ) -> dict | None:
        """The stored statement ``statement_id`` (a voided one only with ``voided``), else None.

        With ``course_id``, only a statement of that course; ``hide_sources``: sources whose
        statements are treated as absent (an xAPI source is never shown the hub's records).
        """
        table = Statement.__table__
        q = select(table.c.raw, table.c.voided).where(table.c.id == statement_id.lower())
        if course_id is not None:
            q = q.where(table.c.course_id == course_id)
        if hide_sources:
            q = q.where(table.c.source.not_in(list(hide_sources)))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None or row.voided != voided:
            return None
        return row.raw

    def query_statements(
        self,
        *,
        agent_key: str | None = None,
        verb: str | None = None,
        activity: str | None = None,
        registration: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ascending: bool = False,
        limit: int = 100,
        after: tuple[datetime, int] | None = None,
        course_id: str | None = None,
        hide_sources: Sequence[str] = (),
        related_activities: bool = False,
        related_agents: bool = False,
    ) -> tuple[list[dict], tuple[datetime, int] | None, datetime | None]:
        """Statements matching the xAPI GET filters, by ``stored`` (newest first unless
        ascending; then by pk: the statements of one write share their ``stored``).

        ``course_id`` and ``hide_sources`` scope the query as in :meth:`get_statement`;
        ``related_activities`` and ``related_agents`` widen the activity and agent filters
        (:mod:`.related`); ``after`` is where the page before ended. Returns (statements, the
        (stored, pk) to continue after or None, the newest ``stored`` seen).

        Ordered by ``stored`` as xAPI says, not by pk: an import stamps its rows with the
        time it began while the service stores later ones between them, and PostgreSQL's
        concurrent writers commit in either order. The (course, stored) index gives the order
        (SQLite's entries end with the pk), so ``since`` and ``until`` read one page of it
        rather than sorting every match.
        """
        t = Statement.__table__
        common = [t.c.voided.is_(False), *_scope(t, course_id, hide_sources)]
        if since is not None:
            common.append(t.c.stored > since.astimezone(UTC).replace(tzinfo=None))
        if until is not None:
            common.append(t.c.stored <= until.astimezone(UTC).replace(tzinfo=None))
        if after is not None:  # past (stored, pk): the index's range, then the ties' pks
            last_stored, last_pk = after
            if ascending:
                common += [t.c.stored >= last_stored,
                           or_(t.c.stored > last_stored, t.c.pk > last_pk)]  # fmt: skip
            else:
                common += [t.c.stored <= last_stored,
                           or_(t.c.stored < last_stored, t.c.pk < last_pk)]  # fmt: skip
        # each filter: conditions any one of which matches; a query per combination
        alternatives = []
        if agent_key is not None:  # xapi: related (the actor, the object, Group members...)
            alternatives.append(
                agent_alternatives(agent_key, related=related_agents, course_id=course_id)
            )
        if verb is not None:
            alternatives.append([t.c.verb == verb])
        if activity is not None:  # xapi: related (the object, context activities...)
            alternatives.append(
                activity_alternatives(activity, related=related_activities, course_id=course_id)
            )
        if registration is not None:
            alternatives.append([t.c.registration == registration])
        order = (
            (t.c.stored.asc(), t.c.pk.asc()) if ascending else (t.c.stored.desc(), t.c.pk.desc())
        )
        filters = [a[0] if len(a) == 1 else or_(*a) for a in alternatives]
        columns = (t.c.pk, t.c.stored, t.c.raw)
        queries = [
            select(*columns).where(*common, *combination)
            for combination in itertools.product(*alternatives)
        ]
        if filters:  # and the statements that target a matching one (XAPI-00162): a query
            # of their own, so that neither loses its indexes to an OR
            targets = _targets(filters, course_id, hide_sources)
            queries.append(
                select(*columns).where(
                    *common,
                    *_refs(t),
                    t.c.object_id.in_(targets),
                )
            )
        with self.engine.connect() as conn:
            # every statement stored up to ``until`` was committed before the call (the
            # service's Consistent-Through), so separate reads agree
            found = {}
            for q in queries:
                for row in conn.execute(q.order_by(*order).limit(limit + 1)):
                    found[row.pk] = row
            newest = conn.execute(select(func.max(t.c.stored))).scalar()
        rows = sorted(found.values(), key=lambda r: (r.stored, r.pk), reverse=not ascending)
        rows = rows[: limit + 1]
        more = (rows[limit - 1].stored, rows[limit - 1].pk) if len(rows) > limit else None
        return [r.raw for r in rows[:limit]], more, newest

    def activity(self, activity_id: str, *, newest: int = 1000, **scope) -> dict:
        """The full Activity object ``activity_id`` as the statements of the scope
        (``course_id``, ``hide_sources``) describe it: the definitions of the ``newest``
        statements whose object it is (not voided), merged oldest first
        (:func:`~.xapi.merge_definition`). An Activity no statement names is still an
        Activity: its id alone."""
        t = Statement.__table__
        where = (t.c.object_id == activity_id, t.c.object_type == "Activity")
        definition: dict = {}
        for raw in reversed(self._newest_raws(where, newest, **scope)):
            merge_definition(definition, raw["object"].get("definition") or {})
        activity = {"objectType": "Activity", "id": activity_id}
        if definition:
            activity["definition"] = definition
        return activity

    def agent_names(self, agent: dict, *, newest: int = 100, **scope) -> list[str]:
        """The names the ``newest`` statements of the scope gave ``agent`` as their actor."""
        where = (Statement.__table__.c.actor_key == actor_key(agent),)
        names = [raw["actor"].get("name") for raw in self._newest_raws(where, newest, **scope)]
        return list(dict.fromkeys(n for n in names if isinstance(n, str)))

    def _newest_raws(
        self,
        where: Sequence,
        newest: int,
        course_id: str | None = None,
        hide_sources: Sequence[str] = (),
    ) -> list[dict]:
        """The ``newest`` statements (not voided) of the scope that match ``where``."""
        t = Statement.__table__
        q = (
            select(t.c.raw)
            .where(*_scope(t, course_id, hide_sources), *where, t.c.voided.is_(False))
            .order_by(t.c.pk.desc())
            .limit(newest)
        )
        with self.engine.connect() as conn:
            return [r.raw for r in conn.execute(q)]

    def attachments(self, course_id: str, sha2s: Iterable[str]) -> list[dict]:
        """The ``attachments`` rows of ``course_id`` among ``sha2s`` (sha2, content_type,
        content)."""
        t = Attachment.__table__
        wanted = sorted({s.lower() for s in sha2s})
        found = []
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                q = select(t.c.sha2, t.c.content_type, t.c.content).where(
                    t.c.course_id == course_id, t.c.sha2.in_(wanted[start : start + 500])
                )
                found += [dict(r._mapping) for r in conn.execute(q)]
        return found

    def newest_stored(self) -> datetime | None:
        """The latest ``stored`` time in the store (aware, UTC), None when it is empty."""
        with self.engine.connect() as conn:
            newest = conn.execute(select(func.max(Statement.stored))).scalar()
        return newest.replace(tzinfo=UTC) if newest is not None else None

    def count(self, model=Statement, **where) -> int:
        q = select(func.count()).select_from(model)
        for key, value in where.items():
            q = q.where(getattr(model, key) == value)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def create_readonly_role(self, role: str, password: str) -> str:
        """PostgreSQL only: a login role that may only SELECT the store; its URL."""
        if self.engine.dialect.name != "postgresql":
            raise ValueError("read-only roles are a PostgreSQL feature; SQLite uses mode=ro")
        with self.engine.begin() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).first()
            ident = conn.dialect.identifier_preparer.quote(role)
            pw = password.replace("'", "''")
            verb = "ALTER" if exists else "CREATE"
            conn.execute(text(f"{verb} ROLE {ident} LOGIN PASSWORD '{pw}'"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ident}"))
            conn.execute(text(f"REVOKE SELECT ON sources FROM {ident}"))
        u = make_url(self.url).set(username=role, password=password)
        return readonly_url(u.render_as_string(hide_password=False))


def _scope(table, course_id: str | None, hide_sources: Sequence[str]) -> list:
    """The conditions that keep a query on ``table`` to one course and off some sources."""
    scope = []
    if course_id is not None:
        scope.append(table.c.course_id == course_id)
    if hide_sources:
        scope.append(table.c.source.not_in(list(hide_sources)))
    return scope


def _refs(table) -> tuple:
    """The StatementRefs of ``table`` but voiding statements (the literal lets the partial
    index ix_statements_refs serve: SQLite does not match a parameter with its WHERE)."""
    return (table.c.object_type == literal_column("'StatementRef'"), table.c.verb != VOIDED)


def _targets(filters: list, course_id: str | None, hide_sources: Sequence[str]):
    """The ids of the statements that a StatementRef targets and that match ``filters``
    (voided ones included), or target one that does, recursively: a statement that targets
    one of them matches too (xAPI 1.0.3, Communication 2.1.3, "Filter Conditions for
    StatementRefs": XAPI-00162). A voiding statement is not taken in for its target: it
    matches only by its own properties. Only targeted statements are walked, so the cost
    is that of the StatementRefs, not of every statement the filters match."""
    t = Statement.__table__
    refs = _refs
    targeted = t.alias("targeted")
    base = (  # driven by the StatementRefs (ix_statements_refs), not by what the filters match
        select(t.c.id)
        .distinct()
        .select_from(targeted)
        .join(t, t.c.id == targeted.c.object_id)
        .where(*refs(targeted), *_scope(t, course_id, hide_sources), *filters)
    )
    matched = base.cte("matched", recursive=True)
    ref = t.alias("ref")
    matched = matched.union(
        select(ref.c.id)
        .join(matched, ref.c.object_id == matched.c.id)
        .where(*refs(ref), *_scope(ref, course_id, hide_sources))
    )
    return select(matched.c.id)


_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


def chunked(items: Iterable, size: int):
    """Lists of at most ``size`` items (constant memory over any iterable)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
