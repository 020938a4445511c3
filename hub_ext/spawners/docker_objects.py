"""What the Docker backends create, as data: pure builders, tested without a Docker engine.

Like kubespawner's ``objects.py``: the "what to create" (the course's part of a container's
settings, volume and network names, the learners' networks and the host firewall that
guards them; for Docker Swarm, a service's mounts, limits, placement and its learner's own
overlay network) apart from the "create it" (:mod:`hub_ext.spawners.docker`,
:mod:`hub_ext.spawners.swarm`). Nothing here imports docker-py or talks to an engine.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from typing import Any

from escapism import escape as _escapism

__all__ = [
    "DEFAULT_NETWORK",
    "GWBRIDGE",
    "HUB_ONLY",
    "INTERNET",
    "LABEL_PREFIX",
    "NETWORK_KINDS",
    "bridge_name",
    "course_host_config",
    "escape_name",
    "firewall_chain",
    "firewall_rules",
    "merged",
    "network_bridge",
    "network_create_kwargs",
    "network_gateway",
    "network_problem",
    "object_labels",
    "service_mounts",
    "service_network_create_kwargs",
    "volume_name",
    "with_pids_limit",
    "workspace_constraint",
    "gwbridge_address",
]

#: The learners' network of ``hub-only`` courses (an internal bridge: no route out).
DEFAULT_NETWORK = "hub-ext-learners"
#: Prefix of the labels put on containers, volumes and networks.
LABEL_PREFIX = "org.hub-ext"
#: A course's ``network``: reach the hub only (the default), or the hub and the internet.
HUB_ONLY = "hub-only"
INTERNET = "internet"
NETWORK_KINDS = (HUB_ONLY, INTERNET)

ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


def escape_name(text: str) -> str:
    """DockerSpawner's default escaping (``DockerSpawner._escape``): ``-`` -> ``-2d``."""
    safe = set(string.ascii_lowercase + string.digits)
    return _escapism(text, safe, escape_char="-").lower()


def object_labels(**values: str) -> dict[str, str]:
    """``course="ds101"`` -> ``{"org.hub-ext.course": "ds101"}``."""
    return {f"{LABEL_PREFIX}.{key}": str(value) for key, value in values.items()}


