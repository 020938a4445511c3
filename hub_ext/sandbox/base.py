"""The sandbox interface: what to run (:class:`SandboxSpec`) and who runs it (:class:`Sandbox`)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Integer, Unicode
from traitlets.config import LoggingConfigurable

__all__ = [
    "Bind",
    "CappedLog",
    "Limits",
    "ProcessHandle",
    "RunResult",
    "Sandbox",
    "SandboxSpec",
    "SandboxUnavailable",
    "make_sandbox",
    "rlimits",
    "trim_log",
]

#: where the writable scratch directory appears inside every sandbox
SCRATCH = "/srv/run"


class SandboxUnavailable(RuntimeError):
    """No sandbox of this kind can be made on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Bind:
    """A host path seen inside the sandbox at ``target`` (read-only unless ``writable``)."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (None: no limit of that kind).

    ``memory`` in bytes (address space per process where the backend has no cgroup),
    ``cpu`` in cores, ``pids`` processes and threads, ``wall`` seconds (for :meth:`Sandbox.run`),
    ``file_size`` the largest file it may write (its output included, on the local backends),
    ``log`` the bytes of its newest output that its log keeps (:func:`trim_log`).
    """

    memory: int | None = 2 * 1024**3
    cpu: float | None = 1.0
    pids: int | None = 256
    open_files: int = 1024
    file_size: int | None = 1024**3
    wall: float | None = None
    log: int = 8 * 1024**2


@dataclass(frozen=True)
class SandboxSpec:
    """Everything about one sandboxed run, as data (what to create; nothing is started).

    ``argv`` and every path in it are as the sandbox sees them; ``env`` is the *whole*
    environment of the process (nothing is inherited); ``scratch`` is the one writable host
    directory, seen at :data:`SCRATCH`; ``binds`` are the read-only inputs. ``network``
    is ``"none"`` (a network namespace of its own with only loopback: it reaches nothing)
    or ``"internet"`` (the backend's outside network; never the hub's loopback).
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    scratch: Path
    binds: tuple[Bind, ...] = ()
    workdir: str = SCRATCH
    limits: Limits = field(default_factory=Limits)
    network: str = "none"
    image: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.network not in ("none", "internet"):
            raise ValueError(f"sandbox {self.name}: network {self.network!r}: use none or internet")
        for bind in self.binds:
            if not bind.target.startswith("/") or bind.target.rstrip("/") in ("", SCRATCH):
                raise ValueError(f"sandbox {self.name}: bind target {bind.target!r} not allowed")

    def __repr__(self) -> str:  # no environment: it may hold the run's own token
        return f"<SandboxSpec {self.name} {self.argv[:3]} network={self.network}>"


@dataclass(frozen=True)
class RunResult:
    returncode: int | None
    output: str
    timed_out: bool
    seconds: float


class ProcessHandle:
    """A sandboxed run as a local process tree under its keeper (:mod:`.keeper`), whose
    output goes to ``log_path``. ``control`` is the write end of the keeper's pipe: the
    service alone holds it, and the keeper kills the whole tree when it is written ``K`` or
    reads as ended (the service gone)."""

    #: True when the run was killed for exceeding its memory (a cgroup's OOM killer); the
    #: Docker backend knows it, a process limited by rlimits sees a MemoryError instead
    oom_killed = False

    def __init__(
        self, proc: asyncio.subprocess.Process, log_path: Path, log_limit: int, control: int
    ):
        self.proc = proc
        self.log_path = log_path
        self.log_limit = log_limit
        self.control = control
        self._trimmed = False

    @property
    def pid(self) -> int:
        """The keeper's pid (the tree's process group)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._close_control()
        await self._ended()
        return code

    async def _ended(self) -> None:
        """The run has ended: its log keeps its last ``log_limit`` bytes (the process wrote
        the file itself, bounded only by its ``file_size`` rlimit while it ran)."""
        if not self._trimmed:  # once, however many wait
            self._trimmed = True
            await asyncio.to_thread(trim_log, self.log_path, self.log_limit)

    def _ask(self, what: bytes) -> None:
        if self.control < 0 or self.proc.returncode is not None:
            return
        try:
            os.write(self.control, what)
        except OSError:  # the keeper has just ended: its tree with it
            pass

    def release_control(self) -> int:
        """The control fd, which this handle no longer closes (another handle takes it)."""
        control, self.control = self.control, -1
        return control

    def _close_control(self) -> None:
        if self.control >= 0:
            os.close(self.control)
            self.control = -1

    def kill(self) -> None:
        """Kill the whole tree (the keeper does it; :meth:`wait` returns once it is gone).
        A stopped tree (``SIGSTOP``, a debugger) is continued first, keeper included."""
        self._ask(b"K")
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """``SIGTERM`` to the run's process group."""
        self._ask(b"T")

    def __del__(self):
        self._close_control()

    def log_tail(self, size: int = 20000) -> str:
        return log_tail(self.log_path, size)


