"""The Docker tier: what to create for a course container, and the hub-side settings it needs.

- :class:`ContainerSpec` and :func:`workspace_volume_name`: pure builders, tested without
  Docker. :class:`~hub_ext.spawner.CourseDockerSpawner` creates what they describe.
- :func:`ensure_network`: the learners' network, a bridge with inter-container
  communication disabled, so one learner's container cannot open a connection to another's.
- :func:`docker_hub_config`: what ``jupyterhub_config.py`` sets for the Docker backend
  (the hub listens on the learners' network gateway so containers can reach it).
- :func:`write_workspace_archive`: a learner's workspace volume as a ``.tar.gz``, read
  through a throw-away container that mounts it read-only (the export service uses it).
"""

from __future__ import annotations

import io
import string
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from escapism import escape as _escapism

__all__ = [
    "DEFAULT_NETWORK",
    "LABEL_PREFIX",
    "ContainerSpec",
    "NetworkError",
    "docker_hub_config",
    "ensure_network",
    "escape_name",
    "workspace_volume_name",
    "write_workspace_archive",
]

#: The learners' network (a user-defined bridge without inter-container communication).
DEFAULT_NETWORK = "hub-ext-learners"
#: Prefix of the labels put on containers, volumes and networks.
LABEL_PREFIX = "org.hub-ext"
_ICC_OPTION = "com.docker.network.bridge.enable_icc"


def escape_name(text: str) -> str:
    """A name safe in Docker object names: DockerSpawner's default escaping (``-`` -> ``-2d``)."""
    safe = set(string.ascii_lowercase + string.digits)
    return _escapism(text, safe, escape_char="-").lower()


def workspace_volume_name(template: str, *, course: str, username: str) -> str:
    """The named volume holding ``username``'s workspace for ``course``.

    ``template`` gets ``{course}`` (a course id: lowercase letters, digits, dashes) and
    ``{username}`` (escaped: lowercase letters, digits, dashes). The default template
    separates them with ``_``, which neither can contain, so two learners or two courses
    never share a volume.
    """
    name = template.format(course=course, username=escape_name(username))
    if not name or not (name[0].isalnum() and all(ch.isalnum() or ch in "_.-" for ch in name)):
        raise ValueError(
            f"workspace volume name {name!r} (from {template!r}) is not a valid Docker volume name"
        )
    return name


def object_labels(**values: str) -> dict[str, str]:
    """``course="ds101"`` -> ``{"org.hub-ext.course": "ds101"}``."""
    return {f"{LABEL_PREFIX}.{key}": str(value) for key, value in values.items()}


@dataclass(frozen=True)
class ContainerSpec:
    """Everything about one course container, as data: the "what to create".

    :meth:`create_kwargs` and :meth:`host_config_kwargs` are the arguments of docker-py's
    ``APIClient.create_container`` and ``APIClient.create_host_config``.
    """

    name: str
    image: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    port: int
    network: str
    workspace_volume: str
    workspace_path: str
    materials: str | None = None
    materials_path: str | None = None
    mem_limit: int | None = None
    cpu_limit: float | None = None
    pids_limit: int | None = None
    remove: bool = True
    #: host address to publish the port on; None: reach the container on its network address
    publish_host_ip: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    extra_create: Mapping[str, Any] = field(default_factory=dict)
    extra_host_config: Mapping[str, Any] = field(default_factory=dict)

    def binds(self) -> dict[str, dict[str, str]]:
        binds = {self.workspace_volume: {"bind": self.workspace_path, "mode": "rw"}}
        if self.materials is not None:
            binds[self.materials] = {"bind": self.materials_path, "mode": "ro"}
        return binds

    def host_config_kwargs(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "binds": self.binds(),
            "network_mode": self.network,
            "auto_remove": self.remove,
            # the single-user server needs no capability and must not gain one (setuid)
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        }
        if self.mem_limit is not None:
            # memory + swap = memory: no swap beyond the limit
            config["mem_limit"] = self.mem_limit
            config["memswap_limit"] = self.mem_limit
        if self.cpu_limit is not None:
            config["nano_cpus"] = int(self.cpu_limit * 1e9)
        if self.pids_limit is not None:
            config["pids_limit"] = self.pids_limit
        if self.publish_host_ip is not None:
            config["port_bindings"] = {self.port: (self.publish_host_ip,)}
        return _merged(config, self.extra_host_config)

    def create_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "name": self.name,
            "command": list(self.command),
            "environment": dict(self.environment),
            "ports": [self.port],
            "volumes": sorted(b["bind"] for b in self.binds().values()),
            "labels": dict(self.labels),
        }
        kwargs = _merged(kwargs, self.extra_create)
        # the course's image, whatever else the configuration says
        kwargs["image"] = self.image
        return kwargs


