"""Fixtures for the Docker tier's tests: a real engine, the course images, a real hub on Docker.

Loaded for every test module by ``tests/conftest.py``.

Without a reachable engine (or without the images), the Docker tests are skipped with the
reason; with ``HUB_EXT_REQUIRE_DOCKER=1`` (CI) that is a failure instead. A failing Docker
test gets a "course containers" section in its report: the logs of the test's containers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import day, write_catalog
from tests.hubtest import HubProcess, node_available

IMAGE_TAG = "2026.11"
BASE_IMAGE = f"hub-ext/base:{IMAGE_TAG}"
DS101_IMAGE = f"hub-ext/course-ds101:{IMAGE_TAG}"
STAT200_IMAGE = f"hub-ext/course-stat200:{IMAGE_TAG}"

#: Names of everything one test session creates start with this (cleaned up at the end).
SESSION = f"hub-ext-test-{secrets.token_hex(3)}"
NETWORK = f"{SESSION}-learners"
INTERNET_NETWORK = f"{NETWORK}-internet"
VOLUME_TEMPLATE = SESSION + "_{course}_{username}"


def require_docker() -> bool:
    return os.environ.get("HUB_EXT_REQUIRE_DOCKER") == "1"


def unavailable(reason: str):
    """Skip (or, in CI, fail) because the Docker tier cannot run here."""
    if require_docker():
        pytest.fail(f"HUB_EXT_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


_client = None


def docker_client_or_none():
    global _client
    if _client is None:
        try:
            import docker

            client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
            client.ping()
        except Exception as e:  # any failure means "no engine here"
            return (
                None,
                f"no Docker engine answers ({type(e).__name__}: {e}); start one with .ci/docker-up.sh",
            )
        _client = client
    return _client, ""


@pytest.fixture(scope="session")
def docker_client():
    client, reason = docker_client_or_none()
    if client is None:
        unavailable(reason)
    return client


def require_images(client, *images: str) -> None:
    import docker.errors

    missing = []
    for image in images:
        try:
            client.inspect_image(image)
        except docker.errors.NotFound:
            missing.append(image)
    if missing:
        unavailable(
            f"image(s) {', '.join(missing)} not built; run course_images/build.sh base ds101 stat200"
        )


def session_containers(client, *, all_states: bool = True) -> list[dict]:
    return [
        c
        for c in client.containers(all=all_states)
        if any(n.lstrip("/").startswith(SESSION) for n in c.get("Names", []))
    ]


def container_logs(client, tail: int = 60) -> str:
    parts = []
    for c in session_containers(client):
        name = c["Names"][0].lstrip("/")
        try:
            logs = client.logs(c["Id"], tail=tail).decode(errors="replace")
        except Exception as e:  # the container went away meanwhile
            logs = f"(no logs: {e})"
        parts.append(f"----- {name} ({c.get('Status', '?')})\n{logs}")
    return "\n".join(parts) or "(no container of this test session exists)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and item.get_closest_marker("docker"):
        client, _ = docker_client_or_none()
        if client is not None:
            report.sections.append(("course containers (docker logs)", container_logs(client)))
        funcargs = getattr(item, "funcargs", {})
        hub = funcargs.get("docker_hub") or funcargs.get("swarm_hub")
        if hub is not None:
            report.sections.append(("hub log", hub.log_tail(80)))


def docker_courses() -> list[dict]:
    """Courses on the course images: two open courses with different images and kernels,
    one with a small memory limit, one in its grace period, one closed."""
    return [
        {
            "id": "ds101",
            "title": "Data analysis with Python",
            "image": DS101_IMAGE,
            "kernels": ["python3"],
            "opens": day(-30),
            "closes": day(60),
            "materials": "materials/ds101",
            "mem_limit": "1G",
            "cpu_limit": 1,
            "env": {"DATASET_DIR": "/srv/data"},
            "learners": ["alice", "bob", "carol", "gina"],
            "teachers": ["tina"],
        },
        {
            "id": "stat200",
            "title": "Statistical inference",
            "image": STAT200_IMAGE,
            "kernels": ["ir"],
            "opens": day(-10),
            "closes": day(90),
            "materials": "materials/stat200",
            "learners": ["alice"],
            "teachers": ["sam"],
        },
        {
            "id": "web101",
            "title": "The web",
            "image": DS101_IMAGE,
            "opens": day(-10),
            "closes": day(90),
            "network": "internet",
            "learners": ["gina"],
        },
        {
            "id": "tiny101",
            "title": "Small machines",
            "image": DS101_IMAGE,
            "opens": day(-10),
            "closes": day(90),
            "mem_limit": "400M",
            "learners": ["dave"],
        },
        {
            "id": "grace200",
            "title": "Just closed",
            "image": DS101_IMAGE,
            "opens": day(-100),
            "closes": day(-2),
            "grace_days": 14,
            "materials": "materials/grace200",
            "learners": ["erin"],
        },
        {
            "id": "hist100",
            "title": "Digital history",
            "image": DS101_IMAGE,
            "opens": day(-200),
            "closes": day(-60),
            "grace_days": 14,
            "learners": ["erin"],
        },
    ]


@pytest.fixture(scope="session")
def docker_catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("docker-catalog"), docker_courses())


def docker_hub_extra(
    port_export: int | None = None,
    catalog: Path | None = None,
    *,
    answer_at_once: bool = False,
    deployer_volumes: dict | None = None,
    swarm: bool = False,
) -> str:
    """Hub config for the Docker backend, on this session's own networks, names and volumes.

    ``deployer_volumes``: a deployer's own ``c.CourseDockerSpawner.volumes``. ``swarm``:
    the Swarm backend (``backend="swarm"``) instead, with the same names and volumes."""
    if swarm:
        extra = """
