"""CourseDockerSpawner on a real JupyterHub, its real proxy and a real Docker engine.

Every course server here is a container of a course image built by course_images/build.sh.
Nothing is faked.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.docker_fixtures import (  # noqa: E402
    DEPLOYER_DATA,
    DS101_IMAGE,
    INTERNET_NETWORK,
    NETWORK,
    STAT200_IMAGE,
    VOLUME_TEMPLATE,
    check_kernel_killed_not_server,
    container_of,
    docker_exec,
    docker_hub_extra,
    kernel_run,
    server_model,
    server_request,
    stop_server,
    text_file,
)
from tests.hubtest import HubProcess  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


def env_of(container: dict) -> dict:
    return dict(item.split("=", 1) for item in container["Config"]["Env"])


async def test_each_course_gets_its_image_and_kernel(docker_hub, docker_client):
    hub = docker_hub
    token = await hub.user_token("alice")
    for course in ("ds101", "stat200"):
        r = await hub.start_server("alice", course, token=token, timeout=120)
        assert r.status_code in (201, 202), r.text
        status = await server_request(hub, "GET", "alice", course, "api/status", token)
        assert status.status_code == 200, status.text

    ds101 = await asyncio.to_thread(container_of, docker_client, "alice", "ds101")
    stat200 = await asyncio.to_thread(container_of, docker_client, "alice", "stat200")
    assert ds101["Config"]["Image"] == DS101_IMAGE
    assert stat200["Config"]["Image"] == STAT200_IMAGE
    assert env_of(ds101)["COURSE_ID"] == "ds101" and env_of(ds101)["DATASET_DIR"] == "/srv/data"
    assert env_of(stat200)["COURSE_ID"] == "stat200"
    # the catalog's limits, enforced by the engine; no capabilities; the learners' network
    assert ds101["HostConfig"]["Memory"] == 1024**3
    assert ds101["HostConfig"]["MemorySwap"] == 1024**3
    assert ds101["HostConfig"]["CpuQuota"] == ds101["HostConfig"]["CpuPeriod"] == 100_000
    assert ds101["HostConfig"]["PidsLimit"] == 1024
    assert ds101["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
    assert ds101["HostConfig"]["CapDrop"] == ["ALL"]
    assert list(ds101["NetworkSettings"]["Networks"]) == [NETWORK]
    assert ds101["Config"]["User"] in ("1000", "")  # the image's jovyan
    code, out = await docker_exec(docker_client, ds101["Id"], ["id", "-u"])
    assert (code, out.strip()) == (0, "1000")
    # the deployer's own c.CourseDockerSpawner.volumes entry is there beside the course's
    mounts = {m["Destination"]: m for m in ds101["Mounts"]}
    assert mounts[DEPLOYER_DATA]["RW"] is False
    code, out = await docker_exec(
        docker_client, ds101["Id"], ["cat", f"{DEPLOYER_DATA}/licence.txt"]
    )
    assert (code, out) == (0, "site licence\n")

    specs = (await server_request(hub, "GET", "alice", "ds101", "api/kernelspecs", token)).json()
    assert specs["default"] == "python3" and set(specs["kernelspecs"]) == {"python3"}
    specs = (await server_request(hub, "GET", "alice", "stat200", "api/kernelspecs", token)).json()
    assert specs["default"] == "ir" and set(specs["kernelspecs"]) == {"ir"}

    # the image has python3 too; stat200's server starts only the course's kernel (finding 6)
    for name in ("python3", "nosuch"):
        r = await server_request(
            hub, "POST", "alice", "stat200", "api/kernels", token, json={"name": name}
        )
        assert r.status_code == 404, (name, r.status_code, r.text)
    kernels = await server_request(hub, "GET", "alice", "stat200", "api/kernels", token)
    assert kernels.json() == [], kernels.text

    # the other kernel really runs: R in stat200
    r = await server_request(
        hub, "POST", "alice", "stat200", "api/kernels", token, json={"name": "ir"}
    )
    assert r.status_code == 201, r.text
    out, statuses = await kernel_run(hub, "alice", "stat200", token, r.json()["id"], "cat(6 * 7)")
    assert out == "42", (out, statuses)

    for course in ("ds101", "stat200"):
        await stop_server(hub, "alice", course)


async def test_image_comes_from_the_catalog_only(docker_hub, docker_client):
    """An image in the start request is ignored: the container runs the catalog's image."""
    hub = docker_hub
    token = await hub.user_token("bob")
    r = await hub.api(
        "POST", "/users/bob/servers/ds101", token=token, json={"image": "hub-ext/base:2026.11"}
    )
    assert r.status_code in (201, 202), r.text
    await hub.wait_ready("bob", "ds101", timeout=120)
    container = await asyncio.to_thread(container_of, docker_client, "bob", "ds101")
    assert container["Config"]["Image"] == DS101_IMAGE
    assert "Ignoring image 'hub-ext/base:2026.11' asked for bob:ds101" in hub.log_tail(400)
    await stop_server(hub, "bob", "ds101")


