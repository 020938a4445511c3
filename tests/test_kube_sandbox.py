"""The Kubernetes sandbox (``KubeSandbox``): each run a Secret and a pod beside the service.

No cluster runs on this machine. The sandbox talks here to :mod:`tests.kube_fixtures`: a
small core/v1 API on loopback that answers as the API server does, checks every object it
is given against Kubernetes 1.33's schema, and "runs" a pod's container on this machine
under bubblewrap with the pod's own mounts and environment. So what is tested is the
sandbox's side: the objects it creates, what it reads back, what it deletes, what it says
when the API refuses or a pod cannot start, and a real analytics gateway answering over
the Unix socket on the shared claim. Not tested: a kubelet, a scheduler, a container
runtime's isolation, a CNI (see the README's Kubernetes section).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubespawner.clients import load_config
from traitlets.config import Config

from hub_ext.sandbox import Bind, Limits, SandboxSpec, SandboxUnavailable, make_sandbox
from hub_ext.sandbox.kube import OWNER_LABEL, KubeSandbox, owner_label
from hub_ext.services.analytics.extracts import CourseExtracts
from hub_ext.services.analytics.notebook import check_notebook
from hub_ext.services.analytics.supervisor import GatewaySupervisor
from hub_ext.spawners.kube_objects import SANDBOX_LABEL, sandbox_pod
from tests.analytics_fixtures import NOTEBOOKS, add_events, gw_get, make_store, readonly_url
from tests.kube_fixtures import kubeconfig, start_cluster

on_the_loop = pytest.mark.asyncio(loop_scope="session")
pytestmark = on_the_loop

IMAGE = "hub-ext/analytics:test"
#: the "image" is this machine's filesystem: Debian's Python (the pod's user, uid 1000,
#: cannot reach the test's interpreter under /root), with this checkout and the
#: environment's packages as the image's files (a clone may be under /tmp, which the pod
#: has of its own)
PYTHON = "/usr/bin/python3.11"
REPO = Path(__file__).resolve().parents[1]
SITE = next(p for p in sys.path if p.endswith("site-packages"))
IMAGE_FILES = {"/opt/hub-ext/src": REPO, "/opt/hub-ext/site-packages": SITE}
IMAGE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONPATH": "/opt/hub-ext/src:/opt/hub-ext/site-packages",
}
NAMESPACE = "hub"
#: a value that must never appear in a pod (only in its Secret)
TOKEN = "run-token-3f9c0a7e5d"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def cluster(tmp_path_factory):
    """One fake API for the module (kubespawner's shared client is one per event loop)."""
    tmp_path = tmp_path_factory.mktemp("kube-sandbox")
    claim = tmp_path / "claim"
    claim.mkdir()
    fake = await start_cluster(
        tmp_path / "cluster",
        {"hub-ext-data": claim},
        {IMAGE: {"env": IMAGE_ENV, "files": IMAGE_FILES}},
    )
    fake.claim = claim
    fake.hub_uid = fake.add_pod(NAMESPACE, "hub-7d9f")
    saved = Configuration.get_default_copy()
    mp = pytest.MonkeyPatch()
    mp.setattr(
        kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig(tmp_path / "kc", fake.url))
    )
    load_config.cache_clear()  # kubespawner's: configured once per process otherwise
    fake.sandboxes = []
    yield fake
    for sandbox in fake.sandboxes:
        await sandbox.close()
    await fake.stop()
    load_config.cache_clear()
    Configuration.set_default(saved)
    mp.undo()


def kube_settings(cluster, owner: str = "svc-a") -> dict:
    return {
        "namespace": NAMESPACE,
        "data_root": str(cluster.claim),
        "node_name": "node-a",
        "owner_pod": "hub-7d9f",
        "k8s_api_host": cluster.url,
        "image": IMAGE,
        "python": PYTHON,
        "owner": owner,
        "poll_interval": 0.1,
        "start_timeout": 20.0,
    }


def sandbox_for(cluster, **kw) -> KubeSandbox:
    config = Config()
    config.KubeSandbox = Config({**kube_settings(cluster), **kw})
    sandbox = KubeSandbox(config=config)
    sandbox.check()
    cluster.sandboxes.append(sandbox)
    return sandbox