from hub_ext.spawners.swarm import swarm_hub_config
swarm_hub_config(c)
"""
    else:
        extra = f"""
from hub_ext.spawners.docker import docker_hub_config
docker_hub_config(c, network={NETWORK!r})
"""
    extra += f"""c.CourseDockerSpawner.prefix = {SESSION!r}
c.CourseDockerSpawner.workspace_volume_template = {VOLUME_TEMPLATE!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
"""
    if deployer_volumes:
        extra += f"c.CourseDockerSpawner.volumes = {deployer_volumes!r}\n"
    if answer_at_once:
        # answer start requests at once (202): the progress of a start can be followed
        extra += 'c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}\n'
    if port_export is not None:
        extra += f"""
from hub_ext.courses import Catalog
from hub_ext.services.export.hubconfig import configure_export
# the spawner's volume template (set above) reaches the service through configure_export
configure_export(c, Catalog.load({str(catalog)!r}), catalog_path={str(catalog)!r}, port={port_export})
"""
    return extra


async def _course_hub(tmp_path_factory, client, catalog, backend: str):
    """A real JupyterHub + proxy on ``backend`` ("docker" or "swarm"), with the export
    service and a deployer's own volume; everything the session made is removed after."""
    from tests.hubtest import free_port

    require_images(client, DS101_IMAGE, STAT200_IMAGE)
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    process = HubProcess(
        tmp_path_factory.mktemp(f"{backend}-hub"),
        catalog,
        backend=backend,
        extra_config=docker_hub_extra(
            free_port(),
            catalog,
            deployer_volumes={str(deployer_data(catalog)): {"bind": DEPLOYER_DATA, "mode": "ro"}},
            swarm=backend == "swarm",
        ),
    )
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()
        await asyncio.to_thread(swarm_cleanup if backend == "swarm" else cleanup, client)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def docker_hub(tmp_path_factory, docker_client, docker_catalog):
    """A real JupyterHub + proxy whose course servers are containers of the course images."""
    async for hub in _course_hub(tmp_path_factory, docker_client, docker_catalog, "docker"):
        yield hub


# --------------------------------------------------------------------------- Docker Swarm


@pytest.fixture(scope="session")
def swarm_client(docker_client):
    """The engine as a manager of an active swarm: a single-node swarm is initialised
    (``docker swarm init --advertise-addr 127.0.0.1``) when the engine is in none. It is
    left active: the plain Docker tier runs beside it."""
    import docker.errors

    swarm = docker_client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") == "inactive":
        try:
            docker_client.init_swarm(advertise_addr="127.0.0.1")
        except docker.errors.APIError as e:
            unavailable(f"the Docker engine cannot initialise a swarm: {e.explanation or e}")
        swarm = docker_client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        unavailable(
            f"the Docker engine is not a manager of an active swarm ({swarm.get('LocalNodeState')})"
        )
    return docker_client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def swarm_hub(tmp_path_factory, swarm_client, docker_catalog):
    """A real JupyterHub + proxy whose course servers are Swarm services of the course
    images, on a single-node swarm."""
    async for hub in _course_hub(tmp_path_factory, swarm_client, docker_catalog, "swarm"):
        yield hub


def session_services(client) -> list[dict]:
    return [s for s in client.services() if s["Spec"]["Name"].startswith(SESSION)]


def swarm_cleanup(client) -> None:
    """Remove what this test session made on the swarm (services, then their containers,
    volumes and networks, and the host firewall of docker_gwbridge), then :func:`cleanup`."""
    import time

    import docker.errors

    from hub_ext.spawners.docker import remove_host_firewall
    from hub_ext.spawners.docker_objects import GWBRIDGE

    for service in session_services(client):
        try:
            client.remove_service(service["ID"])
        except docker.errors.APIError:
            pass
    for _ in range(60):  # the tasks' containers go away after their service
        if not session_containers(client):
            break
        time.sleep(0.5)
    cleanup(client)
    for network in client.networks():
        if network["Name"].startswith(SESSION):
            try:
                client.remove_network(network["Id"])
            except docker.errors.APIError:
                pass
    try:
        remove_host_firewall(GWBRIDGE, client=client)
    except Exception:  # no iptables: nothing was installed
        pass


#: where the Docker hub's deployer mounts a directory of their own (c.CourseDockerSpawner.volumes)
DEPLOYER_DATA = "/srv/deployer-data"


def deployer_data(catalog: Path) -> Path:
    """A host directory the deployer mounts in every course container, with one file."""
    path = catalog.parent / "deployer-data"
    path.mkdir(exist_ok=True)
    (path / "licence.txt").write_text("site licence\n")
    return path


def cleanup(client) -> None:
    """Remove what this test session created: containers, workspace volumes, the learners'
    networks and their host firewall."""
    import docker.errors

    from hub_ext.spawners.docker import remove_host_firewall

    for c in session_containers(client):
        try:
            client.remove_container(c["Id"], force=True)
        except docker.errors.APIError:
            pass
    for v in client.volumes().get("Volumes") or []:
        if v["Name"].startswith(SESSION):
            try:
                client.remove_volume(v["Name"], force=True)
            except docker.errors.APIError:
                pass
    for network in (NETWORK, INTERNET_NETWORK):
        try:
            remove_host_firewall(network, client=client)
        except Exception:  # no iptables: nothing was installed
            pass
        try:
            client.remove_network(network)
        except docker.errors.APIError:
            pass


async def docker_exec(
    client, container: str, cmd: list[str], user: str = "1000"
) -> tuple[int, str]:
    """Run ``cmd`` in a running container; (exit code, output)."""

    def run():
        ex = client.exec_create(container, cmd, user=user)
        out = client.exec_start(ex["Id"]).decode(errors="replace")
        return client.exec_inspect(ex["Id"])["ExitCode"], out

    return await asyncio.to_thread(run)


# --------------------------------------------------------------------------- clients


async def server_request(hub, method: str, user: str, server: str, path: str, token: str, **kwargs):
    """A request through the proxy to ``/user/<user>/<server>/<path>``."""
    import httpx

    async with httpx.AsyncClient(timeout=60) as c:
        return await c.request(
            method,
            f"{hub.url}/user/{user}/{server}/{path}",
            headers={"Authorization": f"token {token}"},
            **kwargs,
        )


def text_file(content: str) -> dict:
    return {"type": "file", "format": "text", "content": content}


async def server_model(hub, user: str, server: str) -> dict | None:
    r = await hub.api("GET", f"/users/{user}")
    return r.json().get("servers", {}).get(server)


async def stop_server(hub, user: str, server: str) -> None:
    r = await hub.api("DELETE", f"/users/{user}/servers/{server}")
    assert r.status_code in (202, 204), r.text
    for _ in range(600):
        if not await server_model(hub, user, server):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user}/{server} did not stop")


