"""Course servers as Docker Swarm services (dockerspawner's ``SwarmSpawner``): many servers.

- :class:`CourseSwarmSpawner`: the course rules of :class:`~hub_ext.spawners.docker.
  CourseDockerSpawner` (image, limits, workspace volume, read-only materials, environment,
  kernels, the hub reached through the API guard) on ``SwarmSpawner``: one service per
  learner per course. It is a ``CourseDockerSpawner``, so ``c.CourseDockerSpawner.*``
  settings (the workspace volume's name, paths, limits) apply to it too, and the services
  that read workspaces (export) name them the same way.
- :func:`swarm_hub_config`: the hub-side settings of the Swarm backend.

What to create is computed by the pure builders of :mod:`hub_ext.spawners.docker_objects`
(``service_*``); every docker-py call runs off the hub's event loop.

**What holds on a swarm, and what does not** (Docker 20.10's service API):

- learners cannot reach each other: each course server is alone on its own attachable
  overlay network (an overlay has no ``enable_icc`` switch, so a shared one would let
  learners' servers talk); on a node, tasks also sit on ``docker_gwbridge``, where Docker
  turns inter-container communication off;
- the hub (running on a manager node, as in the Docker tier) reaches a server on that
  node's ``docker_gwbridge``, and the server reaches the hub's API guard there and nothing
  else of the host (the host firewall of :func:`~hub_ext.spawners.docker.
  ensure_host_firewall`, on ``docker_gwbridge``);
- memory and CPU limits are the service's resources; the process limit is
  ``Resources.Limits.Pids``; Linux capabilities are dropped (``CapabilityDrop``);
- not on a service: no swap beyond the memory limit (the engine's default, twice the
  limit, applies where the node has swap), ``no-new-privileges``: the service API of
  Docker 20.10 has neither;
- ``hub-only`` courses: the default route is removed from the server's network namespace
  (``nsenter``), which the hub can only do on its own node. A hub that spans nodes must
  keep learners' tasks on nodes whose firewall does the same (placement), or run in a
  container attached to the learners' networks: not built here.
"""

from __future__ import annotations

import asyncio
import sys

import docker
import docker.errors
from dockerspawner import SwarmSpawner
from jupyterhub.spawner import SpawnException
from traitlets import Unicode, default

from ..courses import Course
from .docker import (
    CourseDockerSpawner,
    HostFirewallError,
    add_hub_api_guard,
    ensure_host_firewall,
    exit_unless_images,
)
from .docker_objects import (
    GWBRIDGE,
    gwbridge_address,
    merged,
    network_gateway,
    object_labels,
    service_mounts,
    service_network_create_kwargs,
    with_pids_limit,
    workspace_constraint,
)

__all__ = ["CourseSwarmSpawner", "swarm_hub_config"]


