"""The hub's own database on PostgreSQL: the spine tests, run again on a PostgreSQL hub.

The tests imported below are the SQLite hub's own (same code, same assertions): this module
overrides :func:`tests.conftest.hub_db_url`, so each hub fixture they use (``hub``,
``rbac_hub``, ``oidc``) gets a database of its own in the session's PostgreSQL server
(Debian's ``postgresql`` package, :mod:`tests.postgres_fixtures`), through psycopg 3
(``postgresql+psycopg://``). What they cover there: logging in through the OIDC provider with
group sync and refresh, starting, stopping and refusing course servers, a hub restart that
finds its servers and shares again, the teacher shares and another course's teacher refused.
The tests written here are PostgreSQL's own: the hub really keeps its state there, its
service's token keeps its role across a restart, and JupyterHub's alembic migrations bring a
JupyterHub 4 schema up to date through psycopg.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import test_auth_oidc as auth
from tests import test_rbac_hub as rbac
from tests import test_spawner_hub as spawner
from tests.conftest import write_catalog
from tests.hubtest import HubProcess, node_available
from tests.postgres_fixtures import new_database, postgres_url  # noqa: F401
from tests.secrets_watch import remember

SPINE = {
    # logging in through the provider with group sync (claims, rosters, refresh)
    auth: """oidc test_login_through_the_provider_gives_the_claimed_course_groups
        test_entitlement_urn_and_roster_enrol test_admin_by_provider_group
        test_not_enrolled_is_refused_with_a_clear_page test_refresh_removes_and_adds_a_course
        test_course_teacher_from_claims_opens_that_server_only test_zz_hub_log_holds_no_secret""",
    # starting, stopping and refusing course servers; a hub restart finding them again
    spawner: """test_learner_sees_and_starts_both_open_courses test_home_page_lists_only_own_courses
        test_refusals_say_why test_closed_course_message_gives_its_dates
        test_grace_period_still_opens test_teacher_may_prepare_a_course_before_it_opens
        test_workspace_survives_stop_start_and_hub_restart test_course_servers_cannot_be_renamed
        test_teacher_home_page_lists_no_learners
        test_refused_names_leave_no_server_records""",
    # RBAC: the teacher shares; another course's teacher and another learner refused
    rbac: """rbac_hub tokens test_learner_server_is_shared_with_its_course_teachers_only
        test_teacher_lists_own_course_learners_only
        test_teacher_reads_activity_but_not_other_enrollments
        test_teacher_stops_starts_and_opens_the_course_server
        test_teacher_gets_nothing_beyond_the_course
        test_teacher_cannot_open_the_learners_other_course_server
        test_the_other_course_teacher_has_the_mirror_image
        test_learner_cannot_open_another_learners_server test_teacher_own_server_is_not_shared
        test_teacher_shares_follow_teacher_group_membership
        test_teacher_cannot_rename_the_shared_server""",
}
# The spine tests and the module fixtures they use, collected here in their modules' order
# (some carry state to the next); a name that no longer exists there fails the import.
globals().update(
    {name: getattr(module, name) for module, names in SPINE.items() for name in names.split()}
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# JupyterHub 4.1's schema (the revision before 5.0's manage_roles)
JUPYTERHUB_4_REVISION = "3c2384c5aae1"


def with_password(url: str) -> str:
    """``url`` with a password (the test server trusts loopback, so any password logs in):
    the session's last check (tests/secrets_watch) then proves that no log shows it."""
    password = secrets.token_urlsafe(16)
    remember(password)
    return make_url(url).set(password=password).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def hub_db_url(postgres_url):  # noqa: F811
    """Every hub fixture of this module on a new database in the session's PostgreSQL,
    its URL with a password as a deployment's has."""
    return lambda name: with_password(new_database(postgres_url, name))


def rows(url: str, query: str, **params) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query), params).all()
    finally:
        engine.dispose()


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    from jupyterhub import dbutil

    return ScriptDirectory(dbutil.ALEMBIC_DIR).get_current_head()


