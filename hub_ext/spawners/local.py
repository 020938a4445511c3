"""Course servers as local processes: the embedded default (demos, development, tests).

:class:`CourseLocalSpawner` is JupyterHub's ``SimpleLocalProcessSpawner`` with the course
logic of :class:`~hub_ext.spawners.base.CourseSpawnerMixin`. It imports no container SDK.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Bool, Unicode, default, validate

from ..courses import Course
from .base import CourseSpawnerMixin, check_per_learner_template

__all__ = ["CourseLocalSpawner"]


@lru_cache(maxsize=2)
def _mount_namespace_prefix(euid: int) -> tuple[str, ...] | None:
    """The ``unshare`` prefix that gives a process a private mount namespace, if allowed here.

    root (or CAP_SYS_ADMIN) needs only a mount namespace; another user needs a user
    namespace too, which some kernels forbid. None if neither works.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    candidates = [(unshare, "--mount", "--propagation", "private")]
    if euid != 0:
        candidates = [
            (unshare, "--user", "--map-current-user", "--mount", "--propagation", "private")
        ]
    for prefix in candidates:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return prefix
    return None


#: Bind-mounts $1 read-only at $2, then runs the single-user command (the last argument,
#: shell-quoted by LocalProcessSpawner) in the same, private, mount namespace.
_RO_MOUNT_SCRIPT = 'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && eval "exec $3"'


class CourseLocalSpawner(CourseSpawnerMixin, SimpleLocalProcessSpawner):
    """Course servers as local processes: the embedded default.

    **It isolates nothing.** Every server runs as the hub's own OS account, can read every
    other workspace and the hub's files, reaches the network as the hub does (a course's
    ``network`` is not enforced), and the course's CPU and memory limits are only
    advisory (exported as ``CPU_LIMIT``/``MEM_LIMIT``). Use it for demos, development and
    trusted single-user setups; use the Docker or Kubernetes backend for learners.

    - environment: the course's ``environment`` (a Python environment prefix with
      ``jupyterhub-singleuser``), or the hub's own Python;
    - kernels: the course's kernels, which must be installed kernelspecs here;
    - workspace: a directory per learner per course (:attr:`workspace_template`);
    - materials: bind-mounted read-only at ``materials/`` in the workspace, inside a
      private mount namespace (``unshare``); where mount namespaces are not allowed,
      a symbolic link instead (read-only only by file permissions, which root ignores).
    """

    workspace_template = Unicode(
        "course_workspaces/{course}/{username}",
        help="""Directory of a learner's workspace for one course (relative to the hub's
        working directory, or absolute).

        ``{course}`` and ``{username}`` are expanded; both must appear (a template without
        ``{username}`` would give every learner of a course one shared workspace, and is
        refused). It is created at first start and never deleted by a stop, a restart or
        the course closing. Default: ``course_workspaces/{course}/{username}``.
        Example: ``c.CourseLocalSpawner.workspace_template = "/srv/workspaces/{course}/{username}"``
        """,
    ).tag(config=True)

    @validate("workspace_template")
    def _validate_workspace_template(self, proposal):
        return check_per_learner_template(proposal.value, "CourseLocalSpawner.workspace_template")

    materials_dirname = Unicode(
        "materials",
        help="""Name of the read-only materials folder inside the workspace.

        Default: ``materials``. Example: ``c.CourseLocalSpawner.materials_dirname = "course"``
        """,
    ).tag(config=True)

    mount_materials = Bool(
        True,
        help="""Bind-mount the course materials read-only in a private mount namespace.

        Needs ``unshare`` and either root or unprivileged user namespaces; when they are not
        available (or this is False) the materials are linked instead, and are read-only
        only by file permissions. Default: True.
        Example: ``c.CourseLocalSpawner.mount_materials = False``
        """,
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self):
        # The hub's own environment, even when it was started without activating it.
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @default("home_dir")
    def _default_home_dir(self):
        return self.workspace

    @property
    def workspace(self) -> str:
        return os.path.abspath(self.format_string(self.workspace_template))

    def apply_course(self, course: Course) -> None:
        super().apply_course(course)
        self.home_dir = self.notebook_dir = self.workspace
        if course.environment is not None:
            self.cmd = [str(course.environment / "bin" / "jupyterhub-singleuser")]
        else:
            self.cmd = self._configured("cmd")

    async def prepare_workspace(self, course: Course) -> str:
        workspace = self.workspace
        self.shell_cmd = []
        if course.materials is not None and self.mount_materials:
            # the probe runs a process (once per process): off the hub's event loop
            prefix = await asyncio.to_thread(_mount_namespace_prefix, os.geteuid())
            if prefix is not None:
                target = os.path.join(workspace, self.materials_dirname)
                self.shell_cmd = [
                    *prefix,
                    "sh",
                    "-c",
                    _RO_MOUNT_SCRIPT,
                    "course-materials",
                    str(course.materials),
                    target,
                ]
        await asyncio.to_thread(self._prepare_workspace, course, workspace)
        return workspace

    def _prepare_workspace(self, course: Course, workspace: str) -> None:
        os.makedirs(workspace, mode=0o700, exist_ok=True)
        if course.materials is None:
            return
        target = os.path.join(workspace, self.materials_dirname)
        if self.shell_cmd:
            # mount point: an empty directory, mounted over inside the server's namespace
            if os.path.islink(target):
                os.unlink(target)
            os.makedirs(target, exist_ok=True)
        elif not os.path.lexists(target):
            self.log.warning(
                "No mount namespace for %s: materials of %s are linked, read-only by permissions only",
                self._log_name,
                course.id,
            )
            os.symlink(course.materials, target)

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0:
            # One OS account is the point of this backend; refusing root would protect nothing.
            args.append("--ServerApp.allow_root=True")
        return args

    async def start(self):
        ip_port = await super().start()
        if self.shell_cmd:
            self.log.info(
                "%s: materials mounted read-only via %s",
                self._log_name,
                shlex.join(self.shell_cmd[:4]),
            )
        return ip_port
