"""The Docker tier's sandbox: a container of the analytics image, with nothing it need not have.

Each run is a container that is non-root (:attr:`uid`), has a read-only root filesystem, no
Linux capability, ``no-new-privileges``, an init process, PID, memory (no swap beyond it),
CPU, open-file and file-size limits, a private ``/tmp`` (tmpfs), no network at all
(``network_mode: none``: it answers over the Unix socket in its scratch directory), and the
spec's read-only inputs. Its output is copied to the log file as it comes; the container is
removed when it ends. Containers carry the label ``org.hub-ext.sandbox`` so that
:meth:`DockerSandbox.remove_leftovers` finds what a killed service left behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from traitlets import Dict, Unicode, default

from .base import SCRATCH, CappedLog, Sandbox, SandboxSpec, SandboxUnavailable, log_tail

__all__ = ["ContainerHandle", "DockerSandbox", "container_config"]

LABEL = "org.hub-ext.sandbox"


def container_config(spec: SandboxSpec, *, image: str, uid: int) -> tuple[dict, dict]:
    """(``create_container`` arguments, ``create_host_config`` arguments) for ``spec`` (pure)."""
    limits = spec.limits
    binds = {
        str(b.source): {"bind": b.target, "mode": "rw" if b.writable else "ro"} for b in spec.binds
    }
    binds[str(spec.scratch)] = {"bind": SCRATCH, "mode": "rw"}
    host: dict = {
        "binds": binds,
        "network_mode": "none" if spec.network == "none" else "bridge",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "ulimits": [{"Name": "nofile", "Soft": limits.open_files, "Hard": limits.open_files}],
        # the engine's own copy of the output (until the container is removed) is bounded
        # as ours is (CappedLog): the newest output, in at most two files of the log limit
        "log_config": {
            "type": "json-file",
            "config": {"max-size": str(limits.log), "max-file": "2"},
        },
    }
    if limits.memory is not None:
        host["mem_limit"] = limits.memory
        host["memswap_limit"] = limits.memory
    if limits.cpu is not None:
        host["nano_cpus"] = int(limits.cpu * 1e9)
    if limits.pids is not None:
        host["pids_limit"] = limits.pids
    if limits.file_size is not None:
        host["ulimits"].append(
            {"Name": "fsize", "Soft": limits.file_size, "Hard": limits.file_size}
        )
    create = {
        "image": image,
        "command": list(spec.argv),
        "entrypoint": [],
        "environment": {"HOME": SCRATCH, **spec.env},
        "user": f"{uid}:{uid}",
        "working_dir": spec.workdir,
        "labels": {LABEL: spec.name, **{f"org.hub-ext.{k}": v for k, v in spec.labels.items()}},
        "network_disabled": spec.network == "none",
    }
    return create, host


#: bytes of the end of a container's output compared with the engine's copy
_COMPARED = 64 * 1024


class ContainerHandle:
    """A running sandbox container (the interface of :class:`~hub_ext.sandbox.ProcessHandle`)."""

    def __init__(self, client, container_id: str, log_path: Path, log_limit: int, loop):
        self.client = client
        self.id = container_id
        self.log_path = log_path
        self.log_limit = log_limit
        self.returncode: int | None = None
        #: the engine's OOMKilled: the container hit its memory limit (read before removal)
        self.oom_killed = False
        self._done = asyncio.Event()
        self._loop = loop
        threading.Thread(target=self._follow, daemon=True, name=f"sandbox-{self.id[:12]}").start()

    @property
    def pid(self) -> int:
        return int(self.id[:8], 16)  # for log lines only: a container has no host pid of ours

    def _follow(self) -> None:
        """Copy the output to the log file, then wait for the end and remove the container.

        The engine's follower can fall behind its own rotation of a fast writer's output
        (``max-size``) and end short of the output's end: once the container is done, the
        engine's retained copy (its newest output) is compared with what was copied, and
        appended, marked, when the copy does not end as it does."""
        try:
            with CappedLog(self.log_path, self.log_limit) as log:
                copied = b""  # the end of what was copied
                for chunk in self.client.logs(self.id, stream=True, follow=True):
                    log.write(chunk)
                    copied = (copied + chunk)[-_COMPARED:]
                code = self.client.wait(self.id).get("StatusCode", -1)
                self._complete(log, copied)
        except Exception:  # the engine went away, or the container was removed meanwhile
            code = -1
        try:
            state = self.client.inspect_container(self.id).get("State", {})
            self.oom_killed = bool(state.get("OOMKilled"))
        except Exception:
            pass
        try:
            self.client.remove_container(self.id, force=True)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._finish, code)

    def _complete(self, log: CappedLog, copied: bytes) -> None:
        """Append the engine's copy of the output's end if what was copied does not end so."""
        try:
            kept = self.client.logs(self.id, stream=False)
        except Exception:  # the engine went away: the copy is what there is
            return
        if kept and not kept.endswith(copied[-len(kept) :] or b"\0"):
            mark = (
                b"\n[hub-ext: the engine's log follower fell behind the output; "
                b"its last output as the engine kept it follows]\n"
            )
            log.write(mark + kept[-max(self.log_limit - len(mark), 1) :])

    def _finish(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        return self.returncode

    def _stop(self, signal_name: str) -> None:
        if self.returncode is not None:
            return
        try:
            self.client.kill(self.id, signal=signal_name)
        except Exception:
            pass

    def kill(self) -> None:
        self._stop("SIGKILL")

    def terminate(self) -> None:
        self._stop("SIGTERM")

    def log_tail(self, size: int = 20000) -> str:
        return log_tail(self.log_path, size)


class DockerSandbox(Sandbox):
    """Sandboxes as containers of :attr:`image` (see the module docstring)."""

    kind = "docker"
    foreign_user = True

    image = Unicode(
        "hub-ext/analytics:2026.11",
        config=True,
        help="""The image sandboxed code runs in: it needs Python with hub_ext and
        jupyter-kernel-gateway (``course_images/analytics``, ``make images``). Default:
        ``hub-ext/analytics:2026.11``. Example: ``c.DockerSandbox.image = "uni/analytics:2027.1"``""",
    )
    docker_kwargs = Dict(
        config=True,
        help="""Extra arguments of ``docker.APIClient`` (``DOCKER_HOST`` and the rest of the
        environment apply too). Example: ``c.DockerSandbox.docker_kwargs = {"timeout": 120}``""",
    )

    owner = Unicode(
        "",
        config=True,
        help="""Who runs these sandboxes (e.g. the analytics service's runtime directory): a
        label on each container, so :meth:`remove_leftovers` removes only its own.""",
    )

    @default("python")
    def _default_python(self):
        return "/opt/venv/bin/python"

    @property
    def client(self):
        if getattr(self, "_client", None) is None:
            import docker

            self._client = docker.APIClient(
                version="auto", **docker.utils.kwargs_from_env(), **self.docker_kwargs
            )
        return self._client

    def check(self) -> None:
        try:
            import docker
        except ImportError:
            raise SandboxUnavailable(
                "the Docker sandbox needs docker-py (pip install docker)"
            ) from None
        try:
            self.client.inspect_image(self.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"the sandbox image {self.image} is not on this machine: build it with "
                "`make images IMAGES=analytics`"
            ) from None
        except docker.errors.DockerException as e:
            raise SandboxUnavailable(f"no Docker engine answers: {e}") from None

    def prepare_scratch(self, path: Path) -> None:
        super().prepare_scratch(path)
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.uid)  # the container's user writes it; others cannot

    def remove_leftovers(self) -> int:
        """Remove sandbox containers a killed service left behind (blocking); how many."""
        gone = 0
        mine = f"{LABEL}.owner={self.owner}"
        for c in self.client.containers(all=True, filters={"label": mine}):
            self.client.remove_container(c["Id"], force=True)
            gone += 1
        return gone

    async def launch(self, spec: SandboxSpec, log_path: Path) -> ContainerHandle:
        self.prepare_scratch(spec.scratch)
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create, host = container_config(spec, image=spec.image or self.image, uid=self.uid)
        create["labels"][f"{LABEL}.owner"] = self.owner

        def start() -> str:
            container = self.client.create_container(
                host_config=self.client.create_host_config(**host), **create
            )
            self.client.start(container["Id"])
            return container["Id"]

        container_id = await asyncio.to_thread(start)
        self.log.info("Sandbox %s started (container %s)", spec.name, container_id[:12])
        return ContainerHandle(
            self.client, container_id, log_path, spec.limits.log, asyncio.get_running_loop()
        )
