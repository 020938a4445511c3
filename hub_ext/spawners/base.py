"""The course logic of every course spawner: :class:`CourseSpawnerMixin`.

One named server per course: the server name *is* the course id, so ``/user/alice/ds101/``
is alice's ds101 server. The mixin decides whether a server may start
(:func:`start_refusal`, pure), applies the course to the spawner's own settings
(:meth:`CourseSpawnerMixin.apply_course`), lets the deployer change them
(:attr:`CourseSpawnerMixin.modify_course_spawner_hook`, then JupyterHub's own
``pre_spawn_hook``), and reports each step (:meth:`CourseSpawnerMixin.progress`).

Backends are small subclasses beside this module: :mod:`hub_ext.spawners.local`,
:mod:`hub_ext.spawners.docker`.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub.spawner import SpawnException
from jupyterhub.utils import maybe_future
from traitlets import Bool, Callable, List, Unicode, Union, default
from traitlets.config import LoggingConfigurable

from ..courses import Course, CourseCatalog, enrollments_from_groups, grading_scope
from ..rbac import share_course_server
from ..services.grading.hubconfig import SERVICE_NAME as GRADING_SERVICE

__all__ = [
    "SERVER_TOKEN_SCOPES",
    "CourseSpawnerMixin",
    "ProgressLog",
    "check_per_learner_template",
    "start_refusal",
]

#: What a course server's own token (``$JUPYTERHUB_API_TOKEN``) may do: report its activity
#: and let the hub's OAuth check who visits it.
SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")


def course_token_scopes(spawner) -> list[str]:
    """A course server's token scopes (the default of ``server_token_scopes``):
    :data:`SERVER_TOKEN_SCOPES` and, where the hub grades (``grading_url``), this course's
    submit scope and the door to the grading service: that course's assignments only.
    JupyterHub keeps only the scopes the server's owner holds (a teacher's own server
    gets no learner scope)."""
    scopes = list(SERVER_TOKEN_SCOPES)
    if spawner.grading_url and spawner.name:
        scopes += [
            grading_scope(spawner.name, "learner"),
            f"access:services!service={GRADING_SERVICE}",
        ]
    return scopes


#: The directory of the single-user side's modules (``hub_ext_course_kernels``), put on
#: each course server's ``PYTHONPATH``.
SINGLEUSER_DIR = Path(__file__).parent / "singleuser"
#: The single-user server's kernelspec manager: the course's kernels only.
COURSE_KERNEL_SPEC_MANAGER = "hub_ext_course_kernels.CourseKernelSpecManager"
#: The single-user server's contents manager: a save into the read-only materials says so.
COURSE_CONTENTS_MANAGER = "hub_ext_course_contents.CourseContentsManager"
#: The Jupyter Server extension that titles JupyterLab with the course and its owner.
COURSE_LAB_EXTENSION = "hub_ext_course_lab"

#: What the catalog's refusals leave behind: nothing, for a server record that never ran.
_NEVER_STARTED_REASONS = ("unknown_course", "not_enrolled", "course_not_open", "course_closed")


def check_per_learner_template(template: str, setting: str) -> str:
    """``template`` if it names one learner's own workspace, else a ``TraitError``.

    A workspace template without ``{username}`` gives every learner of a course the same
    workspace (each would read and overwrite the others' work).
    """
    from traitlets import TraitError

    if "{username}" not in template:
        raise TraitError(
            f"{setting} = {template!r} has no {{username}}: every learner of a course "
            "would share one workspace. Put {username} in it, e.g. "
            "'course_workspaces/{course}/{username}'."
        )
    return template


def start_refusal(
    course: Course | None,
    role: str | None,
    now: datetime,
    *,
    teachers_before_opening: bool,
    server_name: str = "",
    username: str = "",
) -> SpawnException | None:
    """Why ``username`` may not start ``server_name`` now, or None if they may.

    Pure: no hub, no I/O. ``course`` is the catalog's course of that name (None for an
    unknown name), ``role`` the user's role in it (``"learner"``/``"teacher"``, None if
    not enrolled). The exception carries the message shown to the user, a ``reason`` and
    the REST API's ``status_code``.
    """
    if not server_name:
        return SpawnException(
            "Each course has its own server: open a course from your home page "
            f"(for example /hub/spawn/{username}/<course>).",
            reason="no_course",
            status_code=400,
        )
    if course is None:
        return SpawnException(
            f"There is no course {server_name!r}: open one of your courses from your home page.",
            reason="unknown_course",
            status_code=404,
        )
    if role is None:
        return SpawnException(
            f"{username} is not enrolled in {course.id} ({course.title}).",
            reason="not_enrolled",
            status_code=403,
        )
    status = course.status(now)
    if status == "upcoming" and not (role == "teacher" and teachers_before_opening):
        return SpawnException(
            f"{course.id} ({course.title}) is not open yet: it is {course.describe_window()}.",
            reason="course_not_open",
            status_code=403,
        )
    if status == "closed":
        return SpawnException(
            f"{course.id} ({course.title}) is closed: it was {course.describe_window()}.",
            reason="course_closed",
            status_code=403,
        )
    return None


class ProgressLog:
    """The progress events of one start, for any number of readers.

    The spawner appends as it goes and closes the log when its part of the start is over;
    each reader (:meth:`follow`) gets every event from the first, then waits for the next,
    and stops at the close. Nothing polls: each change resolves the future readers wait on.
    """

    def __init__(self):
        self.events: list[dict] = []
        self.closed = False
        self._changed: asyncio.Future | None = None

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def report(self, progress: int, message: str) -> None:
        self.events.append({"progress": progress, "message": message})
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def follow(self):
        seen = 0
        while True:
            while seen < len(self.events):
                yield self.events[seen]
                seen += 1
            if self.closed:
                return
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)


class CourseSpawnerMixin(LoggingConfigurable):
    """Course logic for any JupyterHub spawner. Mix in before the backend's class::

        class CourseDockerSpawner(CourseSpawnerMixin, DockerSpawner): ...

    A backend sets its own spawner's settings from the course in :meth:`apply_course`
    (calling ``super()`` first) and makes the learner's workspace in
    :meth:`prepare_workspace`; everything else is here. The stages of a start are listed
    in :meth:`start`. The course id is kept in the spawner's state, so a hub restart finds
    running servers again.
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

    modify_course_spawner_hook = Callable(
        None,
        allow_none=True,
        help="""A hook called with ``(spawner, course)`` after the course is applied.

        It may change any of the spawner's settings the course set (image, limits,
        volumes, environment, ...) for this start; it may be async. It runs before
        JupyterHub's own ``pre_spawn_hook``, which can change them too. Default: None.
        Example::

            def more_memory_for_teachers(spawner, course):
                if spawner.course_role(course) == "teacher":
                    spawner.mem_limit = 4 * 1024**3

            c.CourseDockerSpawner.modify_course_spawner_hook = more_memory_for_teachers
        """,
    ).tag(config=True)

    server_token_scopes = Union(
        [List(Unicode()), Callable()],
        help="""Scopes of a course server's own token (``$JUPYTERHUB_API_TOKEN``).

        Whoever runs code in the server (the learner, a teacher looking over their
        shoulder) can read this token, so it gets only what the server needs: report
        activity and authenticate its visitors. JupyterHub still lets any token read its
        owner's name and groups (``GET /hub/api/user``); the Docker backend's containers
        reach the hub through :mod:`hub_ext.spawners.hub_api_guard`, which drops the groups
        (a learner's courses). Default: :func:`course_token_scopes`,
        ``["users:activity!user", "access:servers!server"]`` and, where the hub grades,
        the course's own submit scope and access to the grading service.
        Example: ``c.CourseLocalSpawner.server_token_scopes = ["users:activity!user",
        "access:servers!server", "read:users:name!user"]``
        """,
    ).tag(config=True)

    @default("server_token_scopes")
    def _default_server_token_scopes(self):
        return course_token_scopes

    grading_url = Unicode(
        "",
        help="""The grading service as a course server reaches it, given to the server as
        ``$HUB_EXT_GRADING_URL`` (``python -m hub_ext_assignments`` fetches and hands in
        the course's assignments there). Set by :func:`hub_ext.hubconfig.configure_course_hub`
        when the hub runs the grading service; with it, the server's token also carries the
        course's submit scope (:func:`course_token_scopes`). Default: "" (no grading).
        Example: ``c.CourseLocalSpawner.grading_url = "http://127.0.0.1:10104/services/grading/"``
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
        course = self.course
        refusal = start_refusal(
            course,
            self.course_role(course) if course is not None else None,
            self.now(),
            teachers_before_opening=self.teachers_before_opening,
            server_name=self.name,
            username=self.user.name,
        )
        if refusal is not None:
            raise refusal
        return course

    def apply_course(self, course: Course) -> None:
        """Set this spawner's own settings for ``course``. Backends extend it (super first).

        It runs at every start, before the deployer's hooks, on settings as configured:
        a value the course does not give is left as the deployer configured it.
        """
        if course.mem_limit is not None:
            self.mem_limit = course.mem_limit
        if course.cpu_limit is not None:
            self.cpu_limit = course.cpu_limit

    def _configured(self, name: str):
        """The value of trait ``name`` as configured, before any course was applied to it.

        Read once per spawner, so applying a course at each start begins from the
        deployer's value, not from the last start's.
        """
        saved = self.__dict__.setdefault("_course_configured", {})
        if name not in saved:
            saved[name] = getattr(self, name)
        return saved[name]

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

    @property
    def singleuser_path(self) -> str:
        """Where the server finds :data:`SINGLEUSER_DIR` (a backend that mounts it elsewhere
        says where)."""
        return str(SINGLEUSER_DIR)

    def get_env(self):
        env = super().get_env()
        course = self.course
        if course is not None:
            env.update(course.env)
            # the course kernels' guard (get_args) must be importable by the server
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (self.singleuser_path, env.get("PYTHONPATH")) if p
            )
            env.update(
                COURSE_ID=course.id,
                COURSE_TITLE=course.title,
                COURSE_OPENS=course.opens_at.isoformat(),
                COURSE_CLOSES=course.closes_at.isoformat(),
                COURSE_GRACE_ENDS=course.grace_ends_at.isoformat(),
                COURSE_KERNELS=" ".join(course.kernels),
            )
            if self.grading_url:
                env["HUB_EXT_GRADING_URL"] = self.grading_url
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
            # allowed_kernelspecs alone filters the list, not what starts (finding 6)
            f"--ServerApp.kernel_spec_manager_class={COURSE_KERNEL_SPEC_MANAGER}",
            # errors a learner can read (a save into the read-only materials)
            f"--ServerApp.contents_manager_class={COURSE_CONTENTS_MANAGER}",
            # the course and whose workspace it is, in the tab and in a banner
            f"--ServerApp.jpserver_extensions={COURSE_LAB_EXTENSION}=True",
            "--LabApp.custom_css=True",
        ]
        if course.idle_timeout:
            # The server culls its own idle kernels and shuts down when idle; the hub's
            # idle culler applies the same course timeout to servers that cannot
            # (hub_ext.services.culling).
            args += [
                f"--MappingKernelManager.cull_idle_timeout={course.idle_timeout}",
                f"--ServerApp.shutdown_no_activity_timeout={course.idle_timeout}",
            ]
        return args

    # ------------------------------------------------------------------ start and progress

    _progress_log: ProgressLog | None = None
    _applied_course: Course | None = None

    def _report(self, progress: int, message: str) -> None:
        if self._progress_log is None:
            self._progress_log = ProgressLog()
        self._progress_log.report(progress, message)

    async def run_pre_spawn_hook(self):
        """Check and apply the course, then the deployer's hooks (JupyterHub calls this
        right before :meth:`start`)."""
        self._progress_log = ProgressLog()
        await self._prepare_course()
        return await maybe_future(super().run_pre_spawn_hook())

    async def _prepare_course(self) -> Course:
        self._applied_course = None
        self._report(5, f"Checking your enrollment in {self.name or 'a course'}")
        try:
            course = self.check_course()
        except SpawnException as refusal:
            self._progress_log.close()
            self._forget_if_never_started(self.explain(refusal))
            raise
        self._report(15, f"{course.title}: {course.describe_window()}")
        self.apply_course(course)
        if self.modify_course_spawner_hook is not None:
            await maybe_future(self.modify_course_spawner_hook(self, course))
        self._applied_course = course
        return course

    async def start(self):
        """Start the course's server. The stages of a start, in order (the methods a
        backend or a deployer can change are in brackets)::

            JupyterHub: Spawner.apply_group_overrides, apply_user_options
            run_pre_spawn_hook
              1. check: start_refusal(course, role, now)   [check_course]
                 a refusal is a SpawnException with the reason shown to the user; a
                 refused server record that never ran is removed
              2. apply the course to the spawner's own settings   [apply_course]
              3. modify_course_spawner_hook(spawner, course)   (deployer)
              4. pre_spawn_hook(spawner)   (deployer, JupyterHub's own)
            start
              5. the learner's workspace   [prepare_workspace]
              6. the backend's start (process, container)   [super().start()]
              7. share a learner's server with the course's teachers
            progress: each stage's message, as it happens

        Called without :meth:`run_pre_spawn_hook` (a direct call), stages 1-3 run here.
        """
        try:
            course = self._applied_course
            if course is None or course.id != self.name:
                course = await self._prepare_course()
            self._applied_course = None
            where = await self.prepare_workspace(course)
            self._report(30, f"Your workspace: {where}")
            self._report(40, f"Starting the {course.id} server ({', '.join(course.kernels)})")
            result = await super().start()
            await share_course_server(self, course)
            self._report(90, "Server started, waiting for it to answer")
            return result
        except SpawnException as refusal:  # a backend's (no image, image missing, ...)
            self.explain(refusal)
            raise
        finally:
            if self._progress_log is not None:
                self._progress_log.close()

    def explain(self, refusal: SpawnException) -> SpawnException:
        """Make ``refusal`` reach the person on every page, and say which course it is about.

        JupyterHub shows a failed start's message on its "spawn failed" page only when the
        exception carries ``jupyterhub_message`` (``jupyterhub.utils.format_exception``);
        the error page shows ``message``. ``course_id`` and ``course_owner`` let the course
        hub's templates (:class:`hub_ext.stockpages.CourseWords`) add the course's dates.
        """
        if not getattr(refusal, "jupyterhub_message", None):
            refusal.jupyterhub_message = refusal.message
        refusal.course_id = getattr(refusal, "course_id", None) or self.name
        refusal.course_owner = self.user.name
        return refusal

    async def progress(self):
        """Yield the steps of :meth:`start` as they happen (JupyterHub's progress bar)."""
        log = self._progress_log
        if log is None:
            return
        async for event in log.follow():
            yield event

    def _forget_if_never_started(self, refusal: SpawnException) -> None:
        """Once JupyterHub has finished the refused start, remove this server's record if
        it never ran (no saved state): refused names leave nothing behind.

        JupyterHub keeps the record of a failed start (to show its error); for a name the
        catalog refuses, that is one row per name tried. The record of a server that
        ran once (it has state) or that is starting again meanwhile is kept.
        """
        if refusal.reason not in _NEVER_STARTED_REASONS or not self.name:
            return
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is None or orm_spawner.state:
            return
        spawn_future = getattr(self, "_spawn_future", None)  # JupyterHub's handle on this start
        user = self.user
        if spawn_future is None or not hasattr(user, "spawners"):
            return

        def forget(_future):
            if user.spawners.get(self.name) is not self or self.active:
                return  # replaced by a new start of the same name, or running
            if user.orm_spawners.get(self.name) is not orm_spawner:
                return
            self.log.info("Removing the record of refused server %s", self._log_name)
            user.spawners.pop(self.name, None)
            user.db.delete(orm_spawner)
            user.db.commit()

        spawn_future.add_done_callback(forget)

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
