"""The Kubernetes tier's sandbox: each run a pod of its own, beside the service that asked.

A run is a Secret (the spec's environment: it may hold the run's own token) and a Pod made
by the pure builder :func:`hub_ext.spawners.kube_objects.sandbox_pod`: non-root, read-only
root filesystem, no capability, no privilege gain, no service-account token, CPU and memory
limits, ``activeDeadlineSeconds`` from the wall limit; :func:`sandbox_network_policy` denies
it every connection. The service and the pod share one claim (:attr:`KubeSandbox.data_claim`,
mounted by the service at :attr:`KubeSandbox.data_root`): the pod mounts the run's scratch
directory and its inputs from it by ``subPath`` (inputs read-only), and the two talk over
the Unix socket in the scratch directory, so the pod runs on the service's node
(:attr:`KubeSandbox.node_name`) and needs no network. An input that is not on the claim (a
catalog notebook in the hub's image) is copied beside the scratch directory first.

The pod's output is followed through the API (``pods/log``) into the run's log file (which
keeps its newest ``limits.log`` bytes: :class:`~hub_ext.sandbox.base.CappedLog`); the pod
and its Secret are deleted when the run ends. Both carry the label ``hub-ext.org/sandbox``
and their service's owner label, so that :meth:`KubeSandbox.remove_leftovers` finds what a
killed service left behind, and (given :attr:`KubeSandbox.owner_pod`) an owner reference to
the service's pod, so that the cluster deletes them with it.

It talks to the API server with ``kubernetes_asyncio``, configured as kubespawner configures
it (``kubespawner.clients.load_config``: in the cluster, the pod's service account;
elsewhere, the kubeconfig), with a client of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from traitlets import Float, Integer, Unicode, default

from .base import CappedLog, Sandbox, SandboxSpec, SandboxUnavailable, log_tail

__all__ = ["KubeSandbox", "PodHandle"]

#: the service account's namespace, in a pod
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
OWNER_LABEL = "hub-ext.org/sandbox-owner"
#: waiting reasons after which a pod never starts (kubelet's): fail at once, saying which
HOPELESS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}


def owner_label(owner: str) -> str:
    """The owner label's value for the service ``owner`` (a path: too long for a label)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def _api_error(e) -> str:
    """What the API server said (its Status message), for a person."""
    import json

    try:
        message = json.loads(e.body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return f"{e.status} {e.reason}: {message or ''}".strip(": ")


class PodHandle:
    """A sandbox pod (the interface of :class:`~hub_ext.sandbox.ProcessHandle`)."""

    def __init__(self, sandbox: KubeSandbox, name: str, log_path: Path, log_limit: int, cleanup=()):
        self.sandbox = sandbox
        self.name = name
        self.log_path = log_path
        #: the newest bytes of the pod's output its log keeps (a run's ``limits.log``)
        self.log_limit = log_limit
        self.returncode: int | None = None
        #: the container was killed for exceeding its memory limit (``OOMKilled``)
        self.oom_killed = False
        self._cleanup = tuple(cleanup)
        #: bytes of the pod's log copied so far
        self._copied = 0
        self._done = asyncio.Event()
        self._task = asyncio.ensure_future(self._follow())

    @property
    def pid(self) -> int:
        return int(hashlib.sha256(self.name.encode()).hexdigest()[:7], 16)  # for log lines only

    def _note(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"[sandbox pod {self.name}] {text}\n")

    async def _follow(self) -> None:
        code = -1
        try:
            code = await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the API went away: say so; the pod is deleted below
            self._note(f"lost: {e}")
        finally:
            await self.sandbox._delete(self.name)
            for path in self._cleanup:
                shutil.rmtree(path, ignore_errors=True)
            self.returncode = code
            self._done.set()

    async def _run(self) -> int:
        sandbox, core = self.sandbox, self.sandbox.core
        deadline = time.monotonic() + sandbox.start_timeout
        followed = False
        while True:
            pod = await core.read_namespaced_pod(self.name, sandbox.namespace)
            status = pod.status
            waiting = _waiting(pod)
            if status.phase == "Pending":
                if waiting and waiting.reason in HOPELESS:
                    self._note(f"cannot start: {waiting.reason}: {waiting.message or ''}")
                    return -1
                if time.monotonic() > deadline:
                    why = "; ".join(
                        f"{c.reason}: {c.message}" for c in status.conditions or () if c.message
                    )
                    self._note(
                        f"not started within {sandbox.start_timeout:.0f} s ({why or 'pending'})"
                    )
                    return -1
            elif status.phase == "Running" and not followed:
                followed = True
                await self._copy_log(follow=True)
                continue  # the stream ends when the container does: read the status again
            elif status.phase in ("Succeeded", "Failed"):
                await self._copy_log(follow=False)  # what the stream did not bring
                terminated = _terminated(pod)
                if terminated is not None:
                    self.oom_killed = terminated.reason == "OOMKilled"
                    return terminated.exit_code
                self._note(f"ended: {status.reason or status.phase}: {status.message or ''}")
                return -1
            await asyncio.sleep(sandbox.poll_interval)

    async def _copy_log(self, follow: bool) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        sandbox = self.sandbox
        try:
            response = await sandbox.core.read_namespaced_pod_log(
                self.name,
                sandbox.namespace,
                container="sandbox",
                follow=follow,
                # at the end: what the stream did not bring, at most the log's limit
                limit_bytes=None if follow else self.log_limit,
                _preload_content=False,
            )
        except ApiException as e:
            self._note(f"no log: {_api_error(e)}")
            return
        # the file work in a thread: a trim reads and writes the log's limit, and what the
        # pod prints must not stall the service's event loop
        log = await asyncio.to_thread(CappedLog, self.log_path, self.log_limit)
        seen = 0
        try:
            async for chunk in response.content.iter_any():
                new = chunk[max(0, self._copied - seen) :]
                seen += len(chunk)
                if new:
                    await asyncio.to_thread(log.write, new)
                    self._copied += len(new)
        finally:
            await asyncio.to_thread(log.close)
            response.release()

    async def wait(self) -> int:
        await self._done.wait()
        return self.returncode

    def kill(self) -> None:
        """Delete the pod now (no grace period); :meth:`wait` returns once it is gone."""
        if self.returncode is None:
            asyncio.ensure_future(self.sandbox._delete(self.name))

    terminate = kill

    def log_tail(self, size: int = 20000) -> str:
        return log_tail(self.log_path, size)


def _waiting(pod):
    for c in pod.status.container_statuses or ():
        if c.state is not None and c.state.waiting is not None:
            return c.state.waiting
    return None


def _terminated(pod):
    for c in pod.status.container_statuses or ():
        if c.state is not None and c.state.terminated is not None:
            return c.state.terminated
    return None


class KubeSandbox(Sandbox):
    """Sandboxes as pods of :attr:`image` beside the service (see the module docstring)."""

    kind = "kube"
    foreign_user = True

    image = Unicode(
        "hub-ext/analytics:2026.11",
        config=True,
        help="""The image sandboxed code runs in when the run names none (grading names the
        course's): Python with hub_ext and jupyter-kernel-gateway (``course_images/analytics``,
        pushed where the cluster pulls from). Default: ``hub-ext/analytics:2026.11``.
        Example: ``c.KubeSandbox.image = "registry.example.edu/hub-ext/analytics:2026.11"``""",
    )
    namespace = Unicode(
        config=True,
        help="""The namespace of the sandbox pods. Default: the service's own (its service
        account's), else ``default``. Example: ``c.KubeSandbox.namespace = "hub"``""",
    )
    data_claim = Unicode(
        "hub-ext-data",
        config=True,
        help="""The PersistentVolumeClaim the service keeps its runtime files on, mounted by
        the service at :attr:`data_root`; sandbox pods mount their scratch directory and
        inputs from it. Default: ``hub-ext-data`` (``hub_config/z2jh/objects.yaml``).
        Example: ``c.KubeSandbox.data_claim = "course-hub-data"``""",
    )
    data_root = Unicode(
        "/srv/hub-ext/data",
        config=True,
        help="""Where the service mounts :attr:`data_claim`. Default: ``/srv/hub-ext/data``
        (``hub_config/z2jh/values.yaml``). Example: ``c.KubeSandbox.data_root = "/data"``""",
    )
    node_name = Unicode(
        config=True,
        help="""The node sandbox pods run on: the service's own, whose Unix sockets they
        answer on. Default: ``$NODE_NAME`` (the Downward API's ``spec.nodeName``, set in
        ``hub_config/z2jh/values.yaml``); empty lets the scheduler choose, which works only
        where the claim's volume is shared between nodes *and* carries Unix sockets.""",
    )
    owner_pod = Unicode(
        config=True,
        help="""The service's pod, the owner of its sandbox pods and Secrets (the cluster
        deletes them with it). Default: ``$POD_NAME`` (the Downward API's
        ``metadata.name``); empty: no owner reference (a restarted service still removes
        its leftovers by label).""",
    )
    k8s_api_host = Unicode(
        config=True,
        help="""The API server's URL, as ``c.KubeSpawner.k8s_api_host``. Default: the
        service account's (in a pod) or the kubeconfig's.""",
    )
    k8s_api_ssl_ca_cert = Unicode(
        config=True,
        help="""The API server's CA bundle, as ``c.KubeSpawner.k8s_api_ssl_ca_cert``.""",
    )
    start_timeout = Float(
        180.0,
        config=True,
        help="""Seconds a sandbox pod may stay Pending (scheduled, its image pulled) before
        the run fails, saying why. Default: 180. Example: ``c.KubeSandbox.start_timeout = 600``""",
    )
    poll_interval = Float(
        1.0,
        config=True,
        help="""Seconds between two reads of a sandbox pod's status. Default: 1.""",
    )
    owner = Unicode(
        "",
        config=True,
        help="""Who runs these sandboxes (the service's runtime directory): a label on each
        pod and Secret, so :meth:`remove_leftovers` removes only its own.""",
    )
    input_limit = Integer(
        64 * 1024**2,
        config=True,
        help="""The most bytes of inputs copied onto the claim for one run (inputs that are
        not on it already, such as a catalog notebook in the image). Default: 64 MiB.""",
    )

    @default("python")
    def _default_python(self):
        return "/opt/venv/bin/python"

    @default("namespace")
    def _default_namespace(self):
        try:
            return Path(NAMESPACE_FILE).read_text().strip() or "default"
        except OSError:
            return "default"

    @default("node_name")
    def _default_node_name(self):
        return os.environ.get("NODE_NAME", "")

    @default("owner_pod")
    def _default_owner_pod(self):
        return os.environ.get("POD_NAME", "")

    def check(self) -> None:
        try:
            from kubespawner.clients import load_config
        except ImportError:
            raise SandboxUnavailable(
                "the Kubernetes sandbox needs kubespawner (pip install 'hub_ext[kubernetes]')"
            ) from None
        import kubernetes_asyncio.config

        try:
            load_config(
                host=self.k8s_api_host or None, ssl_ca_cert=self.k8s_api_ssl_ca_cert or None
            )
            from kubernetes_asyncio.client import Configuration

            self._configuration = Configuration.get_default_copy()
            if self.k8s_api_host:  # kubespawner's load_config is once per process
                self._configuration.host = self.k8s_api_host
            if self.k8s_api_ssl_ca_cert:
                self._configuration.ssl_ca_cert = self.k8s_api_ssl_ca_cert
        except (kubernetes_asyncio.config.ConfigException, OSError) as e:
            raise SandboxUnavailable(
                f"no Kubernetes API: not in a pod, and no usable kubeconfig ({e})"
            ) from None
        if not Path(self.data_root).is_dir():
            raise SandboxUnavailable(
                f"c.KubeSandbox.data_root {self.data_root} is not a directory: mount the claim "
                f"{self.data_claim} there (hub_config/z2jh/values.yaml)"
            )

    @property
    def core(self):
        """This sandbox's own API client (of the event loop it is first used on): not
        kubespawner's shared one, which is per process and may name another API server."""
        if getattr(self, "_core", None) is None:
            from kubernetes_asyncio import client

            self._core = client.CoreV1Api(client.ApiClient(self._configuration))
        return self._core

    async def close(self) -> None:
        """Close the API client (its connections)."""
        if getattr(self, "_core", None) is not None:
            await self._core.api_client.close()
            self._core = None

    def _labels(self) -> dict[str, str]:
        return {OWNER_LABEL: owner_label(self.owner)}

    async def _owner_references(self) -> list[dict[str, Any]]:
        if not self.owner_pod:
            return []
        if getattr(self, "_owner_uid", None) is None:
            pod = await self.core.read_namespaced_pod(self.owner_pod, self.namespace)
            self._owner_uid = pod.metadata.uid
        return [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.owner_pod,
                "uid": self._owner_uid,
                "blockOwnerDeletion": False,
            }
        ]

    def _on_claim(self, spec: SandboxSpec) -> tuple[SandboxSpec, list[Path]]:
        """``spec`` with every input that is not on the claim copied onto it, beside the
        scratch directory (read-only for the pod); and what to remove at the end."""
        import dataclasses

        root = Path(self.data_root)
        staged = spec.scratch.parent / f".{spec.scratch.name}.inputs"
        binds, copied = [], 0
        for k, bind in enumerate(spec.binds):
            if Path(bind.source).resolve().is_relative_to(root.resolve()):
                binds.append(bind)
                continue
            if bind.writable or not Path(bind.source).is_file():
                raise ValueError(
                    f"sandbox {spec.name}: {bind.source} is not on the claim {self.data_claim} "
                    f"({self.data_root}): only a read-only file can be copied there"
                )
            copied += Path(bind.source).stat().st_size
            if copied > self.input_limit:
                raise ValueError(
                    f"sandbox {spec.name}: inputs over c.KubeSandbox.input_limit "
                    f"({self.input_limit} bytes) would be copied onto the claim"
                )
            staged.mkdir(parents=True, exist_ok=True, mode=0o755)
            target = staged / f"{k}-{PurePosixPath(bind.target).name}"
            shutil.copyfile(bind.source, target)
            os.chmod(target, 0o444)
            binds.append(dataclasses.replace(bind, source=target))
        return dataclasses.replace(spec, binds=tuple(binds)), [staged] if copied else []

    def prepare_scratch(self, path: Path) -> None:
        super().prepare_scratch(path)
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.uid)  # the pod's user writes it; others cannot

    async def launch(self, spec: SandboxSpec, log_path: Path) -> PodHandle:
        from kubernetes_asyncio.client.exceptions import ApiException

        from ..spawners.kube_objects import k8s_name, sandbox_pod

        self.prepare_scratch(spec.scratch)
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = k8s_name("hub-ext-sandbox", spec.name, max_length=56) + "-" + secrets.token_hex(3)
        spec, cleanup = await asyncio.to_thread(self._on_claim, spec)
        try:
            pod, secret = sandbox_pod(
                spec,
                namespace=self.namespace,
                image=spec.image or self.image,
                uid=self.uid,
                data_claim=self.data_claim,
                data_root=Path(self.data_root),
                node_name=self.node_name or None,
                name=name,
                extra_labels=self._labels(),
                owner_references=await self._owner_references(),
            )
            await self.core.create_namespaced_secret(self.namespace, secret)
            try:
                await self.core.create_namespaced_pod(self.namespace, pod)
            except BaseException:
                await self._delete(name, pod=False)
                raise
        except ApiException as e:
            for path in cleanup:
                shutil.rmtree(path, ignore_errors=True)
            raise SandboxUnavailable(
                f"the Kubernetes API refused sandbox pod {name} in namespace {self.namespace}: "
                f"{_api_error(e)} (the service's account needs get, create and delete on pods "
                "and secrets, and get on pods/log: hub_config/z2jh/objects.yaml)"
            ) from None
        self.log.info("Sandbox %s started (pod %s/%s)", spec.name, self.namespace, name)
        return PodHandle(self, name, log_path, spec.limits.log, cleanup)

    async def _delete(self, name: str, pod: bool = True) -> None:
        """Delete a run's pod (now, no grace period) and its Secret; gone already is fine."""
        from kubernetes_asyncio.client.exceptions import ApiException

        calls = [self.core.delete_namespaced_secret]
        if pod:
            calls.insert(0, self.core.delete_namespaced_pod)
        for call in calls:
            try:
                await call(name, self.namespace, grace_period_seconds=0)
            except ApiException as e:
                if e.status != 404:
                    self.log.warning("Sandbox %s not deleted: %s", name, _api_error(e))

    def remove_leftovers(self) -> int:
        """Delete the sandbox pods and Secrets a killed service left behind (blocking; from
        any thread, the event loop's too); how many pods."""
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._remove_leftovers()).result()

    async def _remove_leftovers(self) -> int:
        from kubernetes_asyncio import client

        from ..spawners.kube_objects import SANDBOX_LABEL

        selector = f"{SANDBOX_LABEL},{OWNER_LABEL}={owner_label(self.owner)}"
        async with client.ApiClient(self._configuration) as api:
            core = client.CoreV1Api(api)
            pods = await core.list_namespaced_pod(self.namespace, label_selector=selector)
            for pod in pods.items:
                await core.delete_namespaced_pod(
                    pod.metadata.name, self.namespace, grace_period_seconds=0
                )
            found = await core.list_namespaced_secret(self.namespace, label_selector=selector)
            for secret in found.items:
                await core.delete_namespaced_secret(secret.metadata.name, self.namespace)
        return len(pods.items)
