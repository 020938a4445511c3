"""jupyterhub-idle-culler, per course: each course server is culled after its course's
``idle_timeout``.

The culler is one hub service for every course. Its ``cull_arbiter_hook`` is given each
server, whose name is its course id, so :func:`course_arbiter` applies the course's own
timeout; a server of no course in the catalog (or of a course without one) gets the
culler's ``--timeout``, the longest course timeout. The timeouts reach the culler's
process as JSON in :data:`TIMEOUTS_ENV`, computed from the catalog by the hub config
(:func:`idle_culler_service`), and :data:`CONFIG_FILE` installs the arbiter.

Each course server also shuts itself down after the same timeout
(``ServerApp.shutdown_no_activity_timeout``, see ``CourseSpawnerMixin.get_args``); the
culler catches the servers that cannot (a hung server, one started before a catalog change).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from .lifeline import with_lifeline

__all__ = ["CONFIG_FILE", "TIMEOUTS_ENV", "course_arbiter", "idle_culler_service"]

#: the environment variable holding ``{course id: seconds}`` for the culler's process
TIMEOUTS_ENV = "HUB_EXT_IDLE_TIMEOUTS"
#: the culler's config file (``--config``): it installs :func:`course_arbiter`
CONFIG_FILE = Path(__file__).with_name("idle_culler_config.py")
#: the least the culler documents for culling servers (not users)
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def course_arbiter(timeouts: Mapping[str, int]) -> Callable[..., bool]:
    """A ``c.IdleCuller.cull_arbiter_hook``: cull a course server idle for its course's
    timeout (``timeouts``: course id -> seconds), any other after ``inactive_limit``."""
    timeouts = dict(timeouts)

    def cull_arbiter(*, inactive, inactive_limit, server, **kwargs) -> bool:
        limit = timeouts.get(server.get("name") or "", inactive_limit)
        return inactive.total_seconds() >= limit

    return cull_arbiter


def arbiter_from_environment(environ: Mapping[str, str] = os.environ) -> Callable[..., bool]:
    """:func:`course_arbiter` of the timeouts in :data:`TIMEOUTS_ENV` (for :data:`CONFIG_FILE`)."""
    return course_arbiter(json.loads(environ.get(TIMEOUTS_ENV) or "{}"))


def idle_culler_service(catalog) -> tuple[dict, list[str]] | None:
    """The culler's ``c.JupyterHub.services`` entry and scopes, or None if no course has
    an ``idle_timeout``."""
    timeouts = {
        course.id: course.idle_timeout for course in catalog.values() if course.idle_timeout
    }
    if not timeouts:
        return None
    every = min(300, max(30, min(timeouts.values()) // 4))
    service = {
        "name": "idle-culler",
        "command": with_lifeline(
            [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--config={CONFIG_FILE}",
                f"--timeout={max(timeouts.values())}",
                f"--cull-every={every}",
            ]
        ),
        "environment": {TIMEOUTS_ENV: json.dumps(timeouts, sort_keys=True)},
    }
    return service, list(CULLER_SCOPES)