def trim_log(path: Path, keep: int) -> bool:
    """Keep only the last ``keep`` bytes of the log file ``path``, after a line saying that
    earlier output was dropped; True if there was more. A run's end is what its log is read
    for (:func:`log_tail`), and what a sandboxed process prints must not fill the service's
    disk (nor, appended to across restarts, reach its ``file_size`` limit at once)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size <= keep:
                return False
            f.seek(size - keep)
            tail = f.read(keep)
    except FileNotFoundError:
        return False
    trimmed = path.with_name(path.name + ".trim")
    with open(trimmed, "wb") as f:
        f.write(
            f"[hub-ext: {size - keep} bytes of earlier output dropped; "
            f"a run's log keeps its last {keep} bytes]\n".encode()
        )
        f.write(tail)
    os.replace(trimmed, path)
    return True


class CappedLog:
    """A run's log file written by a copier of its output (a container's, a pod's): trimmed
    to its last ``keep`` bytes (:func:`trim_log`) whenever it passes twice that, so that it
    never holds much more than ``2 * keep`` bytes however much the run writes, and to them
    again when closed."""

    def __init__(self, path: Path, keep: int):
        self.path, self.keep = path, keep
        self._file = open(path, "ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        if self._size > 2 * self.keep:
            self._file.close()
            trim_log(self.path, self.keep)
            self._file = open(self.path, "ab")
            self._size = self._file.tell()

    def close(self) -> None:
        """Close the file, leaving it the run's last ``keep`` bytes (as a local run's log)."""
        self._file.close()
        trim_log(self.path, self.keep)

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def log_tail(path: Path, size: int = 20000) -> str:
    """The last ``size`` bytes of a log file, as text ("" if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


#: the keeper of every local sandbox (run by path, with ``-I -S``: standard library only)
KEEPER = str(Path(__file__).with_name("keeper.py"))


async def start_process(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    limits: Limits,
    cwd: str | None = None,
    cgroup: Path | None = None,
) -> ProcessHandle:
    """Start ``argv`` under a keeper (:mod:`.keeper`), in a session of its own with exactly
    ``env``, output to ``log_path`` (and, given ``cgroup``, in that cgroup directory before
    it runs anything). The run, and whatever it starts, ends when the service does.

    The process writes its output to the file itself: while it runs, its ``file_size``
    rlimit bounds it; when it has ended (:meth:`ProcessHandle.wait`), the log keeps its last
    ``limits.log`` bytes. A log over that already (a service's gateway restarted) is trimmed
    first, to at most half the rlimit, so that appending to it cannot reach the rlimit at once."""
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    keep = limits.log if limits.file_size is None else min(limits.log, limits.file_size // 2)
    await asyncio.to_thread(trim_log, log_path, keep)  # room for the run under its rlimit
    log = await asyncio.to_thread(open, log_path, "ab")
    listen, control = os.pipe()  # neither inheritable: the keeper gets ``listen`` alone
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            KEEPER,
            str(listen),
            "--",
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=cwd,
            pass_fds=(listen,),
            preexec_fn=rlimits(limits, cgroup),
        )
    except BaseException:
        os.close(control)
        raise
    finally:
        os.close(listen)
        log.close()
    return ProcessHandle(proc, log_path, limits.log, control)


def rlimits(limits: Limits, cgroup: Path | None = None):
    """The ``preexec_fn`` that applies ``limits`` as rlimits in the child (the keeper, and so
    everything it starts), first joining ``cgroup`` when given, so that the whole tree is in it.

    The child is not bound to its parent by a death signal: its keeper's pipe does that
    (:mod:`.keeper` says why a death signal is not enough).
    """

    def apply():
        if cgroup is not None:
            with open(cgroup / "cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))
        os.nice(5)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        if limits.memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        if limits.pids is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.pids, limits.pids))
        if limits.file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))

    return apply


