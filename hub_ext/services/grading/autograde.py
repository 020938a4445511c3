"""Autograde one submission in a throwaway sandbox; score it outside.

What runs where (see the package docstring for why):

- **inside the sandbox** (bubblewrap or Docker, never ``none``): only a Python kernel
  (``python -m ipykernel_launcher``), talking ZeroMQ over Unix sockets in its scratch
  directory (no network at all). It sees the interpreter read-only, the assignment's own
  files read-only (linked into its working directory), and a scratch directory that is
  deleted afterwards. It is *not* given the notebook: neither the learner's cells nor the
  tests are on its filesystem.
- **outside, in the grader** (this module): nbclient drives that kernel cell by cell. The
  executed notebook is assembled here from the kernel's replies, so there is no file, pipe
  or log of the sandbox that the scoring trusts. Per-cell and per-notebook time, output
  size (counted here; one message may not exceed it either, enforced by ZeroMQ before it is
  read) are enforced here; memory and processes by the sandbox.

:func:`kernel_launch` is the pure "what to create" (the :class:`~hub_ext.sandbox.SandboxSpec`
and the connection files); :class:`Autograder` runs it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable
from zmq.utils.monitor import parse_monitor_message

from ...sandbox import Bind, Limits, Sandbox, SandboxSpec, SandboxUnavailable, make_sandbox
from ...sandbox.base import SCRATCH, log_tail
from .notebooks import PreparedSubmission, definitions
from .scoring import CellRun, TestResult, feedback_notebook, score

__all__ = [
    "STATUSES",
    "Autograder",
    "GradeResult",
    "GradingLimits",
    "KernelLaunch",
    "kernel_launch",
]

#: every overall status of a grading, and what it means
STATUSES = {
    "graded": "every cell ran within the limits",
    "timed_out": "a cell or the whole notebook ran longer than allowed",
    "out_of_memory": "the submission used more memory than allowed",
    "output_too_large": "the submission printed more than allowed",
    "crashed": "the kernel died or could not start",
    "tampered": "the submission interfered with how the tests run",
}
#: where the kernel's sockets are, inside the sandbox (``<prefix>-<port>``)
SOCKETS = f"{SCRATCH}/k"
CONNECTION_FILE = "kernel.json"
#: where the assignment's own files (data the notebook reads) are, read-only
FILES = "/srv/assignment"
#: the kernel's ZeroMQ "ports" (with ipc, suffixes of the socket paths)
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
#: variables of the grader's environment the kernel may inherit (locale and clock only)
PASSED_ENV = ("LANG", "LC_ALL", "TZ")
_TIMEOUT_ENAME = "CellTimeoutError"
#: nbclient's own logger: at DEBUG it logs every kernel message, the hidden tests and the
#: learner's code with them, so it says only warnings, whatever the service's level
_NBCLIENT_LOG = logging.getLogger("hub_ext.services.grading.nbclient")
_NBCLIENT_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True)
class GradingLimits:
    """The limits of one grading: seconds, bytes, processes (threads count). No defaults
    here: they are :class:`Autograder`'s traits (:meth:`Autograder.limits`), in one place."""

    cell_timeout: float
    notebook_timeout: float
    memory: int
    pids: int
    cpu: float
    output: int
    startup_timeout: float
    interrupt_grace: float

    def sandbox_limits(self) -> Limits:
        """The sandbox's own limits; its wall time is the notebook's plus start-up."""
        return Limits(
            memory=self.memory,
            cpu=self.cpu,
            pids=self.pids,
            open_files=256,
            file_size=64 * 1024**2,
            wall=self.notebook_timeout + self.startup_timeout,
            # a run's log is kept (one per grading): its kernel's own output, bounded as the
            # notebook's is (the log of a submission that floods stdout stays this small)
            log=max(self.output, 64 * 1024),
        )


