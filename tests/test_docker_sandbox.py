"""The Docker tier's sandbox: analytics gateways as containers of the analytics image.

Real parts: a Docker engine, the analytics image (``make images IMAGES=analytics``), the
gateway supervisor with ``sandbox = "docker"``, real kernels. The attacker notebook tries
each read and write of the trust-boundaries issue's finding 1 from inside its container.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import pytest_asyncio

pytest.register_assert_rewrite("tests.docker_fixtures")

from hub_ext.sandbox import Bind, Limits, SandboxSpec, make_sandbox  # noqa: E402
from hub_ext.sandbox.docker import container_config  # noqa: E402
from hub_ext.services.analytics.extracts import CourseExtracts  # noqa: E402
from hub_ext.services.analytics.notebook import check_notebook  # noqa: E402
from hub_ext.services.analytics.supervisor import GatewaySupervisor  # noqa: E402
from tests.analytics_fixtures import (  # noqa: E402
    NOTEBOOKS,
    add_events,
    gw_get,
    make_store,
    readonly_url,
)
from tests.docker_fixtures import require_images  # noqa: E402
from tests.hubtest import REPO, free_port  # noqa: E402

pytestmark = [pytest.mark.docker]

ANALYTICS_IMAGE = "hub-ext/analytics:2026.11"


def test_container_config_is_locked_down(tmp_path):
    """The pure builder: what every sandbox container is made of."""
    spec = SandboxSpec(
        name="analytics ds101/know",
        argv=("/opt/venv/bin/python", "-m", "x"),
        env={"KG_AUTH_TOKEN": "gateway-token-secret"},
        scratch=tmp_path / "run",
        binds=(Bind(tmp_path / "nb.ipynb", "/srv/api/notebook.ipynb"),),
        limits=Limits(memory=512 * 1024**2, cpu=0.5, pids=64),
    )
    create, host = container_config(spec, image=ANALYTICS_IMAGE, uid=1000)
    assert create["user"] == "1000:1000" and create["network_disabled"] is True
    assert create["entrypoint"] == [] and create["image"] == ANALYTICS_IMAGE
    assert host["network_mode"] == "none" and host["read_only"] is True
    assert host["cap_drop"] == ["ALL"] and host["security_opt"] == ["no-new-privileges"]
    assert host["mem_limit"] == host["memswap_limit"] == 512 * 1024**2
    assert host["nano_cpus"] == 500_000_000 and host["pids_limit"] == 64
    assert host["binds"][str(tmp_path / "nb.ipynb")]["mode"] == "ro"
    assert host["binds"][str(tmp_path / "run")] == {"bind": "/srv/run", "mode": "rw"}
    # the engine's copy of the output is bounded as the service's (Limits.log)
    assert host["log_config"] == {
        "type": "json-file",
        "config": {"max-size": str(8 * 1024**2), "max-file": "2"},
    }
    assert "gateway-token-secret" not in repr(spec)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_container_s_flood_of_output_leaves_a_log_of_its_limit(docker_client, tmp_path):
    """The container's output is copied into the run's log by the service: what it prints
    is the attacker's to choose, and the log keeps its newest ``Limits.log`` bytes."""
    require_images(docker_client, ANALYTICS_IMAGE)
    sandbox = make_sandbox("docker", log=logging.getLogger("test"))
    code = (
        "import os\nchunk = b'd' * 1024**2\n"
        "for _ in range(24):\n    os.write(1, chunk)\n"
        "os.write(1, b'last-of-the-container\\n')\n"
    )
    spec = SandboxSpec(
        name="flood",
        argv=("/opt/venv/bin/python", "-c", code),
        env={},
        scratch=tmp_path / "run",
        limits=Limits(wall=120, log=1024**2),
    )
    log = tmp_path / "flood.log"
    result = await sandbox.run(spec, log)
    assert result.returncode == 0, result.output[-300:]
    assert log.stat().st_size < 1024**2 + 200
    assert result.output.endswith("last-of-the-container\n")


@pytest_asyncio.fixture(loop_scope="session")
async def docker_supervisor(docker_client, tmp_path):
    require_images(docker_client, ANALYTICS_IMAGE)
    store = make_store(tmp_path / "events.sqlite")
    for course, learner in (("ds101", "alice"), ("stat200", "carol")):
        add_events(store, [(learner, "viewed", "2026-10-01 10:00:00")], course=course)
    # the extracts, as the analytics service makes them for the Docker sandbox's user
    extracts = CourseExtracts(
        store_url=readonly_url(store),
        root=str(tmp_path / "runtime" / "data"),
        file_mode=0o644,
        dir_mode=0o755,
    )
    for course in ("ds101", "stat200"):
        extracts.build(course)
    sup = GatewaySupervisor(
        pool_size=1,
        runtime_dir=str(tmp_path / "runtime"),
        sandbox="docker",
        execution_timeout=30.0,
        queue_timeout=30.0,
        health_interval=2.0,
    )
    yield sup
    await sup.stop_all()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_notebook_in_a_container_reaches_nothing(
    docker_supervisor, docker_client, tmp_path
):
    sup = docker_supervisor
    gw = await sup.publish("ds101", "know", check_notebook(NOTEBOOKS / "trivial.ipynb"))
    r = await gw_get(gw, "/learners/alice", timeout=60)
    assert r.status_code == 200 and r.json()["events"] == 1, r.text

    attacker = await sup.publish("ds101", "attacker", check_notebook(NOTEBOOKS / "attacker.ipynb"))
    secret = tmp_path / "hub_secret"
    secret.write_text("cookie secret")
    files = [
        str(secret),
        str(REPO / "README.md"),
        str(tmp_path / "runtime" / "data" / "stat200" / "events.sqlite"),
        "/etc/shadow",
    ]
    listener = free_port()
    r = await gw_get(
        attacker, "/attack", params={"file": files, "port": [listener, 8081]}, timeout=60
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["environ"]["secrets"] == {} and got["env"] == []
    assert got["environ"]["gateway_tokens"] <= 1
    assert got["uid"] == 1000 and got["capabilities"] == ["0000000000000000"]
    for path, outcome in got["files"].items():
        assert "refused" in outcome, (path, outcome)
    assert "refused" in got["write_store"], got["write_store"]
    assert got["courses"] == {"got": ["ds101"]}
    assert "refused" in got["sources"]
    for port, outcome in got["ports"].items():
        assert "refused" in outcome, (port, outcome)

    # what the engine says about the container
    containers = docker_client.containers(filters={"label": "org.hub-ext.api=attacker"})
    assert len(containers) == 1
    info = docker_client.inspect_container(containers[0]["Id"])
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] and host["Memory"] and host["NanoCpus"]
    assert info["Config"]["User"] == "1000:1000"
    assert not any(k.startswith(("JUPYTERHUB_", "CONFIGPROXY_")) for k in info["Config"]["Env"])

    # withdrawn: the container is gone, its scratch space too
    scratch = attacker.spec.sandbox.scratch
    assert await sup.withdraw("ds101", "attacker")
    assert not docker_client.containers(all=True, filters={"label": "org.hub-ext.api=attacker"})
    assert not scratch.exists()
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)