class Sandbox(LoggingConfigurable):
    """Runs a :class:`SandboxSpec`. Backends implement :meth:`check` and :meth:`launch`."""

    #: a short name for messages and the README ("bubblewrap", "docker", "none")
    kind = "abstract"
    #: True when the backend isolates; the "none" backend is only for vetted code
    isolates = True
    #: True when the sandboxed process is another user than the service (a container's,
    #: a pod's) that sees its inputs through a mount: they must be readable by others (their
    #: directories keep others out), and what it writes must be its own
    foreign_user = False

    python = Unicode(
        config=True,
        help="""The Python interpreter inside the sandbox (it must have hub_ext and
        jupyter-kernel-gateway installed). Default: the backend's (bubblewrap: the hub's own
        interpreter, seen read-only; docker: ``/opt/venv/bin/python`` of the analytics image).
        Example: ``c.BubblewrapSandbox.python = "/opt/analytics/bin/python"``""",
    )

    uid = Integer(
        1000,
        config=True,
        help="""The user id the sandboxed process has inside the sandbox. Default: 1000.
        Example: ``c.DockerSandbox.uid = 1001``""",
    )

    def seen_at(self, source: Path, target: str) -> str:
        """Where the process sees the host path ``source`` bound at ``target``."""
        return target

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` (saying why and how to fix it) if this cannot run."""
        raise NotImplementedError

    def prepare_scratch(self, path: Path) -> None:
        """Create the scratch directory so that only the sandboxed process (and we) use it."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)

    async def launch(self, spec: SandboxSpec, log_path: Path) -> ProcessHandle:
        """Start ``spec``; its output goes to ``log_path``. Returns a handle (pid, wait, kill...)."""
        raise NotImplementedError

    async def run(self, spec: SandboxSpec, log_path: Path) -> RunResult:
        """Run ``spec`` to its end (or ``spec.limits.wall`` seconds, then kill it)."""
        started = time.monotonic()
        handle = await self.launch(spec, log_path)
        timed_out = False
        try:
            await asyncio.wait_for(handle.wait(), spec.limits.wall)
        except TimeoutError:
            timed_out = True
            handle.kill()
            await handle.wait()
        finally:
            if handle.returncode is None:
                handle.kill()
                await handle.wait()
        return RunResult(
            handle.returncode, handle.log_tail(), timed_out, time.monotonic() - started
        )


def make_sandbox(kind: str, *, parent=None, log=None) -> Sandbox:
    """The sandbox backend ``kind`` (``bubblewrap``, ``docker``, ``kube``, ``none``), checked.

    ``auto`` is bubblewrap if it works here, else :class:`SandboxUnavailable`.
    """
    if kind in ("auto", "bubblewrap"):
        from .bubblewrap import BubblewrapSandbox

        sandbox = BubblewrapSandbox(parent=parent, log=log)
    elif kind == "docker":
        from .docker import DockerSandbox

        sandbox = DockerSandbox(parent=parent, log=log)
    elif kind == "kube":
        from .kube import KubeSandbox

        sandbox = KubeSandbox(parent=parent, log=log)
    elif kind == "none":
        from .unconfined import Unconfined

        sandbox = Unconfined(parent=parent, log=log)
    else:
        raise SandboxUnavailable(
            f"unknown sandbox {kind!r}: use auto, bubblewrap, docker, kube or none"
        )
    sandbox.check()
    return sandbox
