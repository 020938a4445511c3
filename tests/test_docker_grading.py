"""Assignments on the Docker tier: handed in from a learner's container, graded in a
container of the course's own image, with no network, on a real hub and Docker engine.

The learner's container reaches the grading service only through the hub-API guard (the
one port of the host the firewall lets it reach); the grading sandbox is a throwaway
container of the course image (its packages), not the learner's and not the hub's.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import pytest_asyncio

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.analytics_fixtures import wait_until  # noqa: E402
from tests.docker_fixtures import (  # noqa: E402
    DS101_IMAGE,
    cleanup,
    container_of,
    docker_exec,
    docker_hub_extra,
    require_images,
    stop_server,
    swarm_cleanup,
)
from tests.grading_fixtures import ANSWERS, EXPECTED, MAX_POINTS  # noqa: E402
from tests.hubtest import HubProcess, node_available  # noqa: E402
from tests.test_grading_service_fixtures import grading_catalog, moment  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


async def grading_hub(tmp_path_factory, client, backend: str):
    """A real hub on ``backend`` ("docker" or "swarm") with the events and grading
    services, one course (ds101 on its image) with alice, tina and an assignment."""
    require_images(client, DS101_IMAGE)
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    root = tmp_path_factory.mktemp(f"{backend}-grading")
    catalog = grading_catalog(
        root / "catalog",
        {
            "ds101": {
                "learners": ["alice"],
                "teachers": ["tina"],
                "assignments": [{"id": "week1", "due": moment(7)}],
                "image": DS101_IMAGE,
            }
        },
    )
    process = HubProcess(
        root / "hub",
        catalog,
        backend=backend,
        services=("events", "grading"),
        extra_config=docker_hub_extra(swarm=backend == "swarm")
        + "c.GradingQueue.idle_seconds = 0.5\n",
    )
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()
        await asyncio.to_thread(swarm_cleanup if backend == "swarm" else cleanup, client)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(tmp_path_factory, docker_client):
    async for process in grading_hub(tmp_path_factory, docker_client, "docker"):
        yield process


ANSWER = """
import json, sys
path = sys.argv[1]
nb = json.load(open(path))
answers = json.loads(sys.argv[2])
for cell in nb["cells"]:
    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if gid in answers:
        cell["source"] = answers[gid]
json.dump(nb, open(path, "w"))
"""


async def test_handed_in_from_a_container_graded_in_the_course_image(hub, docker_client):
    await check_graded_in_course_image(hub, docker_client)


async def check_graded_in_course_image(hub, docker_client) -> None:
    """alice fetches week1 in her ds101 server's container, answers and hands it in; it is
    graded in a throwaway container of the course's image (the run says so), gone after."""
    token = await hub.user_token("alice")
    r = await hub.start_server("alice", "ds101", token=token, timeout=120)
    assert r.status_code in (201, 202), r.text
    await hub.wait_ready("alice", "ds101", timeout=120)
    container = await asyncio.to_thread(container_of, docker_client, "alice", "ds101")
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    assert env["HUB_EXT_GRADING_URL"].startswith(env["JUPYTERHUB_API_URL"].split("/hub/")[0])

    def run(*cmd):
        return docker_exec(docker_client, container["Id"], list(cmd))

    code, out = await run("python", "-m", "hub_ext_assignments", "fetch", "week1")
    assert code == 0, out
    root = env.get("JUPYTERHUB_ROOT_DIR", "/home/jovyan")
    path = f"{root}/assignments/week1.ipynb"
    code, out = await run("python", "-c", ANSWER, path, json.dumps(ANSWERS["correct"]))
    assert code == 0, out
    code, out = await run("python", "-m", "hub_ext_assignments", "submit", "week1")
    assert code == 0, out

    async def graded():
        code, out = await run("python", "-m", "hub_ext_assignments", "status", "week1")
        return code == 0 and "points" in out and out

    out = await wait_until(graded, 240, 2, "the submission graded in a container")
    total = sum(EXPECTED["correct"].values())
    assert f"{total:g} of {MAX_POINTS:g} points" in out, out

    # graded in a container of the course's image: the run's result says where
    teacher = await hub.user_token("tina")
    base = f"{hub.url}/services/grading/api"
    async with httpx.AsyncClient(
        timeout=30, headers={"Authorization": f"token {teacher}"}
    ) as client:
        listed = await client.get(f"{base}/courses/ds101/assignments/week1/submissions")
        assert listed.status_code == 200, listed.text
        (mine,) = listed.json()["submissions"]
        detail = (await client.get(f"{base}/submissions/{mine['id']}")).json()
    assert detail["runs"][-1]["result"]["sandbox"] == f"docker ({DS101_IMAGE})"
    # and that container is gone; the learner's own container still runs
    leftovers = await asyncio.to_thread(
        docker_client.containers, all=True, filters={"ancestor": DS101_IMAGE}
    )
    assert [c["Id"] for c in leftovers] == [container["Id"]]
    await stop_server(hub, "alice", "ds101")
