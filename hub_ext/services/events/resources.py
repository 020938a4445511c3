"""The xAPI 1.0.3 resources beside Statements: State, Activity Profile, Agent Profile,
Activities and Agents (Communication 2.3 to 2.7), as tornado handlers of the events service.

::

    PUT|POST|GET|HEAD|DELETE /xAPI/activities/state?activityId=&agent=&registration=&stateId=
    GET|HEAD                 /xAPI/activities/state?activityId=&agent=&registration=&since=  -> [ids]
    DELETE                   /xAPI/activities/state?activityId=&agent=&registration=  (all of them)
    PUT|POST|GET|HEAD|DELETE /xAPI/activities/profile?activityId=&profileId=
    GET|HEAD                 /xAPI/activities/profile?activityId=&since=  -> [ids]
    PUT|POST|GET|HEAD|DELETE /xAPI/agents/profile?agent=&profileId=
    GET|HEAD                 /xAPI/agents/profile?agent=&since=  -> [ids]
    GET|HEAD                 /xAPI/activities?activityId=  -> the Activity, definitions merged
    GET|HEAD                 /xAPI/agents?agent=  -> the Person object

Documents are kept per course, the course of the source that writes them
(:mod:`.documents` has the semantics: ETags, ``If-Match`` / ``If-None-Match``, 409 and 412,
the JSON merge of POST). Activities and Agents answer from the statements of the source's
course only. Parameters are checked as statements are: an unknown one, a missing required
one, an ``agent`` that is not an Agent in JSON, an ``activityId`` that is not an IRI, a
``registration`` that is not a UUID, a ``since`` that is not a timestamp: 400 naming it.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import format_datetime

from .documents import (
    ACTIVITY_PROFILE,
    AGENT_PROFILE,
    STATE,
    Context,
    DocumentError,
    Preconditions,
)
from .service import XAPIHandler, _admitted, _json
from .xapi import (
    StatementError,
    actor_key,
    check_iri,
    check_string,
    check_uuid,
    parse_timestamp,
    person,
    validate_agent,
)

__all__ = [
    "ActivitiesHandler",
    "ActivityProfileHandler",
    "AgentProfileHandler",
    "AgentsHandler",
    "StateHandler",
]

#: the longest activity IRI, document id and content type kept (the columns' lengths)
_IRI_MAX = 512
_ID_MAX = 512
_TYPE_MAX = 255


class _ParametersHandler(XAPIHandler):
    """Reads a resource's query parameters, each checked, into ``self.params``."""

    #: every parameter the resource takes (any other is refused)
    allowed: frozenset[str] = frozenset()

    def parameters(self, required: tuple[str, ...] = ()) -> dict | None:
        """The checked parameters (``agent`` as the Agent, ``since`` as a datetime), else
        None after answering 400 naming the first bad one."""
        args = {k: self.get_query_argument(k, strip=False) for k in self.request.query_arguments}
        try:
            unknown = sorted(set(args) - self.allowed)
            if unknown:
                raise StatementError(
                    unknown[0],
                    f"unknown parameter (this resource takes "
                    f"{', '.join(sorted(self.allowed))}; names are case-sensitive)",
                )
            for name in required:
                if name not in args:
                    raise StatementError(name, "the parameter is required here")
            return {name: self._check(name, value) for name, value in args.items()}
        except ValueError as e:  # StatementError too
            self.fail(400, "bad_request", str(e), parameter=_parameter_of(e))
            return None

    @staticmethod
    def _check(name: str, value: str):
        if name == "activityId":
            return check_iri(value, name, max_length=_IRI_MAX)
        if name == "agent":
            try:
                agent = _json(value)
            except ValueError as e:
                raise StatementError(name, f"not JSON ({e})") from None
            return validate_agent(agent, name, group_ok=False)
        if name == "registration":
            return check_uuid(value, name).lower()
        if name == "since":
            return parse_timestamp(value, name)
        if not value:
            raise StatementError(name, "must not be empty")
        return check_string(value, name, max_length=_ID_MAX)


def _parameter_of(error: ValueError) -> str | None:
    path = getattr(error, "path", None)
    return path.split(".", 1)[0] if path else None


