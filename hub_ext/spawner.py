"""Course spawners: one named server per course, built from the course catalog.

All course logic lives in :class:`CourseSpawnerMixin`; each backend is a small subclass
that says how to give a server the course's environment, limits, workspace and materials:

- :class:`CourseLocalSpawner`: local processes (the embedded default, for demos,
  development and trusted single-user setups; it isolates nothing).

The server name *is* the course id: ``/user/alice/ds101/`` is alice's ds101 server.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from functools import lru_cache

from jupyterhub.spawner import SimpleLocalProcessSpawner, SpawnException
from traitlets import Bool, Callable, Unicode, default
from traitlets.config import LoggingConfigurable

from .courses import Course, CourseCatalog, enrollments_from_groups
from .rbac import share_course_server

__all__ = ["CourseLocalSpawner", "CourseSpawnerMixin"]


class CourseSpawnerMixin(LoggingConfigurable):
    """Course logic for any JupyterHub spawner. Mix in before the backend's class::

        class CourseDockerSpawner(CourseSpawnerMixin, DockerSpawner): ...

    At each start it:

    1. finds the course named by the server name in the catalog;
    2. refuses (``SpawnException``, relayed to the browser and the REST API) a user who is
       not enrolled, or a course outside its access window;
    3. applies the course's limits and environment (:meth:`apply_course`, extended by
       backends for image, volumes, kernels);
    4. prepares the learner's course workspace (:meth:`prepare_workspace`, per backend);
    5. reports each step through :meth:`progress`.

    The course id and the workspace are kept in the spawner's state, so a hub restart
    finds running servers again.
    """

    now = Callable(
        default_value=lambda: datetime.now(UTC),
        help="""Clock used for the access window: a callable returning an aware datetime.

        Default: the current time in UTC. Tests and rehearsals may set a fixed clock,
        e.g. ``c.CourseLocalSpawner.now = lambda: datetime(2026, 9, 1, tzinfo=UTC)``.
        """,
    ).tag(config=True)

    teachers_before_opening = Bool(
        True,
        help="""Let a course's teachers start their own server before the course opens.

        Teachers prepare a course before learners arrive. Learners are always refused
        before the opening date. Default: True.
        Example: ``c.CourseLocalSpawner.teachers_before_opening = False``
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ the course

    @property
    def catalog(self):
        return CourseCatalog.instance(config=self.config).catalog

    @property
    def course(self) -> Course | None:
        """The course this server is for (None for an unnamed server or an unknown name)."""
        return self.catalog.get(self.name) if self.name else None

    def course_role(self, course: Course) -> str | None:
        """The user's role in ``course`` (``"learner"``/``"teacher"``), from their hub groups."""
        groups = [g.name for g in self.user.groups]
        return enrollments_from_groups(groups).get(course.id)

    def check_course(self) -> Course:
        """The course to start, or a ``SpawnException`` that tells the user why not."""
        user = self.user.name
        if not self.name:
            raise SpawnException(
                "Each course has its own server: open a course from your home page "
                f"(for example /hub/spawn/{user}/<course>).",
                reason="no_course",
                status_code=400,
            )
        course = self.course
        if course is None:
            raise SpawnException(
                f"There is no course {self.name!r}: open one of your courses from your home page.",
                reason="unknown_course",
                status_code=404,
            )
        role = self.course_role(course)
        if role is None:
            raise SpawnException(
                f"{user} is not enrolled in {course.id} ({course.title}).",
                reason="not_enrolled",
                status_code=403,
            )
        status = course.status(self.now())
        if status == "upcoming" and not (role == "teacher" and self.teachers_before_opening):
            raise SpawnException(
                f"{course.id} ({course.title}) is not open yet: it is {course.describe_window()}.",
                reason="course_not_open",
                status_code=403,
            )
        if status == "closed":
            raise SpawnException(
                f"{course.id} ({course.title}) is closed: it was {course.describe_window()}.",
                reason="course_closed",
                status_code=403,
            )
        return course

    def apply_course(self, course: Course) -> None:
        """Configure this spawner for ``course``. Backends extend it (and call super first)."""
        if course.mem_limit is not None:
            self.mem_limit = course.mem_limit
        if course.cpu_limit is not None:
            self.cpu_limit = course.cpu_limit

    async def prepare_workspace(self, course: Course) -> str:
        """Make sure the learner's workspace for ``course`` exists; return a description of it.

        It must survive stop, start, a hub restart and the course closing: nothing here
        ever deletes it.
        """
        raise NotImplementedError

    def template_namespace(self):
        ns = super().template_namespace()
        ns["course"] = self.name
        return ns

    def get_env(self):
        env = super().get_env()
        course = self.course
        if course is not None:
            env.update(course.env)
            env.update(
                COURSE_ID=course.id,
                COURSE_TITLE=course.title,
                COURSE_OPENS=course.opens_at.isoformat(),
                COURSE_CLOSES=course.closes_at.isoformat(),
                COURSE_GRACE_ENDS=course.grace_ends_at.isoformat(),
                COURSE_KERNELS=" ".join(course.kernels),
            )
        return env

    def get_args(self):
        args = super().get_args()
        course = self.course
        if course is None:
            return args
        kernels = ",".join(f'"{k}"' for k in course.kernels)
        args += [
            f"--MappingKernelManager.default_kernel_name={course.default_kernel}",
            f"--KernelSpecManager.allowed_kernelspecs=[{kernels}]",
        ]
        if course.idle_timeout:
            # The server culls its own idle kernels and shuts down when idle:
            # a per-course timeout that the hub-wide idle culler cannot express.
            args += [
                f"--MappingKernelManager.cull_idle_timeout={course.idle_timeout}",
                f"--ServerApp.shutdown_no_activity_timeout={course.idle_timeout}",
            ]
        return args

    # ------------------------------------------------------------------ start and progress

    def _report(self, progress: int, message: str) -> None:
        self._course_events.append({"progress": progress, "message": message})
        self._course_event.set()

    async def start(self):
        self._course_events = []
        self._course_event = asyncio.Event()
        self._report(5, f"Checking your enrollment in {self.name or 'a course'}")
        course = self.check_course()
        self._report(15, f"{course.title}: {course.describe_window()}")
        self.apply_course(course)
        where = await self.prepare_workspace(course)
        self._report(30, f"Your workspace: {where}")
        self._report(40, f"Starting the {course.id} server ({', '.join(course.kernels)})")
        result = await super().start()
        await share_course_server(self, course)
        self._report(90, "Server started, waiting for it to answer")
        return result

    async def progress(self):
        """Yield the steps of :meth:`start` as they happen (JupyterHub's progress bar)."""
        seen = 0
        while True:
            events = getattr(self, "_course_events", [])
            while seen < len(events):
                yield events[seen]
                seen += 1
            future = self._spawn_future
            if future is None or future.done() or not hasattr(self, "_course_event"):
                break
            self._course_event.clear()
            try:
                await asyncio.wait_for(self._course_event.wait(), timeout=1)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ state

    def get_state(self):
        state = super().get_state()
        if self.name:
            state["course"] = self.name
        return state

    def load_state(self, state):
        super().load_state(state)
        course_id = state.get("course")
        if course_id and course_id != self.name:
            self.log.warning(
                "Server %s/%s holds state for course %r; keeping its name",
                self.user.name,
                self.name,
                course_id,
            )


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
    other workspace and the hub's files, and the course's CPU and memory limits are only
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

        ``{course}`` and ``{username}`` are expanded. It is created at first start and never
        deleted by a stop, a restart or the course closing.
        Default: ``course_workspaces/{course}/{username}``.
        Example: ``c.CourseLocalSpawner.workspace_template = "/srv/workspaces/{course}/{username}"``
        """,
    ).tag(config=True)

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
        self.shell_cmd = []
        if course.materials is not None and self.mount_materials:
            prefix = _mount_namespace_prefix(os.geteuid())
            if prefix is not None:
                target = os.path.join(self.workspace, self.materials_dirname)
                self.shell_cmd = [
                    *prefix,
                    "sh",
                    "-c",
                    _RO_MOUNT_SCRIPT,
                    "course-materials",
                    str(course.materials),
                    target,
                ]

    async def prepare_workspace(self, course: Course) -> str:
        workspace = self.workspace
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