def spec(cluster, code: str, name: str = "probe", **kw) -> SandboxSpec:
    return SandboxSpec(
        name=name,
        argv=(PYTHON, "-c", code),
        env={"RUN_TOKEN": TOKEN},
        scratch=cluster.claim / "runs" / name,
        **kw,
    )


async def gone(cluster, name: str) -> bool:
    pod = cluster.pods.get((NAMESPACE, name))
    return (pod is None or pod.deleted) and (NAMESPACE, name) not in cluster.secrets


async def test_a_run_is_a_locked_down_pod_whose_secret_holds_its_environment(cluster, tmp_path):
    inputs = cluster.claim / "inputs"
    inputs.mkdir(mode=0o755)
    (inputs / "data.txt").write_text("course data\n")
    (inputs / "data.txt").chmod(0o644)  # the pod's user is not ours (as the services do)
    code = (
        "import os; print(open('/srv/in/data.txt').read().strip()); "
        "print('token', os.environ['RUN_TOKEN']); "
        "print('home', os.environ['HOME']); open('/srv/run/out', 'w').write('written'); "
        "open('/srv/in/data.txt', 'w')"
    )
    sandbox = sandbox_for(cluster)
    result = await sandbox.run(
        spec(
            cluster,
            code,
            binds=(Bind(inputs / "data.txt", "/srv/in/data.txt"),),
            limits=Limits(memory=256 * 1024**2, cpu=0.5, wall=60),
            labels={"course": "ds101", "purpose": "analytics"},
        ),
        tmp_path / "logs" / "probe.log",
    )
    # the input read, the token from the Secret, the scratch written, the input read-only
    assert "course data" in result.output and f"token {TOKEN}" in result.output, result.output
    assert "home /srv/run" in result.output
    assert "Read-only file system" in result.output and result.returncode == 1
    assert (cluster.claim / "runs" / "probe" / "out").read_text() == "written"

    (pod,) = cluster.created  # strictly valid for Kubernetes 1.33, or the API refused it
    name = pod["metadata"]["name"]
    assert name.startswith("hub-ext-sandbox-probe-")
    assert TOKEN not in json.dumps(pod)  # the environment is in the Secret only
    container = pod["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": name}}]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"] == {"memory": "256Mi", "cpu": "500m"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["nodeName"] == "node-a" and pod["spec"]["activeDeadlineSeconds"] == 60 + 30
    assert pod["spec"]["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/srv/run"]["subPath"] == "runs/probe" and not mounts["/srv/run"].get("readOnly")
    assert mounts["/srv/in/data.txt"] == {
        "name": "data",
        "mountPath": "/srv/in/data.txt",
        "subPath": "inputs/data.txt",
        "readOnly": True,
    }
    labels = pod["metadata"]["labels"]
    assert labels[SANDBOX_LABEL] == "probe" and labels["hub-ext.org/course"] == "ds101"
    assert labels[OWNER_LABEL] == owner_label("svc-a")
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "hub-7d9f",
            "uid": cluster.hub_uid,
            "blockOwnerDeletion": False,
        }
    ]
    # what ran is gone: the pod and its Secret
    assert await gone(cluster, name)
    methods = [(m, uri.split("?")[0]) for m, uri in cluster.requests]
    assert ("DELETE", f"/api/v1/namespaces/hub/pods/{name}") in methods
    assert ("DELETE", f"/api/v1/namespaces/hub/secrets/{name}") in methods


