"""JupyterHub RBAC from the course catalog: teacher roles, custom scopes, server shares.

What a course's teachers (group ``course:<id>:teacher``) may do, and through what:

=====================================================  =========================================
may                                                    granted by
=====================================================  =========================================
list the course's learners, read their names and       role ``teacher-<id>`` (:func:`course_roles`),
activity, read the learner group                       filtered ``!group=course:<id>:learner``
call the course's analytics APIs                       role ``teacher-<id>`` (the custom scope)
read and grade the course's submissions                role ``teacher-<id>`` (the custom scope)
read, start, stop and open a learner's server          a **share** of that one server
*for this course* (``/user/alice/ds101/``)             (:func:`share_course_server`)
=====================================================  =========================================

A role cannot say "alice's ds101 server but not her stat200 server": scopes on servers are
static strings, and a ``!group=`` filter reaches every server of every member. JupyterHub's
shares can: a share carries scopes filtered to ``!server=<owner>/<name>``, and a share with a
group applies to each of its members. So when a learner's course server starts, it is shared
with the course's teacher group with :data:`SHARE_SCOPES` (JupyterHub 6 splits ``servers``
into ``start:servers`` and ``delete:servers``, so start and stop can be shared). The share
stays with the server (stopped or running) until the server is deleted.

**Group shares do not reach tokens in JupyterHub 6.1.1**: a token's scopes take only its
owner's *direct* shares (``jupyterhub/scopes.py``: ``owner.shared_with_me``), so a group
share works for the hub's cookie-authenticated pages but not for API tokens, nor for the
OAuth tokens with which a browser opens a single-user server. So each teacher also gets
a user share of every server the group share covers, kept in step with the teacher
group's membership by SQLAlchemy events on ``orm.User.groups``
(:func:`install_share_sync`): a user added to ``course:<id>:teacher`` (at login, refresh,
or through the admin API) is given the course's shares in the same transaction, and a
user removed from it loses them. The group share is the record of which servers are the
course's; the user shares follow it.

Deliberately not granted: ``read:users`` (it would show a learner's other courses through
their groups), ``read:servers`` by group (all of a learner's servers), any admin scope.

Limits, stated honestly:

- a learner's server can be started by a teacher only once it exists (after the learner's
  first start of that course): the share is made on the first start;
- ``start:servers`` also lets its holder rename the server (PATCH); the course spawner must
  refuse renames (``Spawner.rename``), or a share could follow ``alice/ds101`` to a new name;
- ``delete:servers`` lets its holder delete the server's record (``remove``); the course
  spawners never delete a learner's workspace when that happens.
"""

from __future__ import annotations

import functools

from jupyterhub import orm
from sqlalchemy import UnicodeText, delete, event, insert, inspect, literal, literal_column, select
from sqlalchemy.orm import lazyload, object_session
from sqlalchemy.orm.util import identity_key

from .courses import (
    Catalog,
    Course,
    analytics_scope,
    enrollments_from_groups,
    grading_scope,
    learner_role,
    parse_group,
    teacher_role,
)

__all__ = [
    "SHARE_SCOPES",
    "course_roles",
    "course_scopes",
    "install_share_sync",
    "share_course_server",
    "share_scopes",
    "teacher_group",
]

#: What a course's teachers may do with a learner's server of that course (each scope is
#: filtered to that one server by JupyterHub): open it, read its model, start and stop it.
SHARE_SCOPES = ("access:servers", "read:servers", "start:servers", "delete:servers")

#: servers per ``DELETE`` when a teacher leaves (SQLite allows 32,766 bound values)
DELETE_CHUNK = 5000


def share_scopes(username: str, course_id: str) -> list[str]:
    """The share's scopes for ``username``'s server of ``course_id`` (one server only)."""
    return [f"{scope}!server={username}/{course_id}" for scope in SHARE_SCOPES]


