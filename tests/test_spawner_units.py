"""The course spawners' pure parts: the start decision, progress, settings, entry points.

No hub here (test_spawner_hub.py runs the real one).
"""

from __future__ import annotations

import asyncio
import configparser
import importlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from traitlets import TraitError
from traitlets.config import Config

from hub_ext.courses import Course
from hub_ext.spawners.base import ProgressLog, start_refusal
from hub_ext.spawners.local import CourseLocalSpawner
from tests.hubtest import REPO

NOW = datetime(2026, 10, 1, tzinfo=UTC)


def course(opens: int, closes: int, grace_days: int = 0) -> Course:
    return Course(
        id="ds101",
        title="Data analysis",
        opens_at=NOW + timedelta(days=opens),
        closes_at=NOW + timedelta(days=closes),
        grace_days=grace_days,
    )


def refusal(c, role, *, teachers_before_opening=True, name="ds101"):
    return start_refusal(
        c,
        role,
        NOW,
        teachers_before_opening=teachers_before_opening,
        server_name=name,
        username="alice",
    )


@pytest.mark.parametrize(
    ("the_course", "role", "early", "reason", "status"),
    [
        (course(-1, 30), "learner", True, None, None),
        (course(-1, 30), "teacher", True, None, None),
        (course(-1, 30), None, True, "not_enrolled", 403),
        (course(5, 30), "learner", True, "course_not_open", 403),
        (course(5, 30), "teacher", True, None, None),
        (course(5, 30), "teacher", False, "course_not_open", 403),
        (course(-30, -2, grace_days=14), "learner", True, None, None),
        (course(-60, -30, grace_days=14), "learner", True, "course_closed", 403),
        (course(-60, -30, grace_days=14), "teacher", True, "course_closed", 403),
        (None, None, True, "unknown_course", 404),
    ],
)
def test_start_decision(the_course, role, early, reason, status):
    result = refusal(the_course, role, teachers_before_opening=early)
    if reason is None:
        assert result is None
    else:
        assert (result.reason, result.status_code) == (reason, status)


def test_refusals_say_why():
    assert "alice is not enrolled in ds101 (Data analysis)." in str(
        refusal(course(-1, 30), None).message
    )
    assert "There is no course 'ds101'" in refusal(None, None).message
    unnamed = refusal(None, None, name="")
    assert unnamed.reason == "no_course" and "/hub/spawn/alice/<course>" in str(unnamed.message)
    closed = refusal(course(-60, -30), "learner")
    assert closed.message.startswith("ds101 (Data analysis) is closed: it was open")


async def test_progress_log_serves_every_reader_from_the_start_until_closed():
    log = ProgressLog()
    log.report(5, "one")

    async def read():
        return [e["message"] async for e in log.follow()]

    readers = [asyncio.ensure_future(read()) for _ in range(2)]
    await asyncio.sleep(0)
    log.report(30, "two")
    await asyncio.sleep(0)
    log.report(40, "three")
    log.close()
    assert await asyncio.wait_for(asyncio.gather(*readers), 5) == [["one", "two", "three"]] * 2
    assert await read() == ["one", "two", "three"]  # a late reader gets it all, and stops


def test_a_shared_local_workspace_is_refused():
    config = Config()
    config.CourseLocalSpawner.workspace_template = "/srv/workspaces/{course}"
    with pytest.raises(TraitError, match=r"has no \{username\}: every learner of a course"):
        CourseLocalSpawner(config=config).workspace_template  # noqa: B018


def test_entry_points_name_the_spawner_classes():
    """setup.cfg's entry points resolve to the classes (the installed metadata is refreshed
    by `pip install -e .`; the hub config names the classes by their full paths)."""
    from hub_ext.hubconfig import BACKENDS

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options.entry_points"]["jupyterhub.spawners"].strip().splitlines()
    points = dict(line.replace(" ", "").split("=") for line in lines)
    for backend, name in (("local", "course-local"), ("docker", "course-docker")):
        module, _, cls = points[name].partition(":")
        target = getattr(importlib.import_module(module), cls)
        module, _, cls = BACKENDS[backend].rpartition(".")
        assert getattr(importlib.import_module(module), cls) is target


def test_the_local_backend_imports_no_container_sdk():
    code = (
        "import sys, hub_ext.spawners, hub_ext.spawners.local, hub_ext.hubconfig\n"
        "print(sorted({'docker', 'dockerspawner'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]", out.stderr
