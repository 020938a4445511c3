"""The Kubernetes backend, as data: no cluster runs on this machine.

What runs here for real: the catalog (``hub_config/z2jh/courses.yaml``, the deployment's
example), JupyterHub's own ORM and ``User`` (in-memory SQLite), ``CourseKubeSpawner`` with
kubespawner's own ``get_pod_manifest()`` and ``get_pvc_manifest()``, and the pure builders
of ``hub_ext.spawners.kube_objects``. Every manifest is validated, offline, against the
Kubernetes API's OpenAPI schemas of :data:`K8S_VERSIONS` (``kubernetes-validate``, strict:
an unknown field fails too), then inspected for the course's rules.

What a cluster would add and these tests cannot show: that the API server admits the
objects (admission plugins, Pod Security, quotas), that the scheduler honours the node
selectors and tolerations, that the CNI enforces the NetworkPolicies (here a small model of
their documented semantics, :func:`allows`, plays it), that the claims bind. An operator
runs the same manifests against a real cluster with ``kubectl apply --dry-run=server``
(README, "Kubernetes").

kubespawner reads a kubeconfig when a spawner is made: the tests give it one that names an
unreachable address (127.0.0.1:9); nothing here ever contacts it. (kubernetes_asyncio reads
``$KUBECONFIG`` once, when it is imported, so the fixture sets its default location.)
"""

from __future__ import annotations

import ipaddress
import shutil
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import SpawnException
from jupyterhub.user import User
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from traitlets import TraitError
from traitlets.config import Config

from hub_ext.courses import Catalog, CatalogError, CourseCatalog
from hub_ext.sandbox.base import Bind, Limits, SandboxSpec
from hub_ext.spawners.base import start_refusal
from hub_ext.spawners.kube import CourseKubeSpawner, kube_hub_config, main
from hub_ext.spawners.kube_objects import (
    COURSE_LABEL,
    course_manifests,
    course_network_policy,
    course_pod_settings,
    prepull_daemonset,
    sandbox_network_policy,
    sandbox_pod,
)
from tests.hubtest import REPO

#: the oldest Kubernetes the zero-to-jupyterhub chart 4.4.0 supports (kubeVersion >=1.28),
#: one between, and the newest kubernetes-validate knows
K8S_VERSIONS = ("1.28", "1.33", "1.37")
CATALOG = REPO / "hub_config" / "z2jh" / "courses.yaml"
#: the example catalog's term: ds101, stat200, dl300 open; genomics400 opens 2026-11-01;
#: hist100 closed (and past its grace period)
NOW = datetime(2026, 10, 15, tzinfo=UTC)
TOKEN = "kube-test-api-token-0000"


def validate(manifest: dict) -> dict:
    """``manifest``, valid (strictly) for every version of :data:`K8S_VERSIONS`."""
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.absolute_path))
            pytest.fail(
                f"{manifest['kind']} invalid for Kubernetes {version} at {where}: {e.message}"
            )
    return manifest


@pytest.fixture(scope="module")
def kube_env(tmp_path_factory):
    """The example catalog (its materials folders made), a kubeconfig that names no cluster."""
    home = tmp_path_factory.mktemp("kube")
    (home / "kubeconfig").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    mp = pytest.MonkeyPatch()
    mp.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(home / "kubeconfig"))
    shutil.copy(CATALOG, home / "courses.yaml")
    for course in ("ds101", "stat200", "hist100"):
        (home / "materials" / course).mkdir(parents=True)
    catalog = Catalog.load(home / "courses.yaml")
    holder = CourseCatalog.instance()
    saved = holder._catalog
    holder.set_catalog(catalog)
    yield home, catalog
    holder._catalog = saved
    mp.undo()


