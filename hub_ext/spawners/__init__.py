"""Course spawners: the course mixin, then one module per backend.

- :mod:`hub_ext.spawners.base`: :class:`CourseSpawnerMixin` (all course logic) and the
  pure start decision :func:`start_refusal`;
- :mod:`hub_ext.spawners.local`: :class:`CourseLocalSpawner` (local processes);
- :mod:`hub_ext.spawners.docker`: :class:`CourseDockerSpawner` (dockerspawner), with its
  pure builders in :mod:`hub_ext.spawners.docker_objects`;
- :mod:`hub_ext.spawners.swarm`: :class:`CourseSwarmSpawner` (dockerspawner's
  ``SwarmSpawner``), the same course rules on Docker Swarm services;
- :mod:`hub_ext.spawners.kube`: :class:`CourseKubeSpawner` (kubespawner, the
  ``kubernetes`` extra), with its pure builders in :mod:`hub_ext.spawners.kube_objects`.

The Docker, Swarm and Kubernetes backends are imported only when asked for
(``hub_ext.spawners.CourseDockerSpawner``, ``CourseSwarmSpawner``, ``CourseKubeSpawner`` or
their modules), so a local-only install needs neither docker-py, dockerspawner nor kubespawner.
"""

from __future__ import annotations

from .base import CourseSpawnerMixin, start_refusal
from .local import CourseLocalSpawner

__all__ = [
    "CourseDockerSpawner",
    "CourseKubeSpawner",
    "CourseLocalSpawner",
    "CourseSpawnerMixin",
    "CourseSwarmSpawner",
    "start_refusal",
]


def __getattr__(name: str):
    if name == "CourseDockerSpawner":
        from .docker import CourseDockerSpawner

        return CourseDockerSpawner
    if name == "CourseKubeSpawner":
        from .kube import CourseKubeSpawner

        return CourseKubeSpawner
    if name == "CourseSwarmSpawner":
        from .swarm import CourseSwarmSpawner

        return CourseSwarmSpawner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
