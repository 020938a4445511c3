"""Workspace export on a real hub, a real Docker engine and the real export service.

The archive is compared with the workspace as the container itself lists it (``find``),
and with what the test wrote through the server's contents API.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile

import httpx
import pytest
import pytest_asyncio

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.docker_fixtures import (  # noqa: E402
    DS101_IMAGE,
    STAT200_IMAGE,
    VOLUME_TEMPLATE,
    cleanup,
    docker_hub_extra,
    require_images,
    server_request,
    stop_server,
    text_file,
)
from tests.hubtest import HubProcess, free_port  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def docker_hub(tmp_path_factory, docker_client, docker_catalog):
    """A Docker-backed hub with the workspace-export service."""
    require_images(docker_client, DS101_IMAGE, STAT200_IMAGE)
    process = HubProcess(
        tmp_path_factory.mktemp("export-hub"),
        docker_catalog,
        backend="docker",
        extra_config=docker_hub_extra(free_port(), docker_catalog),
    )
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()
        await asyncio.to_thread(cleanup, docker_client)


async def export(hub, course: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient(timeout=120) as c:
        return await c.get(f"{hub.url}/services/workspace-export/{course}", headers=headers)


def archive_files(body: bytes, prefix: str) -> dict[str, bytes]:
    """path -> content of the regular files of a .tar.gz, all under ``prefix``/."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for member in tar:
            assert member.name == prefix or member.name.startswith(prefix + "/"), member.name
            if member.isfile():
                files[member.name[len(prefix) + 1 :]] = tar.extractfile(member).read()
    return files


def docker_client_run(client, image: str, volume: str, cmd: list[str]) -> str:
    """Run ``cmd`` in a new container of ``image`` with ``volume`` at /v (read-only)."""
    host_config = client.create_host_config(
        binds={volume: {"bind": "/v", "mode": "ro"}}, network_mode="none"
    )
    c = client.create_container(image, cmd, entrypoint=[], host_config=host_config)
    try:
        client.start(c["Id"])
        assert client.wait(c["Id"], timeout=60)["StatusCode"] == 0
        return client.logs(c["Id"]).decode()
    finally:
        client.remove_container(c["Id"], force=True)


async def put(hub, user, course, token, path, model):
    r = await server_request(hub, "PUT", user, course, f"api/contents/{path}", token, json=model)
    assert r.status_code in (200, 201), r.text


async def test_export_holds_exactly_the_workspace_files(docker_hub, docker_client):
    hub = docker_hub
    token = await hub.user_token("alice")
    await hub.start_server("alice", "ds101", token=token, timeout=120)
    blob = bytes(range(256)) * 40
    await put(hub, "alice", "ds101", token, "notes.txt", text_file("week 1\n"))
    await put(hub, "alice", "ds101", token, "week1", {"type": "directory"})
    await put(hub, "alice", "ds101", token, "week1/analysis.py", text_file("print(42)\n"))
    await put(
        hub, "alice", "ds101", token, "week1/data.bin",
        {"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()},
    )  # fmt: skip
    written = {
        "notes.txt": b"week 1\n",
        "week1/analysis.py": b"print(42)\n",
        "week1/data.bin": blob,
    }

    r = await export(hub, "ds101", token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    assert 'filename="ds101-alice-workspace.tar.gz"' in r.headers["content-disposition"]
    files = archive_files(r.content, "ds101-alice")

    # the volume as another container sees it, on its own (without the materials mount)
    volume = VOLUME_TEMPLATE.format(course="ds101", username="alice")
    out = await asyncio.to_thread(
        docker_client_run, docker_client, DS101_IMAGE, volume, ["find", "/v", "-type", "f"]
    )
    in_volume = {line.removeprefix("/v/") for line in out.split()}
    assert set(files) == in_volume == set(written)
    assert files == written
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert not [n for n in names if "materials" in n], names  # not the read-only mount point
    await stop_server(hub, "alice", "ds101")


async def test_export_in_grace_period_with_the_server_stopped(docker_hub):
    hub = docker_hub
    token = await hub.user_token("erin")
    r = await hub.start_server("erin", "grace200", token=token, timeout=120)
    assert r.status_code in (201, 202), r.text
    await put(hub, "erin", "grace200", token, "final-report.txt", text_file("done"))
    await stop_server(hub, "erin", "grace200")

    r = await export(hub, "grace200", token)
    assert r.status_code == 200, r.text
    assert archive_files(r.content, "grace200-erin") == {"final-report.txt": b"done"}


@pytest.mark.parametrize(
    ("user", "course", "status", "message"),
    [
        ("erin", "hist100", 403, "hist100 (Digital history) is closed: it was open from"),
        ("bob", "stat200", 403, "bob is not enrolled in stat200 (Statistical inference)."),
        ("gina", "ds101", 404, "gina has no workspace in ds101 yet: open the course once."),
        ("bob", "nosuch", 404, "There is no course 'nosuch'."),
    ],
)
async def test_export_refusals_say_why(docker_hub, user, course, status, message):
    token = await docker_hub.user_token(user)
    r = await export(docker_hub, course, token)
    assert r.status_code == status, r.text
    assert message in r.text


async def test_export_needs_a_hub_identity(docker_hub):
    r = await export(docker_hub, "ds101", None)
    assert r.status_code == 401, r.text


async def _token(hub, user: str, scopes: list[str]) -> str:
    await (await hub.login(user)).aclose()
    r = await hub.api("POST", f"/users/{user}/tokens", json={"note": "scoped", "scopes": scopes})
    r.raise_for_status()
    return r.json()["token"]


async def test_a_token_for_something_else_cannot_export(docker_hub):
    """Finding 2: any token of alice's (the one inside her ds101 server, which her ds101
    teacher can read through the share; one that may only read her name) exported her
    stat200 workspace. Now the service's access scope is required, and the error is JSON."""
    for scopes in (["access:servers!server=alice/ds101"], ["read:users:name!user=alice"]):
        token = await _token(docker_hub, "alice", scopes)
        for course in ("stat200", "ds101"):
            r = await export(docker_hub, course, token)
            assert r.status_code == 403, (scopes, course, r.status_code)
            body = r.json()
            assert set(body) == {"error", "message", "request_id"} and body["error"] == "forbidden"
            assert "access:services!service=workspace-export" in body["message"]
    # alice's own full token: the role gives every course's learners the access scope
    token = await _token(docker_hub, "alice", ["inherit"])
    r = await export(docker_hub, "nosuchcourse", token)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
