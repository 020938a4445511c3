"""Autograding on the Docker tier: each submission in a container of the analytics image.

Real parts: a Docker engine, the analytics image (``make images IMAGES=analytics``: it
has Python and ipykernel), our grader outside driving the kernel in the container over
Unix sockets in the bind-mounted scratch directory. Skipped with the reason without an
engine or the image (a failure with ``HUB_EXT_REQUIRE_DOCKER=1``).
"""

from __future__ import annotations

import json
import socket

import pytest

pytest.register_assert_rewrite("tests.docker_fixtures")

from hub_ext.services.grading.autograde import Autograder  # noqa: E402
from hub_ext.services.grading.notebooks import prepare_submission  # noqa: E402
from tests.docker_fixtures import require_images  # noqa: E402
from tests.grading_fixtures import (  # noqa: E402
    ANSWERS,
    EXPECTED,
    assignment,
    correct,
    fork_count,
    forked,
    submission,
    with_cell,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ANALYTICS_IMAGE = "hub-ext/analytics:2026.11"
MEMORY = 384 * 1024**2


@pytest.fixture
def docker_grader(docker_client, tmp_path):
    require_images(docker_client, ANALYTICS_IMAGE)
    grader = Autograder(
        sandbox="docker",
        runtime_dir=str(tmp_path / "grading"),
        cell_timeout=10,
        notebook_timeout=120,
        memory_limit=MEMORY,
        pids_limit=64,
        output_limit=256 * 1024,
    )
    yield grader
    left = docker_client.containers(all=True, filters={"label": "org.hub-ext.purpose=grading"})
    mine = [c for c in left if c["Labels"].get("org.hub-ext.sandbox.owner") == grader.runtime_dir]
    assert mine == [], "a grading container was left behind"


def points(result) -> dict:
    return {t.grade_id: t.points for t in result.tests}


@pytest.mark.parametrize("kind", ["correct", "wrong", "partial"])
async def test_points_in_a_container(docker_grader, tmp_path, kind):
    source, student = assignment(tmp_path)
    result = await docker_grader.grade(
        prepare_submission(source, submission(student, ANSWERS[kind]))
    )
    assert result.status == "graded", result.message
    assert points(result) == EXPECTED[kind]


async def test_attacks_in_a_container(docker_grader, tmp_path):
    source, student = assignment(tmp_path)
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    attack = (
        "import os, socket, subprocess\n"
        "print('uid', os.getuid())\n"
        f"for host in ('172.17.0.1', '127.0.0.1', '1.1.1.1'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=2)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host)\n"
        "subprocess.run(['rm', '-rf', '--no-preserve-root', '/'], capture_output=True)\n"
    ) + fork_count(200)
    result = await docker_grader.grade(
        prepare_submission(source, with_cell(correct(student), "setup", attack))
    )
    listener.close()
    text = json.dumps([c.get("outputs", []) for c in result.executed.cells])
    assert "uid 1000" in text and "CONNECTED" not in text and text.count("refused") == 3
    assert 0 < forked(result.executed) < 64
    assert canary.read_text() == "still here"
    assert result.status == "graded" and result.total == 5, result.message


async def test_ten_times_the_memory_in_a_container(docker_grader, tmp_path):
    source, student = assignment(tmp_path)
    hog = f"hog = bytearray({10 * MEMORY})\n"
    result = await docker_grader.grade(
        prepare_submission(source, with_cell(correct(student), "setup", hog))
    )
    assert result.status == "out_of_memory", result.message
    assert "cell 3" in result.message and "384 MiB" in result.message
