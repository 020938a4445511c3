"""Run, watch and restart the kernel gateways of the published notebooks, in the sandbox.

Every gateway runs through one :class:`~hub_ext.sandbox.Sandbox` (``c.GatewaySupervisor.sandbox``:
bubblewrap on the embedded default, Docker containers on the Docker tier, ``none`` only
for vetted catalog notebooks where no sandbox can be made). It answers on a Unix socket
in its scratch directory and exits on its own when the supervisor stops touching its
lifeline (a container does not die with its parent).

:class:`Gateway` is one supervised gateway: started and awaited until its health check
runs code, restarted (with back-off) when it exits, killed and restarted when its health
checks fail ``health_failures`` times in a row. :class:`GatewaySupervisor` holds one per
published (course, API) and implements publish / replace / withdraw: a replacement is
started and must be healthy before it takes the old one's place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tornado.httpclient import HTTPRequest
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from ...sandbox import Limits, ProcessHandle, Sandbox, SandboxUnavailable, make_sandbox
from .launch import DATA, GatewaySpec, gateway_spec
from .notebook import CheckedNotebook
from .personality import HEALTH_PATH, SETUP_ERROR_EXIT, SETUP_ERROR_MARK
from .unixhttp import SocketResolver, gateway_client

__all__ = ["Gateway", "GatewayFailed", "GatewaySupervisor", "default_gateway_options"]


def _gateway_options(get) -> dict:
    """The limits and timeouts a gateway gets, from the supervisor's trait values (``get(name)``)."""
    return {
        "pool_size": get("pool_size"),
        "execution_timeout": get("execution_timeout"),
        "queue_timeout": get("queue_timeout"),
        "interrupt_grace": get("interrupt_grace"),
        "setup_timeout": get("setup_timeout"),
        "max_requests_per_kernel": get("max_requests_per_kernel"),
        # the gateway's check waits for a kernel, then runs code: each half of ours
        "health_timeout": get("health_timeout") / 2,
        "lifeline_timeout": 6 * get("lifeline_interval"),
    }


def default_gateway_options() -> dict:
    """:func:`_gateway_options` of an unconfigured supervisor: its traits' defaults."""
    traits = GatewaySupervisor.class_traits()
    return _gateway_options(lambda name: traits[name].default_value)


class GatewayFailed(Exception):
    """A gateway that could not start; ``detail`` is JSON-able (setup cell and error)."""

    def __init__(self, message: str, detail: dict | None = None):
        self.detail = detail or {}
        super().__init__(message)


def setup_error(log_text: str) -> dict | None:
    """The setup error a gateway reported on its way out, if any."""
    for line in reversed(log_text.splitlines()):
        if line.startswith(SETUP_ERROR_MARK):
            try:
                return json.loads(line[len(SETUP_ERROR_MARK) :])
            except ValueError:
                return None
    return None


@dataclass
class _Health:
    ok: bool
    status: int
    body: dict