@dataclass(frozen=True)
class KernelLaunch:
    """What to create for one grading: the sandbox, and the kernel's connection as each
    side sees it (the key is per grading; it is not a secret of the hub)."""

    sandbox: SandboxSpec
    #: what the grader connects to (host paths of the sockets)
    connection: Mapping = field(repr=False)
    #: the connection file the kernel reads, written into the scratch directory
    connection_file: Mapping = field(repr=False)

    def __repr__(self) -> str:
        return f"<KernelLaunch {self.sandbox.name}>"


def _connection(ip: str, key: str) -> dict:
    return {
        "transport": "ipc",
        "ip": ip,
        **PORTS,
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
    }


def kernel_launch(
    name: str,
    *,
    scratch: os.PathLike | str,
    key: str,
    python: str,
    limits: GradingLimits,
    files: os.PathLike | str | None = None,
    image: str | None = None,
    base_env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> KernelLaunch:
    """The sandboxed kernel of one grading (pure: starts nothing, reads no file).

    ``scratch`` is the host directory the sandbox may write: the kernel's sockets and
    connection file go there, and the assignment's ``files`` (a host directory, bound
    read-only at :data:`FILES`) are linked into it. The
    environment is built from an allow-list (``base_env``, default ``os.environ``, gives
    only :data:`PASSED_ENV`): no hub or service token reaches a learner's code.
    """
    if not key:
        raise ValueError("a kernel needs a key")
    scratch = Path(scratch)
    base_env = os.environ if base_env is None else base_env
    env = {k: base_env[k] for k in PASSED_ENV if k in base_env}
    env.update(
        {
            "HOME": SCRATCH,
            "IPYTHONDIR": f"{SCRATCH}/.ipython",
            "JUPYTER_RUNTIME_DIR": f"{SCRATCH}/.jupyter",
            "MPLCONFIGDIR": f"{SCRATCH}/.matplotlib",
            "MPLBACKEND": "Agg",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            # glibc reserves 64 MiB of address space per thread's arena: with the
            # address-space limit of bubblewrap, a kernel would not start under 1 GiB
            "MALLOC_ARENA_MAX": "2",
        }
    )
    argv = (
        python,
        "-m",
        "ipykernel_launcher",
        "-f",
        f"{SCRATCH}/{CONNECTION_FILE}",
        "--HistoryManager.hist_file=:memory:",
        "--IPKernelApp.log_level=ERROR",
    )
    spec = SandboxSpec(
        name=f"grading {name}",
        argv=argv,
        env=env,
        scratch=scratch,
        binds=(Bind(Path(files), FILES),) if files is not None else (),
        limits=limits.sandbox_limits(),
        network="none",
        image=image,
        labels={"purpose": "grading", **(labels or {})},
    )
    return KernelLaunch(
        sandbox=spec,
        connection=_connection(str(scratch / SOCKETS.rsplit("/", 1)[1]), key),
        connection_file=_connection(SOCKETS, key),
    )


@dataclass
class GradeResult:
    """One grading: an overall status with a readable message, and every graded cell."""

    status: str
    message: str
    tests: list[TestResult]
    total: float
    max_points: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: the executed notebook as the learner may see it (hidden tests out)
    feedback: NotebookNode | None = field(default=None, repr=False)
    #: the executed notebook with everything (for teachers)
    executed: NotebookNode | None = field(default=None, repr=False)
    #: where it ran: the sandbox's kind and, for containers, the image
    sandbox: str = ""

    def as_dict(self) -> dict:
        """JSON-able, without the notebooks."""
        return {
            "status": self.status,
            "message": self.message,
            "total": self.total,
            "max_points": self.max_points,
            "seconds": round(self.seconds, 3),
            "tests": [t.as_dict() for t in self.tests],
            "notes": list(self.notes),
            "sandbox": self.sandbox,
        }


class _Stop(Exception):
    """Stop running cells: ``status`` and ``message`` say why."""

    def __init__(self, status: str, message: str):
        self.status, self.message = status, message
        super().__init__(message)


class _SandboxKernelClient(AsyncKernelClient):
    """A kernel client whose kernel is alive while its sandbox runs (not by heartbeat: a
    busy sandbox must not look dead, and the sandbox's process is ours to ask)."""

    handle = None

    async def _async_is_alive(self) -> bool:
        return self.handle is not None and self.handle.returncode is None

    is_alive = _async_is_alive


class _SandboxKernel:
    """What nbclient asks of a kernel manager, for a kernel that runs in a sandbox."""

    ipykernel = False  # the kernel's arguments are the launch's; nbclient adds none
    kernel_name = "python3"
    has_kernel = True

    def __init__(self, handle, connection: Mapping, context: zmq.asyncio.Context):
        self.handle = handle
        self.connection = connection
        self.context = context
        self.kc: _SandboxKernelClient | None = None
        self.kernel_id = None

    def client(self, **kwargs) -> _SandboxKernelClient:
        kc = _SandboxKernelClient(context=self.context, **kwargs)
        kc.load_connection_info(dict(self.connection))
        kc.handle = self.handle
        self.kc = kc
        return kc

    async def is_alive(self) -> bool:
        return self.handle.returncode is None

    async def interrupt_kernel(self) -> None:
        """An ``interrupt_request`` on the control channel (ipykernel sends itself SIGINT)."""
        if self.kc is not None:
            self.kc.control_channel.send(self.kc.session.msg("interrupt_request", {}))

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        self.handle.kill()

    async def cleanup_resources(self, restart: bool = False) -> None:
        return None


class _GradingClient(NotebookClient):
    """nbclient, with the grader's guards around each cell (see :meth:`Autograder.grade`)."""

    def setup_grading(self, prepared: PreparedSubmission, limits: GradingLimits) -> None:
        self.prepared = prepared
        self.limits = limits
        self.runs: dict[int, CellRun] = {}
        self.output_bytes = 0
        self.output_cell: int | None = None
        self.timed_out_cell: int | None = None
        self.running: int | None = None
        self.expired_in: int | None = None
        self._timed_out = False
        # the teacher's definitions to restore before each test cell (from the locked cells before it)
        self.restore: dict[int, str] = {}
        code: list[str] = []
        for i, gid in enumerate(prepared.cells):
            graded = prepared.source.cells.get(gid) if gid else None
            if graded is None or graded.cell_type != "code":
                continue
            if graded.kind == "tests" and code:
                self.restore[i] = "\n".join(code)
            if graded.locked:
                defs = definitions(prepared.nb.cells[i].source)
                if defs:
                    code.append(defs)

    def expire(self) -> None:
        """The notebook's time is up: stop the kernel (nbclient then sees it die)."""
        self.expired_in = self.running if self.running is not None else -1
        self.km.handle.kill()

    # ---- output: counted, bounded, never widgets
    def output(self, outs, msg, display_id, cell_index):
        if self.output_cell is not None:
            return None
        self.output_bytes += len(json.dumps(msg.get("content", {})))
        if self.output_bytes > self.limits.output:
            self.output_cell = cell_index
            self.km.handle.kill()  # the kernel dies; nbclient notices within a second
            return None
        return super().output(outs, msg, display_id, cell_index)

    def handle_comm_msg(self, outs, msg, cell_index) -> None:
        """Widgets are ignored: an output widget would take a test cell's outputs away."""
        return None

    @asynccontextmanager
    async def async_setup_kernel(self, **kwargs):
        """nbclient's, without its SIGINT/SIGTERM handlers and atexit hook: they would
        replace the service's own, and the grader ends the sandbox itself."""
        if self.kc is None:
            await self.async_start_new_kernel_client()
        watchers = [
            asyncio.ensure_future(self._watch(channel.socket, name))
            for name, channel in (
                ("iopub", self.kc.iopub_channel),
                ("shell", self.kc.shell_channel),
            )
        ]
        try:
            yield
        finally:
            for task in watchers:
                task.cancel()
            # their sockets close right after: let them stop first (no stray task errors)
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, sock, name: str) -> None:
        """A dropped connection while the kernel still runs: it sent a message larger than
        ZeroMQ's ``MAXMSGSIZE`` (refused unread), so the output limit is past. (A kernel
        that died drops it too: its sandbox then ends within moments.)"""
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] != zmq.EVENT_DISCONNECTED:
                    continue
                try:
                    await asyncio.wait_for(self.km.handle.wait(), 1.0)
                except TimeoutError:
                    pass
                if self.km.handle.returncode is None:
                    self.log.warning("Grading: the kernel's %s message was over the limit", name)
                    self.output_cell = self.running if self.running is not None else -1
                    self.km.handle.kill()
                return
        finally:
            if not sock.closed:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:  # closed meanwhile
                    pass
            monitor.close(linger=0)

    async def _async_cleanup_kernel(self) -> None:
        return None  # see async_setup_kernel: the grader stops the channels and the sandbox

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    # ---- each cell
    async def _reply(self, msg_id: str, timeout: float) -> dict | None:
        """The shell reply to ``msg_id`` within ``timeout`` seconds (others are dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.km.handle.returncode is not None:
                raise DeadKernelError("Kernel died")
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=min(left, 1.0))
            except Exception:  # queue.Empty
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
        return None

    async def _silent(self, code: str) -> dict | None:
        msg_id = self.kc.execute(code, silent=True, store_history=False, stop_on_error=False)
        reply = await self._reply(msg_id, self.limits.cell_timeout)
        if reply is None:
            raise _Stop("timed_out", "the kernel did not answer before a test cell")
        return reply["content"]

    async def _guard(self, index: int) -> None:
        """Before a test cell: put back the teacher's definitions, then check that the
        kernel still reports a failing ``assert`` as failing (with a fresh nonce)."""
        if index in self.restore:
            await self._silent(self.restore[index])
        nonce = secrets.token_hex(12)
        content = await self._silent(f"assert False, {nonce!r}")
        if not (
            content.get("status") == "error"
            and content.get("ename") == "AssertionError"
            and content.get("evalue") == nonce
        ):
            raise _Stop(
                "tampered",
                f"before cell {index + 1}, the kernel reported a failing check as "
                f"{content.get('status')!r}: the submission changes how code runs, so "
                "the tests from there on cannot be trusted",
            )

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code":
            return cell
        if not cell.source.strip():
            self.runs[cell_index] = CellRun(True, "ok")
            return cell
        gid = self.prepared.cells[cell_index] if cell_index < len(self.prepared.cells) else None
        graded = self.prepared.source.cells.get(gid) if gid else None
        if graded is not None and graded.kind == "tests":
            await self._guard(cell_index)
        self._timed_out = False
        self.running = cell_index
        reply: dict = {}

        async def keep(cell, cell_index, execute_reply):
            reply.update(execute_reply.get("content", {}) if execute_reply else {})

        self.on_cell_executed = keep
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        self.running = None
        self.runs[cell_index] = CellRun(
            True, reply.get("status"), str(reply.get("ename", "")), str(reply.get("evalue", ""))
        )
        if self._timed_out:
            self.timed_out_cell = cell_index
            # nbclient interrupted the kernel; it must come back, or the notebook stops here
            msg_id = self.kc.kernel_info()
            if await self._reply(msg_id, self.limits.interrupt_grace) is None:
                raise _Stop(
                    "timed_out",
                    f"cell {cell_index + 1} ran longer than {self.limits.cell_timeout:g}s "
                    "and did not stop when interrupted",
                )
        return cell


def _absolute(path: os.PathLike | str | None) -> Path | None:
    return None if path is None else Path(os.path.abspath(path))


class Autograder(LoggingConfigurable):
    """Grades prepared submissions, one throwaway sandbox each (see the module docstring)."""

    sandbox = Unicode(
        "auto",
        config=True,
        help="""What runs learners' code: ``bubblewrap`` (the embedded default), ``docker``
        (containers of :attr:`DockerSandbox.image`, the Docker tier), ``kube`` (pods beside
        the service, the Kubernetes tier) or ``auto``
        (bubblewrap if it works here). Never ``none``: where no sandbox can be made,
        grading is refused (:class:`~hub_ext.sandbox.SandboxUnavailable`). Default:
        ``auto``. Example: ``c.Autograder.sandbox = "docker"``""",
    )
    runtime_dir = Unicode(
        config=True,
        help="""Directory of the gradings' scratch directories and logs (created, mode
        0700; each grading's scratch is deleted when it ends). Default: ``grading-runtime``
        in the working directory. Example: ``c.Autograder.runtime_dir = "/srv/grading"``""",
    )

    @default("runtime_dir")
    def _default_runtime_dir(self):
        return os.path.abspath("grading-runtime")

    image = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The image the kernel runs in on the Docker tier: the course's environment
        (the grading service sets each course's ``image``). It needs the Python of
        :attr:`DockerSandbox.python` with ipykernel, as the course images have. Default:
        None (the sandbox's own image, :attr:`DockerSandbox.image`); ignored by bubblewrap.
        Example: ``c.Autograder.image = "hub-ext/course-ds101:2026.11"``""",
    )

    cell_timeout = Float(
        30.0,
        config=True,
        help="""Seconds one cell may run before it is interrupted (it then fails; the
        notebook goes on if the kernel stops within :attr:`interrupt_grace`). Default: 30.
        Example: ``c.Autograder.cell_timeout = 10``""",
    )
    notebook_timeout = Float(
        300.0,
        config=True,
        help="""Seconds the whole notebook may run. Default: 300.
        Example: ``c.Autograder.notebook_timeout = 120``""",
    )
    interrupt_grace = Float(
        5.0,
        config=True,
        help="""Seconds an interrupted cell has to stop before the notebook is stopped.
        Default: 5. Example: ``c.Autograder.interrupt_grace = 2``""",
    )
    startup_timeout = Float(
        60.0,
        config=True,
        help="""Seconds the kernel has to start. Default: 60.
        Example: ``c.Autograder.startup_timeout = 30``""",
    )
    memory_limit = Integer(
        1024**3,
        config=True,
        help="""Memory of one grading, in bytes (bubblewrap: address space per process;
        docker: the container's memory, no swap). Default: 1 GiB.
        Example: ``c.Autograder.memory_limit = 2 * 1024**3``""",
    )
    pids_limit = Integer(
        64,
        config=True,
        help="""Processes and threads of one grading (the kernel uses about 10).
        Default: 64. Example: ``c.Autograder.pids_limit = 128``""",
    )
    cpu_limit = Float(
        1.0,
        config=True,
        help="""Cores one grading may use (docker; bubblewrap lowers priority only).
        Default: 1. Example: ``c.Autograder.cpu_limit = 2``""",
    )
    output_limit = Integer(
        1024**2,
        config=True,
        help="""Bytes of output (all cells together, as the kernel sends them) a grading
        may produce; past it the kernel is stopped and the grading is "output too large".
        Default: 1 MiB. Example: ``c.Autograder.output_limit = 4 * 1024**2``""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._backend: Sandbox | None = None

    def limits(self) -> GradingLimits:
        return GradingLimits(
            cell_timeout=self.cell_timeout,
            notebook_timeout=self.notebook_timeout,
            memory=self.memory_limit,
            pids=self.pids_limit,
            cpu=self.cpu_limit,
            output=self.output_limit,
            startup_timeout=self.startup_timeout,
            interrupt_grace=self.interrupt_grace,
        )

    @property
    def backend(self) -> Sandbox:
        """The sandbox backend, made and checked at first use; refused if it isolates nothing."""
        if self._backend is None:
            if self.sandbox == "none":
                raise SandboxUnavailable(
                    "learners' code is never graded unsandboxed: set c.Autograder.sandbox "
                    "to bubblewrap or docker"
                )
            backend = make_sandbox(self.sandbox, parent=self, log=self.log)
            if not backend.isolates:
                raise SandboxUnavailable(f"the {backend.kind} sandbox isolates nothing")
            if not getattr(backend, "limits_processes", True):
                raise SandboxUnavailable(
                    "the service runs as root and no pids cgroup can be made here "
                    "(c.BubblewrapSandbox.pids_cgroup): a fork bomb would not be stopped"
                )
            if hasattr(backend, "owner"):
                backend.owner = self.runtime_dir
            self._backend = backend
        return self._backend

    def _scratch(self) -> Path:
        """A new short scratch directory (the kernel's Unix socket paths must be short)."""
        root = Path(self.runtime_dir) / "sb"
        path = root / secrets.token_hex(6)
        if len(str(path / "k-1")) > 100:
            root = Path(tempfile.gettempdir()) / f"hub-ext-grading-{os.getuid()}"
            path = root / secrets.token_hex(6)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def launch_spec(
        self, name: str, labels: Mapping[str, str] | None = None, files: Path | None = None
    ) -> KernelLaunch:
        backend = self.backend
        return kernel_launch(
            name,
            scratch=self._scratch(),
            key=secrets.token_hex(32),
            python=backend.python,
            limits=self.limits(),
            files=files,
            image=self.image or getattr(backend, "image", None),
            labels=labels,
        )

    def _prepare_scratch(self, launch: KernelLaunch, files: Path | None) -> None:
        backend = self.backend
        scratch = launch.sandbox.scratch
        backend.prepare_scratch(scratch)
        path = scratch / CONNECTION_FILE
        path.write_text(json.dumps(dict(launch.connection_file)))
        if backend.foreign_user and os.geteuid() == 0:
            os.chown(path, backend.uid, backend.uid)
        for entry in sorted(files.iterdir()) if files else ():
            (scratch / entry.name).symlink_to(f"{FILES}/{entry.name}")

    async def grade(
        self,
        prepared: PreparedSubmission,
        *,
        files: os.PathLike | str | None = None,
        name: str = "submission",
        labels: Mapping[str, str] | None = None,
    ) -> GradeResult:
        """Run ``prepared`` in a new sandbox and score it. ``files`` is a directory of the
        assignment's files (data the notebook reads), seen read-only in its working
        directory. Never raises for what a submission does; raises
        :class:`SandboxUnavailable` if no sandbox can be made."""
        started = time.monotonic()
        limits = self.limits()
        files = _absolute(files)
        launch = self.launch_spec(name, labels, files)
        log_dir = Path(self.runtime_dir) / "logs"
        log_path = log_dir / f"{launch.sandbox.scratch.name}.log"
        nb = nbformat.from_dict(copy.deepcopy(prepared.nb))  # a copy the run fills in
        context = zmq.asyncio.Context()
        # one message larger than the output limit is refused before it is read (and the
        # grading stopped: _GradingClient._watch)
        context.setsockopt(zmq.MAXMSGSIZE, limits.output + 64 * 1024)
        status, message = "graded", ""
        client = None
        handle = None
        try:
            self._prepare_scratch(launch, files)
            handle = await self.backend.launch(launch.sandbox, log_path)
            km = _SandboxKernel(handle, launch.connection, context)
            client = _GradingClient(
                nb,
                km=km,
                timeout=int(max(1, limits.cell_timeout)),
                startup_timeout=int(limits.startup_timeout),
                interrupt_on_timeout=True,
                error_on_timeout={
                    "ename": _TIMEOUT_ENAME,
                    "evalue": f"the cell ran longer than {limits.cell_timeout:g}s",
                    "traceback": [
                        f"{_TIMEOUT_ENAME}: the cell ran longer than {limits.cell_timeout:g}s"
                    ],
                },
                allow_errors=True,
                record_timing=False,
                raise_on_iopub_timeout=False,
                iopub_timeout=2,
                kernel_name="python3",
                log=_NBCLIENT_LOG,
            )
            client.setup_grading(prepared, limits)
            # the notebook's deadline kills the kernel (cancelling nbclient instead would
            # look to it like a dead kernel anyway), and says so
            expire = asyncio.get_running_loop().call_later(limits.notebook_timeout, client.expire)
            try:
                await client.async_execute()
            finally:
                expire.cancel()
        except _Stop as e:
            status, message = e.status, e.message
        except DeadKernelError:
            status, message = "crashed", "the kernel died"
        except RuntimeError as e:  # the kernel did not start (nbclient's wait_for_ready)
            status, message = "crashed", f"the kernel did not start: {e}"
            self.log.warning("Grading %s: %s\n%s", name, e, log_tail(log_path, 2000))
        finally:
            if client is not None and client.kc is not None:
                client.kc.stop_channels()
            if handle is not None:
                handle.kill()
                await handle.wait()
            context.destroy(linger=0)
            await asyncio.to_thread(shutil.rmtree, launch.sandbox.scratch, True)
        runs = client.runs if client is not None else {}
        status, message = self._classify(status, message, client, handle, runs, limits)
        tests = score(prepared, nb, runs, not_run=f"not run: {message}" if message else "not run")
        total = sum(t.points or 0 for t in tests)
        max_points = prepared.source.max_points
        if status == "graded":
            message = f"graded: {total:g} of {max_points:g} points"
        return GradeResult(
            status=status,
            message=message,
            tests=tests,
            total=total,
            max_points=max_points,
            seconds=time.monotonic() - started,
            notes=list(prepared.notes),
            feedback=feedback_notebook(prepared, nb),
            executed=nb,
            sandbox=self.backend.kind
            + (f" ({launch.sandbox.image})" if getattr(launch.sandbox, "image", None) else ""),
        )

    def _classify(self, status, message, client, handle, runs, limits):
        """The overall status, from what stopped the run and what the cells reported."""
        if client is not None and client.output_cell is not None:
            where = f"cell {client.output_cell + 1}" if client.output_cell >= 0 else "a cell"
            return "output_too_large", (
                f"{where} printed past the output limit "
                f"({limits.output // 1024} KiB): the notebook was stopped there"
            )
        memory = [i for i, r in sorted(runs.items()) if r.ename == "MemoryError"]
        if (handle is not None and handle.oom_killed) or memory:
            where = f"cell {memory[0] + 1}" if memory else "a cell"
            if handle is not None and handle.oom_killed and client and client.running is not None:
                where = f"cell {client.running + 1}"
            return "out_of_memory", (
                f"{where} used more than the memory limit ({limits.memory / 1024**2:g} MiB)"
            )
        if client is not None and client.expired_in is not None:
            where = f" (stopped in cell {client.expired_in + 1})" if client.expired_in >= 0 else ""
            return "timed_out", f"the notebook ran longer than {limits.notebook_timeout:g}s{where}"
        if status == "crashed" and client is not None and client.running is not None:
            code = handle.returncode if handle is not None else None
            how = f" (signal {-code})" if isinstance(code, int) and code < 0 else ""
            return "crashed", f"the kernel died while cell {client.running + 1} ran{how}"
        if status == "graded" and client is not None and client.timed_out_cell is not None:
            return "timed_out", (
                f"cell {client.timed_out_cell + 1} ran longer than {limits.cell_timeout:g}s "
                "and was interrupted"
            )
        return status, message