def container_of(client, user: str, server: str) -> dict:
    """The running container of ``user``'s ``server`` (found by its labels)."""
    found = client.containers(
        filters={"label": [f"org.hub-ext.user={user}", f"org.hub-ext.server={server}"]}
    )
    found = [c for c in found if c["Names"][0].lstrip("/").startswith(SESSION)]
    assert len(found) == 1, f"expected one container for {user}/{server}, found {found}"
    return client.inspect_container(found[0]["Id"])


async def kernel_run(
    hub, user: str, server: str, token: str, kernel_id: str, code: str, *, timeout: float = 90
):
    """Execute ``code`` in a kernel over its websocket, through the proxy.

    Returns ``(stdout text, statuses seen)``; stops at the reply, or when the kernel's
    status turns ``restarting``/``dead`` (the message the user's frontend shows), or when
    the socket closes.
    """
    import json
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = (
        hub.url.replace("http://", "ws://")
        + f"/user/{user}/{server}/api/kernels/{kernel_id}/channels"
    )
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": user,
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
                "channel": "shell",
            }
        )
    )
    out, statuses = [], []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no reply from the kernel within {timeout}s; statuses {statuses}"
                )
            raw = await asyncio.wait_for(ws.read_message(), remaining)
            if raw is None:
                statuses.append("socket-closed")
                break
            msg = json.loads(raw)
            kind = msg.get("msg_type") or msg["header"]["msg_type"]
            if kind == "status":
                state = msg["content"]["execution_state"]
                statuses.append(state)
                if state in ("restarting", "dead"):
                    break
            elif kind == "stream" and msg["parent_header"].get("msg_id") == msg_id:
                out.append(msg["content"]["text"])
            elif kind == "error" and msg["parent_header"].get("msg_id") == msg_id:
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "execute_reply" and msg["parent_header"].get("msg_id") == msg_id:
                break
    finally:
        ws.close()
    return "".join(out), statuses