async def test_the_hub_keeps_its_state_in_postgresql(hub):
    assert hub.db_url.startswith("postgresql+psycopg://")
    await hub.user_token("alice")
    assert not (hub.workdir / "jupyterhub.sqlite").exists()
    assert rows(hub.db_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    groups = rows(
        hub.db_url,
        "SELECT g.name FROM groups g JOIN user_group_map m ON m.group_id = g.id"
        " JOIN users u ON u.id = m.user_id WHERE u.name = :name ORDER BY g.name",
        name="alice",
    )
    assert {"course:ds101:learner", "course:stat200:learner"} <= {g for (g,) in groups}
    password = make_url(hub.db_url).password
    log = hub.log_path.read_text()
    assert "Connecting to db: postgresql+psycopg://hubext:[redacted]@" in log
    assert password and password not in log


async def test_a_services_token_keeps_its_role_across_a_restart(hub):
    async def me():
        r = await hub.api("GET", "/user")
        assert r.status_code == 200, r.text
        return r.json()

    before = await me()
    assert before["kind"] == "service" and before["roles"] == ["service-test-admin"]
    assert {"admin:users", "shares", "read:roles"} <= set(before["scopes"])
    await hub.restart()
    after = await me()
    assert after["roles"] == before["roles"] and set(after["scopes"]) == set(before["scopes"])
    (count,) = rows(hub.db_url, "SELECT count(*) FROM roles WHERE name = 'service-test-admin'")
    assert count == (1,)


def shared_with(shares: list[dict]) -> set[str]:
    return {
        f"group {s['group']['name']}" if s["group"] else f"user {s['user']['name']}" for s in shares
    }


def _alembic_config(url: str, directory):
    from alembic.config import Config
    from jupyterhub import dbutil

    ini = directory / "alembic.ini"
    dbutil.write_alembic_ini(str(ini), url)
    return Config(str(ini))


async def test_upgrade_db_brings_a_jupyterhub_4_schema_up_to_date(tmp_path, postgres_url):  # noqa: F811
    """A hub's database is taken back to JupyterHub 4.1's schema (alembic's downgrades, on
    psycopg); the hub then refuses to start until ``jupyterhub upgrade-db`` has run its
    migrations, and the users, groups and shares are all still there."""
    from alembic import command

    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    catalog = write_catalog(
        tmp_path / "catalog",
        [
            {
                "id": "ds101",
                "title": "Data analysis with Python",
                "opens": "2020-01-01",
                "closes": "2099-01-01",
                "learners": ["alice"],
                "teachers": ["tina"],
            }
        ],
    )
    hub = HubProcess(
        tmp_path / "hub", catalog, db_url=with_password(new_database(postgres_url, "upgrade"))
    )
    await hub.start()
    try:
        token = await hub.user_token("alice")
        r = await hub.start_server("alice", "ds101", token=token)
        assert r.status_code in (201, 202), r.text
        await hub.user_token("tina")
        shares = (await hub.api("GET", "/shares/alice/ds101")).json()["items"]
        assert shared_with(shares) == {"group course:ds101:teacher", "user tina"}
    finally:
        await hub.shutdown()  # its servers too, also when an assertion failed

    config = _alembic_config(hub.db_url, tmp_path)
    await asyncio.to_thread(command.downgrade, config, JUPYTERHUB_4_REVISION)
    assert rows(hub.db_url, "SELECT version_num FROM alembic_version") == [(JUPYTERHUB_4_REVISION,)]
    with pytest.raises(RuntimeError, match="upgrade-db"):
        await hub.start()
    await hub.stop()

    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    upgraded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jupyterhub", "upgrade-db", "-f", str(hub.config_path)],
        cwd=hub.workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert rows(hub.db_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]

    await hub.start()
    try:
        r = await hub.api("GET", "/users/alice")
        assert set(r.json()["groups"]) == {"course:ds101:learner"}
        shares = (await hub.api("GET", "/shares/alice/ds101")).json()["items"]
        assert shared_with(shares) == {"group course:ds101:teacher", "user tina"}
        r = await hub.start_server("alice", "ds101", token=await hub.user_token("alice"))
        assert r.status_code in (201, 202), r.text
    finally:
        await hub.shutdown()


async def test_zz_every_hub_of_this_module_is_on_postgresql(hub, rbac_hub, oidc):
    for process in (hub, rbac_hub, oidc.hub):
        assert process.db_url.startswith("postgresql+psycopg://"), process.db_url
        assert not (process.workdir / "jupyterhub.sqlite").exists()