def merged(base: Mapping, extra: Mapping) -> dict:
    """``base`` updated with ``extra``, dictionaries merged key by key (as DockerSpawner does)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- volumes


def volume_name(template: str, *, course: str, username: str, escape=escape_name) -> str:
    """The named volume holding ``username``'s workspace for ``course``.

    ``template`` gets ``{course}`` (a course id: lowercase letters, digits, dashes) and
    ``{username}``, escaped by ``escape`` (the spawner's ``DockerSpawner.escape``; by
    default lowercase letters, digits, dashes). The default template separates them with
    ``_``, which neither can contain, so two learners or two courses never share a volume.
    """
    name = template.format(course=course, username=escape(username))
    if not name or not (name[0].isalnum() and all(ch.isalnum() or ch in "_.-" for ch in name)):
        raise ValueError(
            f"workspace volume name {name!r} (from {template!r}) is not a valid Docker volume name"
        )
    return name


# --------------------------------------------------------------------------- containers


def course_host_config(*, mem_limit: int | None, pids_limit: int | None) -> dict[str, Any]:
    """The course's part of ``extra_host_config`` (docker-py ``create_host_config`` keys).

    The single-user server needs no Linux capability and must not gain one (setuid);
    memory + swap = memory (no swap beyond the course's limit); at most ``pids_limit``
    processes and threads (a fork bomb stays in its container).
    """
    config: dict[str, Any] = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}
    if mem_limit:  # DockerSpawner's 0: no limit
        config["memswap_limit"] = mem_limit
    if pids_limit is not None:
        config["pids_limit"] = pids_limit
    return config


# --------------------------------------------------------------------------- networks


def bridge_name(network: str) -> str:
    """The host interface of the learners' network ``network``: fixed by its name
    (Linux allows 15 characters), so the host firewall still guards a recreated network."""
    return "hx-" + hashlib.sha256(network.encode()).hexdigest()[:12]


def network_create_kwargs(name: str, kind: str) -> dict[str, Any]:
    """docker-py ``create_network`` arguments of a learners' network of ``kind``.

    Both are bridges on which containers cannot reach each other (icc off). ``hub-only``
    is ``internal``: Docker gives its containers no route out and does not masquerade
    its subnet, so they reach the host's address on the bridge and nothing beyond.
    ``internet`` is a normal (masqueraded) bridge. On both, the host's firewall
    (:func:`firewall_rules`) lets containers open connections to the hub's port only.
    """
    if kind not in NETWORK_KINDS:
        raise ValueError(f"unknown network kind {kind!r} (expected one of {NETWORK_KINDS})")
    return {
        "name": name,
        "driver": "bridge",
        "internal": kind == HUB_ONLY,
        "options": {ICC_OPTION: "false", BRIDGE_NAME_OPTION: bridge_name(name)},
        "labels": object_labels(purpose="learners' course containers", network=kind),
        "check_duplicate": True,
    }


def network_problem(network: Mapping[str, Any], kind: str) -> str | None:
    """What is wrong with an existing network (``docker network inspect``) for ``kind``."""
    name = network.get("Name")
    if network.get("Driver") != "bridge":
        return f"Docker network {name!r} is a {network.get('Driver')!r} network, not a bridge"
    if (network.get("Options") or {}).get(ICC_OPTION) != "false":
        return (
            f"Docker network {name!r} lets containers reach each other; remove it "
            f"(`docker network rm {name}`) and the hub recreates it, or choose another name"
        )
    if kind == HUB_ONLY and not network.get("Internal"):
        return (
            f"Docker network {name!r} routes learners' containers out (it is not internal); "
            f"remove it (`docker network rm {name}`) and the hub recreates it as internal, "
            "or give its courses `network: internet` in the catalog"
        )
    return None


def network_bridge(network: Mapping[str, Any]) -> str:
    """The host interface of an existing bridge network (``docker network inspect``)."""
    options = network.get("Options") or {}
    return options.get(BRIDGE_NAME_OPTION) or "br-" + network["Id"][:12]


def network_gateway(network: Mapping[str, Any]) -> str | None:
    """The IPv4 gateway (the host's address on the bridge) of an inspected network."""
    configs = (network.get("IPAM") or {}).get("Config") or []
    gateways = [c["Gateway"] for c in configs if c.get("Gateway") and ":" not in c["Gateway"]]
    return gateways[0] if gateways else None


def firewall_chain(network: str) -> str:
    """The iptables chain guarding the host from the containers of ``network``."""
    return "HUB-EXT-" + hashlib.sha256(network.encode()).hexdigest()[:12].upper()


def firewall_rules(chain: str, bridge: str, hub_port: int) -> dict[str, list]:
    """The host firewall of one learners' network, as ``iptables`` argument lists.

    ``chain`` (filter table) accepts replies to connections the host opened (the proxy
    and the hub connecting to the containers) and new TCP connections to the hub's API
    port, and drops everything else; ``INPUT`` sends every packet arriving from ``bridge``
    to it. ``"accept"`` are the chain's accepting rules (each added once, before the
    drop: two hubs on one network, as in the tests, each add their port), ``"drop"`` its
    last rule, ``"jump"`` the rule in ``INPUT``.
    """
    return {
        "accept": [
            [chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            [chain, "-p", "tcp", "--dport", str(hub_port), "-j", "ACCEPT"],
        ],
        "drop": [chain, "-j", "DROP"],
        "jump": ["INPUT", "-i", bridge, "-j", chain],
    }


# --------------------------------------------------------------------------- Swarm services

#: The bridge that connects a node's Swarm tasks to that node (one per node, made by Docker
#: with inter-container communication off): the host reaches a task on it, and it on the host.
GWBRIDGE = "docker_gwbridge"


def service_network_create_kwargs(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """docker-py ``create_network`` arguments of one learner's own overlay network.

    An overlay network has no switch that keeps its members apart (``enable_icc`` is a
    bridge option), so each course server gets a network of its own: nobody else is on
    it. ``attachable``: a hub running in a container can be connected to it.
    """
    return {
        "name": name,
        "driver": "overlay",
        "attachable": True,
        "labels": dict(labels),
        "check_duplicate": True,
    }


def service_mounts(
    binds: Mapping[str, Mapping[str, str]],
    *,
    volume_labels: Mapping[str, Mapping[str, str]] | None = None,
    volume_driver: str = "",
    volume_driver_options: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A service's ``Mounts`` (Docker API form) from DockerSpawner's ``volume_binds``.

    ``binds`` maps a host path (``/...``: a bind mount) or a volume name (a named volume)
    to ``{"bind": target, "mode": "ro"|"rw"}``. A named volume missing on the node the
    task runs on is created by that node's engine, with its labels from ``volume_labels``
    (volume name -> labels) and, if given, ``volume_driver`` (a multi-host volume
    plugin); bind mounts need the path on that node.
    """
    mounts = []
    for source, bind in binds.items():
        mount: dict[str, Any] = {
            "Target": bind["bind"],
            "Source": source,
            "Type": "bind" if source.startswith("/") else "volume",
            "ReadOnly": bind.get("mode") == "ro",
        }
        if mount["Type"] == "volume":
            options: dict[str, Any] = {"Labels": dict((volume_labels or {}).get(source, {}))}
            if volume_driver:
                options["DriverConfig"] = {
                    "Name": volume_driver,
                    "Options": dict(volume_driver_options or {}),
                }
            mount["VolumeOptions"] = options
        mounts.append(mount)
    return mounts


def with_pids_limit(create_kwargs: Mapping[str, Any], pids_limit: int | None) -> dict[str, Any]:
    """``create_service`` arguments with the task's process limit (API 1.41's
    ``Resources.Limits.Pids``, which docker-py's ``Resources`` has no argument for)."""
    out = dict(create_kwargs)
    if pids_limit is None:
        return out
    task = dict(out["task_template"])
    resources = dict(task.get("Resources") or {})
    resources["Limits"] = {**(resources.get("Limits") or {}), "Pids": pids_limit}
    task["Resources"] = resources
    out["task_template"] = task
    return out


def workspace_constraint(node_id: str) -> str:
    """The placement constraint that keeps a server on the node holding its workspace."""
    if not node_id or not all(ch.isalnum() for ch in node_id):
        raise ValueError(f"{node_id!r} is not a Swarm node id")
    return f"node.id=={node_id}"


def gwbridge_address(gwbridge: Mapping[str, Any], container_id: str) -> str | None:
    """The IPv4 address of container ``container_id`` on the node's
    :data:`GWBRIDGE` (``docker network inspect docker_gwbridge``), None if it has none."""
    endpoint = (gwbridge.get("Containers") or {}).get(container_id) or {}
    address = endpoint.get("IPv4Address") or ""
    return address.split("/")[0] or None
