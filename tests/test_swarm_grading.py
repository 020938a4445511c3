"""Assignments on a Swarm hub: handed in from a learner's Swarm service, graded in a
container of the course's own image (the Docker sandbox), on a real single-node swarm.

A Swarm hub runs on a manager node, and on a single node the grading container runs on
the manager beside it: the Docker tier's test (tests/test_docker_grading.py), on the
Swarm backend. What a multi-node swarm needs is in the README ("Docker Swarm").
"""

from __future__ import annotations

import pytest
import pytest_asyncio

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.test_docker_grading import check_graded_in_course_image, grading_hub  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(tmp_path_factory, swarm_client):
    async for process in grading_hub(tmp_path_factory, swarm_client, "swarm"):
        yield process


async def test_handed_in_from_a_service_graded_in_the_course_image(hub, swarm_client):
    await check_graded_in_course_image(hub, swarm_client)
