"""Course servers as Docker containers (dockerspawner): one department server.

- :class:`CourseDockerSpawner`: the course logic on ``DockerSpawner``. The course sets
  DockerSpawner's own settings (``image``, ``volumes``, ``read_only_volumes``,
  ``mem_limit``, ``cpu_limit``, ``extra_host_config``, ``network_name``, ...) and
  DockerSpawner creates the container, so every other DockerSpawner setting a deployer
  configures (``mounts``, internal SSL, ``extra_create_kwargs``, ...) still works.
- :func:`ensure_network` and :func:`ensure_host_firewall`: the learners' networks and the
  host firewall that keeps their containers away from the host's services.
- :func:`docker_hub_config`: the hub-side settings of the Docker backend (the hub on
  127.0.0.1; containers reach its API through :mod:`hub_ext.spawners.hub_api_guard`).
- :func:`workspace_volume_name`: a learner's workspace volume, named as the spawner names it.
- :func:`write_workspace_archive`: a workspace volume as a ``.tar.gz`` (the export service).

What to create is computed by the pure builders of :mod:`hub_ext.spawners.docker_objects`.
Every docker-py and iptables call runs off the hub's event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from typing import IO
from urllib.parse import urlparse

import docker
import docker.errors
from dockerspawner import DockerSpawner
from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import Bool, Int, Unicode, default, validate
from traitlets.config import Config

from ..courses import Course
from ..services.lifeline import with_lifeline
from .base import SINGLEUSER_DIR, CourseSpawnerMixin, check_per_learner_template
from .docker_objects import (
    DEFAULT_NETWORK,
    HUB_ONLY,
    INTERNET,
    course_host_config,
    firewall_chain,
    firewall_rules,
    merged,
    network_bridge,
    network_create_kwargs,
    network_gateway,
    network_problem,
    object_labels,
    volume_name,
)

__all__ = [
    "CourseDockerSpawner",
    "HostFirewallError",
    "NetworkError",
    "add_hub_api_guard",
    "docker_hub_config",
    "ensure_host_firewall",
    "exit_unless_images",
    "ensure_network",
    "remove_host_firewall",
    "workspace_volume_name",
    "write_workspace_archive",
]


class CourseDockerSpawner(CourseSpawnerMixin, DockerSpawner):
    """Course servers as Docker containers: one department server.

    - image: the course's ``image`` from the catalog, and only that (no image choice,
      no options form); locally built images are not pulled (``pull_policy``);
    - limits: the course's ``mem_limit`` (no swap beyond it) and ``cpu_limit``, a
      process-count limit (:attr:`pids_limit`), no Linux capabilities, no privilege gain;
    - workspace: a named volume per learner per course (:attr:`workspace_volume_template`)
      mounted at :attr:`workspace_path`, the server's root. Containers are removed when
      they stop; the volume is never removed by the hub;
    - materials: bind-mounted read-only at :attr:`materials_path`;
    - kernels: the course's only (the single-user side's guard,
      ``hub_ext/spawners/singleuser/``, mounted read-only at ``/opt/hub-ext/singleuser``);
    - network: the course's ``network`` from the catalog: ``hub-only`` (default) puts the
      container on :attr:`network_name`, an internal bridge (no route out), ``internet``
      on :attr:`internet_network_name`; on both, containers cannot reach each other, and
      the host firewall (:func:`ensure_host_firewall`) lets them reach the hub's API port
      and nothing else of the host. :func:`docker_hub_config` sets the hub side.

    The course is applied to DockerSpawner's own settings (:meth:`apply_course`), on top of
    what the deployer configured: a deployer's ``volumes``, ``read_only_volumes``,
    ``extra_host_config`` and ``extra_create_kwargs`` entries are kept beside the course's.
    """

    workspace_volume_template = Unicode(
        "hub-ext_{course}_{username}",
        help="""Name of the Docker volume holding a learner's workspace for one course.

        ``{course}`` is the course id, ``{username}`` the username escaped by
        DockerSpawner's ``escape``. Both must appear (without ``{username}`` every learner
        of a course would share one volume: refused). The volume is created at first start
        (labelled with the course and user) and never removed by the hub: stop, restart,
        container removal and the course closing leave it.
        Default: ``hub-ext_{course}_{username}``.
        Example: ``c.CourseDockerSpawner.workspace_volume_template = "ws_{course}_{username}"``
        """,
    ).tag(config=True)

    @validate("workspace_volume_template")
    def _validate_workspace_volume_template(self, proposal):
        return check_per_learner_template(
            proposal.value, "CourseDockerSpawner.workspace_volume_template"
        )

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

    internet_network_name = Unicode(
        help="""The learners' network of courses with ``network: internet`` in the catalog.

        A bridge without inter-container communication whose containers reach the
        internet (and, on the host, only the hub's API port). Courses with the default
        ``network: hub-only`` use ``network_name``, an internal bridge.
        Default: ``network_name`` + ``-internet`` (``hub-ext-learners-internet``).
        Example: ``c.CourseDockerSpawner.internet_network_name = "campus-learners-web"``
        """,
    ).tag(config=True)

    @default("internet_network_name")
    def _default_internet_network_name(self):
        return self._configured("network_name") + "-internet"

    host_firewall = Bool(
        True,
        help="""Guard the host from learners' containers with an iptables chain per
        learners' network (the hub must run as root, with ``iptables``).

        The chain lets containers open connections to the hub's API port and drops every
        other connection to the host's services (a server bound to ``0.0.0.0`` or to the
        bridge's address included). The default route of a ``hub-only`` container is
        removed too (``nsenter``; Docker 20.10 gives internal networks one). Without ``iptables`` the hub refuses to start. Set it
        to False only when the host is guarded otherwise (a firewall managed elsewhere):
        learners' containers then reach every service of the host.
        Default: True. Example: ``c.CourseDockerSpawner.host_firewall = False``
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
    def singleuser_path(self) -> str:
        # the single-user side's modules, mounted read-only (the image need not have hub_ext)
        return "/opt/hub-ext/singleuser"

    @property
    def workspace_volume(self) -> str:
        return volume_name(
            self.workspace_volume_template,
            course=self.name,
            username=self.user.name,
            escape=self.escape,
        )

    def course_network(self, course: Course) -> str:
        """The learners' network of ``course`` (by its catalog ``network``)."""
        hub_only = self._configured("network_name")  # read before the course sets it
        return self.internet_network_name if course.network == INTERNET else hub_only

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
        self._network_kind = INTERNET if course.network == INTERNET else HUB_ONLY
        self.network_name = self.course_network(course)
        self.volumes = {
            **self._configured("volumes"),
            self.workspace_volume: {"bind": self.workspace_path, "mode": "rw"},
        }
        read_only = dict(self._configured("read_only_volumes"))
        read_only[str(SINGLEUSER_DIR)] = self.singleuser_path
        if course.materials is not None:
            read_only[str(course.materials)] = self.materials_path
        self.read_only_volumes = read_only
        # the course's settings first; a deployer's dictionaries merge over them
        ours = course_host_config(mem_limit=self.mem_limit, pids_limit=self.pids_limit)
        self._course_memswap = ours.get("memswap_limit")
        configured = self._configured("extra_host_config")
        self.extra_host_config = (
            merged(ours, configured) if isinstance(configured, dict) else configured
        )
        labels = object_labels(
            course=course.id, user=self.user.name, server=self.name, kind="course-server"
        )
        configured = self._configured("extra_create_kwargs")
        self.extra_create_kwargs = (
            merged({"labels": labels}, configured) if isinstance(configured, dict) else configured
        )

    _networks_ready: set[str] = set()
    _course_memswap: int | None = None
    _network_kind: str = HUB_ONLY

    async def prepare_workspace(self, course: Course) -> str:
        network = self.network_name
        if network not in CourseDockerSpawner._networks_ready:
            # once per network and hub process: the network (and its firewall) as
            # docker_hub_config made them, or made again if someone removed them
            kind = INTERNET if course.network == INTERNET else HUB_ONLY
            hub_port = None
            if self.host_firewall:  # the port containers reach the hub's API on
                hub_port = urlparse(self.hub_connect_url).port if self.hub_connect_url else None
                hub_port = hub_port or self.hub.port
            gateway = await self._blocking(_ensure_guarded_network, network, kind, hub_port)
            self.log.info("Learners' network %s (%s), gateway %s", network, kind, gateway)
            CourseDockerSpawner._networks_ready.add(network)
        volume = self.workspace_volume
        try:
            await self.docker("inspect_volume", volume)
        except docker.errors.NotFound:
            labels = object_labels(course=course.id, user=self.user.name, kind="workspace")
            await self.docker("create_volume", volume, labels=labels)
            self.log.info("Created workspace volume %s for %s", volume, self._log_name)
        return f"volume {volume}, at {self.workspace_path}"

    async def _blocking(self, fn, *args):
        """Run ``fn(self.client, *args)`` on DockerSpawner's executor (off the event loop)."""
        return await asyncio.wrap_future(self.executor.submit(fn, self.client, *args))

    # ------------------------------------------------------------------ DockerSpawner's steps

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
        """Report, log (without the environment: it holds the API token), then let
        DockerSpawner create the container from its settings."""
        host = self.extra_host_config
        if (
            isinstance(host, dict)
            and self._course_memswap
            and host.get("memswap_limit") == self._course_memswap
            and self.mem_limit != self._course_memswap
        ):
            # a hook changed the memory limit: no swap beyond the new one either
            self.extra_host_config = {**host, "memswap_limit": self.mem_limit}
        limits = [
            f"{_bytes_text(self.mem_limit)} memory" if self.mem_limit else "",
            f"{self.cpu_limit:g} CPU" if self.cpu_limit else "",
        ]
        limits = ", ".join(x for x in limits if x)
        self._report(
            55, f"Creating your container from {self.image}" + (f" ({limits})" if limits else "")
        )
        self.log.info(
            "Creating %s from %s for %s: volumes %s, read-only %s, memory %s, cpu %s, network %s",
            self.object_name,
            self.image,
            self._log_name,
            sorted(self.volumes),
            sorted(self.read_only_volumes),
            self.mem_limit,
            self.cpu_limit,
            self.network_name,
        )
        return await super().create_object()

    async def start_object(self):
        self._report(70, "Starting your container")
        await super().start_object()
        if self.host_firewall and self._network_kind == HUB_ONLY:
            await asyncio.wrap_future(self.executor.submit(self._drop_default_route))

    def _server_container_id(self) -> str | None:
        """The id of the server's container on this machine (blocking); None if it runs
        elsewhere. A backend whose object is not a container (a Swarm service) says which."""
        return self.container_id

    def _drop_default_route(self) -> None:
        """Remove the default route of a ``hub-only`` container (blocking).

        Docker 20.10 gives containers of an internal network a default route to the
        bridge's address anyway; what is forwarded through it is dropped by Docker, but
        without the route nothing leaves at all (the hub is on the bridge's subnet).
        """
        container = self._server_container_id()
        pid = container and self.client.inspect_container(container)["State"]["Pid"]
        nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
        if not (pid and nsenter and ip):
            self.log.warning(
                "Cannot drop the default route of %s (no nsenter/ip, or not on this machine)",
                self._log_name,
            )
            return
        done = subprocess.run(
            [nsenter, "-t", str(pid), "-n", ip, "-4", "route", "del", "default"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0 and "No such process" not in done.stderr:
            self.log.warning(
                "Cannot drop the default route of %s: %s", self._log_name, done.stderr.strip()
            )


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


# --------------------------------------------------------------------------- names


def _configured_value(config: Config, cls: type, name: str):
    """Trait ``name`` of ``cls`` as ``config`` sets it (the most derived section wins),
    validated by the trait, else the trait's default."""
    value = cls.class_traits()[name].default_value
    for klass in reversed(cls.mro()):
        section = klass.__name__
        if section in config and name in config[section]:
            value = config[section][name]
    return value


def workspace_volume_name(config: Config, course: str, username: str) -> str:
    """The workspace volume of ``username`` for ``course``, as :class:`CourseDockerSpawner`
    configured by ``config`` names it (``workspace_volume_template`` and ``escape``).

    For the services that read workspaces (the export service): they name a volume
    the way the spawner does, from the hub's own settings.
    """
    template = check_per_learner_template(
        _configured_value(config, CourseDockerSpawner, "workspace_volume_template"),
        "CourseDockerSpawner.workspace_volume_template",
    )
    escape = _configured_value(config, CourseDockerSpawner, "escape")
    if escape in (None, ""):
        escape = DockerSpawner._escape
    elif escape == "legacy":
        escape = DockerSpawner._legacy_escape
    return volume_name(template, course=course, username=username, escape=escape)


# --------------------------------------------------------------------------- networks


class NetworkError(RuntimeError):
    """A learners' network cannot be used (it lets containers talk, routes out, ...)."""


class HostFirewallError(RuntimeError):
    """The host firewall guarding the learners' networks cannot be installed."""


def ensure_network(client, name: str = DEFAULT_NETWORK, kind: str = HUB_ONLY) -> str:
    """Create the learners' network ``name`` of ``kind`` if needed (idempotent); return its
    gateway (the host's address on it).

    ``client`` is a docker-py ``APIClient``. Blocking: call it off the event loop. An
    existing network of that name must already be what ``kind`` asks for
    (:func:`~hub_ext.spawners.docker_objects.network_problem`); anything else is refused
    rather than silently letting learners reach each other or the outside.
    """
    try:
        network = client.inspect_network(name)
    except docker.errors.NotFound:
        try:
            client.create_network(**network_create_kwargs(name, kind))
        except docker.errors.APIError as e:
            if e.status_code != 409:  # created meanwhile by another hub process
                raise
        network = client.inspect_network(name)
    problem = network_problem(network, kind)
    if problem:
        raise NetworkError(problem)
    gateway = network_gateway(network)
    if gateway is None:
        raise NetworkError(f"Docker network {name!r} has no IPv4 gateway")
    return gateway


def _ensure_guarded_network(client, name: str, kind: str, hub_port: int | None) -> str:
    gateway = ensure_network(client, name, kind)
    if hub_port is not None:
        ensure_host_firewall(name, hub_port, client=client)
    return gateway


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    iptables = shutil.which("iptables")
    if iptables is None:
        raise HostFirewallError("iptables is not installed")
    done = subprocess.run(
        [iptables, "-w", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise HostFirewallError(f"iptables {' '.join(args)}: {done.stderr.strip()}")
    return done


def ensure_host_firewall(network: str, hub_port: int, *, client=None) -> str:
    """Guard the host from the containers of ``network``: they may open connections to
    ``hub_port`` and nothing else of the host (idempotent; needs root and ``iptables``).
    Returns the chain's name. Blocking. A port accepted once stays accepted until
    :func:`remove_host_firewall` (or a reboot): after changing ``c.JupyterHub.hub_port``,
    remove the network's firewall so the old port closes.

    The bridge's interface is read from the network (``client``, or a client from the
    environment). See :func:`~hub_ext.spawners.docker_objects.firewall_rules`.
    """
    client = client or docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    bridge = network_bridge(client.inspect_network(network))
    chain = firewall_chain(network)
    rules = firewall_rules(chain, bridge, hub_port)
    if _iptables("-n", "-L", chain, check=False).returncode != 0:
        _iptables("-N", chain)
    for rule in rules["accept"]:
        if _iptables("-C", *rule, check=False).returncode != 0:
            _iptables("-I", rule[0], "1", *rule[1:])
    if _iptables("-C", *rules["drop"], check=False).returncode != 0:
        _iptables("-A", *rules["drop"])
    if _iptables("-C", *rules["jump"], check=False).returncode != 0:
        _iptables("-I", rules["jump"][0], "1", *rules["jump"][1:])
    return chain


def remove_host_firewall(network: str, *, bridge: str | None = None, client=None) -> None:
    """Remove what :func:`ensure_host_firewall` installed for ``network`` (if anything)."""
    chain = firewall_chain(network)
    if bridge is None:
        client = client or docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        try:
            bridge = network_bridge(client.inspect_network(network))
        except docker.errors.NotFound:
            bridge = None
    if bridge is not None:
        jump = firewall_rules(chain, bridge, 0)["jump"]
        while _iptables("-D", *jump, check=False).returncode == 0:
            pass
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)


def exit_unless_images(catalog, backend: str) -> None:
    """Exit, naming the file and the courses, unless every course of ``catalog`` has an
    image (the container backends run nothing else)."""
    if catalog is not None:
        missing = [course.id for course in catalog.values() if not course.image]
        if missing:
            sys.exit(
                f"The {backend} backend needs an image for every course; {catalog.source}: "
                + ", ".join(f"course {cid!r}: image: missing" for cid in missing)
            )


def docker_hub_config(
    c,
    catalog=None,
    *,
    network: str = DEFAULT_NETWORK,
    internet_network: str | None = None,
    api_guard_port: int | None = None,
    client=None,
) -> str:
    """Hub-side settings of the Docker backend; returns the address learners' containers
    reach the hub's API on (the gateway of the ``hub-only`` learners' network).

    Call it after :func:`hub_ext.hubconfig.configure_course_hub` (``backend="docker"``) and
    after setting ``c.JupyterHub.hub_port``::

        catalog = configure_course_hub(c, "courses.yaml", backend="docker")
        docker_hub_config(c, catalog)

    It creates both learners' networks if needed (``network``, internal, for ``hub-only``
    courses; ``internet_network``, default ``network + "-internet"``, for ``internet``
    ones) and makes the hub listen on 127.0.0.1 only. Containers reach the hub's API
    through :mod:`hub_ext.spawners.hub_api_guard` (a hub-managed service on the
    ``hub-only`` gateway, port ``api_guard_port``, default ``hub_port + 1``: the hub's API
    without users' groups), set as the spawner's ``hub_connect_url``; the proxy reaches
    containers on their network address. It installs the host firewall of each network
    (unless ``c.CourseDockerSpawner.host_firewall = False``): containers reach that port
    and nothing else of the host. Every course of ``catalog`` must name an image. Exits
    with a clear message when no Docker engine answers, a network is unfit, the firewall
    cannot be installed or the catalog lacks images: a config file cannot half-fail.
    """
    exit_unless_images(catalog, "Docker")
    internet_network = internet_network or network + "-internet"
    spawner_config = c.CourseDockerSpawner
    firewall = spawner_config.get("host_firewall", True)
    hub_port = c.JupyterHub.get("hub_port", 8081)
    api_guard_port = api_guard_port or hub_port + 1
    try:
        if client is None:
            client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        gateway = ensure_network(client, network, HUB_ONLY)
        ensure_network(client, internet_network, INTERNET)
        if firewall:
            for name in (network, internet_network):
                ensure_host_firewall(name, api_guard_port, client=client)
    except docker.errors.DockerException as e:
        sys.exit(f"The Docker backend cannot reach a Docker engine: {e}")
    except NetworkError as e:
        sys.exit(str(e))
    except (HostFirewallError, OSError) as e:
        sys.exit(
            "The Docker backend guards the host from learners' containers with iptables "
            f"(the hub must run as root with iptables installed), and that failed: {e}. "
            "If the host is guarded otherwise, set c.CourseDockerSpawner.host_firewall = False."
        )
    add_hub_api_guard(c, spawner_config, gateway, api_guard_port, hub_port)
    spawner_config.network_name = network
    spawner_config.internet_network_name = internet_network
    spawner_config.use_internal_ip = True
    return gateway


def add_hub_api_guard(c, spawner_config, gateway: str, port: int, hub_port: int) -> str:
    """Make the hub listen on 127.0.0.1 and add the ``hub-api-guard`` service on
    ``gateway:port``, the course servers' ``hub_connect_url`` (set in ``spawner_config``,
    the spawner's section of ``c``), and their way to the grading service; return its URL."""
    c.JupyterHub.hub_ip = "127.0.0.1"
    guard_url = f"http://{gateway}:{port}"
    # the services course servers call (grading) are reached through the guard too
    forwarded = {}
    grading_url = c.CourseSpawnerMixin.get("grading_url", "")
    if grading_url:
        where = urlparse(grading_url)
        forwarded[where.path] = f"{where.scheme}://{where.netloc}"
        spawner_config.grading_url = guard_url + where.path
    c.JupyterHub.services = [
        *c.JupyterHub.get("services", []),
        {
            "name": "hub-api-guard",
            "command": with_lifeline(
                [
                    sys.executable,
                    "-m",
                    "hub_ext.spawners.hub_api_guard",
                    f"--ip={gateway}",
                    f"--port={port}",
                    f"--hub-url=http://127.0.0.1:{hub_port}",
                    *([f"--HubAPIGuard.services={json.dumps(forwarded)}"] if forwarded else []),
                ]
            ),
            "display": False,
        },
    ]
    spawner_config.hub_connect_url = guard_url
    return guard_url


# --------------------------------------------------------------------------- export


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (docker-py's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


_MOUNT = "/hub-ext-workspace"


def write_workspace_archive(
    client,
    *,
    volume: str,
    image: str,
    arcname: str,
    fileobj: IO[bytes],
    skip_dirs: Iterable[str] = (),
) -> int:
    """Write the files of the workspace ``volume`` to ``fileobj`` as a ``.tar.gz``.

    Members are named ``<arcname>/<path in the workspace>``. ``skip_dirs`` are top-level
    directory *entries* to leave out (the empty mount point the read-only materials are
    mounted on); files under them, if any, are still exported. The volume is read through
    a container of ``image`` that is created, never started, mounts it read-only and has
    no network; it is removed afterwards. Blocking. Returns the number of members written.
    Raises ``docker.errors.NotFound`` when the volume does not exist.
    """
    client.inspect_volume(volume)  # NotFound: no workspace
    host_config = client.create_host_config(
        binds={volume: {"bind": _MOUNT, "mode": "ro"}}, network_mode="none"
    )
    helper = client.create_container(
        image=image,
        command=["true"],
        entrypoint=[],
        network_disabled=True,
        labels=object_labels(purpose="workspace export", volume=volume),
        host_config=host_config,
    )
    skip = {f"{_MOUNT.lstrip('/')}/{d.strip('/')}" for d in skip_dirs}
    top = _MOUNT.lstrip("/")
    count = 0
    try:
        chunks, _stat = client.get_archive(helper["Id"], _MOUNT)
        reader = io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 16)
        with (
            tarfile.open(fileobj=reader, mode="r|") as source,
            tarfile.open(fileobj=fileobj, mode="w|gz") as out,
        ):
            for member in source:
                if member.isdir() and member.name in skip:
                    continue
                member.name = arcname + member.name[len(top) :]
                if member.islnk():
                    member.linkname = arcname + member.linkname[len(top) :]
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
                count += 1
    finally:
        client.remove_container(helper["Id"], force=True)
    return count