class CourseSwarmSpawner(CourseDockerSpawner, SwarmSpawner):
    """Course servers as Docker Swarm services: an institution's cluster.

    Everything :class:`~hub_ext.spawners.docker.CourseDockerSpawner` does for a course,
    on one service per learner per course (``SwarmSpawner``), with:

    - network: a learner's own attachable overlay network per course server
      (``<service name>-net``), made at start and removed at stop;
    - workspace: a named volume, created by the engine of the node the first task lands
      on and never removed by the hub. Local volumes live on one node, so the server is
      pinned to that node (a ``node.id==`` placement constraint, the node kept in the
      server's state). With ``c.SwarmSpawner.volume_driver`` set (a multi-host volume
      plugin), the workspace follows the learner instead and no pin is added;
    - tasks are not restarted by the swarm: a server that stops (idle shutdown) is
      stopped, as a container of the Docker backend is.

    SwarmSpawner's own settings (``extra_container_spec``, ``extra_task_spec``,
    ``extra_placement_spec``, ``extra_resources_spec``, ``volume_driver``, ...) are kept
    beside the course's.
    """

    workspace_node = Unicode(
        "",
        help="""The Swarm node holding this server's workspace volume (kept in the
        server's state, not configured): found at the first start, pinned thereafter.""",
    )

    @default("pull_policy")
    def _default_pull_policy(self):
        # the images are built on the machine; the hub checks its own node has the image
        # (a missing one is reported) and nodes without it reject the task
        return "never"

    # ------------------------------------------------------------------ the course

    def course_network(self, course: Course) -> str:
        """This server's own overlay network."""
        return f"{self.object_name}-net"

    def apply_course(self, course: Course) -> None:
        super().apply_course(course)
        labels = object_labels(
            course=course.id, user=self.user.name, server=self.name, kind="course-server"
        )
        self.extra_container_spec = merged(
            {"labels": labels, "cap_drop": ["ALL"]}, self._configured("extra_container_spec")
        )
        self.extra_task_spec = merged(
            {"restart_policy": docker.types.RestartPolicy(condition="none")},
            self._configured("extra_task_spec"),
        )

    @property
    def mounts(self):
        """The service's mounts: the workspace (a named volume, labelled), the course's
        materials and the deployer's ``volumes`` (:func:`service_mounts`)."""
        course = self.course
        labels = {}
        if course is not None:
            labels[self.workspace_volume] = object_labels(
                course=course.id, user=self.user.name, kind="workspace"
            )
        return service_mounts(
            self.volume_binds,
            volume_labels=labels,
            volume_driver=self.volume_driver,
            volume_driver_options=self.volume_driver_options,
        )

    _gwbridge_guarded = False
    _network_removal: asyncio.Task | None = None

    async def prepare_workspace(self, course: Course) -> str:
        if self.host_firewall and not CourseSwarmSpawner._gwbridge_guarded:
            # once per hub process, as swarm_hub_config made it or again if removed
            port = self._hub_api_port()
            await self._blocking(_ensure_guarded_gwbridge, port)
            CourseSwarmSpawner._gwbridge_guarded = True
        if self._network_removal is not None:  # the last stop's: let it finish first
            removal, self._network_removal = self._network_removal, None
            await removal
        network = self.network_name
        labels = object_labels(
            course=course.id, user=self.user.name, server=self.name, kind="learner-network"
        )
        await self._blocking(_ensure_service_network, network, labels)
        volume = self.workspace_volume
        where = f"volume {volume}, at {self.workspace_path}"
        if self.volume_driver:  # a multi-host volume: it follows the learner
            return where + f" (volume driver {self.volume_driver})"
        node = self.workspace_node or await self._blocking(_local_node_holding, volume)
        placement = dict(self._configured("extra_placement_spec"))
        if node:
            problem = await self._blocking(_node_problem, node)
            if problem:
                raise SpawnException(
                    f"Your {course.id} workspace is on the cluster's node {node}, which "
                    f"{problem}; your server can start when it is back. The hub's "
                    "administrators can tell you more.",
                    reason="workspace_node_unavailable",
                    status_code=503,
                )
            self.workspace_node = node
            placement["constraints"] = [
                *placement.get("constraints", []),
                workspace_constraint(node),
            ]
            where += f", on node {node}"
        self.extra_placement_spec = placement
        return where

    def _hub_api_port(self) -> int:
        from urllib.parse import urlparse

        url = urlparse(self.hub_connect_url) if self.hub_connect_url else None
        return (url.port if url else None) or self.hub.port

    # ------------------------------------------------------------------ SwarmSpawner's steps

    async def docker(self, method, *args, **kwargs):
        if method == "create_service":
            kwargs = with_pids_limit(kwargs, self.pids_limit)
        return await super().docker(method, *args, **kwargs)

    async def create_object(self):
        self.log.info(
            "Creating service %s for %s on network %s, placement %s",
            self.object_name,
            self._log_name,
            self.network_name,
            self.extra_placement_spec.get("constraints", []),
        )
        return await super().create_object()

    async def start_object(self):
        await super().start_object()
        task = await self.get_task()
        if task and not self.volume_driver:
            self.workspace_node = task["NodeID"]  # where the workspace volume is now

    def _server_container_id(self) -> str | None:
        return _local_task_container(self.client, self.service_name)

    async def get_ip_and_port(self):
        """The server's address on its node's ``docker_gwbridge`` (the hub's node)."""
        address = await self._blocking(_task_gwbridge_address, self.service_name)
        if address is None:
            raise SpawnException(
                f"The server {self._log_name} runs on another node of the swarm than the "
                "hub; this hub reaches course servers on its own node only.",
                reason="server_on_other_node",
                status_code=503,
            )
        return address, self.port

    async def stop(self, now=False):
        await super().stop(now=now)
        self._network_removal = asyncio.ensure_future(self._remove_network(self.network_name))

    async def _remove_network(self, network: str) -> None:
        """Remove this server's overlay network once its task has let go of it."""
        for _ in range(60):
            try:
                await self._blocking(_remove_service_network, network)
                return
            except docker.errors.APIError as e:
                if e.status_code != 403 and "in use" not in str(e):
                    self.log.warning("Cannot remove network %s: %s", network, e)
                    return
            await asyncio.sleep(1)
        self.log.warning("Network %s is still in use; left in place", network)

    # ------------------------------------------------------------------ state

    def get_state(self):
        state = super().get_state()
        if self.workspace_node:
            state["workspace_node"] = self.workspace_node
        return state

    def load_state(self, state):
        super().load_state(state)
        self.workspace_node = state.get("workspace_node", "") or self.workspace_node

    def clear_state(self):
        node = self.workspace_node  # the workspace stays where it is when the server stops
        super().clear_state()
        self.workspace_node = node


# --------------------------------------------------------------------------- engine calls
# Blocking: called on the spawner's executor with its docker-py APIClient first.


def _ensure_service_network(client, name: str, labels: dict) -> None:
    try:
        # the swarm's own record: a node keeps its copy of a removed network a little longer
        network = client.inspect_network(name, scope="swarm")
    except docker.errors.NotFound:
        try:
            client.create_network(**service_network_create_kwargs(name, labels))
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
        return
    if network.get("Driver") != "overlay" or network.get("Labels", {}).get(
        "org.hub-ext.kind"
    ) != labels.get("org.hub-ext.kind"):
        raise SpawnException(
            f"A Docker network {name!r} exists that the hub did not make for this server; "
            "the hub's administrators must remove it.",
            reason="network_conflict",
            status_code=500,
        )


