"""Turn a course catalog into JupyterHub configuration.

Used from ``jupyterhub_config.py``::

    from hub_ext.hubconfig import configure_course_hub
    configure_course_hub(c, "courses.yaml", backend="local")

It loads and validates the catalog first: a broken catalog stops the hub before anything
starts, with every problem listed (file, course, field).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from jupyterhub.utils import random_port

from .courses import Catalog, CatalogError, CourseCatalog, enrollments_from_groups
from .rbac import course_roles, course_scopes, install_share_sync
from .roster import RosterError, load_catalog_rosters
from .services.culling import idle_culler_service
from .services.events.store import readonly_url
from .stockpages import CourseWords

__all__ = [
    "BACKENDS",
    "SERVICES",
    "add_service",
    "configure_course_hub",
    "configure_docker_tier",
    "courses_for_user",
    "read_hub_config",
]

#: backend name -> the spawner class (also the ``jupyterhub.spawners`` entry points
#: ``course-local`` / ``course-docker`` of setup.cfg)
BACKENDS = {
    "local": "hub_ext.spawners.local.CourseLocalSpawner",
    "docker": "hub_ext.spawners.docker.CourseDockerSpawner",
    "kube": "hub_ext.spawners.kube.CourseKubeSpawner",
    "swarm": "hub_ext.spawners.swarm.CourseSwarmSpawner",
}

#: the backends whose learners' servers are containers of the course images, and the sandbox
#: in which code the hub did not write (teachers' notebooks, learners' hand-ins) runs there:
#: a container too (:class:`~hub_ext.sandbox.docker.DockerSandbox`, on the hub's engine: on
#: Swarm, the manager the hub runs on), or a pod beside the service on Kubernetes
#: (:class:`~hub_ext.sandbox.kube.KubeSandbox`). Elsewhere: the services' default (bubblewrap).
CONTAINER_SANDBOXES = {"docker": "docker", "swarm": "docker", "kube": "kube"}

TEMPLATES = str(Path(__file__).parent / "templates")


#: True while :func:`read_hub_config` runs a config file: configure only, change nothing
_reading_only: ContextVar[bool] = ContextVar("hub_ext_reading_only", default=False)


def read_hub_config(path: str | Path):
    """The settings a hub config file makes, without acting on them (for ``hub-ext``).

    Runs the file as JupyterHub would (traitlets' loader, ``c = get_config()``), but
    :func:`configure_course_hub` and :func:`configure_docker_tier` only *configure* while
    it runs: they read the catalog and raise its :class:`CatalogError` instead of exiting,
    and they change no file mode, umask, Docker network or firewall. The command line
    asks the result what the hub would use (``CourseCatalog.path``, ``roster_dir``, the
    event store), so the two cannot disagree. Returns the traitlets ``Config``.
    """
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    path = Path(path).resolve()
    loader = PyFileConfigLoader(path.name, path=str(path.parent))
    token = _reading_only.set(True)
    try:
        return loader.load_config()
    except ConfigFileNotFound:
        raise FileNotFoundError(f"{path}: no such hub config file") from None
    finally:
        _reading_only.reset(token)


def load_catalog_or_exit(path: str | Path, *, backend: str) -> Catalog:
    """Load the catalog, or stop the hub with its problems (a config file cannot half-fail).

    While :func:`read_hub_config` runs, the catalog's :class:`CatalogError` is raised
    instead (the command line lists the problems) and rosters are not read.
    """
    known_kernels = None
    if backend == "local":
        from .kernels import installed_kernels

        known_kernels = installed_kernels()
    if _reading_only.get():
        return Catalog.load(path, known_kernels=known_kernels)
    try:
        catalog = Catalog.load(path, known_kernels=known_kernels)
    except CatalogError as e:
        # SystemExit, not an exception: traitlets would log an exception from a config file
        # and carry on starting a hub without courses.
        sys.exit(
            f"The course catalog has {len(e.problems)} problem(s); the hub will not start:\n{e}"
        )
    try:
        load_catalog_rosters(catalog)
    except RosterError as e:
        sys.exit(
            f"The catalog's rosters have {len(e.problems)} problem(s); the hub will not start:\n{e}"
        )
    return catalog


#: what the hub and its services keep: readable by the hub's account only
STATE_FILES = (
    "jupyterhub.sqlite",
    "jupyterhub_cookie_secret",
    "events.sqlite",
    "events.sqlite-wal",
    "events.sqlite-shm",
)


def protect_state(data_dir: Path) -> None:
    """Files the hub and its services create from now on are 0600 (directories 0700), and
    the state already in ``data_dir`` is made so: it holds the hub's database, its cookie
    secret and every course's events. (A umask is process-wide: the hub's services inherit it.)"""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for name in STATE_FILES:
        path = data_dir / name
        if path.exists():
            path.chmod(0o600)
    analytics = data_dir / "analytics"
    if analytics.exists():
        for path in [analytics, *analytics.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)


def add_service(c, service: dict, scopes: list[str]) -> None:
    """Add a hub-managed service and a role of its own with exactly ``scopes``."""
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    role = {"name": f"service-{service['name']}", "scopes": scopes, "services": [service["name"]]}
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), role]


def courses_for_user(catalog: Catalog, user, now=None) -> list[dict]:
    """The courses on ``user``'s home page (``template_vars``): those they are enrolled in
    and, for a hub admin, every course of the catalog (``role`` ``"admin"`` where they are
    not enrolled), each with its state and dates.

    No learner list: a course's teachers (and the admins) follow the link to the course's
    own page (``course_pages``, set by the courses service), which pages its class.
    """
    if user is None:
        return []
    now = now or datetime.now(UTC)
    roles = enrollments_from_groups(g.name for g in user.groups)
    rows = []
    for course in catalog.values():
        role = roles.get(course.id) or ("admin" if user.admin else None)
        if role is None:
            continue
        spawner = user.spawners[course.id] if course.id in user.orm_spawners else None
        rows.append(
            {
                "id": course.id,
                "title": course.title,
                "description": course.description,
                "role": role,
                "status": course.status(now),
                "window": course.describe_window(),
                "active": bool(spawner and spawner.active),
                "ready": bool(spawner and spawner.ready),
                "url": user.server_url(course.id),
                "oversees": role == "teacher" or user.admin,
            }
        )
    return rows


def add_service_with_roles(c, service: dict, roles, catalog: Catalog, **who) -> None:
    """Add a service whose callers' roles come from the catalog: ``roles(catalog,
    service_name=..., **who)`` (its ``*_roles`` function: who may call it, and the admins)."""
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        *roles(catalog, service_name=service["name"], **who),
    ]


#: the hub-managed services a course hub runs by default
SERVICES = ("events", "analytics", "grading", "courses")


def configure_course_hub(
    c,
    catalog_path: str | Path,
    *,
    backend: str = "local",
    data_dir: str | Path = ".",
    events_db: str | None = None,
    services: Iterable[str] = SERVICES,
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    public_url: str = "http://127.0.0.1:8000",
) -> Catalog:
    """Configure JupyterHub (``c``) for the courses of ``catalog_path`` on ``backend``.

    Sets: the catalog, the spawner, one named server per course, the home page that lists
    a user's courses, ``manage_groups``, the per-course teacher roles and scopes, the idle
    culler, and the ``services`` (any of :data:`SERVICES`):

    - ``events``: the learning-event store and its xAPI endpoint
      (``/services/events/``), fed by the hub's server-action events;
    - ``analytics``: the course notebooks published as JSON APIs
      (``/services/analytics/``), reading the event store read-only;
    - ``grading``: the courses' assignments (``/services/grading/``): learners fetch and
      hand in from their course server, graded in the sandbox, scores into the event store;
    - ``courses``: a page per course for its teachers and the admins
      (``/services/courses/<course>/``): the whole class from every source, each learner's
      state, look-over-the-shoulder links (``template_vars["course_pages"]`` is its prefix).

    ``data_dir`` holds what the services keep (default: the hub's working directory);
    ``events_db`` is the store's SQLAlchemy URL (default: SQLite in ``data_dir``; use
    PostgreSQL in production). ``admin_users`` become hub admins, with every course's
    analytics. ``public_url`` is the hub's address as people know it: it identifies hub
    accounts in the event store's statements. Returns the loaded catalog.
    """
    if backend not in BACKENDS:
        sys.exit(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    unknown = set(services) - set(SERVICES)
    if unknown:
        sys.exit(
            f"Unknown service(s) {', '.join(sorted(unknown))}: choose from {', '.join(SERVICES)}"
        )
    catalog_path = Path(catalog_path).resolve()
    catalog = load_catalog_or_exit(catalog_path, backend=backend)
    data_dir = Path(data_dir).resolve()
    c.CourseCatalog.path = str(catalog_path)
    if not _reading_only.get():
        protect_state(data_dir)
        CourseCatalog.instance().set_catalog(catalog)
        install_share_sync()

    c.JupyterHub.spawner_class = BACKENDS[backend]
    c.JupyterHub.allow_named_servers = True
    # No count limit: the spawner refuses any name that is not one of the user's courses,
    # and JupyterHub's count would include refused (never started) names.
    c.JupyterHub.named_server_limit_per_user = 0
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.template_paths = [TEMPLATES]
    c.JupyterHub.template_vars = {
        **c.JupyterHub.get("template_vars", {}),
        "courses": partial(courses_for_user, catalog),
        # not callable: the hub's pages ask it about the course of the page (stockpages)
        "course_words": CourseWords(catalog),
    }
    c.Authenticator.manage_groups = True
    if admin_users:
        c.Authenticator.admin_users = set(c.Authenticator.get("admin_users", set())) | set(
            admin_users
        )
    if admin_groups:
        # oauthenticator's: members of these provider groups are admins while they are in them
        c.OAuthenticator.admin_groups = set(c.OAuthenticator.get("admin_groups", set())) | set(
            admin_groups
        )

    culler = idle_culler_service(catalog)
    if culler is not None:
        add_service(c, *culler)

    c.JupyterHub.custom_scopes = {**c.JupyterHub.get("custom_scopes", {}), **course_scopes(catalog)}
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *course_roles(catalog)]

    events_db = events_db or f"sqlite:///{data_dir / 'events.sqlite'}"
    sandbox = CONTAINER_SANDBOXES.get(backend)
    if "events" in services:
        from .services.events.hubconfig import EVENTS_SCOPES, events_service, server_action_handler

        service = events_service(events_db, port=random_port(), public_url=public_url)
        add_service(c, service, list(EVENTS_SCOPES))
        c.EventLogger.handlers = [
            *c.EventLogger.get("handlers", []),
            server_action_handler(events_db, public_url),
        ]
    if "analytics" in services:
        from .services.analytics.hubconfig import analytics_roles, analytics_service

        service = analytics_service(
            catalog,
            catalog_path=catalog_path,
            port=random_port(),
            runtime_dir=data_dir / "analytics",
            events_url=readonly_url(events_db),
            # teachers' notebooks run where learners' code does: containers, pods
            options={"GatewaySupervisor.sandbox": sandbox} if sandbox else None,
        )
        add_service_with_roles(
            c, service, analytics_roles, catalog, admin_users=admin_users, admin_groups=admin_groups
        )
    if "grading" in services:
        from .services.grading.hubconfig import grading_roles, grading_service

        service = grading_service(
            catalog,
            catalog_path=catalog_path,
            data_dir=data_dir / "grading",
            events_db=events_db if "events" in services else "",
            public_url=public_url,
            port=random_port(),
            # learners' code runs where their servers do: containers, pods
            options={"Autograder.sandbox": sandbox} if sandbox else None,
        )
        add_service_with_roles(
            c, service, grading_roles, catalog, admin_users=admin_users, admin_groups=admin_groups
        )
        # course servers hand in there, with their course's scope (course_token_scopes)
        c.CourseSpawnerMixin.grading_url = f"{service['url']}/services/{service['name']}/"
    if "courses" in services:
        from .roster import default_roster_dir
        from .services.courses.hubconfig import courses_roles, courses_service

        service = courses_service(
            catalog,
            catalog_path=catalog_path,
            # the authenticator's, when the config set it before calling this
            roster_dir=c.CourseOAuthenticator.get("roster_dir", default_roster_dir()),
            analytics_url="/services/analytics/" if "analytics" in services else "",
            grading_url="/services/grading/" if "grading" in services else "",
            port=random_port(),
        )
        add_service_with_roles(c, service, courses_roles, catalog)
        c.JupyterHub.template_vars = {
            **c.JupyterHub.template_vars,
            "course_pages": f"/services/{service['name']}/",
            "course_titles": {course.id: course.title for course in catalog.values()},
        }
    return catalog


def configure_docker_tier(c, catalog: Catalog, catalog_path: str | Path) -> None:
    """The Docker backend's hub-side settings and its workspace-export service.

    Call after :func:`configure_course_hub` with ``backend="docker"``: the learners'
    network (hub reachable, learners not reaching each other) and the service through
    which a learner downloads their course workspace, linked from the home page.
    """
    from .services.export.hubconfig import configure_export
    from .spawners.docker import docker_hub_config

    if _reading_only.get():  # read_hub_config: no network, no firewall, no Docker engine
        return
    docker_hub_config(c, catalog)
    service = configure_export(
        c, catalog, catalog_path=Path(catalog_path).resolve(), port=random_port()
    )
    c.JupyterHub.template_vars = {
        **c.JupyterHub.get("template_vars", {}),
        "workspace_export": f"/services/{service['name']}/",
    }