class Gateway:
    """One supervised kernel gateway serving one (course, notebook)."""

    def __init__(self, supervisor: GatewaySupervisor, spec: GatewaySpec, notebook: CheckedNotebook):
        self.supervisor = supervisor
        self.spec = spec
        self.notebook = notebook
        self.log = supervisor.log
        self.process: ProcessHandle | None = None
        self.state = "new"
        self.message = ""
        self.detail: dict = {}
        self.restarts = 0
        self.failures = 0
        self.ready = asyncio.Event()
        self._watcher: asyncio.Task | None = None
        self._restarting: asyncio.Task | None = None
        self.log_path = supervisor.log_dir / f"{spec.course_id}--{spec.api_name}.log"

    @property
    def key(self) -> str:
        return self.spec.key

    def describe(self) -> dict:
        return {
            "course": self.spec.course_id,
            "name": self.spec.api_name,
            "version": self.notebook.version,
            "state": self.state,
            "message": self.message,
            "restarts": self.restarts,
            "routes": [{"verb": r.verb, "path": r.path} for r in self.notebook.routes],
        }

    async def health(self, timeout: float) -> _Health:
        req = HTTPRequest(
            self.spec.url + HEALTH_PATH,
            headers={"Authorization": f"token {self.spec.token}"},
            request_timeout=timeout,
            connect_timeout=timeout,
        )
        try:
            resp = await self.supervisor.http.fetch(req, raise_error=False)
        except Exception as e:  # connection refused, timeout
            return _Health(False, 0, {"message": str(e)})
        try:
            body = json.loads(resp.body or b"{}")
        except ValueError:
            body = {}
        return _Health(resp.code == 200, resp.code, body)

    async def start(self) -> None:
        """Launch and wait until the health check runs code; GatewayFailed otherwise."""
        sup = self.supervisor
        self.state = "starting"
        self.ready.clear()
        self.process = await sup.launch(self.spec, self.log_path)
        deadline = time.monotonic() + sup.ready_timeout
        while True:
            if self.process.returncode is not None:
                break
            health = await self.health(min(sup.health_timeout, 5.0))
            if health.ok:
                self.state, self.message, self.failures = "running", "", 0
                self.ready.set()
                self._watch()
                return
            if time.monotonic() > deadline:
                self.process.kill()
                await self.process.wait()
                break
            await asyncio.sleep(0.2)
        # it exited (or never became healthy): say why
        await self.process.wait()
        detail = setup_error(self.process.log_tail())
        if self.process.returncode == SETUP_ERROR_EXIT and detail:
            message = detail.get("message") or "a setup cell raised"
        elif self.process.returncode == -signal.SIGKILL and time.monotonic() > deadline:
            message = f"the gateway did not answer its health check within {sup.ready_timeout:g}s"
        else:
            tail = self.process.log_tail(2000).strip().splitlines()[-3:]
            message = f"the gateway exited with status {self.process.returncode}: " + " | ".join(
                tail
            )
        self.state, self.message, self.detail = "failed", message, detail or {}
        raise GatewayFailed(message, detail)

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_loop())

    async def _watch_loop(self) -> None:
        """The watchdog: restart on exit, kill and restart after failed health checks."""
        sup = self.supervisor
        proc = self.process
        exited = asyncio.ensure_future(proc.wait())
        try:
            while self.state == "running" and self.process is proc:
                done, _ = await asyncio.wait({exited}, timeout=sup.health_interval)
                if self.state != "running" or self.process is not proc:
                    return
                if done:
                    self.log.warning("Gateway %s exited with status %s", self.key, proc.returncode)
                    return self._restart_soon(f"exited with status {proc.returncode}")
                health = await self.health(sup.health_timeout)
                if health.ok:
                    self.failures = 0
                    continue
                self.failures += 1
                self.log.warning(
                    "Gateway %s: health check failed (%d/%d): %s",
                    self.key,
                    self.failures,
                    sup.health_failures,
                    health.body.get("message") or health.status,
                )
                if self.failures >= sup.health_failures:
                    proc.kill()
                    await proc.wait()
                    return self._restart_soon(f"{self.failures} failed health checks")
        finally:
            if not exited.done():
                exited.cancel()

    def _restart_soon(self, reason: str) -> None:
        self.ready.clear()
        self.state = "restarting"
        self.message = reason
        self._restarting = asyncio.ensure_future(self._restart_loop(reason))

    async def _restart_loop(self, reason: str) -> None:
        delay = 0.0
        while (
            self.state in ("restarting", "failed")
            and self.supervisor.gateways.get(self.key) is self
        ):
            if delay:
                await asyncio.sleep(delay)
            self.restarts += 1
            self.log.warning(
                "Gateway %s: restarting (%s), attempt %d", self.key, reason, self.restarts
            )
            try:
                # a fresh port: the old one may linger in TIME_WAIT or be taken meanwhile
                self.spec = self.supervisor.respec(self.spec)
                await self.start()
                return
            except Exception as e:
                reason = str(e)
                self.state, self.message = "failed", reason
                if not isinstance(e, GatewayFailed):
                    self.log.exception("Gateway %s: restart failed", self.key)
                else:
                    self.log.error("Gateway %s: restart failed: %s", self.key, e)
                if self.process is not None and self.process.returncode is None:
                    self.process.kill()
                delay = min(max(1.0, delay * 2), self.supervisor.max_backoff)

    async def stop(self) -> None:
        self.state = "stopped"
        self.ready.clear()
        for task in (self._watcher, self._restarting):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.supervisor.stop_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        # the scratch space is the sandbox's own, never anyone's work: it goes with it
        self.supervisor.resolver.forget(self.spec.host)
        await asyncio.to_thread(shutil.rmtree, self.spec.sandbox.scratch, True)