def course_roles(catalog: Catalog) -> list[dict]:
    """One role per course, granted to the course's teacher group.

    A teacher may list the course's learners, read their names and activity and the
    learner group, and call the course's analytics APIs. Servers are not in the role:
    see :func:`share_course_server`.
    """
    roles = []
    for course in catalog.values():
        learners = f"group={course.learner_group}"
        roles.append(
            {
                "name": teacher_role(course.id),
                "description": f"Teachers of {course.id}: its learners, their activity, its analytics",
                "scopes": [
                    f"list:users!{learners}",
                    f"read:users:name!{learners}",
                    f"read:users:activity!{learners}",
                    f"read:groups!{learners}",
                    analytics_scope(course.id),
                    grading_scope(course.id, "teacher"),
                ],
                "groups": [course.teacher_group],
            }
        )
        roles.append(
            {
                "name": learner_role(course.id),
                "description": f"Learners of {course.id}: fetch and hand in its assignments",
                "scopes": [grading_scope(course.id, "learner")],
                "groups": [course.learner_group],
            }
        )
    return roles


def course_scopes(catalog: Catalog) -> dict[str, dict]:
    """The custom scopes the catalog's courses need (``c.JupyterHub.custom_scopes``)."""
    scopes = {}
    for c in catalog.values():
        scopes[analytics_scope(c.id)] = {
            "description": f"Call the analytics APIs of {c.id} ({c.title})"
        }
        scopes[grading_scope(c.id, "learner")] = {
            "description": f"Fetch and hand in one's own assignments of {c.id} ({c.title})"
        }
        scopes[grading_scope(c.id, "teacher")] = {
            "description": f"Read, grade and regrade every submission of {c.id} ({c.title})"
        }
    return scopes


async def share_course_server(spawner, course: Course) -> None:
    """Share a learner's ``course`` server with the course's teacher group.

    Called by the course spawner once ``spawner`` has started. A teacher's own server
    is not shared. Creates the teacher group if no teacher has logged in yet, and adds
    any missing scope to an existing share (idempotent). Runs on the hub's event loop:
    JupyterHub's database session is not thread-safe, and these are a few small queries.
    """
    user = spawner.user
    role = enrollments_from_groups(g.name for g in user.groups).get(course.id)
    if role != "learner":
        return
    install_share_sync()
    db = user.db
    group = teacher_group(db, course)
    if group is None:
        group = orm.Group(name=course.teacher_group)
        db.add(group)
        db.commit()
    scopes = share_scopes(user.name, course.id)
    orm.Share.grant(db, spawner.orm_spawner, group, scopes=scopes)
    # the per-teacher copies (group shares do not reach tokens: see the module's docstring)
    for teacher in group.users:
        orm.Share.grant(db, spawner.orm_spawner, teacher, scopes=scopes)


def teacher_group(db, course: Course) -> orm.Group | None:
    """The course's teacher group, without loading its shares.

    ``orm.Group.find`` loads a group's ``shared_with_me`` eagerly (``selectin``): for a
    teacher group that is one share per learner's server, so every server start of a
    5,000-learner course read 5,000 shares (``bench_scale``: 207 ms per start at 1,250
    learners, and a class-start storm growing with the square of the class). Granting a
    share needs only the group's identity and its few members.
    """
    return (
        db.query(orm.Group)
        .options(lazyload(orm.Group.shared_with_me))
        .filter(orm.Group.name == course.teacher_group)
        .first()
    )


def _is_teacher_group(group) -> bool:
    parsed = parse_group(group.name)
    return parsed is not None and parsed[1] == "teacher"


def _teacher_membership(change):
    """A membership listener that runs ``change(user, group)`` for teacher groups only,
    inside the ORM session, without autoflush (the hub commits)."""

    @functools.wraps(change)
    def listener(user, group, initiator):
        if not _is_teacher_group(group):
            return
        session = object_session(user) or object_session(group)
        if session is None:
            return
        with session.no_autoflush:
            change(user, group)

    return listener


