"""xAPI 1.0.3 documents: the State, Activity Profile and Agent Profile resources' storage.

A document is a named blob (``stateId`` / ``profileId``) kept in a context: an activity and
an agent (and optionally a registration) for State, an activity for Activity Profile, an
agent for Agent Profile (xAPI 1.0.3, Communication 2.2 to 2.7). Every document belongs to
one course, the course of the source that wrote it: the events service passes the source's
course to every call, so a source of course A never reads, overwrites nor deletes a
document of course B (a document of the same name there is another document).

The semantics are the specification's:

- **ETag**: the SHA-1 of the content in lowercase hexadecimal, in quotes (Communication 3.1).
- **Preconditions** on PUT, POST and DELETE: ``If-Match`` (``*`` or ETags) needs the
  document to exist with one of those ETags, ``If-None-Match`` (``*`` or ETags) needs it
  absent, or with another ETag; a failed one is :class:`PreconditionFailed` (412) and
  nothing changes. A PUT of a profile document that exists, with neither header, is
  :class:`PreconditionRequired` (409: get it, then PUT with ``If-Match``). State is exempt
  ("The State Resource will permit PUT, POST and DELETE requests without concurrency
  headers"), and so is DELETE (the client SHOULD send ``If-Match``; the LRS is not told to
  refuse it when it does not).
- **POST merges JSON**: a posted ``application/json`` object is merged into an existing
  ``application/json`` object, top-level properties replaced (Communication 2.2, "JSON
  Procedure"); either one not a JSON object of that type is :class:`NotMergeable` (400) and
  nothing changes. A POST where nothing exists stores the document as a PUT would.

Everything here is synchronous and runs in one transaction per call; the service calls it
from a thread. On PostgreSQL the row is locked (``SELECT ... FOR UPDATE``) while the
precondition is checked, and a concurrent first write of the same document is retried
once (it then exists, and the precondition is checked against it); on SQLite the service's
write lock makes writes one at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError

from .models import Document

__all__ = [
    "ACTIVITY_PROFILE",
    "AGENT_PROFILE",
    "STATE",
    "Context",
    "DocumentError",
    "DocumentStore",
    "NotMergeable",
    "PreconditionFailed",
    "PreconditionRequired",
    "Preconditions",
    "StoredDocument",
    "etag_of",
    "media_type",
]

STATE = "state"
ACTIVITY_PROFILE = "activity_profile"
AGENT_PROFILE = "agent_profile"
_JSON = "application/json"


def etag_of(content: bytes) -> str:
    """The xAPI ETag of ``content`` (unquoted): its SHA-1, lowercase hexadecimal."""
    return hashlib.sha1(content).hexdigest()


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json`` (lowercase)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class DocumentError(Exception):
    """A write the specification refuses; ``status`` is its HTTP status."""

    status = 400
    error = "bad_request"


class PreconditionFailed(DocumentError):
    """``If-Match`` or ``If-None-Match`` does not hold (412)."""

    status, error = 412, "precondition_failed"


class PreconditionRequired(DocumentError):
    """A PUT of a profile document that exists, with neither header (409)."""

    status, error = 409, "conflict"


class NotMergeable(DocumentError):
    """A POST whose document, or the stored one, is not a JSON object (400)."""


@dataclass(frozen=True, slots=True)
class Context:
    """Where a document is kept: its resource and the activity, agent and registration it
    belongs to ("" where the resource has none)."""

    resource: str
    activity_id: str = ""
    agent_key: str = ""
    registration: str = ""

    @property
    def key(self) -> str:
        """A SHA-256 of the resource and the context (the documents' short unique key)."""
        parts = [self.resource, self.activity_id, self.agent_key, self.registration]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def where(self, course_id: str) -> tuple:
        t = Document.__table__
        return (
            t.c.course_id == course_id,
            t.c.context_key == self.key,
            # the key is a hash: compare what it stands for too
            t.c.resource == self.resource,
            t.c.activity_id == self.activity_id,
            t.c.agent_key == self.agent_key,
            t.c.registration == self.registration,
        )


@dataclass(frozen=True, slots=True)
class Preconditions:
    """A request's ``If-Match`` and ``If-None-Match`` (each ``None`` when absent): ``*`` or
    ETags, unquoted and lowercase."""

    if_match: frozenset[str] | None = None
    if_none_match: frozenset[str] | None = None

    @classmethod
    def from_headers(cls, if_match: str | None, if_none_match: str | None) -> Preconditions:
        return cls(_etags(if_match), _etags(if_none_match))

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def check(self, current: str | None) -> None:
        """Raise :class:`PreconditionFailed` unless they hold for the document whose ETag is
        ``current`` (None: there is none)."""
        if self.if_match is not None and (
            current is None or not ("*" in self.if_match or current in self.if_match)
        ):
            raise PreconditionFailed(
                "If-Match: the document does not exist"
                if current is None
                else f'If-Match: the document\'s ETag is "{current}" now (GET it again)'
            )
        if self.if_none_match is not None and current is not None:
            if "*" in self.if_none_match or current in self.if_none_match:
                raise PreconditionFailed(f'If-None-Match: the document exists (ETag "{current}")')


def _etags(header: str | None) -> frozenset[str] | None:
    """The entity tags of an ``If-Match`` / ``If-None-Match`` header: ``*``, or the quoted
    (possibly weak, ``W/``) tags of a comma-separated list, unquoted and lowercase."""
    if header is None:
        return None
    tags = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith(("W/", "w/")):
            tag = tag[2:]
        tags.add(tag.strip('"').lower())
    tags.discard("")
    return frozenset(tags)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    content: bytes
    content_type: str
    etag: str
    #: aware UTC
    updated: datetime


class DocumentStore:
    """The documents of the event store behind ``engine`` (the ``documents`` table)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def get(self, course_id: str, context: Context, doc_id: str) -> StoredDocument | None:
        t = Document.__table__
        q = select(t.c.content, t.c.content_type, t.c.etag, t.c.updated).where(
            *context.where(course_id), t.c.doc_id == doc_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return StoredDocument(
            bytes(row.content), row.content_type, row.etag, row.updated.replace(tzinfo=UTC)
        )

    def ids(
        self, course_id: str, context: Context, since: datetime | None = None
    ) -> tuple[list[str], datetime | None]:
        """The ids of the context's documents (updated after ``since``, exclusive), and when
        the latest of them was updated (aware UTC; None when there is none)."""
        t = Document.__table__
        where = list(context.where(course_id))
        if since is not None:
            where.append(t.c.updated > _naive(since))
        with self.engine.connect() as conn:
            ids = [
                r.doc_id for r in conn.execute(select(t.c.doc_id).where(*where).order_by(t.c.pk))
            ]
            latest = conn.execute(select(func.max(t.c.updated)).where(*where)).scalar()
        return ids, latest.replace(tzinfo=UTC) if latest is not None else None

    def write(
        self,
        course_id: str,
        context: Context,
        doc_id: str,
        content: bytes,
        content_type: str,
        *,
        merge: bool,
        preconditions: Preconditions = Preconditions(),
        now: datetime,
    ) -> str:
        """PUT (``merge`` False) or POST (``merge`` True) a document; its new ETag.

        Raises :class:`PreconditionFailed`, :class:`PreconditionRequired` or
        :class:`NotMergeable` (see the module's docstring), and then changes nothing.
        """
        if merge and media_type(content_type) == _JSON:
            _json_object(content, "the posted document")
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    return self._write(
                        conn, course_id, context, doc_id, content, content_type,
                        merge=merge, preconditions=preconditions, now=now,
                    )  # fmt: skip
            except IntegrityError:
                if attempt:  # the first write of a document, by two requests at once
                    raise
        raise AssertionError("unreachable")

    def _write(self, conn, course_id, context, doc_id, content, content_type, *, merge,
               preconditions, now) -> str:  # fmt: skip
        t = Document.__table__
        current = conn.execute(
            select(t.c.pk, t.c.content, t.c.content_type, t.c.etag)
            .where(*context.where(course_id), t.c.doc_id == doc_id)
            .with_for_update()
        ).first()
        preconditions.check(current.etag if current else None)
        if (
            current is not None
            and not merge
            and not preconditions.given
            and context.resource != STATE
        ):
            raise PreconditionRequired(
                f"the document {doc_id!r} exists already: GET it, check what it holds, then "
                "PUT with the header If-Match set to its ETag (or If-None-Match: * to write "
                "only a document that does not exist)"
            )
        if merge and current is not None:
            if media_type(current.content_type) != _JSON or media_type(content_type) != _JSON:
                raise NotMergeable(
                    f"POST merges JSON documents only: the stored document {doc_id!r} is "
                    f"{media_type(current.content_type) or 'of no type'} and the posted one "
                    f"{media_type(content_type) or 'of no type'} (both must be "
                    f"{_JSON}); PUT replaces a document of any type"
                )
            merged = {
                **_json_object(bytes(current.content), "the stored document"),
                **_json_object(content, "the posted document"),
            }
            content, content_type = json.dumps(merged).encode(), _JSON
        etag = etag_of(content)
        values = {"content": content, "content_type": content_type, "etag": etag,
                  "updated": _naive(now)}  # fmt: skip
        if current is None:
            conn.execute(
                t.insert(),
                [{
                    "course_id": course_id, "resource": context.resource,
                    "activity_id": context.activity_id, "agent_key": context.agent_key,
                    "registration": context.registration, "context_key": context.key,
                    "doc_id": doc_id, **values,
                }],
            )  # fmt: skip
        else:
            conn.execute(t.update().where(t.c.pk == current.pk).values(**values))
        return etag

    def delete(
        self,
        course_id: str,
        context: Context,
        doc_id: str | None,
        *,
        preconditions: Preconditions = Preconditions(),
    ) -> int:
        """Delete one document (``doc_id``), or all of the context's (None: State only);
        how many. A failed precondition raises :class:`PreconditionFailed` (nothing
        deleted); for all of a context's, ``If-Match`` is not defined and is refused."""
        t = Document.__table__
        where: Sequence = context.where(course_id)
        with self.engine.begin() as conn:
            if doc_id is None:
                if preconditions.given:
                    raise PreconditionFailed(
                        "If-Match / If-None-Match apply to one document: give its stateId"
                    )
                return conn.execute(delete(t).where(*where)).rowcount
            current = conn.execute(
                select(t.c.pk, t.c.etag).where(*where, t.c.doc_id == doc_id).with_for_update()
            ).first()
            preconditions.check(current.etag if current else None)
            if current is None:
                return 0
            return conn.execute(delete(t).where(t.c.pk == current.pk)).rowcount


def _json_object(content: bytes, what: str) -> dict:
    try:
        value = json.loads(content, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        value = None
    if not isinstance(value, dict):
        raise NotMergeable(f"{what} is not a JSON object, and POST merges JSON objects only")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)
