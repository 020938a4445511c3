"""CourseSwarmSpawner on a real JupyterHub, its real proxy and a real single-node Docker Swarm.

The Docker tier's acceptance (tests/test_docker_hub.py, tests/test_docker_export.py) on
Swarm services: course image and kernels, limits, the workspace across stop, start, a hub
restart and the service's removal, materials read-only, learners isolated, export. The
swarm is the shared engine itself (``docker swarm init --advertise-addr 127.0.0.1`` when
it is in none); every course server is a service of a course image built by
course_images/build.sh. Nothing is faked. What a single node cannot show (a task on another
node, a multi-host volume driver) is said where it matters.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.register_assert_rewrite("tests.docker_fixtures")

from tests.docker_fixtures import (  # noqa: E402
    DEPLOYER_DATA,
    DS101_IMAGE,
    SESSION,
    STAT200_IMAGE,
    VOLUME_TEMPLATE,
    check_kernel_killed_not_server,
    container_of,
    docker_exec,
    kernel_run,
    server_model,
    server_request,
    stop_server,
    text_file,
)
from tests.test_docker_export import archive_files, export  # noqa: E402
from tests.test_docker_hub import HostServers, env_of, probe  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

GWBRIDGE = "docker_gwbridge"


def service_of(client, user: str, server: str) -> dict:
    """The Swarm service of ``user``'s ``server`` (found by its labels)."""
    found = client.services(
        filters={"label": [f"org.hub-ext.user={user}", f"org.hub-ext.server={server}"]}
    )
    found = [s for s in found if s["Spec"]["Name"].startswith(SESSION)]
    assert len(found) == 1, f"expected one service for {user}/{server}, found {found}"
    return found[0]


def _route_net(line: str) -> str:
    """The first three octets of the destination of a /proc/net/route line."""
    octets = bytes.fromhex(line.split()[1])[::-1]
    return ".".join(str(b) for b in octets[:3])


def own_network(user: str, server: str) -> str:
    return f"{SESSION}-{user}--{server}-net"


