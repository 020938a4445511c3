"""The events service: the xAPI 1.0.3 Statements resource, as a JupyterHub-managed service.

An LMS that speaks xAPI (Moodle's logstore_xapi, for instance) posts statements to
``https://<hub>/services/events/xAPI/statements`` with HTTP Basic credentials made by
``hub-ext events add-source NAME --course ID`` (only a scrypt hash of the secret is stored)::

    POST /xAPI/statements                 one statement or a list -> 200 [ids]
    PUT  /xAPI/statements?statementId=ID  one statement -> 204
    GET  /xAPI/statements?statementId=ID  (or voidedStatementId) -> the statement
    GET  /xAPI/statements?agent=&verb=&activity=&registration=&since=&until=&limit=&ascending=
         &related_activities=&related_agents=&format=&attachments=
         -> {"statements": [...], "more": "<IRL of the next page>" or ""}
    GET  /xAPI/about                      -> {"version": ["1.0.3"]} (no credentials needed)

``agent`` matches the actor or the object (a Group's members too), ``activity`` the object;
``related_agents=true`` and ``related_activities=true`` widen them to the authority, the
context and a SubStatement (:mod:`.related`'s side tables, written with each statement).

**Consistent-Through is a promise**: every statement stored at or before the
``X-Experience-API-Consistent-Through`` of an answer is visible to any query made after it,
so a client that polls ``since=<the last one>`` misses nothing. ``stored`` is given when the
write starts (under SQLite's write lock), from a clock that never goes back and that stays
above every Consistent-Through answered; Consistent-Through is taken before the query, just
before the earliest write still under way. A query's answer holds the statements stored up
to its own Consistent-Through (an ``until`` it carries, and so do its ``more`` pages): the
next poll starts where it ended, and reads nothing twice. The promise covers what this
service writes; a process that writes the store directly (an import) is not in it.

Every request but ``about`` needs ``X-Experience-API-Version: 1.0.x``. A bad statement gets
400 with the reason (and which statement of a batch); an id stored with other content 409;
nothing of a rejected batch is stored. The service also records the hub's own activity
(:mod:`.hubevents`) when it runs under the hub with an API token.

**A source reaches only its own course** (``sources.course_id``): it reads (GET) and voids
only that course's statements, and never the hub's own activity records (source ``hub``);
another course's statement answers 404 as a missing one does. A statement it posts that
names another course (``urn:hub-ext:course:<id>`` or an ``activity_courses`` IRI in its
context) is refused with 403 naming the course, and nothing of the request is stored. A
source without a course (made before ``--course`` was required) is refused with 403 until
it is re-created with one; what it stored stays.

**Credentials cost a bounded amount.** The sources (key, scrypt hash, course) are kept in
memory and re-read every ``sources_refresh_seconds``: an unknown key is refused without a
hash or a query (keys are 96 random bits, so timing cannot find one). A verified credential
is remembered (an HMAC of it under a per-process random key, never the secret) for
``auth_cache_seconds``, and forgotten when its source is removed or its secret changes. The
other checks run scrypt on a small executor of their own (``auth_threads``), not on the
threads the store uses; when ``auth_queue`` checks wait already, the request gets 503 with
``Retry-After`` at once. So a flood of bad credentials cannot stall the LMSs that post.

Errors are the hub_ext services' one shape (:class:`~hub_ext.services.base.JSONErrorsMixin`),
``{"error": "forbidden", "message": "...", "request_id": "..."}``, with the
``X-Experience-API-Version`` header as on every answer. ``error`` is one word per status:
``bad_request`` (400: the reason in ``message``; for a statement, ``field`` names it and,
in a batch, ``statement`` its index), ``unauthorized`` (401, with ``WWW-Authenticate``),
``forbidden`` (403, with ``course`` when a statement names another), ``not_found`` (404),
``method_not_allowed`` (405), ``conflict`` (409, with ``statement_id``),
``payload_too_large`` (413: a body over ``max_body_size``), ``busy`` (503, with
``Retry-After``); ``internal_server_error`` (500) only for a bug, never for what a client
sends. A valid ``X-Request-Id`` the client gives is kept, else one is made: ``request_id``
is also the ``X-Request-Id`` response header and is in the request's log line. Request logs
hold the path, never the query string (agents' e-mail addresses) nor credentials.

Run it as ``python -m hub_ext.services.events.service`` (``hubconfig.events_service``
builds the ``c.JupyterHub.services`` entry).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict as _asdict
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Float, Integer, Unicode, default, validate

from ..base import HubServiceApp, JSONErrorsMixin, log_request
from .attachments import Part, attachments_of, check_attachments, multipart_answer, parse_multipart
from .documents import DocumentStore
from .store import HUB_SOURCE, Conflict, EventStore, verify_secret
from .xapi import (
    SUPPORTED_VERSION,
    VERSION,
    StatementError,
    accepted_languages,
    actor_key,
    check_row,
    check_uuid,
    course_of,
    formatted,
    parse_timestamp,
    restamp,
    to_row,
    validate_agent,
    validate_statement,
)

__all__ = ["EventsService", "main"]

_VERSION_HEADER = "X-Experience-API-Version"
_CONSISTENT_HEADER = "X-Experience-API-Consistent-Through"
_GET_PARAMS = {
    "statementId", "voidedStatementId", "agent", "verb", "activity", "registration",
    "related_activities", "related_agents", "since", "until", "limit", "format",
    "attachments", "ascending", "more",
}  # fmt: skip
#: the parameters a ``more`` token may carry (those of a statements query)
_PAGE_PARAMS = _GET_PARAMS - {"statementId", "voidedStatementId", "more"}
#: what a query-string value never holds (tornado replaces control characters, refuses
#: invalid UTF-8): in a ``more`` token, the sign of a token this LRS did not give
_NOT_FROM_A_QUERY = re.compile(r"[\x00-\x08\x0e-\x1f\ud800-\udfff]")
#: the largest statement primary key (BIGINT)
_PK_MAX = 2**63 - 1
#: page tokens' times: naive UTC, in microseconds since 1970, up to the year 9999
_EPOCH = datetime(1970, 1, 1)
_MICROS_MAX = (datetime(9999, 12, 31) - _EPOCH) // timedelta(microseconds=1)
#: how many refused credentials are remembered at most (each: a key, an HMAC, an expiry)
_REFUSED_MAX = 1024
#: the resolution of ``stored`` (both stores keep microseconds)
_TICK = timedelta(microseconds=1)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Busy(Exception):
    """Too many credential checks are waiting already (the request gets 503)."""


def _json(text: bytes | str):
    """``text`` as JSON (RFC 8259: no NaN nor Infinity); ValueError says why not."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _page_token(filters: dict[str, str], after: tuple[datetime, int]) -> str:
    """The ``more`` token of the next page: the query's parameters and where the page ended
    (the last statement's ``stored``, in microseconds since 1970, and its pk)."""
    stored, pk = after
    micros = (stored.replace(tzinfo=None) - _EPOCH) // timedelta(microseconds=1)
    state = {"f": filters, "s": micros, "a": pk}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _read_page_token(token: str) -> tuple[dict[str, str], tuple[datetime, int]]:
    """What :func:`_page_token` put in ``token``; ValueError if this LRS did not make it."""
    try:
        state = _json(base64.urlsafe_b64decode(token.encode()))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        state = None
    if not isinstance(state, dict):
        state = {}
    filters, micros, pk = state.get("f"), state.get("s"), state.get("a")
    if (
        isinstance(filters, dict)
        and type(pk) is int
        and 0 <= pk <= _PK_MAX
        and type(micros) is int
        and 0 <= micros <= _MICROS_MAX
        and filters.keys() <= _PAGE_PARAMS
        and all(isinstance(v, str) and not _NOT_FROM_A_QUERY.search(v) for v in filters.values())
    ):
        return filters, (_EPOCH + timedelta(microseconds=micros), pk)
    raise ValueError("more: not a token this LRS gave")