async def test_progress_reports_container_steps(docker_hub, docker_catalog, tmp_path):
    """On a second hub that answers start requests at once, so the progress can be followed."""
    hub = HubProcess(
        tmp_path,
        docker_catalog,
        backend="docker",
        extra_config=docker_hub_extra(answer_at_once=True),
    )
    await hub.start()
    try:
        await _follow_progress(hub)
    finally:
        await hub.shutdown()


async def _follow_progress(hub):
    token = await hub.user_token("bob")
    messages = await hub.follow_progress("bob", "ds101", token)
    text = "\n".join(messages)
    volume = VOLUME_TEMPLATE.format(course="ds101", username="bob")
    assert f"Your workspace: volume {volume}, at /home/jovyan/work" in text
    assert f"Creating your container from {DS101_IMAGE} (1 GiB memory, 1 CPU)" in text
    assert "Starting your container" in text
    assert messages[-1].startswith("Server ready"), text
    await stop_server(hub, "bob", "ds101")


async def test_workspace_survives_stop_start_hub_restart_and_removal(docker_hub, docker_client):
    hub = docker_hub
    token = await hub.user_token("carol")

    async def read_notes():
        r = await server_request(hub, "GET", "carol", "ds101", "api/contents/notes.txt", token)
        assert r.status_code == 200, r.text
        return r.json()["content"]

    await hub.start_server("carol", "ds101", token=token, timeout=120)
    r = await server_request(
        hub, "PUT", "carol", "ds101", "api/contents/notes.txt", token, json=text_file("week 1")
    )
    assert r.status_code in (200, 201), r.text
    first = await asyncio.to_thread(container_of, docker_client, "carol", "ds101")

    # stop -> start: the container is removed at stop, the workspace volume stays
    await stop_server(hub, "carol", "ds101")
    assert not docker_client.containers(all=True, filters={"id": first["Id"]})
    volume = VOLUME_TEMPLATE.format(course="ds101", username="carol")
    labels = docker_client.inspect_volume(volume)["Labels"]
    assert labels["org.hub-ext.course"] == "ds101" and labels["org.hub-ext.user"] == "carol"
    await hub.start_server("carol", "ds101", token=token, timeout=120)
    assert await read_notes() == "week 1"

    # a hub restart with the container running: found again, same container, same workspace
    running = await asyncio.to_thread(container_of, docker_client, "carol", "ds101")
    await hub.restart()
    model = await server_model(hub, "carol", "ds101")
    assert model["ready"] and model["state"]["object_id"] == running["Id"]
    assert model["state"]["course"] == "ds101"
    assert await read_notes() == "week 1"

    # the container removed behind the hub's back: the next start makes a new one, same work
    docker_client.remove_container(running["Id"], force=True)
    await stop_server(hub, "carol", "ds101")
    await hub.start_server("carol", "ds101", token=token, timeout=120)
    again = await asyncio.to_thread(container_of, docker_client, "carol", "ds101")
    assert again["Id"] != running["Id"]
    assert await read_notes() == "week 1"
    await stop_server(hub, "carol", "ds101")


async def test_materials_are_read_only(docker_hub, docker_catalog, docker_client):
    hub = docker_hub
    token = await hub.user_token("bob")
    await hub.start_server("bob", "ds101", token=token, timeout=120)
    r = await server_request(hub, "GET", "bob", "ds101", "api/contents/materials/README.md", token)
    assert r.status_code == 200, r.text
    assert "Read-only course materials" in r.json()["content"]
    r = await server_request(
        hub, "PUT", "bob", "ds101", "api/contents/materials/mine.txt", token, json=text_file("x")
    )
    # EROFS (the read-only bind mount), in the learner's words (hub_ext_course_contents)
    assert r.status_code == 403, r.text
    assert "the folder materials/ is read-only" in r.json()["message"], r.text
    assert "/home/" not in r.text and "Errno" not in r.text, r.text
    r = await server_request(
        hub,
        "PUT",
        "bob",
        "ds101",
        "api/contents/materials/README.md",
        token,
        json=text_file("defaced"),
    )
    assert r.status_code >= 400, r.text
    container = await asyncio.to_thread(container_of, docker_client, "bob", "ds101")
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/home/jovyan/work/materials"]["RW"] is False
    assert (
        mounts["/home/jovyan/work"]["RW"] is True
        and mounts["/home/jovyan/work"]["Type"] == "volume"
    )
    materials = docker_catalog.parent / "materials" / "ds101"
    assert sorted(p.name for p in materials.iterdir()) == ["README.md"]
    assert "Read-only course materials" in (materials / "README.md").read_text()
    # the rest of the workspace is writable
    r = await server_request(
        hub, "PUT", "bob", "ds101", "api/contents/mine.txt", token, json=text_file("x")
    )
    assert r.status_code == 201, r.text
    await stop_server(hub, "bob", "ds101")


