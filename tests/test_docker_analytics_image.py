"""The analytics image runs a shipped analytics notebook with kernel gateway (real engine).

The container gets the notebook and an (empty, real) event store; the route answers JSON.
"""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.docker_fixtures import SESSION, require_images  # noqa: E402
from tests.hubtest import REPO  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

ANALYTICS_IMAGE = "hub-ext/analytics:2026.11"


async def test_analytics_image_serves_a_shipped_notebook(docker_client, tmp_path):
    from hub_ext.services.events.store import EventStore, readonly_url

    require_images(docker_client, ANALYTICS_IMAGE)
    data = tmp_path / "data"
    data.mkdir()
    store = EventStore(f"sqlite:///{data / 'events.db'}")
    store.create()
    store.dispose()
    os.chmod(data, 0o777)  # the container's jovyan (uid 1000) opens it
    for f in data.iterdir():
        os.chmod(f, 0o666)
    notebook = REPO / "kernelgateway_notebooks" / "course_overview.ipynb"

    host_config = docker_client.create_host_config(
        binds={
            str(data): {"bind": "/data", "mode": "rw"},
            str(notebook): {"bind": "/srv/notebook.ipynb", "mode": "ro"},
        },
        port_bindings={8888: ("127.0.0.1",)},
        mem_limit=512 * 1024**2,
    )
    container = docker_client.create_container(
        ANALYTICS_IMAGE,
        command=["--KernelGatewayApp.seed_uri=/srv/notebook.ipynb"],
        environment={
            "COURSE_ID": "aaa-2013j",
            "HUB_EXT_EVENTS_URL": readonly_url("sqlite:////data/events.db"),
        },
        name=f"{SESSION}-analytics",
        ports=[8888],
        host_config=host_config,
    )
    try:
        docker_client.start(container["Id"])
        port = docker_client.port(container["Id"], 8888)[0]["HostPort"]
        response = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120  # a gateway whose setup failed never answers: bounded
        async with httpx.AsyncClient(timeout=10) as c:
            while loop.time() < deadline:
                try:
                    response = await c.get(f"http://127.0.0.1:{port}/summary")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.5)
        assert response is not None, docker_client.logs(container["Id"]).decode()
        assert response.status_code == 200, response.text
        body = json.loads(response.text)
        assert isinstance(body, dict) and body, body
    finally:
        docker_client.remove_container(container["Id"], force=True)
