"""The Swarm backend's pure builders (hub_ext.spawners.docker_objects): no engine needed."""

from __future__ import annotations

import pytest

from hub_ext.spawners.docker_objects import (
    gwbridge_address,
    service_mounts,
    service_network_create_kwargs,
    with_pids_limit,
    workspace_constraint,
)


def test_mounts_bind_host_paths_and_label_only_the_workspace_volume():
    binds = {
        "hub-ext_ds101_alice": {"bind": "/home/jovyan/work", "mode": "rw"},
        "/srv/materials/ds101": {"bind": "/home/jovyan/work/materials", "mode": "ro"},
        "site-data": {"bind": "/srv/site", "mode": "ro"},
    }
    labels = {"hub-ext_ds101_alice": {"org.hub-ext.user": "alice"}}
    mounts = {m["Target"]: m for m in service_mounts(binds, volume_labels=labels)}
    work = mounts["/home/jovyan/work"]
    assert (work["Type"], work["Source"], work["ReadOnly"]) == (
        "volume",
        "hub-ext_ds101_alice",
        False,
    )
    assert work["VolumeOptions"] == {"Labels": {"org.hub-ext.user": "alice"}}
    materials = mounts["/home/jovyan/work/materials"]
    assert (materials["Type"], materials["ReadOnly"]) == ("bind", True)
    assert "VolumeOptions" not in materials
    # another learner's labels never reach a deployer's volume
    assert mounts["/srv/site"]["VolumeOptions"] == {"Labels": {}}


def test_a_volume_driver_goes_on_named_volumes_only():
    binds = {"ws": {"bind": "/w", "mode": "rw"}, "/m": {"bind": "/m", "mode": "ro"}}
    mounts = service_mounts(binds, volume_driver="nfs", volume_driver_options={"o": "x"})
    assert mounts[0]["VolumeOptions"]["DriverConfig"] == {"Name": "nfs", "Options": {"o": "x"}}
    assert "VolumeOptions" not in mounts[1]


def test_pids_limit_joins_the_other_limits():
    kwargs = {"name": "s", "task_template": {"Resources": {"Limits": {"MemoryBytes": 5}}}}
    out = with_pids_limit(kwargs, 256)
    assert out["task_template"]["Resources"]["Limits"] == {"MemoryBytes": 5, "Pids": 256}
    assert kwargs["task_template"]["Resources"]["Limits"] == {"MemoryBytes": 5}  # not changed
    assert with_pids_limit({"task_template": {}}, 8)["task_template"]["Resources"] == {
        "Limits": {"Pids": 8}
    }
    assert with_pids_limit(kwargs, None) == kwargs


def test_workspace_constraint_accepts_node_ids_only():
    assert workspace_constraint("vsuddqga8nz6") == "node.id==vsuddqga8nz6"
    for bad in ("", "a==b", "x,node.role==manager", "id with space"):
        with pytest.raises(ValueError, match="not a Swarm node id"):
            workspace_constraint(bad)


def test_each_server_has_its_own_attachable_overlay():
    kwargs = service_network_create_kwargs("s-net", {"org.hub-ext.kind": "learner-network"})
    assert kwargs["driver"] == "overlay" and kwargs["attachable"] is True
    assert kwargs["labels"] == {"org.hub-ext.kind": "learner-network"}


def test_gwbridge_address_of_a_container():
    gwbridge = {"Containers": {"abc": {"IPv4Address": "172.18.0.3/16"}}}
    assert gwbridge_address(gwbridge, "abc") == "172.18.0.3"
    assert gwbridge_address(gwbridge, "other") is None
    assert gwbridge_address({"Containers": None}, "abc") is None


@pytest.mark.parametrize(
    ("backend", "sandbox"),
    [("local", None), ("docker", "docker"), ("swarm", "docker"), ("kube", "kube")],
)
def test_a_swarm_hub_runs_untrusted_code_in_containers(tmp_path, backend, sandbox):
    """On Swarm, as on Docker, teachers' notebooks and learners' hand-ins run in the Docker
    sandbox (a container on the hub's engine), not in the hub's own bubblewrap sandbox; on
    Kubernetes, in pods beside the service (the Kubernetes sandbox)."""
    from hub_ext.hubconfig import read_hub_config
    from tests.conftest import day, write_catalog

    catalog = write_catalog(
        tmp_path / "catalog",
        [
            {
                "id": "ds101",
                "title": "Data analysis",
                "opens": day(-1),
                "closes": day(30),
                "image": "hub-ext/course-ds101:2026.11",
                "learners": ["alice"],
            }
        ],
    )
    config_file = tmp_path / "jupyterhub_config.py"
    config_file.write_text(
        "from hub_ext.hubconfig import configure_course_hub\n"
        f"configure_course_hub(get_config(), {str(catalog)!r}, backend={backend!r},"
        f" data_dir={str(tmp_path / 'data')!r})\n"
    )
    services = {s["name"]: s for s in read_hub_config(config_file).JupyterHub.services}
    for name, option in (
        ("grading", "Autograder.sandbox"),
        ("analytics", "GatewaySupervisor.sandbox"),
    ):
        chosen = [a for a in services[name]["command"] if a.startswith(f"--{option}=")]
        assert chosen == ([f"--{option}={sandbox}"] if sandbox else []), services[name]