async def test_an_input_off_the_claim_is_copied_onto_it_and_removed_after(cluster, tmp_path):
    """A catalog notebook lies in the hub's image, not on the claim: the pod cannot mount
    it, so it is copied beside the scratch directory, read-only, and removed at the end."""
    outside = tmp_path / "image" / "notebook.ipynb"
    outside.parent.mkdir()
    outside.write_text('{"cells": []}')
    sandbox = sandbox_for(cluster)
    run = spec(
        cluster,
        "print(open('/srv/api/notebook.ipynb').read())",
        name="copy",
        binds=(Bind(outside, "/srv/api/notebook.ipynb"),),
    )
    result = await sandbox.run(run, tmp_path / "copy.log")
    assert result.returncode == 0 and '{"cells": []}' in result.output, result.output
    mounts = cluster.created[-1]["spec"]["containers"][0]["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == "/srv/api/notebook.ipynb"]
    assert mount["subPath"].startswith("runs/.copy.inputs/") and mount["readOnly"] is True
    assert not (cluster.claim / "runs" / ".copy.inputs").exists()
    assert outside.read_text() == '{"cells": []}'  # the original untouched

    writable = spec(cluster, "pass", name="w", binds=(Bind(tmp_path, "/srv/x", writable=True),))
    with pytest.raises(ValueError, match=r"is not on the claim hub-ext-data"):
        await sandbox.launch(writable, tmp_path / "w.log")


async def test_the_exit_code_and_the_wall_limit(cluster, tmp_path):
    sandbox = sandbox_for(cluster)
    result = await sandbox.run(spec(cluster, "raise SystemExit(3)", name="three"), tmp_path / "3")
    assert result.returncode == 3 and not result.timed_out

    slow = spec(cluster, "import time; time.sleep(60)", name="slow", limits=Limits(wall=1.5))
    result = await sandbox.run(slow, tmp_path / "slow.log")
    assert result.timed_out and result.seconds < 30
    name = cluster.created[-1]["metadata"]["name"]
    assert await gone(cluster, name)
    assert cluster.pods[(NAMESPACE, name)].proc.returncode is not None  # killed, not left


async def test_a_pod_s_flood_of_output_leaves_a_log_of_its_limit(cluster, tmp_path):
    """``pods/log`` is followed for as long as the pod runs: what the pod prints is the
    attacker's to choose, and the run's log (kept by the service) keeps its newest bytes."""
    sandbox = sandbox_for(cluster)
    code = (
        "import os\nchunk = b'k' * 1024**2\n"
        "for _ in range(24):\n    os.write(1, chunk)\n"
        "os.write(1, b'last-of-the-pod\\n')\n"
    )
    log = tmp_path / "flood.log"
    result = await sandbox.run(spec(cluster, code, name="flood", limits=Limits(log=1024**2)), log)
    assert result.returncode == 0, result.output[-300:]
    assert log.stat().st_size < 1024**2 + 200
    assert result.output.endswith("last-of-the-pod\n")


async def test_a_pod_that_cannot_start_fails_at_once_saying_why(cluster, tmp_path):
    sandbox = sandbox_for(cluster, image="registry.example.edu/missing:1")
    result = await sandbox.run(spec(cluster, "print('never')", name="nopull"), tmp_path / "np")
    assert result.returncode == -1 and not result.timed_out and result.seconds < 15
    assert "ErrImagePull" in result.output and "registry.example.edu/missing:1" in result.output
    assert await gone(cluster, cluster.created[-1]["metadata"]["name"])


async def test_rbac_refusing_pods_is_said_and_leaves_no_secret(cluster, tmp_path):
    cluster.forbidden.add(("create", "pods"))
    try:
        sandbox = sandbox_for(cluster)
        with pytest.raises(SandboxUnavailable) as refused:
            await sandbox.launch(spec(cluster, "pass", name="denied"), tmp_path / "d.log")
    finally:
        cluster.forbidden.clear()
    message = str(refused.value)
    assert "403 Forbidden" in message and "namespace hub" in message
    assert "hub_config/z2jh/objects.yaml" in message
    assert not cluster.secrets  # the Secret made first was deleted again


async def test_a_killed_services_leftovers_are_removed_and_only_its_own(cluster, tmp_path):
    """A service killed outright (no ``finally`` ran) left a pod and its Secret; when it
    starts again it removes them, and not another service's running sandbox."""
    mine, theirs = sandbox_for(cluster, owner="svc-a"), sandbox_for(cluster, owner="svc-b")
    sleeper = "import time; time.sleep(60)"
    left = spec(cluster, sleeper, name="left-a")
    mine.prepare_scratch(left.scratch)
    pod, secret = sandbox_pod(
        left,
        namespace=NAMESPACE,
        image=IMAGE,
        uid=1000,
        data_claim="hub-ext-data",
        data_root=cluster.claim,
        name="hub-ext-sandbox-left-a-0dead0",
        extra_labels=mine._labels(),
    )
    await mine.core.create_namespaced_secret(NAMESPACE, secret)
    await mine.core.create_namespaced_pod(NAMESPACE, pod)
    b = await theirs.launch(spec(cluster, sleeper, name="left-b"), tmp_path / "b.log")

    restarted = sandbox_for(cluster, owner="svc-a")
    assert await asyncio.to_thread(restarted.remove_leftovers) == 1
    assert await gone(cluster, "hub-ext-sandbox-left-a-0dead0")
    assert cluster.pods[(NAMESPACE, "hub-ext-sandbox-left-a-0dead0")].proc.returncode is not None
    assert not cluster.pods[(NAMESPACE, b.name)].deleted and (NAMESPACE, b.name) in cluster.secrets
    b.kill()
    assert await asyncio.wait_for(b.wait(), 20) is not None
    assert await gone(cluster, b.name)


async def test_no_api_is_said_at_check(tmp_path, monkeypatch):
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    load_config.cache_clear()
    saved = Configuration.get_default_copy()
    try:
        with pytest.raises(SandboxUnavailable, match="no Kubernetes API"):
            make_sandbox("kube", log=logging.getLogger("test"))
    finally:
        load_config.cache_clear()
        Configuration.set_default(saved)


async def test_an_analytics_gateway_runs_as_a_pod_and_answers_over_the_claim(cluster, tmp_path):
    """The analytics service with ``sandbox = "kube"``: a teacher's notebook published, its
    guarded gateway a pod, asked over the Unix socket in its scratch directory on the claim;
    withdrawn, the pod and its Secret are gone."""
    runtime = cluster.claim / "analytics"
    store = make_store(tmp_path / "events.sqlite")
    add_events(store, [("alice", "viewed", "2026-10-01 10:00:00")], course="ds101")
    extracts = CourseExtracts(
        store_url=readonly_url(store), root=str(runtime / "data"), file_mode=0o644, dir_mode=0o755
    )
    extracts.build("ds101")
    config = Config()
    config.KubeSandbox = Config(kube_settings(cluster, owner=str(runtime)))
    sup = GatewaySupervisor(
        config=config,
        pool_size=1,
        runtime_dir=str(runtime),
        sandbox="kube",
        execution_timeout=30.0,
        queue_timeout=30.0,
        health_interval=2.0,
    )
    await asyncio.to_thread(lambda: sup.backend)  # as the service does: off the loop
    cluster.sandboxes.append(sup.backend)
    try:
        gw = await sup.publish("ds101", "know", check_notebook(NOTEBOOKS / "trivial.ipynb"))
        r = await gw_get(gw, "/learners/alice", timeout=60)
        assert r.status_code == 200 and r.json()["events"] == 1, r.text
        (pod,) = [p for p in cluster.created if p["metadata"]["labels"].get("hub-ext.org/api")]
        assert pod["metadata"]["labels"]["hub-ext.org/api"] == "know"
        assert "KG_AUTH_TOKEN" not in json.dumps(pod)
        assert await sup.withdraw("ds101", "know")
        assert await gone(cluster, pod["metadata"]["name"])
    finally:
        await sup.stop_all()
    assert Path(runtime).is_dir()


async def test_a_hand_in_is_graded_in_a_pod(cluster, tmp_path):
    """The grading service with ``sandbox = "kube"``: the learner's notebook runs on a
    kernel in a pod (nbclient drives it from the service over the scratch directory's
    sockets), scored by nbgrader's rules; the pod and its Secret are gone after."""
    from hub_ext.services.grading.autograde import Autograder
    from hub_ext.services.grading.notebooks import prepare_submission
    from tests.grading_fixtures import EXPECTED, assignment, correct

    config = Config()
    config.KubeSandbox = Config(kube_settings(cluster, owner=str(cluster.claim / "grading")))
    grader = Autograder(
        config=config,
        sandbox="kube",
        runtime_dir=str(cluster.claim / "grading"),
        cell_timeout=20,
        notebook_timeout=120,
        memory_limit=512 * 1024**2,
    )
    cluster.sandboxes.append(grader.backend)
    source, student = assignment(tmp_path)
    before = len(cluster.created)
    result = await grader.grade(prepare_submission(source, correct(student)))
    assert result.status == "graded", result.message
    assert {t.grade_id: t.points for t in result.tests} == EXPECTED["correct"]
    (pod,) = cluster.created[before:]
    assert pod["metadata"]["labels"]["hub-ext.org/purpose"] == "grading"
    assert await gone(cluster, pod["metadata"]["name"])
