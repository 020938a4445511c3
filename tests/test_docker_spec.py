"""What the Docker backend creates, as data: no Docker engine needed.

The spawner is built with a stand-in for the hub's user object (a name and groups), which
is all the course logic reads; everything else is the real CourseDockerSpawner.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub
from traitlets.config import Config

from hub_ext.courses import Catalog, CourseCatalog
from hub_ext.docker_backend import ContainerSpec, escape_name, workspace_volume_name
from hub_ext.spawner import CourseDockerSpawner
from tests.conftest import day, write_catalog


def spec(**overrides) -> ContainerSpec:
    values = dict(
        name="hub-ext-alice--ds101",
        image="hub-ext/course-ds101:2026.11",
        command=("jupyterhub-singleuser", "--debug"),
        environment={"COURSE_ID": "ds101"},
        port=8888,
        network="hub-ext-learners",
        workspace_volume="hub-ext_ds101_alice",
        workspace_path="/home/jovyan/work",
        materials="/srv/courses/ds101/materials",
        materials_path="/home/jovyan/work/materials",
        mem_limit=2 * 1024**3,
        cpu_limit=1.5,
        pids_limit=512,
    )
    values.update(overrides)
    return ContainerSpec(**values)


def test_host_config_enforces_limits_volume_and_read_only_materials():
    host = spec().host_config_kwargs()
    assert host["binds"] == {
        "hub-ext_ds101_alice": {"bind": "/home/jovyan/work", "mode": "rw"},
        "/srv/courses/ds101/materials": {"bind": "/home/jovyan/work/materials", "mode": "ro"},
    }
    assert host["mem_limit"] == host["memswap_limit"] == 2 * 1024**3
    assert host["nano_cpus"] == 1_500_000_000
    assert host["pids_limit"] == 512
    assert host["network_mode"] == "hub-ext-learners"
    assert host["auto_remove"] is True
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges"]
    assert "port_bindings" not in host  # reached on the learners' network, not published


def test_no_limits_no_materials_and_published_port():
    host = spec(
        mem_limit=None, cpu_limit=None, pids_limit=None, materials=None, publish_host_ip="127.0.0.1"
    ).host_config_kwargs()
    assert set(host["binds"]) == {"hub-ext_ds101_alice"}
    assert not {"mem_limit", "memswap_limit", "nano_cpus", "pids_limit"} & set(host)
    assert host["port_bindings"] == {8888: ("127.0.0.1",)}


def test_create_kwargs_keep_the_course_image_whatever_the_extras_say():
    kwargs = spec(
        labels={"org.hub-ext.course": "ds101"},
        extra_create={
            "image": "someone/else:latest",
            "labels": {"team": "red"},
            "working_dir": "/tmp",
        },
    ).create_kwargs()
    assert kwargs["image"] == "hub-ext/course-ds101:2026.11"
    assert kwargs["labels"] == {"org.hub-ext.course": "ds101", "team": "red"}
    assert kwargs["working_dir"] == "/tmp"
    assert kwargs["volumes"] == ["/home/jovyan/work", "/home/jovyan/work/materials"]
    assert kwargs["command"] == ["jupyterhub-singleuser", "--debug"]
    assert kwargs["ports"] == [8888]


def test_extra_host_config_merges_key_by_key():
    host = spec(
        extra_host_config={
            "binds": {"/srv/data": {"bind": "/srv/data", "mode": "ro"}},
            "shm_size": "256m",
        }
    ).host_config_kwargs()
    assert set(host["binds"]) == {
        "hub-ext_ds101_alice",
        "/srv/courses/ds101/materials",
        "/srv/data",
    }
    assert host["shm_size"] == "256m"


def test_volume_names_are_escaped_and_never_shared():
    template = "hub-ext_{course}_{username}"
    assert escape_name("alice.b@uni.edu") == "alice-2eb-40uni-2eedu"
    assert (
        workspace_volume_name(template, course="ds101", username="alice.b@uni.edu")
        == "hub-ext_ds101_alice-2eb-40uni-2eedu"
    )
    # with "-" as the separator these two would collide; "_" is in neither part
    a = workspace_volume_name(template, course="x-2", username="d-y")
    b = workspace_volume_name(template, course="x-2-d", username="2dy")
    assert a != b
    with pytest.raises(ValueError, match="not a valid Docker volume name"):
        workspace_volume_name("/srv/{course}/{username}", course="ds101", username="alice")


@pytest.fixture
def spawner_for(tmp_path):
    """A CourseDockerSpawner for a user's course server, on a one-course catalog."""
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
        groups = [SimpleNamespace(name=f"course:{c}:learner") for c in ("ds101", "noimage")]
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


def test_spawner_spec_comes_from_the_catalog(spawner_for, tmp_path):
    s = spawner_for("ds101")
    course = s.check_course()
    s.apply_course(course)
    result = s.container_spec(course, ["jupyterhub-singleuser"])
    assert result.image == "hub-ext/course-ds101:2026.11"
    assert result.workspace_volume == "hub-ext_ds101_alice"
    assert result.mem_limit == 1024**3 and result.cpu_limit == 0.5
    assert result.materials == str(tmp_path / "materials" / "ds101")
    assert result.materials_path == "/home/jovyan/work/materials"
    assert result.network == "hub-ext-learners" and result.publish_host_ip is None
    assert result.environment["COURSE_ID"] == "ds101"
    assert result.environment["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work"
    assert result.labels == {
        "org.hub-ext.course": "ds101",
        "org.hub-ext.user": "alice",
        "org.hub-ext.server": "ds101",
        "org.hub-ext.kind": "course-server",
    }
    assert result.remove and s.pull_policy == "never" and s.options_form == ""


def test_spawner_configuration_reaches_the_spec(spawner_for):
    config = Config()
    config.CourseDockerSpawner.workspace_volume_template = "ws_{course}_{username}"
    config.CourseDockerSpawner.workspace_path = "/home/jovyan"
    config.CourseDockerSpawner.pids_limit = None
    config.CourseDockerSpawner.network_name = "campus-learners"
    s = spawner_for("ds101", config)
    course = s.check_course()
    s.apply_course(course)
    result = s.container_spec(course, ["x"])
    assert result.workspace_volume == "ws_ds101_alice"
    assert result.materials_path == "/home/jovyan/materials"
    assert result.pids_limit is None
    assert result.host_config_kwargs()["network_mode"] == "campus-learners"


def test_a_course_without_image_is_refused_with_its_name(spawner_for):
    from jupyterhub.spawner import SpawnException

    s = spawner_for("noimage")
    with pytest.raises(
        SpawnException, match=r"noimage \(No image\) has no image in the course catalog"
    ):
        s.apply_course(s.check_course())


async def test_user_chosen_images_are_not_allowed(spawner_for):
    from tornado import web

    s = spawner_for("ds101")
    with pytest.raises(web.HTTPError, match="choosing another image is not allowed"):
        await s.check_allowed("someone/else:latest")