class GatewaySupervisor(LoggingConfigurable):
    """The published APIs' gateways: publish, replace, withdraw, watch."""

    pool_size = Integer(
        2,
        config=True,
        help="""Kernels per gateway (one gateway per published notebook); requests are spread
        over them. Default: 2. Example: ``c.GatewaySupervisor.pool_size = 4``""",
    )
    execution_timeout = Float(
        30.0,
        config=True,
        help="""Seconds a request's cells may run before the caller gets 504 and the kernel
        is interrupted. Default: 30. Example: ``c.GatewaySupervisor.execution_timeout = 10``""",
    )
    queue_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a request may wait for a free kernel (or for a restarting gateway)
        before the caller gets 503. Default: 10.
        Example: ``c.GatewaySupervisor.queue_timeout = 5``""",
    )
    interrupt_grace = Float(
        5.0,
        config=True,
        help="""Seconds an interrupted kernel has to stop before it is replaced. Default: 5.
        Example: ``c.GatewaySupervisor.interrupt_grace = 2``""",
    )
    setup_timeout = Float(
        300.0,
        config=True,
        help="""Seconds a notebook's setup cells may take when a kernel starts. Default: 300.
        Example: ``c.GatewaySupervisor.setup_timeout = 60``""",
    )
    max_requests_per_kernel = Integer(
        5000,
        config=True,
        help="""Requests a kernel serves before it is recycled (0: never). Default: 5000.
        Example: ``c.GatewaySupervisor.max_requests_per_kernel = 2000``""",
    )
    ready_timeout = Float(
        120.0,
        config=True,
        help="""Seconds a new gateway has to start its kernels, run the setup cells and pass
        a health check. Default: 120. Example: ``c.GatewaySupervisor.ready_timeout = 60``""",
    )
    health_interval = Float(
        10.0,
        config=True,
        help="""Seconds between the watchdog's health checks of each gateway. Default: 10.
        Example: ``c.GatewaySupervisor.health_interval = 5``""",
    )
    health_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a health check may take (it runs code on a kernel). Default: 10.
        Example: ``c.GatewaySupervisor.health_timeout = 5``""",
    )
    health_failures = Integer(
        3,
        config=True,
        help="""Consecutive failed health checks after which the watchdog kills and restarts a
        gateway. Default: 3. Example: ``c.GatewaySupervisor.health_failures = 2``""",
    )
    max_backoff = Float(
        60.0,
        config=True,
        help="""Longest wait, in seconds, between attempts to restart a failed gateway.
        Default: 60. Example: ``c.GatewaySupervisor.max_backoff = 30``""",
    )
    stop_timeout = Float(
        5.0,
        config=True,
        help="""Seconds a gateway has to stop after SIGTERM before SIGKILL. Default: 5.
        Example: ``c.GatewaySupervisor.stop_timeout = 2``""",
    )
    runtime_dir = Unicode(
        config=True,
        help="""Directory for the gateways' notebooks, logs and kernel connection files
        (created, mode 0700). Default: ``analytics-runtime`` in the working directory.
        Example: ``c.GatewaySupervisor.runtime_dir = "/srv/jupyterhub/analytics"``""",
    )

    @default("runtime_dir")
    def _default_runtime_dir(self):
        return os.path.abspath("analytics-runtime")

    data_root = Unicode(
        config=True,
        help="""Directory of the courses' read-only extracts: a gateway of course X sees
        ``<data_root>/X`` (read-only) at ``/srv/data``. Default: ``data`` under
        :attr:`runtime_dir` (the analytics service builds the extracts there).""",
    )

    @default("data_root")
    def _default_data_root(self):
        return os.path.join(self.runtime_dir, "data")

    sandbox = Unicode(
        "auto",
        config=True,
        help="""What runs the gateways: ``bubblewrap`` (namespaces, the embedded default),
        ``docker`` (containers of the analytics image, the Docker tier), ``kube`` (pods
        beside the service, the Kubernetes tier: :class:`~hub_ext.sandbox.kube.KubeSandbox`), ``none`` (no
        isolation: only for notebooks the institution vetted, i.e. listed in the catalog)
        or ``auto`` (bubblewrap if it works here, else ``none``, and teachers' runtime
        publishing is then refused). Default: ``auto``.
        Example: ``c.GatewaySupervisor.sandbox = "docker"``""",
    )
    memory_limit = Integer(
        2 * 1024**3,
        config=True,
        help="""Memory of one gateway's sandbox, in bytes (bubblewrap: address space per
        process; docker: the container's memory). Default: 2 GiB.
        Example: ``c.GatewaySupervisor.memory_limit = 4 * 1024**3``""",
    )
    cpu_limit = Float(
        1.0,
        config=True,
        help="""Cores one gateway's sandbox may use (docker; bubblewrap lowers priority
        only). Default: 1. Example: ``c.GatewaySupervisor.cpu_limit = 2``""",
    )
    pids_limit = Integer(
        256,
        config=True,
        help="""Processes and threads one gateway's sandbox may run. Default: 256.
        Example: ``c.GatewaySupervisor.pids_limit = 512``""",
    )
    lifeline_interval = Float(
        10.0,
        config=True,
        help="""Seconds between two touches of the gateways' lifelines; a gateway exits
        after six missed touches. Default: 10.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gateways: dict[str, Gateway] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.resolver = SocketResolver()
        self.http = gateway_client(self.resolver, max_clients=64)
        self._backend: Sandbox | None = None
        #: why no sandbox could be made here (then only catalog notebooks run), or None
        self.sandbox_problem: str | None = None
        self._lifeline_task: asyncio.Task | None = None

    @property
    def backend(self) -> Sandbox:
        """The sandbox backend (made and checked at first use)."""
        if self._backend is None:
            try:
                self._backend = make_sandbox(self.sandbox, parent=self, log=self.log)
                if hasattr(self._backend, "remove_leftovers"):
                    self._backend.owner = str(self.root)
                    gone = self._backend.remove_leftovers()
                    if gone:
                        self.log.warning("Removed %d sandbox(es) left by a previous run", gone)
            except SandboxUnavailable as e:
                if self.sandbox != "auto":
                    raise
                self.sandbox_problem = str(e)
                self.log.warning(
                    "No sandbox for analytics notebooks: %s. Only the catalog's notebooks "
                    "will run, unconfined; teachers cannot publish at runtime.",
                    e,
                )
                self._backend = make_sandbox("none", parent=self, log=self.log)
        return self._backend

    @property
    def isolated(self) -> bool:
        return self.backend.isolates

    async def launch(self, spec: GatewaySpec, log_path: Path) -> ProcessHandle:
        spec.sandbox.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        for bind in spec.sandbox.binds:  # a course without an extract yet sees an empty one
            if bind.target == DATA:
                bind.source.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec.lifeline.touch()
        if spec.socket.exists():
            spec.socket.unlink()
        self.resolver.register(spec.host, str(spec.socket))
        if self._lifeline_task is None or self._lifeline_task.done():
            self._lifeline_task = asyncio.ensure_future(self._touch_lifelines())
        return await self.backend.launch(spec.sandbox, log_path)

    async def _touch_lifelines(self) -> None:
        while True:
            await asyncio.sleep(self.lifeline_interval)
            for gateway in list(self.gateways.values()):
                try:
                    gateway.spec.lifeline.touch()
                except OSError:
                    pass

    @property
    def root(self) -> Path:
        return Path(self.runtime_dir)

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def _notebook_path(self, course_id: str, name: str, nb: CheckedNotebook) -> Path:
        path = self.root / "notebooks" / course_id / f"{name}--{nb.version}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_bytes(nb.raw)
        # a container's user reads it through the bind; its directory (0700) keeps others out
        path.chmod(0o644 if self.backend.foreign_user else 0o600)
        return path

    def _scratch(self, course_id: str, name: str) -> Path:
        """A new gateway's own scratch directory (a replacement runs beside the old one);
        short, since its Unix socket path must be."""
        digest = hashlib.sha1(
            f"{course_id}/{name}/{secrets.token_hex(8)}".encode(), usedforsecurity=False
        ).hexdigest()
        path = self.root / "sb" / digest[:12]
        if len(str(path / "gateway.sock")) > 100:  # AF_UNIX paths are at most 107 bytes
            path = Path(tempfile.gettempdir()) / f"hub-ext-{os.getuid()}" / digest[:12]
            path.parent.mkdir(mode=0o700, exist_ok=True)
        return path

    def build_spec(
        self, course_id: str, name: str, nb: CheckedNotebook, course_env=None
    ) -> GatewaySpec:
        backend = self.backend
        return gateway_spec(
            course_id,
            name,
            self._notebook_path(course_id, name, nb),
            version=nb.version,
            token=secrets.token_urlsafe(32),
            scratch=self._scratch(course_id, name),
            data_dir=Path(self.data_root) / course_id,
            python=backend.python,
            seen_at=backend.seen_at,
            **_gateway_options(lambda name: getattr(self, name)),
            limits=Limits(memory=self.memory_limit, cpu=self.cpu_limit, pids=self.pids_limit),
            course_env=course_env,
            image=getattr(backend, "image", None),
        )

    def respec(self, spec: GatewaySpec) -> GatewaySpec:
        """The same gateway with a new token (used for restarts)."""
        token = secrets.token_urlsafe(32)
        sandbox = dataclasses.replace(
            spec.sandbox, env={**spec.sandbox.env, "KG_AUTH_TOKEN": token}
        )
        return dataclasses.replace(spec, sandbox=sandbox, token=token)

    async def publish(
        self, course_id: str, name: str, nb: CheckedNotebook, course_env=None
    ) -> Gateway:
        """Start a gateway for ``nb``; once healthy it replaces any gateway of that name."""
        key = f"{course_id}/{name}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            spec = self.build_spec(course_id, name, nb, course_env)
            gateway = Gateway(self, spec, nb)
            try:
                await gateway.start()
            except GatewayFailed:
                await gateway.stop()
                raise
            old = self.gateways.get(key)
            self.gateways[key] = gateway
            if old is not None:
                self.log.info(
                    "Gateway %s: version %s replaces %s", key, nb.version, old.notebook.version
                )
                await old.stop()
            return gateway

    async def withdraw(self, course_id: str, name: str) -> bool:
        key = f"{course_id}/{name}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            gateway = self.gateways.pop(key, None)
            if gateway is None:
                return False
            await gateway.stop()
            return True

    async def stop_all(self) -> None:
        gateways, self.gateways = list(self.gateways.values()), {}
        await asyncio.gather(*(g.stop() for g in gateways), return_exceptions=True)
        if self._lifeline_task is not None:
            self._lifeline_task.cancel()
        self.http.close()
