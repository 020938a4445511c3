"""RBAC helpers on a real JupyterHub database (its ORM, in-memory SQLite): no hub process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jupyterhub import orm
from sqlalchemy import event, inspect

from hub_ext.courses import Course
from hub_ext.rbac import install_share_sync, share_scopes, teacher_group


def course(course_id: str) -> Course:
    return Course(
        id=course_id,
        title=f"Course {course_id}",
        opens_at=datetime(2026, 9, 1, tzinfo=UTC),
        closes_at=datetime(2027, 1, 31, tzinfo=UTC),
    )


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    try:
        yield session
    finally:
        session.close()


def _course_with_shares(db, learners: int) -> Course:
    big = course("big")
    group = orm.Group(name=big.teacher_group)
    db.add(group)
    for k in range(learners):
        user = orm.User(name=f"learner{k}")
        db.add(user)
        spawner = orm.Spawner(user=user, name=big.id)
        db.add(spawner)
        db.flush()
        db.add(
            orm.Share(
                owner=user,
                spawner=spawner,
                group=group,
                scopes=share_scopes(user.name, big.id),
                created_at=orm.Share.now(),
            )
        )
    db.commit()
    db.expire_all()  # as after the hub's commits: the next lookup reads the database
    return big


def test_the_teacher_group_is_found_without_reading_its_shares(db):
    """``orm.Group.find`` reads every share of the group (one per learner's server) at each
    server start; ours reads the group alone, and its shares only if asked."""
    big = _course_with_shares(db, learners=200)
    rows = []

    @event.listens_for(db.get_bind(), "after_cursor_execute")
    def count(conn, cursor, statement, *args):
        if "FROM shares" in statement:
            rows.append(cursor.rowcount)

    group = teacher_group(db, big)
    assert group is not None and group.name == big.teacher_group
    assert "shared_with_me" in inspect(group).unloaded
    assert rows == []  # no query of the shares table at all

    # what JupyterHub's own lookup does, for comparison (this is why ours exists)
    db.expire_all()
    rows.clear()
    found = orm.Group.find(db, big.teacher_group)
    assert "shared_with_me" not in inspect(found).unloaded and len(found.shared_with_me) == 200
    # and the shares stay reachable from ours when asked
    db.expire_all()
    assert len(teacher_group(db, big).shared_with_me) == 200


def test_an_absent_teacher_group_is_none(db):
    assert teacher_group(db, course("none")) is None


SHARE_SYNC_PROBE = """
import sys
from sqlalchemy import event
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from traitlets.config import Config

app = JupyterHub(spawner_class="simple", authenticator_class="dummy")
from hub_ext import rbac  # already imported: JupyterHub loaded the installed entry points
print(event.contains(orm.User.groups, "append", rbac._teacher_added))
from hub_ext.hubconfig import configure_course_hub
configure_course_hub(Config(), sys.argv[1], data_dir=sys.argv[2])
print(event.contains(orm.User.groups, "append", rbac._teacher_added))
"""


def test_the_share_sync_is_installed_by_the_course_hub_only(tmp_path):
    """JupyterHub imports every installed authenticator and spawner (so hub_ext.rbac) in any
    hub of the environment: the teacher-share listeners come with configure_course_hub only,
    so a stock hub beside the course hub makes no course shares."""
    import subprocess
    import sys

    from tests.conftest import day, write_catalog

    catalog = write_catalog(
        tmp_path / "catalog",
        [{"id": "ds101", "title": "Data analysis", "opens": day(-1), "closes": day(30)}],
    )
    done = subprocess.run(
        [sys.executable, "-c", SHARE_SYNC_PROBE, str(catalog), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"], done.stdout


# --- the teachers' user shares follow the teacher group (hub_ext.rbac.install_share_sync) ---


def _learner_server(db, name: str, course_id: str) -> tuple[orm.User, orm.Spawner]:
    """A new user ``name`` with a (stopped) server ``course_id``, flushed."""
    user = orm.User(name=name)
    db.add(user)
    db.flush()
    spawner = orm.Spawner(user=user, name=course_id)
    db.add(spawner)
    db.flush()
    return user, spawner


@pytest.fixture
def synced_db(db):
    install_share_sync()
    return db


def _user_shares(db, name: str) -> dict[int, tuple[str, list[str]]]:
    """``name``'s user shares as the database has them: spawner id -> (owner, scopes)."""
    db.expire_all()
    user = orm.User.find(db, name)
    return {s.spawner_id: (s.owner.name, sorted(s._scopes)) for s in user.shared_with_me}


def _expected(db, course: Course) -> dict[int, tuple[str, list[str]]]:
    group = orm.Group.find(db, course.teacher_group)
    return {s.spawner_id: (s.owner.name, sorted(s._scopes)) for s in group.shared_with_me}


def test_a_teacher_added_gets_a_copy_of_each_group_share_in_one_statement(synced_db):
    """A user in the database joining the group: one ``INSERT ... SELECT`` whatever the
    course's size (an object per share took 3 s of the 4.6 s of adding a teacher to a
    5,000-learner course), and the copies are exactly the group's shares."""
    db = synced_db
    big = _course_with_shares(db, learners=50)
    db.add(orm.User(name="tina"))
    db.commit()
    inserts = []

    @event.listens_for(db.get_bind(), "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SHARES"):
            inserts.append(len(parameters) if executemany else 1)

    group = orm.Group.find(db, big.teacher_group)  # as JupyterHub's API handler does
    group.users.append(orm.User.find(db, "tina"))
    db.commit()
    event.remove(db.get_bind(), "before_cursor_execute", count)
    assert inserts == [1]
    assert _user_shares(db, "tina") == _expected(db, big) and len(_expected(db, big)) == 50
    # the group's shares themselves are untouched
    assert all(s.user_id is None for s in orm.Group.find(db, big.teacher_group).shared_with_me)


def test_a_teacher_added_again_gets_no_second_copy(synced_db):
    db = synced_db
    big = _course_with_shares(db, learners=5)
    tina = orm.User(name="tina")
    db.add(tina)
    db.commit()
    group = orm.Group.find(db, big.teacher_group)
    group.users.append(tina)
    db.commit()
    group.users.remove(tina)
    db.commit()
    # a copy made by hand in between (as the course spawner's first start makes them)
    learner = orm.User.find(db, "learner0")
    orm.Share.grant(db, learner.orm_spawners[big.id], tina, scopes=share_scopes("learner0", "big"))
    group = orm.Group.find(db, big.teacher_group)
    group.users.append(orm.User.find(db, "tina"))
    db.commit()
    db.expire_all()
    assert len(orm.User.find(db, "tina").shared_with_me) == 5


def test_a_teacher_removed_loses_only_that_courses_copies(synced_db):
    """Leaving one course's teacher group takes that course's shares, not another course's,
    and not a share a learner made by hand."""
    db = synced_db
    big = _course_with_shares(db, learners=4)
    other = course("other")
    tina = orm.User(name="tina")
    db.add_all([tina, orm.Group(name=other.teacher_group)])
    db.commit()
    # another course: one learner's server shared with its teacher group
    _, spawner = _learner_server(db, "oscar", other.id)
    db.commit()
    orm.Share.grant(
        db, spawner, orm.Group.find(db, other.teacher_group), scopes=share_scopes("oscar", other.id)
    )
    # a learner's own share with tina of a server that is not a course's
    own = orm.Spawner(user=orm.User.find(db, "learner1"), name="")
    db.add(own)
    db.commit()
    orm.Share.grant(db, own, tina, scopes=["access:servers!server=learner1/"])
    for name in (big.teacher_group, other.teacher_group):
        group = orm.Group.find(db, name)  # held: the ORM keeps only weak references
        group.users.append(orm.User.find(db, "tina"))
        db.commit()
    assert len(_user_shares(db, "tina")) == 4 + 1 + 1

    group = orm.Group.find(db, big.teacher_group)
    group.users.remove(orm.User.find(db, "tina"))
    db.commit()
    left = _user_shares(db, "tina")
    assert sorted(owner for owner, _ in left.values()) == ["learner1", "oscar"]
    assert set(_expected(db, other)) <= set(left)
    # nothing stale is left in the session: the learners' and spawners' share lists agree
    for k in range(4):
        learner = orm.User.find(db, f"learner{k}")
        assert [s.user for s in learner.shares if s.user is not None] == (
            [orm.User.find(db, "tina")] if k == 1 else []
        )


def test_a_new_user_created_in_the_group_at_login_gets_the_shares(synced_db):
    """At a first login the user and the membership are pending in one transaction: the
    shares are made as objects, flushed with them."""
    db = synced_db
    big = _course_with_shares(db, learners=3)
    newt = orm.User(name="newt")
    db.add(newt)
    newt.groups.append(orm.Group.find(db, big.teacher_group))
    db.commit()
    assert _user_shares(db, "newt") == _expected(db, big)
    group = orm.Group.find(db, big.teacher_group)
    group.users.remove(orm.User.find(db, "newt"))
    db.commit()
    assert _user_shares(db, "newt") == {}


def test_a_group_share_not_yet_flushed_is_copied_too(synced_db):
    """A group share added in the same transaction (no autoflush in the listener): SQL could
    not see it, so the object path copies it."""
    db = synced_db
    big = _course_with_shares(db, learners=2)
    tina = orm.User(name="tina")
    db.add(tina)
    db.commit()
    late, spawner = _learner_server(db, "late", big.id)
    group = orm.Group.find(db, big.teacher_group)
    db.add(
        orm.Share(
            owner=late,
            spawner=spawner,
            group=group,
            scopes=share_scopes("late", big.id),
            created_at=orm.Share.now(),
        )
    )
    group.users.append(tina)
    db.commit()
    assert _user_shares(db, "tina") == _expected(db, big) and len(_expected(db, big)) == 3


def test_a_teacher_leaving_a_course_larger_than_a_chunk_loses_every_copy(synced_db, monkeypatch):
    """The copies are deleted in chunks of servers (a bound value each): every chunk."""
    from hub_ext import rbac

    monkeypatch.setattr(rbac, "DELETE_CHUNK", 2)
    db = synced_db
    big = _course_with_shares(db, learners=5)
    tina = orm.User(name="tina")
    db.add(tina)
    db.commit()
    group = orm.Group.find(db, big.teacher_group)
    group.users.append(tina)
    db.commit()
    assert len(_user_shares(db, "tina")) == 5
    group = orm.Group.find(db, big.teacher_group)
    group.users.remove(orm.User.find(db, "tina"))
    db.commit()
    assert _user_shares(db, "tina") == {}