class _DocumentHandler(_ParametersHandler):
    """One of the three document resources: :attr:`resource`, its context parameters and
    its id parameter; GET and DELETE without the id act on all of the context's documents."""

    resource: str
    id_param: str
    #: the parameters that name the context (required), then the optional ones
    context_params: tuple[str, ...]
    optional_params: tuple[str, ...] = ()
    #: DELETE without the id deletes every document of the context (State only)
    delete_all = False

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset({*self.context_params, *self.optional_params, self.id_param, "since"})

    def context(self, params: dict) -> Context:
        return Context(
            self.resource,
            activity_id=params.get("activityId", ""),
            agent_key=actor_key(params["agent"]) if "agent" in params else "",
            registration=params.get("registration", ""),
        )

    @property
    def course_id(self) -> str:
        return self.source["course_id"]

    @property
    def documents(self):
        return self.service.documents

    @_admitted
    async def get(self):
        params = self.parameters(self.context_params)
        if params is None:
            return
        context = self.context(params)
        if self.id_param in params:
            if "since" in params:
                return self.fail(
                    400,
                    "bad_request",
                    f"since lists documents: it is not taken with {self.id_param}",
                )
            doc = await asyncio.to_thread(
                self.documents.get, self.course_id, context, params[self.id_param]
            )
            if doc is None:
                return self.fail(
                    404, "not_found", f"no document {params[self.id_param]!r} here",
                    parameter=self.id_param,
                )  # fmt: skip
            self.set_header("Content-Type", doc.content_type)
            self.set_header("ETag", f'"{doc.etag}"')
            self.set_header("Last-Modified", format_datetime(doc.updated, usegmt=True))
            return self.finish(doc.content)
        ids, latest = await asyncio.to_thread(
            self.documents.ids, self.course_id, context, params.get("since")
        )
        if latest is not None:
            self.set_header("Last-Modified", format_datetime(latest, usegmt=True))
        self.finish(json.dumps(ids))

    head = get

    @_admitted
    async def put(self):
        await self._write(merge=False)

    @_admitted
    async def post(self):
        await self._write(merge=True)

    async def _write(self, *, merge: bool) -> None:
        params = self.parameters((*self.context_params, self.id_param))
        if params is None:
            return
        if "since" in params:
            return self.fail(400, "bad_request", "since is a parameter of GET only")
        content_type = self.request.headers.get("Content-Type") or "application/octet-stream"
        if len(content_type) > _TYPE_MAX:
            return self.fail(
                400, "bad_request", f"Content-Type is longer than {_TYPE_MAX} characters"
            )
        await self._change(
            self.documents.write,
            self.course_id,
            self.context(params),
            params[self.id_param],
            self.request.body,
            content_type,
            merge=merge,
            preconditions=self.preconditions(),
            now=self.service.wall_clock(),
        )

    @_admitted
    async def delete(self):
        required = self.context_params if self.delete_all else (*self.context_params, self.id_param)
        params = self.parameters(required)
        if params is None:
            return
        if "since" in params:
            return self.fail(400, "bad_request", "since is a parameter of GET only")
        await self._change(
            self.documents.delete,
            self.course_id,
            self.context(params),
            params.get(self.id_param),
            preconditions=self.preconditions(),
        )

    def preconditions(self) -> Preconditions:
        h = self.request.headers
        return Preconditions.from_headers(h.get("If-Match"), h.get("If-None-Match"))

    async def _change(self, call, *args, **kwargs) -> None:
        """Run a write of :class:`~.documents.DocumentStore` under the store's write lock;
        204, or its refusal (400, 409, 412)."""
        try:
            async with self.service.write_lock:
                await asyncio.to_thread(call, *args, **kwargs)
        except DocumentError as e:
            return self.fail(e.status, e.error, str(e))
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class StateHandler(_DocumentHandler):
    resource = STATE
    id_param = "stateId"
    context_params = ("activityId", "agent")
    optional_params = ("registration",)
    delete_all = True


class ActivityProfileHandler(_DocumentHandler):
    resource = ACTIVITY_PROFILE
    id_param = "profileId"
    context_params = ("activityId",)


class AgentProfileHandler(_DocumentHandler):
    resource = AGENT_PROFILE
    id_param = "profileId"
    context_params = ("agent",)


class _LookupHandler(_ParametersHandler):
    """A resource that answers GET (and HEAD) from the statements of the source's course,
    given one required parameter."""

    parameter: str

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset({self.parameter})

    def look_up(self, value) -> dict:
        raise NotImplementedError

    @_admitted
    async def get(self):
        params = self.parameters((self.parameter,))
        if params is not None:
            found = await asyncio.to_thread(self.look_up, params[self.parameter])
            self.finish(json.dumps(found))

    head = get


class ActivitiesHandler(_LookupHandler):
    """GET the full Activity object (its definitions in the course's statements, merged)."""

    parameter = "activityId"

    def look_up(self, activity_id: str) -> dict:
        return self.service.store.activity(activity_id, **self.scope)


class AgentsHandler(_LookupHandler):
    """GET the Person object of an Agent (the names the course's statements gave it)."""

    parameter = "agent"

    def look_up(self, agent: dict) -> dict:
        return person(agent, self.service.store.agent_names(agent, **self.scope))
