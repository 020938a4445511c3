"""A MOOC-sized hub's people, written into the hub's database while the hub is stopped.

bench_scale needs 20,000 users in their course groups, and the learners' course servers
of the three measured courses as they are after the first lesson (each started once:
stopped, and shared with the course's teachers). Through the hub that is 20,000 logins and
6,500 spawns, an hour of setup; here it is a few bulk INSERTs with JupyterHub's own ORM
tables, giving the same rows the hub writes:

- a user row with JupyterHub's default ``user`` role (what ``POST /users`` and a first
  login assign), their course groups (what the course login's ``manage_groups`` sync
  writes), and their default server's row (stopped, name ``""``: JupyterHub's ``User``
  makes it, with a commit of its own, the first time it wraps the user, at that login or
  ``POST /users``; without it the first listing of 20,000 users made 19,236 of them, 68 s
  of a 97 s first course page view);
- a stopped server row per learner of a measured course, shared with the course's teacher
  group and with each teacher (what :func:`hub_ext.rbac.share_course_server` writes at its
  first start, with :func:`hub_ext.rbac.share_scopes`).

Nothing that is measured is written here: every timed request goes through the running hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jupyterhub import orm
from sqlalchemy import insert, select

from hub_ext.rbac import share_scopes

__all__ = ["add_users", "add_shared_servers"]


def _session(db_url: str):
    return orm.new_session_factory(db_url)()


def _group_ids(db, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    have = dict(db.execute(select(orm.Group.name, orm.Group.id)).all())
    missing = sorted(wanted - have.keys())
    if missing:
        db.execute(insert(orm.Group), [{"name": n} for n in missing])
        have = dict(db.execute(select(orm.Group.name, orm.Group.id)).all())
    return {n: have[n] for n in wanted}


def add_users(db_url: str, people: Mapping[str, Iterable[str]]) -> None:
    """Create each user of ``people`` (name -> course group names) with the default role."""
    db = _session(db_url)
    try:
        people = {name: list(groups) for name, groups in people.items()}
        groups = _group_ids(db, {g for gs in people.values() for g in gs})
        db.execute(insert(orm.User), [{"name": name} for name in people])
        ids = dict(
            db.execute(select(orm.User.name, orm.User.id).where(orm.User.name.in_(people))).all()
        )
        db.execute(insert(orm.Spawner), [{"user_id": i, "name": ""} for i in ids.values()])
        role = orm.Role.find(db, "user")
        db.execute(
            insert(orm.Base.metadata.tables["user_role_map"]),
            [{"user_id": i, "role_id": role.id} for i in ids.values()],
        )
        memberships = [
            {"user_id": ids[name], "group_id": groups[g]} for name, gs in people.items() for g in gs
        ]
        if memberships:
            db.execute(insert(orm.user_group_map), memberships)
        db.commit()
    finally:
        db.close()


def add_shared_servers(db_url: str, course: str, learners: list[str], teacher_group: str) -> int:
    """A stopped ``course`` server for each of ``learners``, shared as the course spawner's
    first start shares it (the teacher group, then each of its members). Returns the number
    of shares written."""
    db = _session(db_url)
    try:
        users = dict(
            db.execute(select(orm.User.name, orm.User.id).where(orm.User.name.in_(learners))).all()
        )
        group = orm.Group.find(db, teacher_group)
        teachers = [u.id for u in group.users]
        db.execute(insert(orm.Spawner), [{"user_id": users[n], "name": course} for n in learners])
        spawners = dict(
            db.execute(
                select(orm.Spawner.user_id, orm.Spawner.id).where(
                    orm.Spawner.name == course, orm.Spawner.user_id.in_(users.values())
                )
            ).all()
        )
        now = orm.Share.now()
        shares = []
        for name in learners:
            owner, spawner = users[name], spawners[users[name]]
            scopes = sorted(share_scopes(name, course))
            common = {
                "owner_id": owner,
                "spawner_id": spawner,
                "_scopes": scopes,
                "created_at": now,
            }
            shares.append({**common, "group_id": group.id})
            shares.extend({**common, "user_id": teacher} for teacher in teachers)
        db.execute(insert(orm.Share), shares)
        db.commit()
        return len(shares)
    finally:
        db.close()
