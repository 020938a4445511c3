"""Course spawners: the course mixin, then one module per backend.

- :mod:`hub_ext.spawners.base`: :class:`CourseSpawnerMixin` (all course logic) and the
  pure start decision :func:`start_refusal`;
- :mod:`hub_ext.spawners.local`: :class:`CourseLocalSpawner` (local processes);
- :mod:`hub_ext.spawners.docker`: :class:`CourseDockerSpawner` (dockerspawner), with its
  pure builders in :mod:`hub_ext.spawners.docker_objects`;
- :mod:`hub_ext.spawners.swarm`: :class:`CourseSwarmSpawner` (dockerspawner's
  ``SwarmSpawner``), the same course rules on Docker Swarm services.

The Docker backends are imported only when asked for (``hub_ext.spawners.CourseDockerSpawner``,
``hub_ext.spawners.CourseSwarmSpawner`` or their modules), so a local-only install needs
neither docker-py nor dockerspawner.
"""

from __future__ import annotations

from .base import CourseSpawnerMixin, start_refusal
from .local import CourseLocalSpawner

__all__ = [
    "CourseDockerSpawner",
    "CourseLocalSpawner",
    "CourseSpawnerMixin",
    "CourseSwarmSpawner",
    "start_refusal",
]


def __getattr__(name: str):
    if name == "CourseDockerSpawner":
        from .docker import CourseDockerSpawner

        return CourseDockerSpawner
    if name == "CourseSwarmSpawner":
        from .swarm import CourseSwarmSpawner

        return CourseSwarmSpawner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
