"""A small Kubernetes API on loopback, with a pretend kubelet, for the Kubernetes sandbox's tests.

**Not a cluster.** No Kubernetes can run on this machine. This is what the sandbox talks to
in its tests: the core/v1 routes it uses (pods, their status and log, secrets, lists by
label selector), answering as the API server does (its JSON objects, ``Status`` errors,
404 and 409), recording every request, and checking each created object strictly against
Kubernetes 1.33's OpenAPI schema (``kubernetes-validate``: 422 otherwise, as admission
would refuse it). A created pod is "run" by a pretend kubelet: its container's command, on
this machine's filesystem with the image's own files over ``/opt`` (the "image" must be
one :attr:`FakeCluster.images` lists, with its ``ENV`` and files, or the pod waits in
``ErrImagePull``), as the pod's ``runAsUser`` on the host, under bubblewrap with the pod's volume mounts (a claim is a
host directory: :attr:`FakeCluster.claims`, each ``subPath`` under it, ``readOnly`` as
asked; ``emptyDir`` a tmpfs), its environment exactly the pod's ``env`` and its Secret's
``envFrom``, no network, ``workingDir`` and ``runAsUser``. The phase goes Pending,
Running, then Succeeded or Failed with the exit code; ``activeDeadlineSeconds`` ends it as
``DeadlineExceeded``; a pod without its Secret waits in ``CreateContainerConfigError``.

What it does not prove: scheduling, admission, image pulls, the container runtime's
isolation (``readOnlyRootFilesystem``, capabilities, seccomp), a CNI enforcing the
NetworkPolicy, a real volume carrying the Unix socket between two pods. Those are checked
on the manifests (``tests/test_kube.py``), or not at all (the README says which).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import kubernetes_validate
from tornado import web
from tornado.httpserver import HTTPServer

from tests.hubtest import free_port

VERSION = "1.33"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunningPod:
    body: dict
    log: Path
    proc: asyncio.subprocess.Process | None = None
    phase: str = "Pending"
    waiting: tuple[str, str] | None = None
    terminated: dict | None = None
    reason: str | None = None
    task: asyncio.Task | None = None
    deleted: bool = False


@dataclass
class FakeCluster:
    """The API's state: objects by (kind, namespace, name), the requests seen."""

    root: Path
    claims: dict[str, Path]
    #: the images a pod may name: their ``ENV`` (what the runtime starts it with) and
    #: ``files`` (path under ``/opt`` in the container -> host path, read-only)
    images: dict[str, dict]
    url: str = ""
    pods: dict[tuple[str, str], RunningPod] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: (verb, resource) pairs answered 403, as RBAC would: ("create", "pods")
    forbidden: set[tuple[str, str]] = field(default_factory=set)
    #: pods created, as the API received them (for inspection)
    created: list[dict] = field(default_factory=list)
    server: HTTPServer | None = None

    def add_pod(self, namespace: str, name: str) -> str:
        """A pod that is already there (the service's own), not run; returns its uid."""
        uid = str(uuid.uuid4())
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"containers": [{"name": "hub", "image": "hub"}]},
        }
        pod = RunningPod(body, self.root / f"{name}.log", phase="Running")
        self.pods[(namespace, name)] = pod
        return uid

    def selected(self, objects: dict, namespace: str, selector: str) -> list[dict]:
        wanted = [s for s in selector.split(",") if s]
        out = []
        for (ns, _), obj in objects.items():
            body = obj.body if isinstance(obj, RunningPod) else obj
            if ns != namespace or (isinstance(obj, RunningPod) and obj.deleted):
                continue
            labels = body["metadata"].get("labels", {})
            if all(
                (labels.get(k) == v) if "=" in s else (s in labels)
                for s in wanted
                for k, _, v in [s.partition("=")]
            ):
                out.append(body)
        return out

    def pod_json(self, pod: RunningPod) -> dict:
        status: dict = {"phase": pod.phase}
        if pod.reason:
            status["reason"] = pod.reason
            status["message"] = f"Pod was active on the node longer than specified: {pod.reason}"
        containers = pod.body["spec"]["containers"]
        if pod.waiting or pod.phase != "Pending":
            if pod.terminated is not None:
                state = {"terminated": pod.terminated}
            elif pod.waiting is not None:
                state = {"waiting": {"reason": pod.waiting[0], "message": pod.waiting[1]}}
            else:
                state = {"running": {"startedAt": _now()}}
            status["containerStatuses"] = [
                {
                    "name": containers[0]["name"],
                    "image": containers[0]["image"],
                    "imageID": "",
                    "ready": pod.phase == "Running",
                    "restartCount": 0,
                    "state": state,
                }
            ]
        return {**pod.body, "status": status}

    # ----------------------------------------------------------------- the kubelet

    def argv(self, pod: dict, secret: dict) -> tuple[list[str], dict[str, str]]:
        spec = pod["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        argv = [
            "bwrap",
            # namespaces of its own but the user's: the "kubelet" (root) mounts, then the
            # container runs as the pod's runAsUser on the host, as on a node
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-net",
            "--unshare-uts",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/srv",
            "--tmpfs",
            "/opt",
        ]
        for target, source in self.images[container["image"]].get("files", {}).items():
            if not target.startswith("/opt/"):
                raise ValueError(f"an image's file {target} must be under /opt")
            argv += ["--perms", "0755", "--dir", target, "--ro-bind", str(source), target]
        made = set()
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            # mount points' parents as a runtime makes them (bwrap's own are 0700)
            for parent in reversed(PurePosixPath(mount["mountPath"]).parents):
                if parent.is_relative_to("/srv") and str(parent) != "/srv" and parent not in made:
                    argv += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            if "emptyDir" in volume:
                argv += ["--tmpfs", mount["mountPath"]]
                continue
            claim = self.claims[volume["persistentVolumeClaim"]["claimName"]]
            source = claim / mount.get("subPath", "")
            if source.resolve() != claim.resolve() and not source.resolve().is_relative_to(
                claim.resolve()
            ):
                raise ValueError(f"subPath {mount.get('subPath')} leaves its claim")
            argv += ["--ro-bind" if mount.get("readOnly") else "--bind", str(source)]
            argv.append(mount["mountPath"])
        uid = str(spec.get("securityContext", {}).get("runAsUser", 0))
        argv += ["--chdir", "/"]
        env = dict(self.images[container["image"]].get("env", {}))
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        if container.get("envFrom"):
            env.update(secret.get("stringData", {}))
        argv += ["--clearenv"]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        workdir = container.get("workingDir", "/")
        cd = ["sh", "-c", 'cd "$0" && exec "$@"', workdir]
        return [*argv, "--", *user, *cd, *container["command"]], env

    async def run(self, namespace: str, name: str) -> None:
        pod = self.pods[(namespace, name)]
        body = pod.body
        container = body["spec"]["containers"][0]
        secret_name = container.get("envFrom", [{}])[0].get("secretRef", {}).get("name")
        deadline = body["spec"].get("activeDeadlineSeconds")
        started = time.monotonic()
        if container["image"] not in self.images:
            pod.waiting = ("ErrImagePull", f'failed to pull image "{container["image"]}"')
            return
        while secret_name and (namespace, secret_name) not in self.secrets:
            pod.waiting = ("CreateContainerConfigError", f'secret "{secret_name}" not found')
            await asyncio.sleep(0.2)
            if pod.deleted:
                return
        pod.waiting = None
        secret = self.secrets.get((namespace, secret_name), {})
        argv, _ = self.argv(body, secret)
        with open(pod.log, "ab") as log:
            pod.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # mount points as a container runtime makes them (the caller's umask may be 077)
                preexec_fn=lambda: os.umask(0o022),
            )
        pod.phase = "Running"
        try:
            remaining = None if deadline is None else deadline - (time.monotonic() - started)
            code = await asyncio.wait_for(pod.proc.wait(), remaining)
        except TimeoutError:
            pod.proc.send_signal(signal.SIGKILL)
            code = await pod.proc.wait()
            pod.reason = "DeadlineExceeded"
        pod.terminated = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": _now(),
            "finishedAt": _now(),
        }
        pod.phase = "Succeeded" if code == 0 and not pod.reason else "Failed"

    async def delete_pod(self, pod: RunningPod) -> None:
        pod.deleted = True
        if pod.proc is not None and pod.proc.returncode is None:
            pod.proc.send_signal(signal.SIGKILL)
            await pod.proc.wait()
        if pod.task is not None:
            await asyncio.gather(pod.task, return_exceptions=True)

    async def stop(self) -> None:
        for pod in list(self.pods.values()):
            await self.delete_pod(pod)
        if self.server is not None:
            self.server.stop()