@_teacher_membership
def _teacher_added(user, group):
    """``user`` joined a teacher group: copy the group's shares to them.

    Both in the database (a login, a refresh, the admin API): one ``INSERT ... SELECT`` of
    the group's shares the user has no copy of. The ORM path (an object per share, flushed
    one by one) took 3.1 s of the 4.6 s that adding a teacher to a 5,000-learner course
    took in process (``bench_scale``: 6.9 s through the API on PostgreSQL), and stock
    JupyterHub's own part is loading the group. A pending user or group, or group shares
    not yet flushed, take the ORM path.
    """
    session = object_session(user) or object_session(group)
    if _persistent(user, group) and not _pending_shares(session):
        shares = orm.Share.__table__
        have = select(shares.c.spawner_id).where(shares.c.user_id == user.id)
        copies = select(
            shares.c.owner_id,
            shares.c.spawner_id,
            literal(user.id),
            # as stored (JSON text): JupyterHub's JSONList type has no SQL cache key
            literal_column("scopes", UnicodeText),
            literal(orm.Share.now(), shares.c.created_at.type),
        ).where(
            shares.c.group_id == group.id,
            shares.c.spawner_id.is_not(None),
            shares.c.spawner_id.not_in(have),
        )
        session.execute(
            insert(shares).from_select(
                ["owner_id", "spawner_id", "user_id", "scopes", "created_at"], copies
            )
        )
        _forget_shares(session, user, ())  # new rows: only the user's list is stale
        return
    have = {share.spawner_id for share in user.shared_with_me}
    for group_share in list(group.shared_with_me):
        if group_share.spawner_id in have:
            continue
        user.shared_with_me.append(
            orm.Share(
                created_at=orm.Share.now(),
                owner=group_share.owner,
                spawner=group_share.spawner,
                scopes=sorted(group_share.scopes),
            )
        )


@_teacher_membership
def _teacher_removed(user, group):
    """``user`` left a teacher group: remove their copies of its shares, when both are in
    the database: the group's servers read once, then a ``DELETE`` of the user's shares of
    them per :data:`DELETE_CHUNK` servers. Not ``IN (SELECT ...)``: in the full-size
    ``bench_scale`` hub, PostgreSQL planned that statement at 3.2 s (a plan from statistics
    taken while the shares table was filling) where a fresh database took 17 ms; a list
    of values is hashed whatever the statistics say."""
    session = object_session(user) or object_session(group)
    if _persistent(user, group) and not _pending_shares(session):
        shares = orm.Share.__table__
        servers = session.scalars(
            select(shares.c.spawner_id).where(
                shares.c.group_id == group.id, shares.c.spawner_id.is_not(None)
            )
        ).all()
        gone = []
        for k in range(0, len(servers), DELETE_CHUNK):
            gone += session.execute(
                delete(shares)
                .where(
                    shares.c.user_id == user.id,
                    shares.c.spawner_id.in_(servers[k : k + DELETE_CHUNK]),
                )
                .returning(shares.c.id, shares.c.owner_id, shares.c.spawner_id)
            ).all()
        _forget_shares(session, user, gone)
        return
    shared = {share.spawner_id for share in group.shared_with_me}
    for share in list(user.shared_with_me):
        if share.spawner_id in shared:
            user.shared_with_me.remove(share)  # delete-orphan: the row goes too


def _persistent(user, group) -> bool:
    return inspect(user).persistent and inspect(group).persistent


def _pending_shares(session) -> bool:
    """Shares added or changed in this session and not yet in the database: SQL would not
    see them."""
    return any(isinstance(obj, orm.Share) for obj in (*session.new, *session.dirty))


def _forget_shares(session, user, deleted) -> None:
    """After SQL changed ``user``'s shares behind the ORM's back: reload their list when
    next read, and for each ``(id, owner_id, spawner_id)`` row SQL ``deleted``, drop the
    loaded share from the session and reload its owner's and spawner's lists, so nothing
    stale is read or flushed. By identity (a dictionary lookup per row): the hub's session
    holds every user it has seen, and a scan of it cost more than the statement."""
    if "shared_with_me" not in inspect(user).unloaded:
        session.expire(user, ["shared_with_me"])
    loaded = session.identity_map
    for share_id, owner_id, spawner_id in deleted:
        for cls, key in ((orm.User, owner_id), (orm.Spawner, spawner_id)):
            side = loaded.get(identity_key(cls, key))
            if side is not None and "shares" not in inspect(side).unloaded:
                session.expire(side, ["shares"])
        share = loaded.get(identity_key(orm.Share, share_id))
        if share is not None:
            session.expunge(share)


def install_share_sync() -> None:
    """Keep teachers' user shares in step with teacher-group membership (idempotent).

    Registers SQLAlchemy attribute events on ``orm.User.groups`` in this process (the
    hub's). :func:`hub_ext.hubconfig.configure_course_hub` calls it, before any login can
    change a group; the course spawner's first share calls it too. Not on import: JupyterHub
    imports every installed authenticator and spawner, so a stock hub in the same
    environment would make course shares too.
    """
    for name, listener in (("append", _teacher_added), ("remove", _teacher_removed)):
        if not event.contains(orm.User.groups, name, listener):
            event.listen(orm.User.groups, name, listener)