def _admitted(method):
    """Run the handler's ``method`` once the request passed the checks of :meth:`XAPIHandler.admit`.

    The checks run when the body is in, not in ``prepare``: an answer given before the body
    is read makes tornado close the connection, and a client still sending would lose it.
    A POST with ``?method=`` (the alternate request syntax) is first turned into the request
    it stands for (:meth:`XAPIHandler.unwrap_alternate`), then checked and run as that one.
    """

    @functools.wraps(method)
    async def checked(self, *args):
        if self._finished:  # the body was refused while it arrived (413)
            return
        if not self._admitted:
            self._admitted = True
            self.request.body = b"".join(self._chunks)
            self._chunks = []
            if self.request.method == "POST" and "method" in self.request.query_arguments:
                target = self.unwrap_alternate()
                if target is None:
                    return
                await self.admit()
                if not self._finished:
                    await getattr(self, target.lower())(*args)
                return
            await self.admit()
        if not self._finished:
            await method(self, *args)

    return checked


#: the form fields of the alternate request syntax that are headers (Communication 1.3)
_ALTERNATE_HEADERS = {
    "authorization": "Authorization",
    "x-experience-api-version": _VERSION_HEADER,
    "content-type": "Content-Type",
    "content-length": "Content-Length",
    "if-match": "If-Match",
    "if-none-match": "If-None-Match",
}
_ALTERNATE_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