async def test_each_course_gets_its_image_limits_and_kernel(swarm_hub, swarm_client):
    hub, client = swarm_hub, swarm_client
    token = await hub.user_token("alice")
    for course in ("ds101", "stat200"):
        r = await hub.start_server("alice", course, token=token, timeout=180)
        assert r.status_code in (201, 202), r.text
        status = await server_request(hub, "GET", "alice", course, "api/status", token)
        assert status.status_code == 200, status.text

    service = service_of(client, "alice", "ds101")
    spec = service["Spec"]["TaskTemplate"]
    assert spec["ContainerSpec"]["Image"] == DS101_IMAGE
    assert service_of(client, "alice", "stat200")["Spec"]["TaskTemplate"]["ContainerSpec"][
        "Image"
    ] == (STAT200_IMAGE)
    # the catalog's limits as the service's resources, the process limit, no capabilities
    limits = spec["Resources"]["Limits"]
    assert limits["MemoryBytes"] == 1024**3 and limits["NanoCPUs"] == 10**9
    assert limits["Pids"] == 1024
    assert spec["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert spec["RestartPolicy"]["Condition"] == "none"

    # ... enforced by the engine on the task's container
    ds101 = await asyncio.to_thread(container_of, client, "alice", "ds101")
    stat200 = await asyncio.to_thread(container_of, client, "alice", "stat200")
    assert ds101["Config"]["Image"].split("@")[0] == DS101_IMAGE
    assert stat200["Config"]["Image"].split("@")[0] == STAT200_IMAGE
    assert ds101["HostConfig"]["Memory"] == 1024**3
    assert ds101["HostConfig"]["NanoCpus"] == 10**9
    assert ds101["HostConfig"]["PidsLimit"] == 1024
    assert ds101["HostConfig"]["CapDrop"] == ["ALL"]
    assert env_of(ds101)["COURSE_ID"] == "ds101" and env_of(ds101)["DATASET_DIR"] == "/srv/data"
    assert env_of(stat200)["COURSE_ID"] == "stat200"
    # alone on its own overlay network
    assert list(ds101["NetworkSettings"]["Networks"]) == [own_network("alice", "ds101")]
    network = client.inspect_network(own_network("alice", "ds101"))
    assert network["Driver"] == "overlay" and network["Attachable"] is True
    assert [c for c in network["Containers"] if c != "lb-" + network["Name"]] == [ds101["Id"]]
    code, out = await docker_exec(client, ds101["Id"], ["id", "-u"])
    assert (code, out.strip()) == (0, "1000")
    # the deployer's own volume beside the course's
    mounts = {m["Destination"]: m for m in ds101["Mounts"]}
    assert mounts[DEPLOYER_DATA]["RW"] is False
    code, out = await docker_exec(client, ds101["Id"], ["cat", f"{DEPLOYER_DATA}/licence.txt"])
    assert (code, out) == (0, "site licence\n")

    specs = (await server_request(hub, "GET", "alice", "ds101", "api/kernelspecs", token)).json()
    assert specs["default"] == "python3" and set(specs["kernelspecs"]) == {"python3"}
    specs = (await server_request(hub, "GET", "alice", "stat200", "api/kernelspecs", token)).json()
    assert specs["default"] == "ir" and set(specs["kernelspecs"]) == {"ir"}
    r = await server_request(
        hub, "POST", "alice", "stat200", "api/kernels", token, json={"name": "python3"}
    )
    assert r.status_code == 404, r.text
    r = await server_request(
        hub, "POST", "alice", "stat200", "api/kernels", token, json={"name": "ir"}
    )
    assert r.status_code == 201, r.text
    out, statuses = await kernel_run(hub, "alice", "stat200", token, r.json()["id"], "cat(6 * 7)")
    assert out == "42", (out, statuses)

    for course in ("ds101", "stat200"):
        await stop_server(hub, "alice", course)
    # stopped: no service left, its own network removed (the stop does not wait for it)
    assert not client.services(filters={"name": f"{SESSION}-alice--ds101"})
    for _ in range(120):
        if not client.networks(names=[own_network("alice", "ds101")]):
            break
        await asyncio.sleep(0.5)
    assert not client.networks(names=[own_network("alice", "ds101")])


async def test_image_comes_from_the_catalog_only(swarm_hub, swarm_client):
    hub = swarm_hub
    token = await hub.user_token("bob")
    r = await hub.api(
        "POST", "/users/bob/servers/ds101", token=token, json={"image": "hub-ext/base:2026.11"}
    )
    assert r.status_code in (201, 202), r.text
    await hub.wait_ready("bob", "ds101", timeout=180)
    service = service_of(swarm_client, "bob", "ds101")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == DS101_IMAGE
    assert "Ignoring image 'hub-ext/base:2026.11' asked for bob:ds101" in hub.log_tail(400)
    await stop_server(hub, "bob", "ds101")


async def test_workspace_stays_with_its_learner(swarm_hub, swarm_client):
    """Stop, start, a hub restart, the service removed behind the hub's back: the same
    workspace each time, on the node that holds it (a placement constraint)."""
    hub, client = swarm_hub, swarm_client
    token = await hub.user_token("carol")
    node = client.info()["Swarm"]["NodeID"]

    async def read_notes():
        r = await server_request(hub, "GET", "carol", "ds101", "api/contents/notes.txt", token)
        assert r.status_code == 200, r.text
        return r.json()["content"]

    await hub.start_server("carol", "ds101", token=token, timeout=180)
    r = await server_request(
        hub, "PUT", "carol", "ds101", "api/contents/notes.txt", token, json=text_file("week 1")
    )
    assert r.status_code in (200, 201), r.text
    first = service_of(client, "carol", "ds101")
    # the volume was made by the task's node, with the hub's labels; the node is recorded
    volume = VOLUME_TEMPLATE.format(course="ds101", username="carol")
    labels = client.inspect_volume(volume)["Labels"]
    assert labels["org.hub-ext.course"] == "ds101" and labels["org.hub-ext.user"] == "carol"
    assert (await server_model(hub, "carol", "ds101"))["state"]["workspace_node"] == node

    await stop_server(hub, "carol", "ds101")
    assert not client.services(filters={"id": first["ID"]})
    assert client.inspect_volume(volume)["Name"] == volume  # the stop leaves the workspace
    await hub.start_server("carol", "ds101", token=token, timeout=180)
    assert await read_notes() == "week 1"
    running = service_of(client, "carol", "ds101")
    placement = running["Spec"]["TaskTemplate"]["Placement"]
    assert placement["Constraints"] == [f"node.id=={node}"]

    # a hub restart with the service running: found again, same service, same workspace
    await hub.restart()
    model = await server_model(hub, "carol", "ds101")
    assert model["ready"] and model["state"]["object_id"] == running["ID"]
    assert model["state"]["course"] == "ds101" and model["state"]["workspace_node"] == node
    assert await read_notes() == "week 1"

    # the service removed behind the hub's back: the next start makes a new one, same work
    client.remove_service(running["ID"])
    await stop_server(hub, "carol", "ds101")
    await hub.start_server("carol", "ds101", token=token, timeout=180)
    again = service_of(client, "carol", "ds101")
    assert again["ID"] != running["ID"]
    assert await read_notes() == "week 1"
    await stop_server(hub, "carol", "ds101")


async def test_a_workspace_on_an_unavailable_node_is_a_clear_refusal(swarm_hub, swarm_client):
    """carol's workspace is on this (the only) node: drained, her server is refused with a
    message saying why, and nothing is removed; active again, it starts with her work."""
    hub, client = swarm_hub, swarm_client
    token = await hub.user_token("carol")
    await hub.start_server("carol", "ds101", token=token, timeout=180)
    r = await server_request(
        hub, "PUT", "carol", "ds101", "api/contents/notes.txt", token, json=text_file("week 1")
    )
    assert r.status_code in (200, 201), r.text
    await stop_server(hub, "carol", "ds101")
    info = client.info()["Swarm"]
    node = client.inspect_node(info["NodeID"])
    others = [s["Spec"]["Name"] for s in client.services()]
    if others:
        pytest.skip(
            "draining the swarm's only node would stop services running on it: " + ", ".join(others)
        )
    spec = dict(node["Spec"], Availability="drain")
    client.update_node(node["ID"], node["Version"]["Index"], spec)
    try:
        r = await hub.api("POST", "/users/carol/servers/ds101", token=token)
        for _ in range(300):  # answered before or after the refusal: wait for it to end
            model = await server_model(hub, "carol", "ds101")
            if not model or not model.get("pending"):
                break
            await asyncio.sleep(0.1)
        assert not (model or {}).get("ready"), model
        message = (
            f"Your ds101 workspace is on the cluster's node {node['ID']}, which is set to drain"
        )
        assert message in r.text + hub.log_tail(200), (r.status_code, r.text)
        assert not client.services(filters={"name": f"{SESSION}-carol--ds101"})
    finally:
        node = client.inspect_node(info["NodeID"])
        client.update_node(
            node["ID"], node["Version"]["Index"], dict(node["Spec"], Availability="active")
        )
    volume = VOLUME_TEMPLATE.format(course="ds101", username="carol")
    assert client.inspect_volume(volume)["Name"] == volume
    await hub.start_server("carol", "ds101", token=token, timeout=180)
    r = await server_request(hub, "GET", "carol", "ds101", "api/contents/notes.txt", token)
    assert r.json()["content"] == "week 1"
    await stop_server(hub, "carol", "ds101")


async def test_materials_are_read_only(swarm_hub, swarm_client, docker_catalog):
    hub = swarm_hub
    token = await hub.user_token("bob")
    await hub.start_server("bob", "ds101", token=token, timeout=180)
    r = await server_request(hub, "GET", "bob", "ds101", "api/contents/materials/README.md", token)
    assert r.status_code == 200 and "Read-only course materials" in r.json()["content"], r.text
    r = await server_request(
        hub, "PUT", "bob", "ds101", "api/contents/materials/mine.txt", token, json=text_file("x")
    )
    # EROFS (the read-only mount), in the learner's words (hub_ext_course_contents)
    assert r.status_code == 403, r.text
    assert "the folder materials/ is read-only" in r.json()["message"], r.text
    assert "/home/" not in r.text and "Errno" not in r.text, r.text
    container = await asyncio.to_thread(container_of, swarm_client, "bob", "ds101")
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/home/jovyan/work/materials"]["RW"] is False
    assert mounts["/home/jovyan/work"]["RW"] is True
    assert mounts["/home/jovyan/work"]["Type"] == "volume"
    materials = docker_catalog.parent / "materials" / "ds101"
    assert sorted(p.name for p in materials.iterdir()) == ["README.md"]
    r = await server_request(
        hub, "PUT", "bob", "ds101", "api/contents/mine.txt", token, json=text_file("x")
    )
    assert r.status_code == 201, r.text
    await stop_server(hub, "bob", "ds101")


async def test_memory_limit_kills_the_kernel_not_the_server(swarm_hub, swarm_client):
    """tiny101 has 400M as the service's memory limit (its task's container gets it): the
    Docker tier's check (:func:`~tests.docker_fixtures.check_kernel_killed_not_server`)."""
    await check_kernel_killed_not_server(swarm_hub, swarm_client, "dave", "tiny101", 400 * 1024**2)


async def test_learners_reach_the_hub_and_nothing_else(swarm_hub, swarm_client):
    """From a learner's task: another learner's server (on its overlay network, on
    docker_gwbridge), the host's services and anything beyond are out of reach; the hub's
    API (through the guard) is reachable; the proxy on the host reaches the servers."""
    hub, client = swarm_hub, swarm_client
    tokens = {u: await hub.user_token(u) for u in ("alice", "bob", "gina")}
    for user, course in (("alice", "ds101"), ("bob", "ds101"), ("gina", "web101")):
        r = await hub.start_server(user, course, token=tokens[user], timeout=180)
        assert r.status_code in (201, 202), r.text
    alice = await asyncio.to_thread(container_of, client, "alice", "ds101")
    bob = await asyncio.to_thread(container_of, client, "bob", "ds101")
    gina = await asyncio.to_thread(container_of, client, "gina", "web101")
    gwbridge = client.inspect_network(GWBRIDGE)
    gateway = gwbridge["IPAM"]["Config"][0]["Gateway"]
    bob_overlay = bob["NetworkSettings"]["Networks"][own_network("bob", "ds101")]["IPAddress"]
    bob_bridge = gwbridge["Containers"][bob["Id"]]["IPv4Address"].split("/")[0]
    hub_api = env_of(alice)["JUPYTERHUB_API_URL"]
    hub_host, hub_port = hub_api.split("//")[1].split("/")[0].split(":")
    assert hub_host == gateway

    servers = HostServers(gateway)
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            for port in servers.ports:
                assert (await c.get(f"http://{gateway}:{port}/")).status_code == 200
        for container in (alice, gina):
            for port in servers.ports:
                out = await probe(client, container, gateway, port)
                assert out.startswith("refused"), (container["Name"], port, out)
            assert await probe(client, container, hub_host, hub_port) == "connected"
    finally:
        servers.close()

    # the proxy (on the host) reaches bob's server; alice's and gina's tasks do not
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://{bob_bridge}:8888/user/bob/ds101/api/status")
    assert r.status_code in (302, 401, 403), r.text
    for container in (alice, gina):
        out = await probe(client, container, bob_bridge, 8888)
        assert out.startswith("refused"), (container["Name"], bob_bridge, out)
    # bob's overlay address: alice (hub-only) has no route to it; no node route leads to
    # an overlay network (so gina's packets to it leave for the internet, where nobody is
    # bob: that address is not probed from gina, nothing outside is ever tried from here)
    assert (await probe(client, alice, bob_overlay, 8888)).startswith("refused")
    code, routes = await docker_exec(client, alice["Id"], ["cat", "/proc/net/route"])
    host_routes = open("/proc/net/route").read().split("\n")[1:]
    overlay_prefix = ".".join(bob_overlay.split(".")[:3])
    assert not [r for r in host_routes if r.split() and _route_net(r) == overlay_prefix]

    # hub-only: no default route (nothing leaves the node); internet: a route out
    for container, expected in ((alice, 0), (gina, 1)):
        code, routes = await docker_exec(client, container["Id"], ["cat", "/proc/net/route"])
        defaults = [line for line in routes.splitlines()[1:] if line.split()[1] == "00000000"]
        assert code == 0 and len(defaults) == expected, routes
    for user, course in (("alice", "ds101"), ("bob", "ds101"), ("gina", "web101")):
        await stop_server(hub, user, course)


async def test_closed_course_is_refused_before_any_service(swarm_hub, swarm_client):
    hub = swarm_hub
    token = await hub.user_token("erin")
    r = await hub.api("POST", "/users/erin/servers/hist100", token=token)
    assert r.status_code == 403, r.text
    assert "hist100 (Digital history) is closed" in r.json()["message"]
    assert not swarm_client.services(filters={"name": f"{SESSION}-erin--hist100"})
    assert not swarm_client.networks(names=[own_network("erin", "hist100")])


async def test_export_of_a_swarm_workspace(swarm_hub):
    """The export service reads the workspace volume the Swarm task wrote (on the hub's
    node: on a multi-node swarm, the volume's node must be the hub's, or a shared driver)."""
    hub = swarm_hub
    token = await hub.user_token("erin")
    r = await hub.start_server("erin", "grace200", token=token, timeout=180)
    assert r.status_code in (201, 202), r.text
    r = await server_request(
        hub, "PUT", "erin", "grace200", "api/contents/final.txt", token, json=text_file("done")
    )
    assert r.status_code == 201, r.text
    await stop_server(hub, "erin", "grace200")
    r = await export(hub, "grace200", token)
    assert r.status_code == 200, r.text
    assert archive_files(r.content, "grace200-erin") == {"final.txt": b"done"}
    other = await hub.user_token("bob")
    assert (await export(hub, "grace200", other)).status_code in (403, 404)