async def test_memory_limit_kills_the_kernel_not_the_server_or_hub(docker_hub, docker_client):
    """tiny101 has 400M: a kernel asking for 800M dies, the server restarts it and says so;
    server and hub carry on (:func:`~tests.docker_fixtures.check_kernel_killed_not_server`)."""
    await check_kernel_killed_not_server(
        docker_hub, docker_client, "dave", "tiny101", 400 * 1024**2
    )


PROBE = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(3)\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', type(e).__name__)\n"
)


async def probe(client, container: dict, host: str, port) -> str:
    """Can ``container`` open a TCP connection to ``host:port``? ('connected' / 'refused ...')"""
    _code, out = await docker_exec(
        client, container["Id"], ["python", "-c", PROBE, host, str(port)]
    )
    return out.strip()


class HostServers:
    """Two HTTP servers on this machine: one on the learners' bridge address, one on every
    address (0.0.0.0, reached on the bridge address). Only ever this machine's addresses."""

    def __init__(self, gateway: str):
        import http.server
        import threading

        self.servers = [
            http.server.ThreadingHTTPServer((gateway, 0), http.server.SimpleHTTPRequestHandler),
            http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler),
        ]
        self.ports = [server.server_address[1] for server in self.servers]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


async def test_learners_containers_reach_the_hub_and_nothing_else(docker_hub, docker_client):
    """Finding 12: from a learner's container, the host's services (on the bridge address,
    on 0.0.0.0), another learner's container and anything beyond the host are out of
    reach; the hub's API port is reachable (the spawn itself needs it)."""
    hub = docker_hub
    tokens = {u: await hub.user_token(u) for u in ("alice", "bob", "gina")}
    for user, course in (("alice", "ds101"), ("bob", "ds101"), ("gina", "web101")):
        r = await hub.start_server(user, course, token=tokens[user], timeout=120)
        assert r.status_code in (201, 202), r.text
    alice = await asyncio.to_thread(container_of, docker_client, "alice", "ds101")
    bob = await asyncio.to_thread(container_of, docker_client, "bob", "ds101")
    gina = await asyncio.to_thread(container_of, docker_client, "gina", "web101")
    assert list(gina["NetworkSettings"]["Networks"]) == [INTERNET_NETWORK]
    bob_ip = bob["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    hub_api = env_of(alice)["JUPYTERHUB_API_URL"]  # http://<gateway>:<hub port>/hub/api
    hub_host, hub_port = hub_api.split("//")[1].split("/")[0].split(":")
    networks = {n: docker_client.inspect_network(n) for n in (NETWORK, INTERNET_NETWORK)}
    gateways = {n: net["IPAM"]["Config"][0]["Gateway"] for n, net in networks.items()}
    assert hub_host == gateways[NETWORK]

    servers = HostServers(gateways[NETWORK])
    try:
        # the test servers answer on this machine ...
        async with httpx.AsyncClient(timeout=5) as c:
            for port in servers.ports:
                assert (await c.get(f"http://{gateways[NETWORK]}:{port}/")).status_code == 200
        # ... but not to a learner's container, on either learners' network
        for container, network in ((alice, NETWORK), (gina, INTERNET_NETWORK)):
            for host in {gateways[NETWORK], gateways[network]}:
                for port in servers.ports:
                    out = await probe(docker_client, container, host, port)
                    assert out.startswith("refused"), (network, host, port, out)
            # the hub's API is reachable from both
            assert await probe(docker_client, container, hub_host, hub_port) == "connected"
    finally:
        servers.close()

    # the proxy (on the host) reaches bob's server; alice's container does not
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://{bob_ip}:8888/user/bob/ds101/api/status")
    assert r.status_code in (302, 401, 403), r.text  # an HTTP answer: connected
    assert (await probe(docker_client, alice, bob_ip, 8888)).startswith("refused")

    # beyond the host: hub-only is an internal network (no masquerading, Docker drops what
    # it would forward out) and its containers have no default route; no outside address
    # is ever tried from here
    assert networks[NETWORK]["Internal"] is True and networks[INTERNET_NETWORK]["Internal"] is False
    code, routes = await docker_exec(docker_client, alice["Id"], ["cat", "/proc/net/route"])
    defaults = [line for line in routes.splitlines()[1:] if line.split()[1] == "00000000"]
    assert code == 0 and defaults == [], routes
    for user, course in (("alice", "ds101"), ("bob", "ds101"), ("gina", "web101")):
        await stop_server(hub, user, course)


async def test_closed_course_is_refused_before_any_container(docker_hub, docker_client):
    hub = docker_hub
    token = await hub.user_token("erin")
    r = await hub.api("POST", "/users/erin/servers/hist100", token=token)
    assert r.status_code == 403, r.text
    assert "hist100 (Digital history) is closed" in r.json()["message"]
    volume = VOLUME_TEMPLATE.format(course="hist100", username="erin")
    assert volume not in [v["Name"] for v in docker_client.volumes().get("Volumes") or []]


async def test_learners_networks_are_created_once_and_must_isolate(docker_client):
    from hub_ext.spawners.docker import NetworkError, ensure_network
    from tests.docker_fixtures import SESSION

    name = f"{SESSION}-net"
    for kind, internal in (("hub-only", True), ("internet", False)):
        try:
            gateway = ensure_network(docker_client, name, kind)
            assert ensure_network(docker_client, name, kind) == gateway
            network = docker_client.inspect_network(name)
            assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
            assert network["Internal"] is internal
        finally:
            docker_client.remove_network(name)
    # a network that lets containers talk to each other, or routes out, is refused, not used
    docker_client.create_network(name, driver="bridge")
    try:
        with pytest.raises(NetworkError, match="lets containers reach each other"):
            ensure_network(docker_client, name, "internet")
    finally:
        docker_client.remove_network(name)
    docker_client.create_network(
        name, driver="bridge", options={"com.docker.network.bridge.enable_icc": "false"}
    )
    try:
        with pytest.raises(NetworkError, match="routes learners' containers out"):
            ensure_network(docker_client, name, "hub-only")
    finally:
        docker_client.remove_network(name)


READ_OWN_MODEL = (
    "import json, os, sys, urllib.request, urllib.error\n"
    "api, token = os.environ['JUPYTERHUB_API_URL'], os.environ['JUPYTERHUB_API_TOKEN']\n"
    "for path in sys.argv[1:]:\n"
    "    req = urllib.request.Request(api + path, headers={'Authorization': 'token ' + token})\n"
    "    try:\n"
    "        print(json.dumps([path, 200, json.load(urllib.request.urlopen(req, timeout=10))]))\n"
    "    except urllib.error.HTTPError as e:\n"
    "        print(json.dumps([path, e.code, None]))\n"
)


async def test_a_course_servers_token_does_not_tell_the_learners_other_courses(
    docker_hub, docker_client
):
    """Finding 13: code in alice's ds101 server (hers, or a ds101 teacher's looking over her
    shoulder) reads $JUPYTERHUB_API_TOKEN and asks the hub about alice: it must not learn
    her groups (she is enrolled in stat200), while the server keeps working."""
    import json

    hub = docker_hub
    token = await hub.user_token("alice")
    r = await hub.start_server("alice", "ds101", token=token, timeout=120)
    assert r.status_code in (201, 202), r.text
    alice = await asyncio.to_thread(container_of, docker_client, "alice", "ds101")
    code, out = await docker_exec(
        docker_client,
        alice["Id"],
        ["python", "-c", READ_OWN_MODEL, "/user", "/users/alice", "/groups/course:stat200:learner"],
    )
    assert code == 0, out
    answers = {path: (status, model) for path, status, model in map(json.loads, out.splitlines())}
    for path in ("/user", "/users/alice"):
        status, model = answers[path]
        assert status == 403 or "groups" not in model, (path, model)
    assert answers["/user"][1]["name"] == "alice"  # it still knows whose server it is
    assert answers["/groups/course:stat200:learner"][0] in (403, 404)
    # the server works: reached through the hub's OAuth (its token is the client secret)
    client = await hub.login("alice")
    try:
        page = await client.get("/user/alice/ds101/lab")  # the OAuth dance, then the page
        r = await client.get("/user/alice/ds101/api/status")
    finally:
        await client.aclose()
    assert page.status_code == 200 and "/user/alice/ds101/" in str(page.url), page.url
    assert r.status_code == 200 and "kernels" in r.json(), r.text
    # ... and its activity reaches the hub
    r = await hub.api("GET", "/users/alice")
    assert r.json()["servers"]["ds101"]["last_activity"]
    # the hub itself (for admins, services, its pages) still has alice's groups
    assert "course:stat200:learner" in r.json()["groups"]
    await stop_server(hub, "alice", "ds101")
