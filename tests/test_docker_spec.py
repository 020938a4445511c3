"""What the Docker backend creates, as data: no Docker engine needed.

The spawner is built with a stand-in for the hub's user object (a name and groups), which
is all the course logic reads; everything else is the real CourseDockerSpawner, and what
it gives DockerSpawner is read back through DockerSpawner's own properties
(``volume_binds``, ``extra_host_config``, ...).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub
from traitlets import TraitError
from traitlets.config import Config

from hub_ext.courses import Catalog, CourseCatalog
from hub_ext.spawners.base import COURSE_KERNEL_SPEC_MANAGER, SINGLEUSER_DIR
from hub_ext.spawners.docker import CourseDockerSpawner, workspace_volume_name
from hub_ext.spawners.docker_objects import (
    bridge_name,
    course_host_config,
    escape_name,
    firewall_chain,
    firewall_rules,
    network_create_kwargs,
    network_problem,
    volume_name,
)
from tests.conftest import day, write_catalog


def test_course_host_config_limits_and_drops_privileges():
    host = course_host_config(mem_limit=2 * 1024**3, pids_limit=512)
    assert host == {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "memswap_limit": 2 * 1024**3,
        "pids_limit": 512,
    }
    assert course_host_config(mem_limit=None, pids_limit=None) == {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }


def test_volume_names_are_escaped_and_never_shared():
    template = "hub-ext_{course}_{username}"
    assert escape_name("alice.b@uni.edu") == "alice-2eb-40uni-2eedu"
    assert (
        volume_name(template, course="ds101", username="alice.b@uni.edu")
        == "hub-ext_ds101_alice-2eb-40uni-2eedu"
    )
    # with "-" as the separator these two would collide; "_" is in neither part
    a = volume_name(template, course="x-2", username="d-y")
    b = volume_name(template, course="x-2-d", username="2dy")
    assert a != b
    with pytest.raises(ValueError, match="not a valid Docker volume name"):
        volume_name("/srv/{course}/{username}", course="ds101", username="alice")


def test_learners_networks_are_internal_or_not_and_never_talk():
    hub_only = network_create_kwargs("campus", "hub-only")
    internet = network_create_kwargs("campus-internet", "internet")
    assert hub_only["internal"] is True and internet["internal"] is False
    for kwargs in (hub_only, internet):
        assert kwargs["driver"] == "bridge"
        assert kwargs["options"]["com.docker.network.bridge.enable_icc"] == "false"
        assert len(kwargs["options"]["com.docker.network.bridge.name"]) <= 15
    assert bridge_name("campus") != bridge_name("campus-internet")
    with pytest.raises(ValueError, match="unknown network kind"):
        network_create_kwargs("x", "everything")

    inspected = {
        "Name": "campus",
        "Driver": "bridge",
        "Internal": True,
        "Options": {"com.docker.network.bridge.enable_icc": "false"},
    }
    assert network_problem(inspected, "hub-only") is None
    assert "not internal" in network_problem({**inspected, "Internal": False}, "hub-only")
    assert network_problem({**inspected, "Internal": False}, "internet") is None
    assert "reach each other" in network_problem({**inspected, "Options": {}}, "internet")
    assert "not a bridge" in network_problem({**inspected, "Driver": "overlay"}, "hub-only")


def test_host_firewall_accepts_replies_and_the_hub_port_only():
    chain = firewall_chain("campus")
    assert chain.startswith("HUB-EXT-") and len(chain) <= 28
    rules = firewall_rules(chain, "hx-abc", 8081)
    assert rules["jump"] == ["INPUT", "-i", "hx-abc", "-j", chain]
    assert rules["accept"] == [
        [chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        [chain, "-p", "tcp", "--dport", "8081", "-j", "ACCEPT"],
    ]
    assert rules["drop"] == [chain, "-j", "DROP"]


@pytest.fixture
def spawner_for(tmp_path):
    """A CourseDockerSpawner for a user's course server, on a small catalog."""
    path = write_catalog(
        tmp_path,
        [
            {
                "id": "ds101",
                "title": "Data analysis",
                "image": "hub-ext/course-ds101:2026.11",
                "opens": day(-1),
                "closes": day(30),
                "mem_limit": "1G",
                "cpu_limit": 0.5,
                "materials": "materials/ds101",
                "learners": ["alice"],
            },
            {
                "id": "web101",
                "title": "The web",
                "image": "hub-ext/course-ds101:2026.11",
                "opens": day(-1),
                "closes": day(30),
                "network": "internet",
                "learners": ["alice"],
            },
            {
                "id": "noimage",
                "title": "No image",
                "opens": day(-1),
                "closes": day(30),
                "learners": ["alice"],
            },
        ],
    )
    catalog = CourseCatalog.instance()
    saved = catalog._catalog
    catalog.set_catalog(Catalog.load(path))

    def make(course: str, config: Config | None = None, user: str = "alice") -> CourseDockerSpawner:
        orm = SimpleNamespace(name=course, server=None, state={}, user_options={})
        groups = [
            SimpleNamespace(name=f"course:{c}:learner") for c in ("ds101", "web101", "noimage")
        ]
        who = SimpleNamespace(name=user, groups=groups, url=f"/user/{user}/", id=1)
        return CourseDockerSpawner(
            user=who,
            orm_spawner=orm,
            hub=Hub(),
            api_token="t0ken",
            oauth_client_id="c",
            config=config or Config(),
        )

    yield make
    catalog._catalog = saved


