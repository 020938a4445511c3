"""RBAC helpers on a real JupyterHub database (its ORM, in-memory SQLite): no hub process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jupyterhub import orm
from sqlalchemy import event, inspect

from hub_ext.courses import Course
from hub_ext.rbac import share_scopes, teacher_group


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