@pytest.fixture
def spawner_for(kube_env):
    """``make(course, user, groups, config, now)``: a CourseKubeSpawner for ``user``'s server
    ``course``, made by JupyterHub's own ``User`` over its ORM (in-memory SQLite)."""
    home, _ = kube_env
    db = orm.new_session_factory("sqlite://")()

    def make(course: str, user: str = "alice", groups=(), config: Config | None = None, now=NOW):
        config = config or Config()
        config.CourseKubeSpawner.materials_root = str(home / "materials")
        config.CourseKubeSpawner.now = lambda: now
        orm_user = db.query(orm.User).filter_by(name=user).first() or orm.User(name=user)
        db.add(orm_user)
        for name in groups:
            group = db.query(orm.Group).filter_by(name=name).first() or orm.Group(name=name)
            group.users.append(orm_user)
            db.add(group)
        db.commit()
        hub_user = User(
            orm_user,
            settings={"spawner_class": CourseKubeSpawner, "config": config, "hub": Hub(), "db": db},
        )
        if course not in hub_user.orm_spawners:
            hub_user._new_orm_spawner(course, course)
        spawner = hub_user.get_spawner(course)
        spawner.api_token = TOKEN
        return spawner

    yield make
    db.close()


async def as_dict(obj) -> dict:
    async with ApiClient() as api:
        return api.sanitize_for_serialization(obj)


async def started(spawner) -> tuple[dict, dict]:
    """The course applied (the stages before kubespawner's start), then the pod and the
    claim kubespawner would create, as the API takes them."""
    await spawner.run_pre_spawn_hook()
    pod = await as_dict(await spawner.get_pod_manifest())
    pvc = await as_dict(spawner.get_pvc_manifest())
    return validate(pod), validate(pvc)


