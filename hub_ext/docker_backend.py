"""Compatibility: the names the workspace-export service imports from the Docker backend.

The Docker backend lives in :mod:`hub_ext.spawners.docker` (the spawner, networks, host
firewall, hub-side settings, workspace archives) and :mod:`hub_ext.spawners.docker_objects`
(pure builders). New code imports from there; in particular
:func:`hub_ext.spawners.docker.workspace_volume_name` names a workspace volume from the
hub's own spawner settings.
"""

from __future__ import annotations

from .spawners.docker import (
    NetworkError,
    docker_hub_config,
    ensure_network,
    write_workspace_archive,
)
from .spawners.docker_objects import DEFAULT_NETWORK, LABEL_PREFIX, escape_name, volume_name

__all__ = [
    "DEFAULT_NETWORK",
    "LABEL_PREFIX",
    "NetworkError",
    "docker_hub_config",
    "ensure_network",
    "escape_name",
    "workspace_volume_name",
    "write_workspace_archive",
]


def workspace_volume_name(template: str, *, course: str, username: str) -> str:
    """The volume of ``template`` for ``course`` and ``username`` (DockerSpawner's default
    escaping). Prefer :func:`hub_ext.spawners.docker.workspace_volume_name`."""
    return volume_name(template, course=course, username=username)