async def check_kernel_killed_not_server(
    hub, client, user: str, server: str, limit_bytes: int, *, timeout: float = 120
) -> None:
    """``user``'s ``server`` has ``limit_bytes`` as its container's memory limit: a kernel
    asking for twice that is killed by the OOM killer in the container's memory cgroup; the
    server restarts it and tells the frontend ("restarting": JupyterLab's "the kernel
    appears to have died" dialog); server, container and hub carry on, the kernel answers
    again. Stops the server at the end."""
    token = await hub.user_token(user)
    await hub.start_server(user, server, token=token, timeout=timeout)
    container = await asyncio.to_thread(container_of, client, user, server)
    assert container["HostConfig"]["Memory"] == limit_bytes
    r = await server_request(
        hub, "POST", user, server, "api/kernels", token, json={"name": "python3"}
    )
    assert r.status_code == 201, r.text
    kernel_id = r.json()["id"]

    async def run(code: str, **kwargs):
        return await kernel_run(hub, user, server, token, kernel_id, code, **kwargs)

    out, _ = await run("print('small', 1 + 1)")
    assert out == "small 2\n"
    out, statuses = await run(f"x = b'x' * {2 * limit_bytes}\nprint('survived')")
    assert "survived" not in out
    assert "restarting" in statuses or "dead" in statuses, statuses

    r = await server_request(hub, "GET", user, server, "api/status", token)
    assert r.status_code == 200, r.text
    assert (await hub.api("GET", "/")).status_code == 200
    assert client.inspect_container(container["Id"])["State"]["Running"]
    out = ""
    for _ in range(60):  # the restarted kernel answers once it is up
        try:
            out, _ = await run("print('back')", timeout=10)
        except (AssertionError, TimeoutError, OSError):
            out = ""
        if out == "back\n":
            break
        await asyncio.sleep(1)
    assert out == "back\n"
    await stop_server(hub, user, server)