def container(pod: dict) -> dict:
    (notebook,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return notebook


# --------------------------------------------------------------------------- the catalog


def test_the_example_catalog_has_its_kubernetes_fields(kube_env):
    _, catalog = kube_env
    dl300 = catalog["dl300"].kubernetes
    assert dl300.node_selector == {"hub-ext.org/pool": "gpu"}
    assert dl300.extra_resource_limits == {"nvidia.com/gpu": 1}
    assert (dl300.storage_class, dl300.storage_size) == ("fast-ssd", "50Gi")
    assert catalog["ds101"].kubernetes.teacher == {
        "cpu_limit": 2,
        "mem_limit": 4 * 1024**3,
        "mem_guarantee": 1024**3,
    }
    assert catalog["stat200"].kubernetes.egress == (("10.20.30.40/32", (5432,)),)


def test_bad_kubernetes_fields_are_named_with_their_line(tmp_path):
    text = """\
courses:
  - id: gpu1
    title: GPU
    opens: 2026-09-01
    closes: 2026-12-01
    kubernetes:
      storage: {size: lots}
      teacher: {mem_limit: 4Q}
      egress:
        - {cidr: 10.0.0.1/8}
      tolerations:
        - {key: gpu, operator: Sometimes}
      nodeSelector: {pool: gpu}
"""
    (tmp_path / "courses.yaml").write_text(text)
    with pytest.raises(CatalogError) as e:
        Catalog.load(tmp_path / "courses.yaml")
    problems = [str(p) for p in e.value.problems]
    joined = "\n".join(problems)
    assert "line 7: course 'gpu1': kubernetes.storage.size: 'lots' is not valid" in joined
    assert "line 12: course 'gpu1': kubernetes.tolerations.0.operator: 'Sometimes'" in joined
    assert "line 13: course 'gpu1': kubernetes: unknown key 'nodeSelector'" in joined
    assert len(problems) == 3  # the block is left out where the schema refuses it

    text = text.replace("      storage: {size: lots}\n", "").replace(
        "      tolerations:\n        - {key: gpu, operator: Sometimes}\n      nodeSelector: {pool: gpu}\n",
        "",
    )
    (tmp_path / "courses.yaml").write_text(text)
    with pytest.raises(CatalogError) as e:
        Catalog.load(tmp_path / "courses.yaml")
    where = f"{tmp_path / 'courses.yaml'}: "
    assert [str(p) for p in e.value.problems] == [
        where + "line 7: course 'gpu1': kubernetes: teacher.mem_limit: '4Q' is not valid: "
        "use bytes, or a number with one of the suffixes K, M, G or T: 512M, 2G, 1.5G",
        where + "line 8: course 'gpu1': kubernetes: egress[0].cidr: '10.0.0.1/8' is not a "
        "network (10.0.0.1/8 has host bits set)",
    ]


# --------------------------------------------------------------------------- the pod


@pytest.mark.parametrize(
    ("course", "role", "limits", "requests"),
    [
        (
            "ds101",
            "learner",
            {"cpu": "1.0", "memory": "2147483648"},
            {"cpu": "0.2", "memory": "536870912"},
        ),
        (
            "ds101",
            "teacher",
            {"cpu": "2.0", "memory": "4294967296"},
            {"cpu": "0.2", "memory": "1073741824"},
        ),
        ("genomics400", "learner", {"memory": str(64 * 1024**3)}, {"memory": str(32 * 1024**3)}),
        ("genomics400", "teacher", {"memory": str(128 * 1024**3)}, {"memory": str(64 * 1024**3)}),
    ],
)
async def test_limits_and_requests_per_course_and_role(spawner_for, course, role, limits, requests):
    who = "tina" if role == "teacher" else "alice"
    s = spawner_for(
        course, who, [f"course:{course}:{role}"], now=datetime(2026, 11, 15, tzinfo=UTC)
    )
    pod, _ = await started(s)
    resources = container(pod)["resources"]
    for kind, expected in (("limits", limits), ("requests", requests)):
        got = resources[kind]
        # kubespawner gives quantities as numbers (bytes, cores); the API takes both forms
        assert {k: str(got[k]) for k in expected} == expected, kind
    assert pod["metadata"]["labels"][COURSE_LABEL] == course
    assert pod["metadata"]["labels"]["hub-ext.org/role"] == role


async def test_the_pod_is_the_courses_and_nothing_else(spawner_for, kube_env):
    home, _ = kube_env
    s = spawner_for("ds101", "alice", ["course:ds101:learner"])
    pod, pvc = await started(s)
    spec, notebook = pod["spec"], container(pod)
    assert notebook["image"] == "registry.example.edu/hub-ext/course-ds101:2026.11"
    assert notebook["args"][0] == "jupyterhub-singleuser"
    assert '--KernelSpecManager.allowed_kernelspecs=["python3"]' in notebook["args"]
    assert notebook["workingDir"] == "/home/jovyan/work"
    mounts = {m["mountPath"]: m for m in notebook["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    workspace = mounts["/home/jovyan/work"]
    assert not workspace.get("readOnly")
    assert (
        volumes[workspace["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    )
    materials = mounts["/home/jovyan/work/materials"]
    assert materials["readOnly"] and materials["subPath"] == "ds101"
    assert volumes[materials["name"]]["persistentVolumeClaim"] == {
        "claimName": "hub-ext-materials",
        "readOnly": True,
    }
    guard = mounts["/opt/hub-ext/singleuser"]
    assert guard["readOnly"] and "emptyDir" in volumes[guard["name"]]
    (copier,) = spec["initContainers"]
    assert copier["image"] == "hub-ext/hub:2026.11"
    assert copier["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["COURSE_ID"] == "ds101" and env["PYTHONPATH"] == "/opt/hub-ext/singleuser"
    security = notebook["securityContext"]
    assert security["runAsUser"] == 1000 and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["fsGroup"] == 100
    assert spec.get("automountServiceAccountToken") is False
    # the claim: per learner per course, the course's class and size, kept when deleted
    assert pvc["metadata"]["name"] == "hub-ext-alice--ds101"
    assert pvc["spec"]["storageClassName"] == "standard-rwo"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert s.storage_pvc_ensure and s.delete_pvc is False


async def test_a_gpu_course_goes_to_the_gpu_pool(spawner_for):
    s = spawner_for("dl300", "bob", ["course:dl300:learner"])
    pod, pvc = await started(s)
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"hub-ext.org/pool": "gpu"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert "materials" not in {m["name"].split("-")[-1] for m in container(pod)["volumeMounts"]}


async def test_a_deployers_settings_stay_beside_the_courses(spawner_for):
    config = Config()
    config.KubeSpawner.node_selector = {"topology.kubernetes.io/zone": "a"}
    config.KubeSpawner.tolerations = [{"key": "spot", "operator": "Exists"}]
    config.KubeSpawner.extra_labels = {"hub.jupyter.org/network-access-hub": "true"}
    config.KubeSpawner.volumes = {"shared": {"name": "shared", "emptyDir": {}}}
    config.KubeSpawner.volume_mounts = [{"name": "shared", "mountPath": "/srv/shared"}]
    config.KubeSpawner.mem_guarantee = "256M"
    s = spawner_for("dl300", "bob", ["course:dl300:learner"], config)
    pod, _ = await started(s)
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"topology.kubernetes.io/zone": "a", "hub-ext.org/pool": "gpu"}
    assert {"key": "spot", "operator": "Exists"} in spec["tolerations"] and len(
        spec["tolerations"]
    ) == 2
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert "/srv/shared" in {m["mountPath"] for m in container(pod)["volumeMounts"]}
    assert container(pod)["resources"]["requests"]["memory"] == 8 * 1024**3  # the course's
    stat = spawner_for("stat200", "carol", ["course:stat200:learner"], config)
    pod, _ = await started(stat)
    assert container(pod)["resources"]["requests"]["memory"] == 256 * 1024**2  # the deployer's


async def test_learners_and_courses_never_share_a_claim_or_a_pod(spawner_for):
    names = set()
    for user, course in (("alice", "ds101"), ("bob", "ds101"), ("alice", "stat200")):
        s = spawner_for(course, user, [f"course:{course}:learner"])
        pod, pvc = await started(s)
        names.add((pod["metadata"]["name"], pvc["metadata"]["name"]))
    assert len({pod for pod, _ in names}) == len({pvc for _, pvc in names}) == 3


@pytest.mark.parametrize(
    ("course", "groups", "reason", "status"),
    [
        ("stat200", ["course:ds101:learner"], "not_enrolled", 403),
        ("hist100", ["course:hist100:learner"], "course_closed", 403),
        ("genomics400", ["course:genomics400:learner"], "course_not_open", 403),
        ("nosuch", ["course:ds101:learner"], "unknown_course", 404),
    ],
)
async def test_refusals_are_the_course_logics(
    spawner_for, kube_env, course, groups, reason, status
):
    """The same refusal, message and status as every backend's (start_refusal), before
    anything is made: no pod, no claim."""
    _, catalog = kube_env
    s = spawner_for(course, "alice", groups)
    with pytest.raises(SpawnException) as e:
        await s.run_pre_spawn_hook()
    assert (e.value.reason, e.value.status_code) == (reason, status)
    role = "learner" if course in {g.split(":")[1] for g in groups} else None
    expected = start_refusal(
        catalog.get(course),
        role,
        NOW,
        teachers_before_opening=True,
        server_name=course,
        username="alice",
    )
    assert e.value.message == expected.message
    assert COURSE_LABEL not in s.extra_labels  # nothing of the course was applied


async def test_a_teacher_may_prepare_a_course_before_it_opens(spawner_for):
    s = spawner_for("genomics400", "sam", ["course:genomics400:teacher"])
    pod, _ = await started(s)
    assert container(pod)["resources"]["limits"]["memory"] == 128 * 1024**3


async def test_users_cannot_choose_another_image_or_profile(spawner_for):
    s = spawner_for("ds101", "alice", ["course:ds101:learner"])
    s.user_options = {"profile": "gpu", "image": "someone/else:latest"}
    await s.run_pre_spawn_hook()
    await s.load_user_options()
    pod = await as_dict(await s.get_pod_manifest())
    assert container(pod)["image"] == "registry.example.edu/hub-ext/course-ds101:2026.11"
    config = Config()
    config.CourseKubeSpawner.profile_list = [{"display_name": "big", "kubespawner_override": {}}]
    with pytest.raises(TraitError, match="the course catalog decides"):
        spawner_for("ds101", "bob", ["course:ds101:learner"], config)


def test_a_shared_workspace_claim_is_refused(spawner_for):
    for template in ("claim-{username}", "course-{servername}", "everyone"):
        config = Config()
        config.CourseKubeSpawner.pvc_name_template = template
        with pytest.raises(TraitError, match="does not name both the learner and the course"):
            spawner_for("ds101", "alice", ["course:ds101:learner"], config)


async def test_materials_outside_the_claim_are_refused_with_the_course(spawner_for):
    config = Config()
    s = spawner_for("ds101", "alice", ["course:ds101:learner"], config)
    s.materials_root = "/elsewhere"
    with pytest.raises(SpawnException, match=r"ds101 \(Data analysis with Python\) cannot start"):
        await s.run_pre_spawn_hook()


def test_the_pod_settings_builder_is_pure(kube_env):
    _, catalog = kube_env
    learner = course_pod_settings(catalog["ds101"], "learner")
    teacher = course_pod_settings(catalog["ds101"], "teacher")
    assert learner["mem_limit"] == 2 * 1024**3 and teacher["mem_limit"] == 4 * 1024**3
    assert learner["storage_capacity"] == teacher["storage_capacity"] == "5Gi"
    assert course_pod_settings(catalog["ds101"], "learner") == learner


# --------------------------------------------------------------------------- the network


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "Exists" or expr["key"] not in labels:
            return False
    return True


def _port_ok(rule: dict, port: int) -> bool:
    return "ports" not in rule or any(p["port"] == port for p in rule["ports"])


def _peer_ok(peer: dict, pod: dict) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(pod["ip"])
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if "namespaceSelector" in peer:
        return _selects(peer["namespaceSelector"], pod.get("namespace_labels", {}))
    return _selects(peer["podSelector"], pod["labels"])


def allows(policies: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Would ``src`` reach ``dst``:``port`` under ``policies`` (one namespace)? A model of
    NetworkPolicy's documented semantics: a pod selected by a policy of a direction is
    isolated in it, and then only what some rule of those policies allows passes; both
    the sender's egress and the receiver's ingress must allow it. A CNI enforces the real
    thing: this checks what the policies say, not what a cluster does."""

    def direction_ok(kind: str, pod: dict, other: dict) -> bool:
        mine = [
            p
            for p in policies
            if kind.capitalize() in p["spec"]["policyTypes"]
            and pod.get("labels") is not None
            and _selects(p["spec"]["podSelector"], pod["labels"])
        ]
        if not mine:
            return True
        key = "from" if kind == "ingress" else "to"
        return any(
            _port_ok(rule, port) and any(_peer_ok(peer, other) for peer in rule.get(key, []))
            for p in mine
            for rule in p["spec"].get(kind, [])
        )

    return direction_ok("egress", src, dst) and direction_ok("ingress", dst, src)


def learner_pod(user: str, course: str, ip: str) -> dict:
    labels = {
        "component": "singleuser-server",
        COURSE_LABEL: course,
        "hub.jupyter.org/username": user,
    }
    return {"labels": labels, "ip": ip}


HUB = {
    "labels": {"component": "hub", "hub.jupyter.org/network-access-singleuser": "true"},
    "ip": "10.1.0.2",
}
PROXY = {
    "labels": {"component": "proxy", "hub.jupyter.org/network-access-singleuser": "true"},
    "ip": "10.1.0.3",
}
DNS = {
    "labels": {"k8s-app": "kube-dns"},
    "namespace_labels": {"kubernetes.io/metadata.name": "kube-system"},
    "ip": "10.1.0.10",
}


def outside(ip: str) -> dict:
    return {"labels": None, "ip": ip}


def test_course_network_policies_are_valid_and_keep_learners_apart(kube_env):
    _, catalog = kube_env
    policies = [validate(course_network_policy(c, namespace="hub")) for c in catalog.values()]
    alice = learner_pod("alice", "ds101", "10.2.0.5")
    bob = learner_pod("bob", "ds101", "10.2.0.6")
    carol = learner_pod("carol", "stat200", "10.2.0.7")
    dave = learner_pod("dave", "dl300", "10.2.0.8")
    # the hub and the proxy reach the servers; the servers reach the hub, the proxy, DNS
    assert allows(policies, PROXY, alice, 8888) and allows(policies, HUB, carol, 8888)
    assert allows(policies, alice, HUB, 8081) and allows(policies, carol, PROXY, 8000)
    assert allows(policies, carol, DNS, 53)
    # never each other: same course, another course, any port; also where the pod network
    # is outside RFC 1918 (100.64.0.0/10 on some clusters), so that an internet course's
    # egress would let the packet out: the receiver's ingress refuses it
    far_bob = learner_pod("bob", "ds101", "100.64.0.6")
    far_carol = learner_pod("carol", "stat200", "100.64.0.7")
    pairs = ((alice, bob), (bob, alice), (alice, carol), (carol, alice), (dave, bob))
    for src, dst in (*pairs, (alice, far_bob), (alice, far_carol)):
        for port in (8888, 22, 5432):
            assert not allows(policies, src, dst, port), (src["labels"], dst["labels"], port)
    assert allows(policies, alice, outside("100.64.0.6"), 8888)  # the egress alone lets it out
    # nor the hub's other ports, nor the proxy's API
    assert not allows(policies, alice, HUB, 5432) and not allows(policies, carol, PROXY, 8001)
    # what the course allows beyond: ds101 the internet, stat200 its database only
    assert allows(policies, alice, outside("93.184.216.34"), 443)
    assert not allows(policies, carol, outside("93.184.216.34"), 443)
    assert not allows(policies, dave, outside("93.184.216.34"), 443)
    assert allows(policies, carol, outside("10.20.30.40"), 5432)
    assert not allows(policies, carol, outside("10.20.30.40"), 22)
    assert not allows(policies, alice, outside("10.20.30.40"), 5432)
    # "the internet" is never the cluster's own addresses nor the cloud metadata server
    for private in ("10.2.0.6", "172.16.0.1", "192.168.1.1", "169.254.169.254"):
        assert not allows(policies, alice, outside(private), 80), private


# --------------------------------------------------------------------------- pre-pulling


def test_prepull_daemonsets_follow_the_courses_calendar_and_nodes(kube_env):
    _, catalog = kube_env
    manifests = course_manifests(
        catalog, NOW, namespace="hub", extra_images=["hub-ext/hub:2026.11"]
    )
    for manifest in manifests:
        validate(manifest)
    pulled = {
        m["metadata"]["labels"][COURSE_LABEL]: m for m in manifests if m["kind"] == "DaemonSet"
    }
    assert set(pulled) == {"ds101", "stat200", "dl300"}  # genomics400 opens in 17 days
    late_october = datetime(2026, 10, 31, tzinfo=UTC)
    again = course_manifests(catalog, late_october, namespace="hub")
    assert "genomics400" in {
        m["metadata"]["labels"][COURSE_LABEL] for m in again if m["kind"] == "DaemonSet"
    }
    gpu = pulled["dl300"]["spec"]["template"]["spec"]
    assert gpu["nodeSelector"] == {"hub-ext.org/pool": "gpu"}
    assert [c["image"] for c in gpu["initContainers"]] == [
        "registry.example.edu/hub-ext/course-dl300:2026.11",
        "hub-ext/hub:2026.11",
    ]
    assert gpu["automountServiceAccountToken"] is False
    assert {m["metadata"]["name"] for m in manifests if m["kind"] == "NetworkPolicy"} == {
        f"hub-ext-course-{c}" for c in catalog
    }
    assert prepull_daemonset(catalog["hist100"], namespace="hub") is not None  # an image: pullable


def test_the_manifests_command_prints_what_kubectl_applies(kube_env, capsys):
    home, _ = kube_env
    assert (
        main(["manifests", str(home / "courses.yaml"), "--namespace", "hub", "--now", "2026-10-15"])
        == 0
    )
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["DaemonSet"] * 3 + ["NetworkPolicy"] * 6
    for document in documents:
        assert document["metadata"]["namespace"] == "hub"
        validate(document)
    (home / "broken.yaml").write_text("courses:\n  - id: x\n")
    assert main(["manifests", str(home / "broken.yaml")]) == 1
    assert "broken.yaml" in capsys.readouterr().err


# --------------------------------------------------------------------------- sandboxes


def test_sandbox_pods_are_locked_down_and_keep_their_environment_secret(tmp_path):
    data = tmp_path / "data"
    spec = SandboxSpec(
        name="analytics-ds101-know-thy-student",
        argv=("/opt/venv/bin/python", "-m", "jupyter", "kernelgateway"),
        env={"KG_AUTH_TOKEN": "gateway-secret-1234", "HUB_EXT_EVENTS_URL": "sqlite:///x"},
        scratch=data / "analytics" / "run" / "ds101",
        binds=(Bind(data / "analytics" / "extracts" / "ds101.sqlite", "/srv/data/events.sqlite"),),
        limits=Limits(memory=512 * 1024**2, cpu=0.5, wall=300),
        labels={"course": "ds101"},
    )
    pod, secret = sandbox_pod(
        spec,
        namespace="hub",
        image="hub-ext/analytics:2026.11",
        uid=1000,
        data_claim="hub-ext-data",
        data_root=data,
        node_name="node-7",
    )
    validate(pod), validate(secret), validate(sandbox_network_policy(namespace="hub"))
    (box,) = pod["spec"]["containers"]
    assert "gateway-secret-1234" not in yaml.safe_dump(pod)
    assert secret["stringData"]["KG_AUTH_TOKEN"] == "gateway-secret-1234"
    assert box["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert box["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert box["resources"]["limits"] == {"memory": "512Mi", "cpu": "500m"}
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    assert mounts["/srv/run"]["subPath"] == "analytics/run/ds101" and not mounts["/srv/run"].get(
        "readOnly"
    )
    assert mounts["/srv/data/events.sqlite"]["readOnly"] is True
    assert pod["spec"]["nodeName"] == "node-7" and pod["spec"]["activeDeadlineSeconds"] == 300 + 30
    assert (
        pod["spec"]["automountServiceAccountToken"] is False
        and not pod["spec"]["enableServiceLinks"]
    )
    policy = sandbox_network_policy(namespace="hub")
    sandboxed = {"labels": pod["metadata"]["labels"], "ip": "10.2.0.99"}
    for other in (
        HUB,
        PROXY,
        DNS,
        learner_pod("alice", "ds101", "10.2.0.5"),
        outside("93.184.216.34"),
    ):
        assert not allows([policy], sandboxed, other, 8081)
        if other["labels"] is not None:
            assert not allows([policy], other, sandboxed, 8888)
    stray = SandboxSpec(name="x", argv=("true",), env={}, scratch=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="is not under"):
        sandbox_pod(stray, namespace="hub", image="i", uid=1000, data_claim="c", data_root=data)


# --------------------------------------------------------------------------- the hub side


def test_the_hubs_services_are_reached_through_the_hubs_service():
    config = Config()
    config.JupyterHub.services = [
        {"name": "events", "url": "http://127.0.0.1:41234", "command": ["python", "-m", "x"]},
        {"name": "idle-culler", "command": ["python", "-m", "culler"]},
    ]
    config.CourseSpawnerMixin.grading_url = "http://127.0.0.1:41235/services/grading/"
    assert kube_hub_config(config) == {"events": 10102}
    events, culler = config.JupyterHub.services
    assert (
        events["url"] == "http://hub:10102"
        and events["command"][-1] == "--HubServiceApp.ip=0.0.0.0"
    )
    assert culler == {"name": "idle-culler", "command": ["python", "-m", "culler"]}
    assert config.CourseSpawnerMixin.grading_url == "http://proxy-public/services/grading/"


def test_course_kube_is_an_entry_point():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    spawners = cfg["options.entry_points"]["jupyterhub.spawners"]
    assert "course-kube = hub_ext.spawners.kube:CourseKubeSpawner" in spawners
    assert Path(REPO / "hub_ext" / "spawners" / "kube.py").is_file()


def test_services_with_sandbox_pods_get_the_pods_environment(monkeypatch):
    """JupyterHub passes a service none of the hub's environment: the ones that run sandbox
    pods are given the API server's address and the node and pod names, the others not."""
    for name, value in {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "NODE_NAME": "node-7",
        "POD_NAME": "hub-5f7d",
        "PGPASSWORD": "never-passed",
    }.items():
        monkeypatch.setenv(name, value)
    config = Config()
    config.JupyterHub.services = [
        {"name": "events", "url": "http://127.0.0.1:1", "command": ["python", "-m", "e"]},
        {
            "name": "analytics",
            "url": "http://127.0.0.1:2",
            "command": ["python", "-m", "a", "--GatewaySupervisor.sandbox=kube"],
        },
    ]
    kube_hub_config(config)
    events, analytics = config.JupyterHub.services
    assert "environment" not in events
    assert analytics["environment"] == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "NODE_NAME": "node-7",
        "POD_NAME": "hub-5f7d",
    }