def applied(spawner) -> CourseDockerSpawner:
    spawner.apply_course(spawner.check_course())
    return spawner


def test_the_course_sets_dockerspawners_own_settings(spawner_for, tmp_path):
    s = applied(spawner_for("ds101"))
    assert s.image == "hub-ext/course-ds101:2026.11"
    assert s.mem_limit == 1024**3 and s.cpu_limit == 0.5
    assert s.volume_binds == {
        "hub-ext_ds101_alice": {"bind": "/home/jovyan/work", "mode": "rw"},
        str(tmp_path / "materials" / "ds101"): {
            "bind": "/home/jovyan/work/materials",
            "mode": "ro",
        },
        str(SINGLEUSER_DIR): {"bind": "/opt/hub-ext/singleuser", "mode": "ro"},
    }
    assert "--ServerApp.kernel_spec_manager_class=" + COURSE_KERNEL_SPEC_MANAGER in s.get_args()
    assert s.extra_host_config == {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "memswap_limit": 1024**3,
        "pids_limit": 1024,
    }
    assert s.extra_create_kwargs["labels"] == {
        "org.hub-ext.course": "ds101",
        "org.hub-ext.user": "alice",
        "org.hub-ext.server": "ds101",
        "org.hub-ext.kind": "course-server",
    }
    assert s.network_name == "hub-ext-learners" and s.use_internal_ip
    env = s.get_env()
    assert env["COURSE_ID"] == "ds101" and env["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work"
    assert env["PYTHONPATH"] == "/opt/hub-ext/singleuser"
    assert s.remove and s.pull_policy == "never" and s.options_form == ""


def test_an_internet_course_gets_the_internet_network(spawner_for):
    config = Config()
    config.CourseDockerSpawner.network_name = "campus"
    assert applied(spawner_for("web101", config)).network_name == "campus-internet"
    assert applied(spawner_for("ds101", config)).network_name == "campus"
    config.CourseDockerSpawner.internet_network_name = "campus-web"
    assert applied(spawner_for("web101", config)).network_name == "campus-web"


def test_a_deployers_settings_are_kept_beside_the_courses(spawner_for):
    config = Config()
    config.CourseDockerSpawner.volumes = {"/srv/datasets": {"bind": "/srv/data", "mode": "ro"}}
    config.CourseDockerSpawner.read_only_volumes = {"/srv/licences": "/opt/licences"}
    config.CourseDockerSpawner.extra_host_config = {"shm_size": "256m", "pids_limit": 64}
    config.CourseDockerSpawner.extra_create_kwargs = {"labels": {"team": "red"}}
    config.CourseDockerSpawner.workspace_volume_template = "ws_{course}_{username}"
    config.CourseDockerSpawner.workspace_path = "/home/jovyan"
    s = spawner_for("ds101", config)
    for _ in range(2):  # a second start begins from the deployer's settings again
        applied(s)
        binds = s.volume_binds
        assert binds["/srv/datasets"] == {"bind": "/srv/data", "mode": "ro"}
        assert binds["/srv/licences"] == {"bind": "/opt/licences", "mode": "ro"}
        assert binds["ws_ds101_alice"] == {"bind": "/home/jovyan", "mode": "rw"}
        assert len(binds) == 5  # and the materials, at /home/jovyan/materials, and the guard
        assert s.extra_host_config["shm_size"] == "256m"
        assert s.extra_host_config["pids_limit"] == 64  # the deployer's wins
        assert s.extra_host_config["cap_drop"] == ["ALL"]
        assert s.extra_create_kwargs["labels"]["team"] == "red"
        assert s.extra_create_kwargs["labels"]["org.hub-ext.course"] == "ds101"


def test_volume_names_use_dockerspawners_escape(spawner_for):
    config = Config()
    config.CourseDockerSpawner.escape = "legacy"
    s = spawner_for("ds101", config, user="Ann.B")
    assert s.workspace_volume == "hub-ext_ds101_Ann_2EB"
    assert workspace_volume_name(config, "ds101", "Ann.B") == "hub-ext_ds101_Ann_2EB"
    assert spawner_for("ds101", user="ann.b").workspace_volume == "hub-ext_ds101_ann-2eb"
    assert workspace_volume_name(Config(), "ds101", "ann.b") == "hub-ext_ds101_ann-2eb"
    config = Config()
    config.DockerSpawner.workspace_volume_template = "ignored_{course}_{username}"
    config.CourseDockerSpawner.workspace_volume_template = "ws_{course}_{username}"
    assert workspace_volume_name(config, "ds101", "ann") == "ws_ds101_ann"


def test_a_shared_workspace_volume_is_refused(spawner_for):
    config = Config()
    config.CourseDockerSpawner.workspace_volume_template = "hub-ext_{course}"
    with pytest.raises(TraitError, match=r"has no \{username\}: every learner of a course"):
        spawner_for("ds101", config).workspace_volume_template  # noqa: B018
    with pytest.raises(TraitError, match=r"has no \{username\}"):
        workspace_volume_name(config, "ds101", "alice")


def test_a_course_without_image_is_refused_with_its_name(spawner_for):
    from jupyterhub.spawner import SpawnException

    s = spawner_for("noimage")
    with pytest.raises(
        SpawnException, match=r"noimage \(No image\) has no image in the course catalog"
    ):
        applied(s)


async def test_user_chosen_images_are_not_allowed(spawner_for):
    from tornado import web

    s = spawner_for("ds101")
    with pytest.raises(web.HTTPError, match="choosing another image is not allowed"):
        await s.check_allowed("someone/else:latest")


async def test_deployer_hooks_run_after_the_course_in_order(spawner_for):
    """modify_course_spawner_hook, then JupyterHub's pre_spawn_hook, both after the course
    is applied: each can change what the course set."""
    calls = []

    async def course_hook(spawner, course):
        calls.append(("course", course.id, spawner.image))
        spawner.mem_limit = 2 * 1024**3

    def pre_spawn(spawner):
        calls.append(("pre_spawn", spawner.mem_limit))
        spawner.volumes = {**spawner.volumes, "/srv/extra": "/srv/extra"}

    config = Config()
    config.CourseDockerSpawner.modify_course_spawner_hook = course_hook
    config.CourseDockerSpawner.pre_spawn_hook = pre_spawn
    s = spawner_for("ds101", config)
    await s.run_pre_spawn_hook()
    assert calls == [
        ("course", "ds101", "hub-ext/course-ds101:2026.11"),
        ("pre_spawn", 2 * 1024**3),
    ]
    assert "/srv/extra" in s.volume_binds and "hub-ext_ds101_alice" in s.volume_binds


def test_the_hub_api_guard_drops_groups_from_user_models_only():
    import json

    from hub_ext.spawners.hub_api_guard import filter_user_models

    alice = {"kind": "user", "name": "alice", "groups": ["course:stat200:learner"]}
    body = json.dumps(alice).encode()
    for path in ("user", "users/alice", "users/alice/"):
        assert json.loads(filter_user_models(path, body)) == {"kind": "user", "name": "alice"}
    listed = json.loads(filter_user_models("users", json.dumps([alice, alice]).encode()))
    assert listed == [{"kind": "user", "name": "alice"}] * 2
    assert filter_user_models("users/alice/activity", body) == body
    assert filter_user_models("groups/x", body) == body
    assert filter_user_models("user", b"not json") == b"not json"


def test_the_guard_forwards_only_the_hub_api_and_the_services_it_is_given():
    """A learner's container reaches the grading service through the guard, and nothing
    else of the host: not another service (analytics), not the hub's pages."""
    import re

    from hub_ext.spawners.hub_api_guard import HubAPIGuard

    guard = HubAPIGuard(services={"/services/grading/": "http://127.0.0.1:10104"})
    routes = [
        (re.compile(pattern + "$"), kwargs["target"]) for pattern, _, kwargs in guard.handlers()
    ]

    def target(path):
        return next((t for rx, t in routes if rx.match(path)), None)

    assert target("/hub/api/user") == "http://127.0.0.1:8081"
    assert target("/services/grading/api/courses") == "http://127.0.0.1:10104"
    for path in (
        "/services/analytics/ds101/",
        "/services/gradingx/",
        "/hub/home",
        "/user/bob/ds101/",
    ):
        assert target(path) is None, path
