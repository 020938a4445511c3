"""The activities and agents a statement is about besides its object and actor, for the
xAPI GET's ``related_activities=true`` and ``related_agents=true`` and for Group members.

xAPI 1.0.3 (Communication 2.1.3, the GET parameters): ``related_activities=true`` matches
the ``activity`` in the object, "any of the context Activities, or any of those properties
in a contained SubStatement"; ``related_agents=true`` matches the ``agent`` as "the Actor,
Object, Authority, Instructor, Team, or any of these properties in a contained
SubStatement"; and the plain ``agent`` filter also matches a Group "that [has] members which
match the specified Agent". The statements table indexes the object and the actor, and says in a
column (``course_context``) whether the statement's context names its own course's IRI,
as every hub and imported statement does (no side row for it); the rest goes to two
side tables (:class:`~.models.StatementActivity`, :class:`~.models.StatementAgent`),
keyed by the statement's pk and written in the statement's own transaction
(:func:`insert_related`, called by :meth:`~.store.EventStore.store_statements`).

Reading: :func:`activity_alternatives` and :func:`agent_alternatives` give the conditions any
one of which makes a statement match, each a query of its own (the store unions them) so
that none loses its index to an OR.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from sqlalchemy import and_, or_, select, text

from .models import Statement, StatementActivity, StatementAgent
from .xapi import COURSE_IRI_PREFIX, actor_key, context_activity_ids, course_iri

__all__ = ["activity_alternatives", "agent_alternatives", "insert_related", "related_rows"]


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _group_members(agent: dict | None) -> list[str]:
    if not agent or agent.get("objectType") != "Group":
        return []
    return [actor_key(m) for m in agent.get("member") or ()]


def _agents(agent: dict | None) -> list[str]:
    """An agent's key, and its members' when it is a Group (an anonymous Group has no key of
    its own that a query could name: its members only)."""
    if not agent:
        return []
    own = (
        [] if agent.get("objectType") == "Group" and not _identified(agent) else [actor_key(agent)]
    )
    return own + _group_members(agent)


def _identified(agent: dict) -> bool:
    return any(k in agent for k in ("mbox", "mbox_sha1sum", "openid", "account"))


def _object_agent(obj: dict) -> dict | None:
    return obj if obj.get("objectType") in ("Agent", "Group") else None


def related_rows(statement: dict) -> tuple[list[str], list[tuple[str, bool]]]:
    """What a validated statement is about besides its object and actor: the activity IRIs
    (context activities; the SubStatement's object and context activities) and the agents,
    as (:func:`~.xapi.actor_key`, member) pairs: ``member`` for a member of the actor or
    object Group, else an authority, instructor, team, team member or SubStatement agent."""
    context = statement.get("context")
    obj = statement["object"]
    activities = context_activity_ids(context)
    agents = [(k, True) for k in _group_members(statement["actor"])]
    agents += [(k, True) for k in _group_members(_object_agent(obj))]
    related = _agents(statement.get("authority"))
    related += _agents((context or {}).get("instructor"))
    related += _agents((context or {}).get("team"))
    if obj.get("objectType") == "SubStatement":
        sub_context = obj.get("context")
        inner = obj["object"]
        if inner.get("objectType", "Activity") == "Activity":
            activities.append(inner["id"])
        activities += context_activity_ids(sub_context)
        related += _agents(obj["actor"]) + _agents(_object_agent(inner))
        related += _agents((sub_context or {}).get("instructor"))
        related += _agents((sub_context or {}).get("team"))
    agents += [(k, False) for k in related]
    return list(dict.fromkeys(activities)), list(dict.fromkeys(agents))


def insert_related(conn, rows: Sequence[dict]) -> None:
    """Write the side rows of the statement rows ``rows`` just inserted on ``conn``, each
    with its statement's pk and course, read back by id (the unique index): on PostgreSQL in
    the INSERT itself (one statement per table, the rows as arrays), elsewhere by one SELECT
    and an executemany. Nothing is read when no row has side rows."""
    activities, agents = [], []
    for row in rows:
        acts, agent_keys = related_rows(row["raw"])
        if row.get("course_context"):  # the column says it (activity_alternatives)
            acts = [a for a in acts if a != course_iri(row["course_id"])]
        activities += [(row["id"], _key(a)) for a in acts]
        agents += [(row["id"], _key(k), member) for k, member in agent_keys]
    if not (activities or agents):
        return
    if conn.dialect.name == "postgresql":
        _insert_from_arrays(conn, activities, agents)
        return
    # SQLite: the side rows as one JSON array a table, joined to their statements by id
    # (measured: 40% less than reading the pks back and an executemany)
    if activities:
        conn.execute(_FROM_JSON[StatementActivity.__tablename__], {"rows": json.dumps(activities)})
    if agents:
        conn.execute(_FROM_JSON[StatementAgent.__tablename__], {"rows": json.dumps(agents)})


_FROM_JSON = {
    StatementActivity.__tablename__: text(
        f"INSERT INTO {StatementActivity.__tablename__} (pk, activity_key, course_id) "
        "SELECT s.pk, j.value ->> 1, s.course_id FROM json_each(:rows) AS j "
        f"JOIN {Statement.__tablename__} AS s ON s.id = j.value ->> 0"
    ),
    StatementAgent.__tablename__: text(
        f"INSERT INTO {StatementAgent.__tablename__} (pk, agent_key, member, course_id) "
        "SELECT s.pk, j.value ->> 1, j.value ->> 2, s.course_id FROM json_each(:rows) AS j "
        f"JOIN {Statement.__tablename__} AS s ON s.id = j.value ->> 0"
    ),
}

#: PostgreSQL: the side rows as arrays, joined to their statements by id (measured: an
#: executemany of them cost twice the statements' own INSERT; this, a fraction)
_FROM_ARRAYS = {
    StatementActivity.__tablename__: text(
        f"INSERT INTO {StatementActivity.__tablename__} (pk, activity_key, course_id) "
        "SELECT s.pk, v.k, s.course_id "
        "FROM unnest(CAST(:ids AS varchar[]), CAST(:keys AS varchar[])) AS v(id, k) "
        f"JOIN {Statement.__tablename__} s ON s.id = v.id"
    ),
    StatementAgent.__tablename__: text(
        f"INSERT INTO {StatementAgent.__tablename__} (pk, agent_key, member, course_id) "
        "SELECT s.pk, v.k, v.m, s.course_id "
        "FROM unnest(CAST(:ids AS varchar[]), CAST(:keys AS varchar[]), CAST(:members AS boolean[])) "
        f"AS v(id, k, m) JOIN {Statement.__tablename__} s ON s.id = v.id"
    ),
}


def _insert_from_arrays(conn, activities: list[tuple], agents: list[tuple]) -> None:
    if activities:
        ids, keys = zip(*activities, strict=True)
        conn.execute(
            _FROM_ARRAYS[StatementActivity.__tablename__], {"ids": list(ids), "keys": list(keys)}
        )
    if agents:
        ids, keys, members = zip(*agents, strict=True)
        conn.execute(
            _FROM_ARRAYS[StatementAgent.__tablename__],
            {"ids": list(ids), "keys": list(keys), "members": list(members)},
        )


def _course(table, course_id: str | None) -> list:
    return [] if course_id is None else [table.c.course_id == course_id]


def activity_alternatives(activity: str, *, related: bool, course_id: str | None) -> list:
    """The conditions on ``statements`` any one of which matches the ``activity`` filter:
    the object, and with ``related`` the side table."""
    t = Statement.__table__
    found = [and_(t.c.object_type == "Activity", t.c.object_id == activity)]
    if related and activity.startswith(COURSE_IRI_PREFIX):  # a course's own IRI
        course = activity[len(COURSE_IRI_PREFIX) :]
        found.append(and_(t.c.course_id == course, t.c.course_context.is_(True)))
    if related:
        side = StatementActivity.__table__
        found.append(
            t.c.pk.in_(
                select(side.c.pk).where(
                    side.c.activity_key == _key(activity), *_course(side, course_id)
                )
            )
        )
    return found


def agent_alternatives(key: str, *, related: bool, course_id: str | None) -> list:
    """The conditions on ``statements`` any one of which matches the ``agent`` filter (the
    agent's :func:`~.xapi.actor_key`): the actor or the object, a member of either Group,
    and with ``related`` any agent of the side table."""
    t = Statement.__table__
    side = StatementAgent.__table__
    which = [side.c.agent_key == _key(key), *_course(side, course_id)]
    if not related:
        which.append(side.c.member.is_(True))
    return [
        or_(
            t.c.actor_key == key,
            and_(t.c.object_type.in_(("Agent", "Group")), t.c.object_id == key),
        ),
        t.c.pk.in_(select(side.c.pk).where(*which)),
    ]