def status(handler: web.RequestHandler, code: int, reason: str, message: str) -> None:
    handler.set_status(code)
    handler.set_header("Content-Type", "application/json")
    handler.finish(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    )


class ApiHandler(web.RequestHandler):
    def initialize(self, cluster: FakeCluster):
        self.cluster = cluster

    def prepare(self):
        self.cluster.requests.append((self.request.method, self.request.uri))

    def refuse(self, verb: str, resource: str) -> bool:
        if (verb, resource) in self.cluster.forbidden:
            status(
                self,
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:hub:hub" cannot '
                f'{verb} resource "{resource}" in API group "" in the namespace',
            )
            return True
        return False

    def body(self) -> dict | None:
        try:
            body = json.loads(self.request.body)
            kubernetes_validate.validate(body, VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.absolute_path))
            status(self, 422, "Invalid", f"{where}: {e.message}")
            return None
        except ValueError as e:
            status(self, 400, "BadRequest", str(e))
            return None
        return body


class Pods(ApiHandler):
    async def post(self, namespace: str):
        if self.refuse("create", "pods"):
            return
        body = self.body()
        if body is None:
            return
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.pods and not self.cluster.pods[
            (namespace, name)
        ].deleted:
            return status(self, 409, "AlreadyExists", f'pods "{name}" already exists')
        body["metadata"]["uid"] = str(uuid.uuid4())
        body["metadata"]["creationTimestamp"] = _now()
        self.cluster.created.append(json.loads(json.dumps(body)))
        pod = RunningPod(body, self.cluster.root / f"{namespace}-{name}.log")
        self.cluster.pods[(namespace, name)] = pod
        pod.task = asyncio.ensure_future(self.cluster.run(namespace, name))
        self.set_status(201)
        self.finish(self.cluster.pod_json(pod))

    def get(self, namespace: str):
        if self.refuse("list", "pods"):
            return
        items = self.cluster.selected(
            self.cluster.pods, namespace, self.get_argument("labelSelector", "")
        )
        self.finish({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})


