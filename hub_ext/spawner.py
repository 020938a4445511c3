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

    async def rename(self, old_name, new_name):
        """Refuse: a course server is named after its course (and shares follow the name)."""
        raise SpawnException(
            f"{old_name} is a course server: its name is the course's and cannot change.",
            reason="rename_course_server",
            status_code=400,
        )

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


# ---- Docker backend (below this line: CourseDockerSpawner; its builders are in docker_backend.py)

import inspect  # noqa: E402

import docker.errors  # noqa: E402
from dockerspawner import DockerSpawner  # noqa: E402
from tornado import web  # noqa: E402
from traitlets import Int  # noqa: E402

from .docker_backend import (  # noqa: E402
    DEFAULT_NETWORK,
    ContainerSpec,
    ensure_network,
    object_labels,
    workspace_volume_name,
)

__all__ += ["CourseDockerSpawner"]


class CourseDockerSpawner(CourseSpawnerMixin, DockerSpawner):
    """Course servers as Docker containers: one department server.

    - image: the course's ``image`` from the catalog, and only that (no image choice,
      no options form); locally built images are not pulled (:attr:`pull_policy`);
    - limits: the course's ``mem_limit`` (no swap beyond it) and ``cpu_limit``, a
      process-count limit, no Linux capabilities, no privilege gain;
    - workspace: a named volume per learner per course (:attr:`workspace_volume_template`)
      mounted at :attr:`workspace_path`, the server's root. Containers are removed when
      they stop; the volume is never removed by the hub;
    - materials: bind-mounted read-only at :attr:`materials_path`;
    - network: the learners' network (:data:`~hub_ext.docker_backend.DEFAULT_NETWORK`),
      a bridge without inter-container communication: a container reaches the hub, not
      another learner's container. :func:`hub_ext.docker_backend.docker_hub_config` sets
      the hub side.

    What a container is made of is computed by :meth:`container_spec` (pure, see
    :class:`~hub_ext.docker_backend.ContainerSpec`); :meth:`create_object` creates it.
    """

    workspace_volume_template = Unicode(
        "hub-ext_{course}_{username}",
        help="""Name of the Docker volume holding a learner's workspace for one course.

        ``{course}`` is the course id, ``{username}`` the escaped username. The volume is
        created at first start (labelled with the course and user) and never removed by
        the hub: stop, restart, container removal and the course closing leave it.
        Default: ``hub-ext_{course}_{username}``.
        Example: ``c.CourseDockerSpawner.workspace_volume_template = "ws_{course}_{username}"``
        """,
    ).tag(config=True)

    workspace_path = Unicode(
        "/home/jovyan/work",
        help="""Where the workspace volume is mounted in the container; the server's root.

        Default: ``/home/jovyan/work`` (docker-stacks' convention: the images own it as
        uid 1000, so a new volume is writable by the learner).
        Example: ``c.CourseDockerSpawner.workspace_path = "/home/jovyan"``
        """,
    ).tag(config=True)

    materials_path = Unicode(
        help="""Where the course materials are mounted, read-only, in the container.

        Default: ``materials`` inside :attr:`workspace_path`, so they show in the file
        browser. Example: ``c.CourseDockerSpawner.materials_path = "/srv/materials"``
        """,
    ).tag(config=True)

    @default("materials_path")
    def _default_materials_path(self):
        return self.workspace_path.rstrip("/") + "/materials"

    pids_limit = Int(
        1024,
        allow_none=True,
        help="""Most processes and threads a course container may run (None: no limit).

        Stops a fork bomb in one learner's container from starving the machine.
        Default: 1024. Example: ``c.CourseDockerSpawner.pids_limit = 512``
        """,
    ).tag(config=True)

    @default("pull_policy")
    def _default_pull_policy(self):
        # course images are built on the machine (course_images/build.sh); a missing one
        # is an administrator's error to report, not a pull to attempt
        return "never"

    @default("network_name")
    def _default_network_name(self):
        return DEFAULT_NETWORK

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True

    @default("remove")
    def _default_remove(self):
        return True

    @default("prefix")
    def _default_prefix(self):
        return "hub-ext"

    @default("options_form")
    def _default_options_form(self):
        return ""

    @default("image")
    def _default_image(self):
        course = self.course
        return course.image if course is not None and course.image else ""

    # ------------------------------------------------------------------ the course

    @property
    def workspace_volume(self) -> str:
        return workspace_volume_name(
            self.workspace_volume_template, course=self.name, username=self.user.name
        )

    def apply_course(self, course: Course) -> None:
        super().apply_course(course)
        if not course.image:
            raise SpawnException(
                f"{course.id} ({course.title}) has no image in the course catalog; "
                "ask the hub's administrators to add one.",
                reason="no_image",
                status_code=500,
            )
        self.image = course.image
        self.notebook_dir = self.workspace_path

    async def _blocking(self, fn, *args):
        """Run ``fn(self.client, *args)`` on DockerSpawner's executor (off the event loop)."""
        return await asyncio.wrap_future(self.executor.submit(fn, self.client, *args))

    _networks_ready: set[str] = set()

    async def prepare_workspace(self, course: Course) -> str:
        if self.network_name not in CourseDockerSpawner._networks_ready:
            await self._blocking(ensure_network, self.network_name)
            CourseDockerSpawner._networks_ready.add(self.network_name)
        volume = self.workspace_volume
        try:
            await self.docker("inspect_volume", volume)
        except docker.errors.NotFound:
            labels = object_labels(course=course.id, user=self.user.name, kind="workspace")
            await self.docker("create_volume", volume, labels=labels)
            self.log.info("Created workspace volume %s for %s", volume, self._log_name)
        return f"volume {volume}, at {self.workspace_path}"

    def container_spec(
        self,
        course: Course,
        command: list[str],
        *,
        extra_create: dict | None = None,
        extra_host_config: dict | None = None,
    ) -> ContainerSpec:
        """What to create for ``course`` (pure: no Docker call)."""
        return ContainerSpec(
            name=self.container_name,
            image=course.image,
            command=tuple(command),
            environment=self.get_env(),
            port=self.port,
            network=self.network_name,
            workspace_volume=self.workspace_volume,
            workspace_path=self.workspace_path,
            materials=str(course.materials) if course.materials is not None else None,
            materials_path=self.materials_path,
            mem_limit=self.mem_limit,
            cpu_limit=self.cpu_limit,
            pids_limit=self.pids_limit,
            remove=self.remove,
            publish_host_ip=None if self.use_internal_ip else self.host_ip,
            labels=object_labels(
                course=course.id, user=self.user.name, server=self.name, kind="course-server"
            ),
            extra_create=extra_create or {},
            extra_host_config=extra_host_config or {},
        )

    async def _extra(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value or {})

    # ------------------------------------------------------------------ create it

    async def start(self):
        # The image comes from the catalog. JupyterHub keeps a server's user_options for its
        # next starts, so an image asked for once is dropped (and said so), not refused.
        asked = self.user_options.get("image")
        self._ignored_image = asked
        if asked is not None:
            self.user_options = {k: v for k, v in self.user_options.items() if k != "image"}
            self.log.warning("Ignoring image %r asked for %s", asked, self._log_name)
        return await super().start()

    async def check_allowed(self, image):
        raise web.HTTPError(
            400,
            f"{self.name} runs the image its course catalog names; choosing another image "
            "is not allowed.",
        )

    async def pull_image(self, image):
        if getattr(self, "_ignored_image", None):
            self._report(
                42,
                f"{self.name} runs the image its course catalog names, not {self._ignored_image}",
            )
        self._report(45, f"Looking for the image {image}")
        try:
            await super().pull_image(image)
        except docker.errors.NotFound:
            raise SpawnException(
                f"The image {image} of {self.name} is not on this machine; the hub's "
                "administrators build it with `make images`.",
                reason="image_missing",
                status_code=503,
            ) from None

    async def create_object(self):
        course = self.course
        spec = self.container_spec(
            course,
            await self.get_command(),
            extra_create=await self._extra(self.extra_create_kwargs),
            extra_host_config=await self._extra(self.extra_host_config),
        )
        self._report(
            55,
            f"Creating your container from {spec.image}"
            + (f" ({_bytes_text(spec.mem_limit)} memory" if spec.mem_limit else " (")
            + (f", {spec.cpu_limit:g} CPU)" if spec.cpu_limit else ")"),
        )
        # the environment holds the server's API token: never logged
        self.log.info(
            "Creating %s from %s for %s: workspace %s, materials %s, memory %s, cpu %s, network %s",
            spec.name,
            spec.image,
            self._log_name,
            spec.workspace_volume,
            spec.materials,
            spec.mem_limit,
            spec.cpu_limit,
            spec.network,
        )
        host_config = self.client.create_host_config(**spec.host_config_kwargs())
        return await self.docker(
            "create_container", host_config=host_config, **spec.create_kwargs()
        )

    async def start_object(self):
        self._report(70, "Starting your container")
        await super().start_object()


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"