@web.stream_request_body
class XAPIHandler(JSONErrorsMixin, web.RequestHandler):
    """Common to the xAPI handlers: version header, Basic credentials, a bounded body.

    Errors are the hub_ext services' JSON errors (:class:`~hub_ext.services.base.JSONErrorsMixin`),
    with the xAPI version header like every answer. The body is streamed in, so that one
    larger than ``max_body_size`` gets a JSON 413 (tornado's own limit answers a bare 400);
    the methods, wrapped in :func:`_admitted`, find it in ``self.request.body``.
    """

    service: EventsService

    def initialize(self, service):
        super().initialize()
        self.service = service
        self.source = None
        self._chunks: list[bytes] = []
        self._received = 0
        self._admitted = False

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header(_VERSION_HEADER, VERSION)
        self.set_header("Content-Type", "application/json")

    def log_exception(self, typ, value, tb):
        # tornado's own would log the URI, query string (agents' e-mail addresses) included
        if isinstance(value, web.HTTPError):
            return  # the request's log line has its status; the client has the message
        self.service.log.error(
            "request %s: %s %s failed",
            self.request_id,
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )

    async def prepare(self):
        # max_body_size is enforced here and in data_received, with a JSON 413; the
        # connection's own limit (a bare 400, even after that answer) is lifted
        self.request.connection.set_max_body_size(sys.maxsize)
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.service.max_body_size:
            self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._received > self.service.max_body_size:
            self._chunks = []
            return self._too_large()
        self._chunks.append(chunk)

    def _too_large(self) -> None:
        self.fail(
            413,
            "payload_too_large",
            f"the body is larger than this LRS takes ({self.service.max_body_size} bytes; "
            "post the statements in smaller batches)",
        )

    def unwrap_alternate(self) -> str | None:
        """Turn a POST in the alternate request syntax (xAPI 1.0.3, Communication 1.3:
        ``?method=PUT`` and a form body) into the request it stands for: the form's header
        fields become headers, ``content`` the body (UTF-8), the other fields the query.
        Returns the method, or None after answering 400."""
        method = self.get_query_argument("method", strip=False)
        others = sorted(set(self.request.query_arguments) - {"method"})
        if method.upper() not in _ALTERNATE_METHODS:
            self.fail(
                400,
                "bad_request",
                f"method={method!r}: the alternate request syntax takes "
                f"{', '.join(_ALTERNATE_METHODS)}",
            )
            return None
        if others:
            self.fail(
                400,
                "bad_request",
                f"the alternate request syntax (method=) takes no other query parameter; "
                f"send {others[0]!r} as a form field",
            )
            return None
        try:
            form = parse_qs(
                self.request.body.decode("utf-8"), keep_blank_values=True, errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            self.fail(
                400,
                "bad_request",
                "the alternate request syntax's body is a form "
                "(application/x-www-form-urlencoded) in UTF-8",
            )
            return None
        query: dict[str, list[bytes]] = {}
        content = b""
        for name, values in form.items():
            header = _ALTERNATE_HEADERS.get(name.lower())
            if header is not None:
                self.request.headers[header] = values[-1]
            elif name == "content":
                content = values[-1].encode("utf-8")
            else:
                query[name] = [v.encode("utf-8") for v in values]
        if "Content-Type" not in {_ALTERNATE_HEADERS.get(n.lower()) for n in form}:
            self.request.headers.pop("Content-Type", None)  # the form's own is not the content's
        self.request.method = method.upper()
        self.request.query_arguments = query
        self.request.arguments = dict(query)
        self.request.body = content
        return self.request.method

    async def admit(self) -> None:
        """Check the version header and the credentials (and answer if they do not pass)."""
        version = self.request.headers.get(_VERSION_HEADER)
        if version is None:
            return self.fail(
                400, "bad_request", f"missing {_VERSION_HEADER} header (this LRS speaks 1.0.x)"
            )
        if not SUPPORTED_VERSION.match(version.strip()):
            return self.fail(
                400,
                "bad_request",
                f"{_VERSION_HEADER} {version!r} is not supported (this LRS speaks 1.0.x)",
            )
        try:
            self.source = await self.service.authenticate(self.request.headers.get("Authorization"))
        except Busy:
            return self.fail(
                503, "busy", "too many credential checks are waiting; retry in a moment"
            )
        if self.source is None:
            return self.fail(
                401,
                "unauthorized",
                "valid HTTP Basic credentials of an xAPI source are required",
                headers={"WWW-Authenticate": 'Basic realm="xAPI"'},
            )
        if not self.source["course_id"]:
            name = self.source["name"]
            return self.fail(
                403,
                "forbidden",
                f"the source {name!r} has no course, and a source may read and write only its "
                f"own course's statements: re-create it with `hub-ext events remove-source "
                f"{name}` then `hub-ext events add-source {name} --course COURSE_ID` and give "
                "the LMS the new key and secret (what it stored stays stored)",
            )

    @property
    def scope(self) -> dict:
        """The query scope of the source: its course, and never the hub's own records."""
        return {"course_id": self.source["course_id"], "hide_sources": (HUB_SOURCE,)}

    def json_body(self):
        try:
            return _json(self.request.body or b"null")
        except ValueError as e:
            raise web.HTTPError(400, "the body is not JSON: %s", e) from None


class StatementsHandler(XAPIHandler):
    #: the Consistent-Through of a GET (HEAD) under way, on its errors too
    consistent: datetime | None = None

    def fail(self, status: int, error: str, message: str, *, headers=None, **extra) -> None:
        if self.request.method in ("GET", "HEAD"):
            # on every answer to a statements GET, its refusals (400, 401) too
            if self.consistent is None:
                self.consistent = self.service.consistent_through()
            headers = {**(headers or {}), _CONSISTENT_HEADER: _iso(self.consistent)}
        super().fail(status, error, message, headers=headers, **extra)

    def statements_body(self):
        """The body's JSON: the whole body, or the first part of a ``multipart/mixed`` one
        (whose other parts, the attachments' data, go to ``self.parts`` by sha2)."""
        self.parts: dict[str, Part] = {}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() == "multipart/mixed":
            try:
                text, self.parts = parse_multipart(content_type, self.request.body)
            except StatementError as e:
                raise web.HTTPError(400, "%s", e) from None
            try:
                return _json(text or b"null")
            except ValueError as e:
                raise web.HTTPError(400, "the statements part is not JSON: %s", e) from None
        return self.json_body()

    @_admitted
    async def post(self):
        body = self.statements_body()
        statements = body if isinstance(body, list) else [body]
        ids = await self._store(statements, batch=isinstance(body, list))
        if ids is not None:
            self.finish(json.dumps(ids))

    @_admitted
    async def put(self):
        statement_id = self.get_query_argument("statementId", None)
        if not statement_id:
            return self.fail(400, "bad_request", "PUT needs the statementId parameter")
        body = self.statements_body()
        if not isinstance(body, dict):
            return self.fail(400, "bad_request", "PUT takes one statement (a JSON object)")
        if "id" in body and str(body["id"]).lower() != statement_id.lower():
            return self.fail(
                400,
                "bad_request",
                f"the statement's id {body['id']!r} is not the statementId {statement_id!r}",
            )
        body["id"] = statement_id
        if await self._store([body], batch=False) is not None:
            self.set_status(204)
            self.finish()

    async def _store(self, statements: list, *, batch: bool) -> list[str] | None:
        """Validate, map and store ``statements`` (all or none): their ids, else None after
        answering the error (which names the statement of a batch and the field)."""
        if not statements:
            return []
        if len(statements) > self.service.max_batch:
            self.fail(
                400,
                "bad_request",
                f"{len(statements)} statements in one request; at most {self.service.max_batch}",
            )
            return None
        stored = datetime.now(UTC)  # for now: the time is given under the write lock
        rows, seen, lrs_timestamps = [], set(), []
        authority = self.service.authority(self.source)
        own = self.source["course_id"]
        for i, statement in enumerate(statements):
            where = f"statements[{i}]" if batch else "statement"
            which = {"statement": i} if batch else {}
            try:
                validate_statement(statement, where)
            except StatementError as e:
                self.fail(400, "bad_request", str(e), field=e.path, **which)
                return None
            sid = str(statement.get("id", "")).lower()
            if sid and sid in seen:
                self.fail(
                    400, "bad_request", f"{where}.id: {sid} appears twice in the batch", **which
                )
                return None
            seen.add(sid)
            named = course_of(statement, self.service.activity_courses)
            if named is not None and named != own:
                self.fail(
                    403,
                    "forbidden",
                    f"{where} belongs to course {named!r} (its context names it), and the "
                    f"source {self.source['name']!r} may post only statements of course "
                    f"{own!r}; nothing of the request was stored",
                    course=named,
                    **which,
                )
                return None
        media = self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media not in ("application/json", "multipart/mixed") and any(
            any(True for _ in attachments_of(s)) for s in statements
        ):  # XAPI-00127
            self.fail(
                400,
                "bad_request",
                "statements with attachments come as application/json (each attachment with "
                f"a fileUrl) or as multipart/mixed, not as {media or 'a body without Content-Type'}",
            )
            return None
        try:  # every attachment's data is given (a part, or a fileUrl), every part is used
            parts = check_attachments(statements, self.parts, batch=batch)
        except StatementError as e:
            self.fail(400, "bad_request", str(e), field=e.path)
            return None
        for i, statement in enumerate(statements):
            where = f"statements[{i}]" if batch else "statement"
            which = {"statement": i} if batch else {}
            statement.pop("stored", None)
            statement["authority"] = authority
            lrs_timestamp = "timestamp" not in statement
            row = to_row(statement, stored=stored, source=self.source["name"], course_id=own)
            try:
                check_row(row, where)
            except StatementError as e:
                self.fail(400, "bad_request", str(e), field=e.path, **which)
                return None
            rows.append(row)
            if lrs_timestamp:
                lrs_timestamps.append(row["id"])
        try:
            await self.service.writer.write(
                rows, lrs_timestamps, [{"course_id": own, **_asdict(p)} for p in parts]
            )
        except Conflict as e:
            self.fail(409, "conflict", str(e), statement_id=e.statement_id)
            return None
        return [r["id"] for r in rows]

    @_admitted
    async def get(self):
        # before any query: every statement stored at or before it is visible to the query
        consistent = self.consistent = self.service.consistent_through()
        self.set_header(_CONSISTENT_HEADER, _iso(consistent))
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        unknown = sorted(set(args) - _GET_PARAMS)
        if unknown:
            return self.fail(400, "bad_request", f"unknown parameter {unknown[0]!r}")
        try:
            _check_answer_params(args)
        except ValueError as e:
            return self.fail(400, "bad_request", str(e))
        for key in ("statementId", "voidedStatementId"):
            if key in args:
                others = set(args) - {key, "format", "attachments"}
                if others:
                    return self.fail(
                        400,
                        "bad_request",
                        f"{key} cannot be combined with {', '.join(sorted(others))}",
                    )
                statement = await asyncio.to_thread(
                    self.service.store.get_statement,
                    args[key],
                    voided=key == "voidedStatementId",
                    **self.scope,
                )
                if statement is None:  # another course's: the same answer as a missing one
                    return self.fail(404, "not_found", f"no statement {args[key]}")
                return await self._answer(self._formatted(statement, args), args)
        try:
            filters, after = _read_page_token(args["more"]) if "more" in args else (args, None)
            query = self._filters(filters)
        except ValueError as e:
            return self.fail(400, "bad_request", str(e))
        # the answer is the store as of ``consistent``: a statement stored later (while the
        # query runs) is in the next poll's (since=<this header>), not in this one too; the
        # pages that follow keep the same bound
        if query.get("until") is None or query["until"] > consistent:
            query["until"] = consistent
            filters = {**filters, "until": _iso(consistent)}
        self.consistent = query["until"]
        self.set_header(_CONSISTENT_HEADER, _iso(query["until"]))
        statements, next_page, _newest = await asyncio.to_thread(
            self.service.store.query_statements, after=after, **query, **self.scope
        )
        more = ""
        if next_page is not None:
            token = _page_token(filters, next_page)
            more = f"{self.service.base_url}xAPI/statements?{urlencode({'more': token})}"
        statements = [self._formatted(s, filters) for s in statements]
        await self._answer({"statements": statements, "more": more}, filters)

    head = get

    async def _answer(self, body: dict, args: dict) -> None:
        """``body`` as JSON; with ``attachments=true``, as the first part of a multipart/mixed
        answer (xAPI 1.0.3, Communication 2.1.3), followed by the data of the statements'
        attachments that this LRS holds (those sent as parts; a ``fileUrl`` one has none)."""
        text = json.dumps(body).encode()
        if args.get("attachments") != "true":
            return self.finish(text)
        statements = body.get("statements", [body])
        sha2s = {str(a.get("sha2", "")) for s in statements for a in attachments_of(s)}
        rows = await asyncio.to_thread(
            self.service.store.attachments, self.source["course_id"], sha2s
        )
        boundary = uuid.uuid4().hex
        self.set_header("Content-Type", f'multipart/mixed; boundary="{boundary}"')
        self.finish(multipart_answer(text, [Part(**r) for r in rows], boundary))

    def _formatted(self, statement: dict, args: dict) -> dict:
        languages = accepted_languages(self.request.headers.get("Accept-Language"))
        return formatted(statement, args.get("format", "exact"), languages)

    def _filters(self, args: dict) -> dict:
        query: dict = {}
        if "registration" in args:
            try:
                query["registration"] = check_uuid(args["registration"], "registration").lower()
            except StatementError as e:
                raise ValueError(str(e)) from None
        _check_answer_params(args)
        for key in ("related_activities", "related_agents"):
            if args.get(key, "false") not in ("true", "false"):
                raise ValueError(f"{key}: {args[key]!r} is not true or false")
            query[key] = args.get(key) == "true"
        if "agent" in args:
            try:
                agent = validate_agent(_json(args["agent"]), "agent")
            except ValueError as e:  # a StatementError too
                raise ValueError(f"agent: not an Agent or Group in JSON ({e})") from None
            query["agent_key"] = actor_key(agent)
        if "verb" in args:
            query["verb"] = args["verb"]
        if "activity" in args:
            query["activity"] = args["activity"]
        for key in ("since", "until"):
            if key in args:
                try:
                    query[key] = parse_timestamp(args[key], key)
                except StatementError as e:
                    raise ValueError(str(e)) from None
        limit = args.get("limit", "0")
        if not (limit.isascii() and limit.isdigit()):
            raise ValueError(f"limit: {limit!r} is not a non-negative whole number")
        limit = int(limit)
        query["limit"] = min(limit, self.service.page_size) if limit else self.service.page_size
        ascending = args.get("ascending", "false")
        if ascending not in ("true", "false"):
            raise ValueError(f"ascending: {ascending!r} is not true or false")
        query["ascending"] = ascending == "true"
        return query


def _check_answer_params(args: dict) -> None:
    """``format`` and ``attachments``, which shape every answer of a statements GET (one
    statement's too); ValueError says which is wrong."""
    if args.get("attachments", "false") not in ("true", "false"):
        raise ValueError(f"attachments: {args['attachments']!r} is not true or false")
    if args.get("format", "exact") not in ("ids", "exact", "canonical"):
        raise ValueError(f"format: {args['format']!r} is not ids, exact or canonical")


#: the resources this LRS has, under ``xAPI/`` (what About lists, and the routes)
RESOURCES = (
    "statements", "activities/state", "activities/profile", "agents/profile", "activities",
    "agents", "about",
)  # fmt: skip
#: the About extension that lists :data:`RESOURCES`
RESOURCES_EXTENSION = "urn:hub-ext:xapi:resources"


class AboutHandler(XAPIHandler):
    """About: the version, and the resources in an extension (no version header nor
    credentials needed)."""

    def get(self):
        self.finish(
            json.dumps({"version": [VERSION], "extensions": {RESOURCES_EXTENSION: list(RESOURCES)}})
        )

    head = get


class NotFoundHandler(XAPIHandler):
    """Any other path: a JSON 404 (no credentials needed to learn there is nothing here)."""

    async def prepare(self):
        await super().prepare()
        self.fail(
            404,
            "not_found",
            f"no resource {self.request.path} (this LRS has "
            f"{', '.join('xAPI/' + r for r in RESOURCES)} under {self.service.base_url})",
        )


class _NoLock:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


#: SQLite: pages of write-ahead log at which a commit checkpoints when the service's own
#: checkpoints (``checkpoint_interval``) fall behind (SQLite's default is 1,000)
_BACKSTOP_PAGES = 10_000


class StatementWriter:
    """Writes each request's statement rows (all or none), under the service's write lock,
    with their ``stored`` time given when the write starts (:meth:`EventsService.writing`).

    With ``together`` (SQLite, one writer at a time), the requests that arrive while a write
    is under way wait for it, and are then written together in one transaction (group
    commit, up to ``most`` statements): concurrent LMSs pay for one commit, not one each.
    A request's all-or-nothing stays its own: when the joint insert meets an id that is
    stored already, each request of the group is stored on its own
    (:meth:`~.store.EventStore.store_together`), so a conflict answers only its request.
    Otherwise (PostgreSQL, which has its own group commit) each request writes on its own
    connection, at once.
    """

    def __init__(self, service: EventsService, *, together: bool, most: int):
        self.service = service
        self.together = together
        self.most = most
        self._pending: list[tuple[list, list, list, asyncio.Future]] = []
        self._drain_task: asyncio.Task | None = None

    @staticmethod
    def _restamp(rows: list, lrs_timestamps: list, stored: datetime) -> None:
        given = set(lrs_timestamps)
        for row in rows:
            restamp(row, stored, lrs_timestamp=row["id"] in given)

    async def write(self, rows: list, lrs_timestamps: list, attachments: list) -> int:
        """Store one request's rows; the number new, or :class:`Conflict` (nothing stored)."""
        store = self.service.store
        if not self.together:
            async with self.service.write_lock:
                with self.service.writing() as stored:
                    self._restamp(rows, lrs_timestamps, stored)
                    return await asyncio.to_thread(
                        store.store_statements, rows, lrs_timestamps, attachments
                    )
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, lrs_timestamps, attachments, future))
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())
        return await future

    def _next_group(self) -> list:
        """The requests waiting longest, up to ``most`` statements (one request at least)."""
        count, taken = 0, 0
        for rows, *_ in self._pending:
            if taken and count + len(rows) > self.most:
                break
            count, taken = count + len(rows), taken + 1
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    async def _drain(self) -> None:
        group: list = []
        try:
            while self._pending:
                group = []
                try:
                    async with self.service.write_lock:  # requests gather while it is taken
                        group = self._next_group()
                        with self.service.writing() as stored:
                            for rows, lrs_timestamps, _, _ in group:
                                self._restamp(rows, lrs_timestamps, stored)
                            results = await asyncio.to_thread(
                                self.service.store.store_together,
                                [(rows, lrs, attachments) for rows, lrs, attachments, _ in group],
                            )
                except Exception as e:  # the store failed: every request of the group hears it
                    results = [e] * len(group)
                for (*_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except asyncio.CancelledError:
            # the service stops: no request waits for an answer that will not come (the
            # group under way may still be written: a retry of statements with ids stores
            # nothing twice)
            stopping = web.HTTPError(
                503, "the events service stopped while writing these statements; retry"
            )
            for *_, future in group + self._pending:
                if not future.done():
                    future.set_exception(stopping)
            self._pending = []
            raise
        finally:
            self._drain_task = None


class EventsService(HubServiceApp):
    """The events service (an LRS for the hub): xAPI in, the event store behind it."""

    name = "hub-ext-events"
    default_name = "events"
    description = "The hub's learning-event store: xAPI 1.0.3 Statements resource and hub activity"

    db_url = Unicode(
        help="""SQLAlchemy URL of the event store.

        Default: ``$HUB_EXT_EVENTS_DB``, else ``sqlite:///events.sqlite`` (in the working
        directory). Example: ``c.EventsService.db_url = "postgresql+psycopg://events@db/events"``
        """,
    ).tag(config=True)

    @default("db_url")
    def _default_db(self):
        return os.environ.get("HUB_EXT_EVENTS_DB", "sqlite:///events.sqlite")

    max_batch = Integer(
        1000,
        help="""Most statements accepted in one POST (more gets 400). Default 1000.
        Example: ``c.EventsService.max_batch = 500``""",
    ).tag(config=True)

    group_commit = Integer(
        5000,
        help="""SQLite: most statements of concurrent requests written in one transaction (the
        requests that arrive while a write is under way are written together when it ends;
        each keeps its own all-or-nothing). 1 writes each request on its own. Default 5000.
        Example: ``c.EventsService.group_commit = 2000``""",
    ).tag(config=True)

    page_size = Integer(
        500,
        help="""Most statements in one GET page (a ``limit`` above it is lowered; ``more`` pages on).
        Default 500. Example: ``c.EventsService.page_size = 100``""",
    ).tag(config=True)

    max_body_size = Integer(
        16 * 1024 * 1024,
        help="""Largest request body, in bytes; a larger one gets 413 (``payload_too_large``),
        before it is read when its ``Content-Length`` says so. Default 16 MiB.
        Example: ``c.EventsService.max_body_size = 4 * 1024 * 1024``""",
    ).tag(config=True)

    activity_courses = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""Context activities that name a course: IRI -> course id.

        A statement belongs to the course named by a ``urn:hub-ext:course:<id>`` activity in its
        ``context.contextActivities`` (grouping, parent, other, category), else by one of these,
        else to its source's course. Default: empty.
        Example: ``c.EventsService.activity_courses = {"https://moodle.example.org/course/view.php?id=7": "ds101"}``
        """,
    ).tag(config=True)

    auth_cache_seconds = Float(
        300,
        help="""How long a checked credential is remembered, in seconds: a verified one is then
        compared by HMAC (scrypt costs ~50 ms per check), a refused one is refused again at
        once (at most 1024 are kept). Only an HMAC under a per-process random key is kept,
        never the secret; removing a source or changing its secret forgets it within
        ``sources_refresh_seconds``. 0 checks every request. Default 300.
        Example: ``c.EventsService.auth_cache_seconds = 60``""",
    ).tag(config=True)

    auth_threads = Integer(
        1,
        help="""Threads that check secrets (scrypt, ~50 ms of one core and 16 MiB each), apart
        from the threads the store uses, so that checks cannot crowd out writes. Default 1.
        Example: ``c.EventsService.auth_threads = 2``""",
    ).tag(config=True)

    auth_queue = Integer(
        8,
        help="""Most secret checks waiting for a thread (besides those running); a request
        that would wait beyond it gets 503 with ``Retry-After: 1`` at once. Remembered
        credentials (``auth_cache_seconds``) never wait. Default 8.
        Example: ``c.EventsService.auth_queue = 32``""",
    ).tag(config=True)

    sources_refresh_seconds = Float(
        2,
        help="""How often the sources table is re-read, in seconds (the service keeps the sources
        in memory, so an unknown key costs neither a query nor a hash): a source added or
        removed with ``hub-ext events`` takes effect within this time. Default 2.
        Example: ``c.EventsService.sources_refresh_seconds = 10``""",
    ).tag(config=True)

    @validate("auth_threads", "group_commit")
    def _one_at_least(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(
                f"{proposal['trait'].name} must be at least 1, not {proposal['value']}"
            )
        return proposal["value"]

    @validate("auth_queue", "auth_cache_seconds", "sources_refresh_seconds", "checkpoint_interval")
    def _not_negative(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(
                f"{proposal['trait'].name} must not be negative, not {proposal['value']}"
            )
        return proposal["value"]

    record_hub_activity = Bool(
        True,
        help="""Record the hub's course servers' activity (polling the hub API; needs the
        service's role, see ``hubconfig.events_role``). Ignored when no hub API token is set.
        Default True. Example: ``c.EventsService.record_hub_activity = False``""",
    ).tag(config=True)

    hub_poll_interval = Float(
        60,
        help="""Seconds between two polls of the hub's users and servers. Default 60.
        Example: ``c.EventsService.hub_poll_interval = 30``""",
    ).tag(config=True)

    analyze_interval = Float(
        3600,
        help="""Seconds between two refreshes of the database planner's statistics (``ANALYZE``):
        the analytics queries need them to pick their indexes as statements accumulate.
        0 disables. Default 3600. Example: ``c.EventsService.analyze_interval = 6 * 3600``""",
    ).tag(config=True)

    checkpoint_interval = Float(
        0.25,
        help="""SQLite: seconds between two checkpoints of the store's write-ahead log, made
        on a thread of their own after writes, off the requests' path. SQLite otherwise makes
        them in the commit that fills 1,000 pages of log, and that request waits for the
        copy and the file's sync (measured: half of a raw insert's time with 100,000
        statements stored). A commit still checkpoints when 10,000 pages wait (readers
        holding the log back). 0: SQLite's own. Ignored on PostgreSQL. Default 0.25.
        Example: ``c.EventsService.checkpoint_interval = 0``""",
    ).tag(config=True)

    hub_url = Unicode(
        help="""The hub's public URL, the homePage of the accounts of hub activity statements.
        Default: ``$HUB_EXT_PUBLIC_URL``, else ``$JUPYTERHUB_PUBLIC_HUB_URL``, else ``http://localhost:8000``.
        Example: ``c.EventsService.hub_url = "https://hub.example.edu"``""",
    ).tag(config=True)

    @default("hub_url")
    def _default_hub_url(self):
        url = (
            os.environ.get("HUB_EXT_PUBLIC_URL")
            or os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL")
            or "http://localhost:8000"
        )
        return url.rstrip("/").removesuffix("/hub")

    clock = staticmethod(time.monotonic)

    @staticmethod
    def wall_clock() -> datetime:
        """Now, in UTC (what ``stored`` and Consistent-Through are read from; tests patch it)."""
        return datetime.now(UTC)

    @contextlib.contextmanager
    def writing(self):
        """A write under way: its ``stored`` time, later than every one given before and than
        every Consistent-Through answered (:meth:`consistent_through` stays below it until
        the write is over, committed or not)."""
        stored = max(self.wall_clock(), self._last_stored + _TICK)
        self._last_stored = stored
        token = next(self._write_ids)
        self._writes[token] = stored
        self._written = True
        try:
            yield stored
        finally:
            del self._writes[token]

    def consistent_through(self) -> datetime:
        """A time such that every statement stored at or before it is committed (so visible
        to a query that starts after this call) and every later write gets a later
        ``stored``: now, or just before the earliest write still under way."""
        now = self.wall_clock()
        self._last_stored = max(self._last_stored, now)
        if self._writes:
            return min(now, min(self._writes.values()) - _TICK)
        return now

    def initialize(self, argv=None):
        super().initialize(argv)
        self.store = EventStore(
            self.db_url,
            wal_autocheckpoint=_BACKSTOP_PAGES if self.checkpoint_interval > 0 else None,
        )
        self.store.create()
        self._written = False  # since the last checkpoint
        self.documents = DocumentStore(self.store.engine)
        # SQLite has one writer at a time: queue writes here rather than in its busy handler
        self.write_lock = (
            asyncio.Lock() if self.store.engine.dialect.name == "sqlite" else _NoLock()
        )
        self.writer = StatementWriter(
            self, together=self.store.engine.dialect.name == "sqlite", most=self.group_commit
        )
        # stored times only increase, across restarts too (a clock set back is not followed)
        newest = self.store.newest_stored()
        self._last_stored = max(self.wall_clock(), newest or datetime.min.replace(tzinfo=UTC))
        self._writes: dict[int, datetime] = {}
        self._write_ids = itertools.count()
        self._cache_key = os.urandom(32)
        #: key -> (HMAC of key:secret, expiry, the source's secret_hash when verified)
        self._verified: dict[str, tuple[bytes, float, str]] = {}
        #: (key, HMAC, secret_hash) -> expiry, of refused credentials (oldest first)
        self._refused: dict[tuple[str, bytes, str], float] = {}
        #: checks under way, so that one credential sent many times at once costs one hash
        self._checking: dict[tuple[str, bytes, str], asyncio.Future] = {}
        self._auth_pool = ThreadPoolExecutor(
            max_workers=self.auth_threads, thread_name_prefix="hub-ext-events-auth"
        )
        self._auth_waiting = 0
        self._sources: dict[str, dict] = {}
        self._sources_at: float | None = None
        self._sources_loading: asyncio.Future | None = None

    def authority(self, source: dict) -> dict:
        return {
            "objectType": "Agent",
            "name": source["name"],
            "account": {"homePage": self.hub_url, "name": source["key"]},
        }

    async def authenticate(self, header: str | None) -> dict | None:
        """The source (name, key, course_id) whose Basic credentials ``header`` carries, else None.

        Raises :class:`Busy` when the secret must be checked and ``auth_queue`` checks wait
        already.
        """
        if not header or not header.startswith("Basic "):
            return None
        try:
            key, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
        except ValueError:  # not base64 of UTF-8 (binascii.Error, UnicodeDecodeError)
            return None
        if not key or not secret:
            return None
        row = (await self.sources()).get(key)
        if row is None:
            return None  # no hash: keys are 96 random bits, timing cannot find one
        digest = hmac.new(self._cache_key, f"{key}:{secret}".encode(), hashlib.sha256).digest()
        hashed = row["secret_hash"]
        cached = self._verified.get(key)
        if (
            cached
            and cached[1] > self.clock()
            and cached[2] == hashed
            and hmac.compare_digest(cached[0], digest)
        ):
            return self._public(row)
        attempt = (key, digest, hashed)
        if self._refused.get(attempt, 0) > self.clock():
            return None
        check = self._checking.get(attempt)
        if check is None:
            check = self._checking[attempt] = asyncio.ensure_future(self._check(secret, hashed))
            check.add_done_callback(lambda _: self._checking.pop(attempt, None))
        ok = await asyncio.shield(check)
        if self.auth_cache_seconds > 0:
            expiry = self.clock() + self.auth_cache_seconds
            if ok:
                self._verified[key] = (digest, expiry, hashed)
            else:
                self._remember_refused(attempt, expiry)
        return self._public(row) if ok else None

    @staticmethod
    def _public(row: dict) -> dict:
        return {"name": row["name"], "key": row["key"], "course_id": row["course_id"]}

    async def _check(self, secret: str, hashed: str) -> bool:
        """scrypt on the credential executor, or :class:`Busy` at once if it is full."""
        if self._auth_waiting >= self.auth_threads + self.auth_queue:
            raise Busy()
        self._auth_waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._auth_pool, verify_secret, secret, hashed)
        finally:
            self._auth_waiting -= 1

    def _remember_refused(self, attempt: tuple, expiry: float) -> None:
        if len(self._refused) >= _REFUSED_MAX:
            now = self.clock()
            self._refused = {a: t for a, t in self._refused.items() if t > now}
            while len(self._refused) >= _REFUSED_MAX:
                del self._refused[next(iter(self._refused))]
        self._refused[attempt] = expiry

    async def sources(self) -> dict[str, dict]:
        """The sources by key, re-read from the store every ``sources_refresh_seconds``."""
        at = self._sources_at
        if at is not None and 0 <= self.clock() - at <= self.sources_refresh_seconds:
            return self._sources
        if self._sources_loading is None:
            self._sources_loading = asyncio.ensure_future(self._load_sources())
        await asyncio.shield(self._sources_loading)
        return self._sources

    async def _load_sources(self) -> None:
        try:
            rows = await asyncio.to_thread(self.store.source_rows)
        except Exception as e:
            if self._sources_at is None:
                raise  # nothing to go on (500); the next request tries again
            # keep what is known and try again in sources_refresh_seconds (the first line
            # only: SQLAlchemy's next lines hold the SQL and its parameters)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.log.warning(
                "could not re-read the sources (keeping %d): %s", len(self._sources), first
            )
        else:
            self._sources = rows
            for key, (_, _, hashed) in list(self._verified.items()):
                if key not in rows or rows[key]["secret_hash"] != hashed:
                    del self._verified[key]  # removed, or its secret changed
        finally:
            self._sources_loading = None
        self._sources_at = self.clock()

    def make_app(self) -> web.Application:
        prefix = self.base_url
        kw = {"service": self}
        # the document resources' handlers build on XAPIHandler: imported once it is defined
        from . import resources

        handlers = {
            "statements": StatementsHandler,
            "activities/state": resources.StateHandler,
            "activities/profile": resources.ActivityProfileHandler,
            "agents/profile": resources.AgentProfileHandler,
            "activities": resources.ActivitiesHandler,
            "agents": resources.AgentsHandler,
            "about": AboutHandler,
        }
        assert handlers.keys() == set(RESOURCES)
        return web.Application(
            [(rf"{prefix}xAPI/{path}/?", handler, kw) for path, handler in handlers.items()],
            default_handler_class=NotFoundHandler,
            default_handler_args=kw,
            log_function=log_request(self.log),
        )

    async def start_async(self) -> HTTPServer:
        server = HTTPServer(self.make_app(), max_body_size=self.max_body_size, xheaders=True)
        server.listen(self.port, self.ip)
        self.log.info(
            "xAPI statements at http://%s:%d%sxAPI/statements (store %s)",
            self.ip,
            self.port,
            self.base_url,
            self.store,
        )
        self._tasks = []
        if self.record_hub_activity and os.environ.get("JUPYTERHUB_API_TOKEN"):
            from .hubevents import HubActivityPoller

            poller = HubActivityPoller(
                parent=self, store=self.store, interval=self.hub_poll_interval, home=self.hub_url
            )
            self._tasks.append(asyncio.ensure_future(poller.run()))
        if self.analyze_interval > 0:
            self._tasks.append(asyncio.ensure_future(self._analyze_periodically()))
        if self.checkpoint_interval > 0 and self.store.engine.dialect.name == "sqlite":
            self._tasks.append(asyncio.ensure_future(self._checkpoint_periodically()))
        return server

    async def stop_async(self) -> None:
        """Stop the background tasks and the credential executor (the server is the caller's)."""
        for task in getattr(self, "_tasks", ()):
            task.cancel()
        self._auth_pool.shutdown(wait=False, cancel_futures=True)

    async def _analyze_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.analyze_interval)
            try:
                async with self.write_lock:
                    await asyncio.to_thread(self.store.analyze)
            except Exception as e:  # statistics are an optimisation: never stop the service
                self.log.warning("ANALYZE failed: %s", e)

    async def _checkpoint_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            if not self._written:
                continue
            self._written = False
            try:
                await asyncio.to_thread(self.store.checkpoint)
            except Exception as e:  # the next commit that fills the log checkpoints instead
                self.log.warning("WAL checkpoint failed: %s", e)

    def start(self):
        loop = IOLoop.current()
        loop.run_sync(self.start_async)
        # Stop at once on SIGINT too: the hub stops its services with SIGINT first, and a
        # service started from a background shell inherits SIGINT ignored.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.asyncio_loop.add_signal_handler(sig, loop.stop)
        loop.start()


main = EventsService.launch_instance

if __name__ == "__main__":
    main()