class Pod(ApiHandler):
    def found(self, namespace: str, name: str) -> RunningPod | None:
        pod = self.cluster.pods.get((namespace, name))
        if pod is None or pod.deleted:
            status(self, 404, "NotFound", f'pods "{name}" not found')
            return None
        return pod

    def get(self, namespace: str, name: str):
        if self.refuse("get", "pods"):
            return
        pod = self.found(namespace, name)
        if pod is not None:
            self.finish(self.cluster.pod_json(pod))

    async def delete(self, namespace: str, name: str):
        if self.refuse("delete", "pods"):
            return
        pod = self.found(namespace, name)
        if pod is not None:
            await self.cluster.delete_pod(pod)
            self.finish(self.cluster.pod_json(pod))


class PodLog(Pod):
    async def get(self, namespace: str, name: str):
        if self.refuse("get", "pods/log"):
            return
        pod = self.found(namespace, name)
        if pod is None:
            return
        if pod.phase == "Pending":
            return status(
                self, 400, "BadRequest", f'container "sandbox" in pod "{name}" is waiting'
            )
        self.set_header("Content-Type", "text/plain")
        # as the API server's ParseBool: 1, t, T, TRUE, true, True
        follow = self.get_argument("follow", "false") in ("1", "t", "T", "TRUE", "true", "True")
        offset = 0
        while True:
            data = pod.log.read_bytes()[offset:] if pod.log.exists() else b""
            if data:
                offset += len(data)
                self.write(data)
                await self.flush()
            if not follow or pod.phase != "Running" or pod.deleted:
                break
            await asyncio.sleep(0.1)
        self.finish()


class Secrets(ApiHandler):
    def post(self, namespace: str):
        if self.refuse("create", "secrets"):
            return
        body = self.body()
        if body is None:
            return
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.secrets:
            return status(self, 409, "AlreadyExists", f'secrets "{name}" already exists')
        self.cluster.secrets[(namespace, name)] = body
        self.set_status(201)
        self.finish({k: v for k, v in body.items() if k != "stringData"})

    def get(self, namespace: str):
        items = self.cluster.selected(
            self.cluster.secrets, namespace, self.get_argument("labelSelector", "")
        )
        items = [{k: v for k, v in s.items() if k != "stringData"} for s in items]
        self.finish({"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": items})


class Secret(ApiHandler):
    def delete(self, namespace: str, name: str):
        if self.refuse("delete", "secrets"):
            return
        if self.cluster.secrets.pop((namespace, name), None) is None:
            return status(self, 404, "NotFound", f'secrets "{name}" not found')
        self.finish({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


class NotHere(web.RequestHandler):
    def prepare(self):
        status(self, 404, "NotFound", f"the fake cluster has no route {self.request.path}")


async def start_cluster(
    root: Path, claims: dict[str, Path], images: dict[str, dict]
) -> FakeCluster:
    """A :class:`FakeCluster` listening on 127.0.0.1 (its :attr:`~FakeCluster.url`)."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = FakeCluster(root=root, claims=claims, images=dict(images))
    ns = r"/api/v1/namespaces/([a-z0-9-]+)"
    name = r"([a-z0-9.-]+)"
    args = {"cluster": cluster}
    app = web.Application(
        [
            (rf"{ns}/pods", Pods, args),
            (rf"{ns}/pods/{name}", Pod, args),
            (rf"{ns}/pods/{name}/log", PodLog, args),
            (rf"{ns}/secrets", Secrets, args),
            (rf"{ns}/secrets/{name}", Secret, args),
            (r".*", NotHere),
        ]
    )
    port = free_port()
    cluster.server = HTTPServer(app)
    cluster.server.listen(port, "127.0.0.1")
    cluster.url = f"http://127.0.0.1:{port}"
    return cluster


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig naming the fake cluster (no credentials: it asks for none)."""
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    return path
