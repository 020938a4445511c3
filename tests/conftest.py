"""Shared fixtures: a test catalog with courses in every state, and a real hub running it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from tests.hubtest import HubProcess, node_available

#: the fixtures of the pages' browser tests and of the Docker tier (loaded here, before any
#: test module imports them, so that pytest rewrites their asserts)
pytest_plugins = ["tests.browser", "tests.docker_fixtures"]


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def write_catalog(
    directory: Path, courses: list[dict], *, make_materials: bool = True, **top
) -> Path:
    """Write a catalog YAML (and, unless told not to, each course's materials) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for course in courses:
        if "materials" in course and make_materials:
            materials = directory / course["materials"]
            materials.mkdir(parents=True, exist_ok=True)
            (materials / "README.md").write_text(
                f"# {course['title']}\nRead-only course materials.\n"
            )
    path = directory / "courses.yaml"
    path.write_text(yaml.safe_dump({**top, "courses": courses}, sort_keys=False))
    return path


def standard_courses() -> list[dict]:
    """Two open courses, one closed past its grace period, one not open yet, one in grace."""
    return [
        {
            "id": "ds101",
            "title": "Data analysis with Python",
            "opens": day(-30),
            "closes": day(60),
            "materials": "materials/ds101",
            "mem_limit": "1G",
            "cpu_limit": 1,
            "idle_timeout": "90m",
            "env": {"DATASET_DIR": "/srv/data"},
            "learners": ["alice", "bob"],
            "teachers": ["tina"],
        },
        {
            "id": "stat200",
            "title": "Statistical inference",
            "opens": day(-10),
            "closes": day(90),
            "idle_timeout": "30m",
            "materials": "materials/stat200",
            "learners": ["alice", "carol"],
            "teachers": ["sam"],
        },
        {
            "id": "hist100",
            "title": "Digital history",
            "opens": day(-200),
            "closes": day(-60),
            "grace_days": 14,
            "learners": ["alice"],
            "teachers": ["tina"],
        },
        {
            "id": "future101",
            "title": "Next term",
            "opens": day(30),
            "closes": day(120),
            "learners": ["alice"],
            "teachers": ["tina"],
        },
        {
            "id": "grace200",
            "title": "Just closed",
            "opens": day(-100),
            "closes": day(-2),
            "grace_days": 14,
            "learners": ["alice"],
        },
    ]


@pytest.fixture(scope="session")
def catalog_path(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"), standard_courses())


@pytest.fixture(scope="module")
def hub_db_url():
    """``hub_db_url(name)``: the database URL of a hub fixture named ``name``; None is
    :class:`HubProcess`'s SQLite file. tests/test_hub_postgresql.py overrides it to run the
    same hub tests on PostgreSQL."""
    return lambda name: None


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(tmp_path_factory, catalog_path, hub_db_url):
    """A real JupyterHub + proxy on loopback, serving the standard test catalog."""
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    process = HubProcess(tmp_path_factory.mktemp("hub"), catalog_path, db_url=hub_db_url("hub"))
    try:  # a start that fails half-way (the proxy up, the hub not) is stopped too
        await process.start()
        yield process
    finally:
        await process.shutdown()


#: The Docker tier's test modules. ``make test`` runs them in one worker, one after another
#: (they share the engine, its swarm, the learners' networks and the hub-API guard's rules);
#: collection fails on a test marked ``docker`` in a module not listed here.
DOCKER_MODULES = frozenset(
    {
        "test_docker_analytics_image.py",
        "test_docker_export.py",
        "test_docker_grading.py",
        "test_docker_hub.py",
        "test_docker_sandbox.py",
        "test_grading_docker.py",
        "test_hub_image.py",
        "test_swarm_grading.py",
        "test_swarm_hub.py",
    }
)


def xdist_scope(nodeid: str) -> str:
    """The unit of work of ``pytest -n N`` (``make test``): a test module (its module fixtures
    start a hub, a gateway, a database once), or the whole Docker tier."""
    module = nodeid.split("::", 1)[0]
    return "docker-tier" if Path(module).name in DOCKER_MODULES else module


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler by scope, with :func:`xdist_scope`'s scopes (xdist's own
    ``loadgroup`` does not group on pytest 9.2: pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "load":  # an explicit --dist other than the default
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ByModule(config, log)


def pytest_collection_modifyitems(config, items):
    unlisted = sorted(
        {
            item.path.name
            for item in items
            if item.get_closest_marker("docker") and item.path.name not in DOCKER_MODULES
        }
    )
    if unlisted:
        raise pytest.UsageError(
            f"tests marked docker in {', '.join(unlisted)}: add the module(s) to "
            "DOCKER_MODULES in tests/conftest.py, so that the Docker tier runs in one worker"
        )


def pytest_sessionfinish(session, exitstatus):
    """The last check of every run: no log of the session holds a token, secret or password.
    Under xdist the controller checks once, over every worker's directory (its base temp
    holds theirs)."""
    if hasattr(session.config, "workerinput"):
        return
    from tests.secrets_watch import leaks

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    found = leaks(factory.getbasetemp())
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["secrets in the session's logs:", *found[:50]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        else:  # pragma: no cover
            print("\n".join(lines))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
