"""The embedded default's sandbox: Debian's ``bubblewrap`` (unprivileged namespaces).

A sandboxed process gets new user, PID, mount, network, IPC, UTS and cgroup namespaces: it
runs as :attr:`~hub_ext.sandbox.base.Sandbox.uid` with no capabilities, sees only its own
processes in ``/proc``, has only a loopback interface, a private ``/tmp``, a read-only view
of the system (``/usr``) and of the Python it runs, its read-only inputs and its scratch
directory, and ends with the service that started it, whatever it started with it (its
keeper, :mod:`hub_ext.sandbox.keeper`: bubblewrap's own ``--die-with-parent`` leaves a
window while it sets up). Limits are rlimits (no cgroup is needed): address
space, processes, open files, file size; the process runs at a lower priority.

What it does not do: limit CPU time of a long-running server (priority only) or memory
as a cgroup would (the address-space limit is per process). The Docker tier does both.

Processes when the service runs as root: the kernel does not apply ``RLIMIT_NPROC`` to
host root, and the sandbox's uid maps to the service's, so a fork bomb would not be
stopped by the rlimit. Then each sandbox gets a pids cgroup of its own
(:attr:`BubblewrapSandbox.pids_cgroup`, created under the cgroup v1 ``pids`` hierarchy or
cgroup v2), removed when the sandbox ends; :attr:`~BubblewrapSandbox.limits_processes` says
whether the processes limit holds here.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from traitlets import Unicode, default

from .base import SCRATCH, ProcessHandle, Sandbox, SandboxSpec, SandboxUnavailable, start_process

__all__ = ["BubblewrapSandbox", "bwrap_argv", "default_pids_cgroup", "python_roots"]

#: top-level system paths, bound read-only (symbolic links are recreated as links)
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
#: single files of /etc a dynamically linked program and Python need
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/etc/ssl/certs")


def python_roots(python: str = sys.executable) -> list[Path]:
    """Directories the interpreter needs, read-only: its prefixes and hub_ext's package.

    Never the working directory or the repository around an editable install: only the
    ``hub_ext`` package directory itself (the sandbox gets ``PYTHONPATH`` to find it).
    """
    import hub_ext

    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    if python != sys.executable:
        roots = {Path(python).resolve().parent.parent}
    roots.add(Path(hub_ext.__file__).resolve().parent)
    # nested paths are covered by their parents; /usr is bound anyway
    ordered = sorted(roots, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if path == Path("/usr") or any(path.is_relative_to(k) for k in kept):
            continue
        if path.is_relative_to("/usr"):
            continue
        kept.append(path)
    return kept


def bwrap_argv(
    spec: SandboxSpec,
    *,
    bwrap: str = "bwrap",
    uid: int = 1000,
    roots: Iterable[Path] = (),
    system_paths: Iterable[str] = SYSTEM_PATHS,
    etc_files: Iterable[str] = ETC_FILES,
) -> list[str]:
    """The ``bwrap`` command line for ``spec`` (pure: looks at the host's paths only).

    The environment is *not* on this command line (``ps`` would show it): the launcher
    gives ``spec.env`` as the process environment, which bwrap passes on unchanged.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(uid),
        "--gid",
        str(uid),
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    if spec.network == "internet":
        argv.append("--share-net")
    for path in system_paths:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in etc_files:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for root in roots:
        argv += ["--ro-bind", str(root), str(root)]
    for bind in spec.binds:
        argv += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    argv += ["--bind", str(spec.scratch), SCRATCH, "--chdir", spec.workdir, "--", *spec.argv]
    return argv


@lru_cache(maxsize=4)
def _probe(bwrap: str, uid: int) -> str | None:
    """None if a minimal sandbox runs here, else bwrap's complaint."""
    spec_argv = [
        bwrap, "--unshare-all", "--unshare-user", "--uid", str(uid), "--cap-drop", "ALL",
        "--die-with-parent", "--proc", "/proc", "--dev", "/dev",
    ]  # fmt: skip
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            spec_argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            spec_argv += ["--ro-bind", path, path]
    try:
        probe = subprocess.run(
            [*spec_argv, "true"], capture_output=True, timeout=20, check=False, env={}
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if probe.returncode != 0:
        return probe.stderr.decode("utf-8", "replace").strip() or f"status {probe.returncode}"
    return None


def default_pids_cgroup(cgroup_fs: Path = Path("/sys/fs/cgroup")) -> str:
    """Where each sandbox's pids cgroup goes, or "" when rlimits suffice or none can be made.

    Only as root (otherwise ``RLIMIT_NPROC`` holds): ``<cgroup_fs>/pids/hub-ext`` on cgroup
    v1, ``<cgroup_fs>/hub-ext`` on cgroup v2 when its root delegates the pids controller.
    """
    if os.geteuid() != 0:
        return ""
    v1 = cgroup_fs / "pids"
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return str(v1 / "hub-ext")
    try:
        delegated = (cgroup_fs / "cgroup.subtree_control").read_text().split()
    except OSError:
        return ""
    if "pids" in delegated and os.access(cgroup_fs, os.W_OK):
        return str(cgroup_fs / "hub-ext")
    return ""


def make_pids_cgroup(parent: Path, pids: int) -> Path:
    """A new cgroup under ``parent`` (created if need be) whose tasks are at most ``pids``."""
    if not parent.exists():
        parent.mkdir(exist_ok=True)
        if not (parent / "cgroup.clone_children").exists():  # cgroup v2: delegate pids below
            (parent / "cgroup.subtree_control").write_text("+pids")
    path = parent / f"{os.getpid()}-{secrets.token_hex(6)}"
    path.mkdir()
    (path / "pids.max").write_text(str(pids))
    return path


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


class CgroupProcessHandle(ProcessHandle):
    """A sandbox in a pids cgroup of its own: killing it kills every task in the cgroup,
    and the cgroup is removed once the sandbox has ended."""

    def __init__(self, proc, log_path: Path, log_limit: int, control: int, cgroup: Path):
        super().__init__(proc, log_path, log_limit, control)
        self.cgroup = cgroup

    def _kill_cgroup(self) -> None:
        for pid in _cgroup_pids(self.cgroup):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        super().kill()
        self._kill_cgroup()

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._close_control()
        for _ in range(100):  # a pid namespace's tasks die shortly after its init
            self._kill_cgroup()
            try:
                self.cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                await asyncio.sleep(0.05)
        await self._ended()  # nothing in the cgroup writes to the log any more
        return code


class BubblewrapSandbox(Sandbox):
    """Sandboxes as bubblewrap processes on this machine (see the module docstring)."""

    kind = "bubblewrap"

    bwrap = Unicode(
        config=True,
        help="""The ``bwrap`` program. Default: ``bwrap`` from ``$PATH`` (Debian: ``apt-get
        install bubblewrap``). Example: ``c.BubblewrapSandbox.bwrap = "/usr/bin/bwrap"``""",
    )

    @default("bwrap")
    def _default_bwrap(self):
        return shutil.which("bwrap") or "bwrap"

    pids_cgroup = Unicode(
        config=True,
        help="""The cgroup directory under which each sandbox gets a pids cgroup (its
        processes limit) when the service runs as root, where ``RLIMIT_NPROC`` does not
        hold; "" for none. Default: ``/sys/fs/cgroup/pids/hub-ext`` (cgroup v1) or
        ``/sys/fs/cgroup/hub-ext`` (cgroup v2 delegating pids) when writable, as root.
        Example: ``c.BubblewrapSandbox.pids_cgroup = "/sys/fs/cgroup/pids/grading"``""",
    )

    @default("pids_cgroup")
    def _default_pids_cgroup(self):
        return default_pids_cgroup()

    @property
    def limits_processes(self) -> bool:
        """Whether a spec's ``pids`` limit holds here (rlimits as non-root, else a cgroup)."""
        return os.geteuid() != 0 or bool(self.pids_cgroup)

    @default("python")
    def _default_python(self):
        return sys.executable

    def check(self) -> None:
        if not shutil.which(self.bwrap):
            raise SandboxUnavailable(
                "bubblewrap is not installed: install it (Debian: apt-get install bubblewrap) "
                "to run teachers' notebooks in a sandbox"
            )
        problem = _probe(self.bwrap, self.uid)
        if problem:
            raise SandboxUnavailable(
                f"bubblewrap cannot make a sandbox here ({problem}): it needs unprivileged "
                "user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0) or root"
            )

    def argv(self, spec: SandboxSpec) -> list[str]:
        return bwrap_argv(spec, bwrap=self.bwrap, uid=self.uid, roots=python_roots(self.python))

    def sandbox_env(self, spec: SandboxSpec) -> dict[str, str]:
        import hub_ext

        package_parent = str(Path(hub_ext.__file__).resolve().parent.parent)
        env = {"HOME": SCRATCH, "USER": "sandbox", "LOGNAME": "sandbox", "PATH": "/usr/bin:/bin"}
        env.update(spec.env)
        env["PYTHONPATH"] = package_parent
        return env

    async def launch(self, spec: SandboxSpec, log_path: Path) -> ProcessHandle:
        self.prepare_scratch(spec.scratch)
        cgroup = None
        if spec.limits.pids is not None and os.geteuid() == 0 and self.pids_cgroup:
            cgroup = make_pids_cgroup(Path(self.pids_cgroup), spec.limits.pids)
        try:
            handle = await start_process(
                self.argv(spec), self.sandbox_env(spec), log_path, spec.limits, cgroup=cgroup
            )
        except BaseException:
            if cgroup is not None:
                cgroup.rmdir()
            raise
        if cgroup is not None:
            control = handle.release_control()
            handle = CgroupProcessHandle(
                handle.proc, handle.log_path, handle.log_limit, control, cgroup
            )
        self.log.info("Sandbox %s started (bubblewrap, pid %d)", spec.name, handle.pid)
        return handle