def _remove_service_network(client, name: str) -> None:
    """Remove the hub's network ``name``, and wait until this node has let go of it too
    (it keeps its copy while the task's container stops, and a network made again
    meanwhile would be that stale copy)."""
    import time

    try:
        network = client.inspect_network(name, scope="swarm")
    except docker.errors.NotFound:
        return
    if (network.get("Labels") or {}).get("org.hub-ext.kind") != "learner-network":
        return
    client.remove_network(network["Id"])
    for _ in range(120):
        try:
            client.inspect_network(network["Id"])
        except docker.errors.NotFound:
            return
        time.sleep(0.25)


def _local_node_holding(client, volume: str) -> str:
    """This node's id if ``volume`` is on it (a workspace from before its node was
    recorded), else ""."""
    try:
        client.inspect_volume(volume)
    except docker.errors.NotFound:
        return ""
    return client.info()["Swarm"]["NodeID"]


def _node_problem(client, node_id: str) -> str | None:
    try:
        node = client.inspect_node(node_id)
    except docker.errors.NotFound:
        return "has left the swarm"
    state = node.get("Status", {}).get("State")
    availability = node.get("Spec", {}).get("Availability")
    if state != "ready":
        return f"is {state}"
    if availability != "active":
        return f"is set to {availability}"
    return None


def _running_task(client, service: str) -> dict | None:
    tasks = client.tasks(filters={"service": service, "desired-state": "running"})
    return tasks[0] if tasks else None


def _local_task_container(client, service: str) -> str | None:
    task = _running_task(client, service)
    if not task or task.get("NodeID") != client.info()["Swarm"]["NodeID"]:
        return None
    return task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")


def _task_gwbridge_address(client, service: str) -> str | None:
    container = _local_task_container(client, service)
    return container and gwbridge_address(client.inspect_network(GWBRIDGE), container)


def _ensure_guarded_gwbridge(client, port: int) -> str:
    return ensure_host_firewall(GWBRIDGE, port, client=client)


# --------------------------------------------------------------------------- the hub


def swarm_hub_config(c, catalog=None, *, api_guard_port: int | None = None, client=None) -> str:
    """Hub-side settings of the Swarm backend; returns the address course servers reach
    the hub's API on (the gateway of the hub node's ``docker_gwbridge``).

    Call it after :func:`hub_ext.hubconfig.configure_course_hub` (``backend="swarm"``) and
    after setting ``c.JupyterHub.hub_port``, on a manager node of an active swarm::

        catalog = configure_course_hub(c, "courses.yaml", backend="swarm")
        swarm_hub_config(c, catalog)

    The hub listens on 127.0.0.1; course servers reach its API through
    :mod:`hub_ext.spawners.hub_api_guard` on the ``docker_gwbridge`` gateway, port
    ``api_guard_port`` (default ``hub_port + 1``), and nothing else of the host (the host
    firewall, unless ``c.CourseSwarmSpawner.host_firewall = False``). Exits with a clear
    message when no engine answers, the engine is not a swarm manager, the firewall cannot
    be installed or the catalog lacks images.
    """
    exit_unless_images(catalog, "Swarm")
    spawner_config = c.CourseSwarmSpawner
    firewall = spawner_config.get("host_firewall", c.CourseDockerSpawner.get("host_firewall", True))
    hub_port = c.JupyterHub.get("hub_port", 8081)
    api_guard_port = api_guard_port or hub_port + 1
    try:
        if client is None:
            client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            sys.exit(
                "The Swarm backend needs the hub's Docker engine to be a manager of an "
                f"active swarm (this one is {swarm.get('LocalNodeState', 'not in a swarm')!r}"
                f"{'' if swarm.get('ControlAvailable') else ', not a manager'}); "
                "run `docker swarm init` or join it as a manager."
            )
        gateway = network_gateway(client.inspect_network(GWBRIDGE))
        if gateway is None:
            sys.exit(f"The Docker network {GWBRIDGE} has no IPv4 gateway")
        if firewall:
            ensure_host_firewall(GWBRIDGE, api_guard_port, client=client)
    except docker.errors.DockerException as e:
        sys.exit(f"The Swarm backend cannot reach a Docker engine: {e}")
    except (HostFirewallError, OSError) as e:
        sys.exit(
            "The Swarm backend guards the host from course servers with iptables "
            f"(the hub must run as root with iptables installed), and that failed: {e}. "
            "If the host is guarded otherwise, set c.CourseSwarmSpawner.host_firewall = False."
        )
    add_hub_api_guard(c, spawner_config, gateway, api_guard_port, hub_port)
    c.JupyterHub.spawner_class = "hub_ext.spawners.swarm.CourseSwarmSpawner"
    spawner_config.use_internal_ip = True
    return gateway