def _merged(base: dict, extra: Mapping) -> dict:
    """``base`` updated with ``extra``, dictionaries merged key by key (as DockerSpawner does)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(dict(out[key]), value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- the network


class NetworkError(RuntimeError):
    """The learners' network cannot be used (it lets containers talk, or is not a bridge)."""


def ensure_network(client, name: str = DEFAULT_NETWORK) -> str:
    """Create the learners' network if needed (idempotent); return its gateway address.

    ``client`` is a docker-py ``APIClient``. Blocking: call it off the event loop.
    An existing network of that name must be a bridge with inter-container communication
    disabled; anything else is refused rather than silently letting learners reach each
    other.
    """
    import docker.errors

    try:
        network = client.inspect_network(name)
    except docker.errors.NotFound:
        try:
            client.create_network(
                name,
                driver="bridge",
                options={_ICC_OPTION: "false"},
                labels=object_labels(purpose="learners' course containers"),
                check_duplicate=True,
            )
        except docker.errors.APIError as e:
            if e.status_code != 409:  # created meanwhile by another hub process
                raise
        network = client.inspect_network(name)
    if network.get("Driver") != "bridge":
        raise NetworkError(
            f"Docker network {name!r} is a {network.get('Driver')!r} network, not a bridge"
        )
    if network.get("Options", {}).get(_ICC_OPTION) != "false":
        raise NetworkError(
            f"Docker network {name!r} lets containers reach each other; recreate it with "
            f"`docker network create -o {_ICC_OPTION}=false {name}` or choose another name"
        )
    configs = (network.get("IPAM") or {}).get("Config") or []
    gateways = [c["Gateway"] for c in configs if c.get("Gateway") and ":" not in c["Gateway"]]
    if not gateways:
        raise NetworkError(f"Docker network {name!r} has no IPv4 gateway")
    return gateways[0]


def docker_hub_config(c, catalog=None, *, network: str = DEFAULT_NETWORK, client=None) -> str:
    """Hub-side settings of the Docker backend; returns the learners' network gateway.

    Call it after :func:`hub_ext.hubconfig.configure_course_hub` (``backend="docker"``)::

        catalog = configure_course_hub(c, "courses.yaml", backend="docker")
        docker_hub_config(c, catalog)

    It creates the learners' network if needed, makes the hub listen on that network's
    gateway (containers reach the hub there; the proxy reaches containers on their
    network address) and gives the spawner the network's name. Every course of
    ``catalog`` must name an image. Exits with a clear message when no Docker engine
    answers or the catalog lacks images: a config file cannot half-fail.
    """
    if catalog is not None:
        missing = [course.id for course in catalog.values() if not course.image]
        if missing:
            sys.exit(
                f"The Docker backend needs an image for every course; {catalog.source}: "
                + ", ".join(f"course {cid!r}: image: missing" for cid in missing)
            )
    import docker

    try:
        if client is None:
            client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        gateway = ensure_network(client, network)
    except docker.errors.DockerException as e:
        sys.exit(f"The Docker backend cannot reach a Docker engine: {e}")
    except NetworkError as e:
        sys.exit(str(e))
    c.JupyterHub.hub_ip = gateway
    c.JupyterHub.hub_connect_ip = gateway
    c.CourseDockerSpawner.network_name = network
    c.CourseDockerSpawner.use_internal_ip = True
    return gateway


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
