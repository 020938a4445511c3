"""What to launch for one published notebook: a pure builder, and nothing that runs it.

:func:`gateway_spec` turns (course, API name, notebook, port, token, options) into a
:class:`GatewaySpec`: the command line, the environment, the port. It starts nothing,
reads no file and picks no port, so it is tested without running anything, and a
container backend can run the same spec (``spec.argv`` inside an image that has
``hub_ext`` installed, ``spec.env`` as the container's environment, the notebook mounted
at ``spec.notebook``, ``spec.port`` published on 127.0.0.1).

The gateway's environment is built from an allow-list, never copied whole from the
service: the service's own hub token (``JUPYTERHUB_API_TOKEN``) must not reach a
notebook. The gateway token goes in ``KG_AUTH_TOKEN`` (not on the command line, where
``ps`` would show it); kernel gateway removes it from the kernels' environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GatewaySpec", "gateway_spec", "PASSED_ENV"]

#: variables of the service's environment a gateway may inherit
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")

PERSONALITY = "hub_ext.services.analytics.personality"


@dataclass(frozen=True)
class GatewaySpec:
    """Everything needed to start one kernel gateway for one (course, notebook)."""

    course_id: str
    api_name: str
    notebook: Path
    version: str
    ip: str
    port: int
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    token: str = field(repr=False)
    runtime_dir: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.course_id}/{self.api_name}"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def __repr__(self) -> str:  # no token, no environment (it holds the token)
        return f"<GatewaySpec {self.key} v{self.version} {self.url}>"


def gateway_spec(
    course_id: str,
    api_name: str,
    notebook: os.PathLike | str,
    *,
    version: str,
    port: int,
    token: str,
    events_url: str = "",
    pool_size: int = 1,
    execution_timeout: float = 30.0,
    queue_timeout: float = 10.0,
    interrupt_grace: float = 5.0,
    setup_timeout: float = 300.0,
    max_requests_per_kernel: int = 5000,
    health_timeout: float = 5.0,
    course_env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    runtime_dir: os.PathLike | str | None = None,
    python: str = sys.executable,
    ip: str = "127.0.0.1",
    log_level: str = "INFO",
) -> GatewaySpec:
    """The command and environment of a guarded kernel gateway serving ``notebook``.

    ``base_env`` is the environment to take :data:`PASSED_ENV` from (default
    ``os.environ``); ``course_env`` (the catalog's ``env:`` of the course) is added, then
    ``COURSE_ID``, ``HUB_EXT_API``, ``HUB_EXT_EVENTS_URL`` (a read-only data URL) and
    the gateway token. ``port_retries`` is 0: a busy port is an error, not silently
    another port the service does not know.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port")
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, not {pool_size}")
    if not token:
        raise ValueError("a gateway needs a token")
    base_env = os.environ if base_env is None else base_env
    env = {k: base_env[k] for k in PASSED_ENV if k in base_env}
    env.update({k: str(v) for k, v in (course_env or {}).items()})
    env.update(
        {
            "COURSE_ID": course_id,
            "HUB_EXT_API": api_name,
            "HUB_EXT_EVENTS_URL": events_url,
            "KG_AUTH_TOKEN": token,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if runtime_dir is not None:
        env["JUPYTER_RUNTIME_DIR"] = str(runtime_dir)
    argv = (
        python,
        "-m",
        "kernel_gateway",
        f"--KernelGatewayApp.api={PERSONALITY}",
        f"--KernelGatewayApp.seed_uri={notebook}",
        f"--KernelGatewayApp.ip={ip}",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        f"--KernelGatewayApp.prespawn_count={pool_size}",
        f"--KernelGatewayApp.log_level={log_level}",
        f"--AnalyticsPersonality.execution_timeout={execution_timeout}",
        f"--AnalyticsPersonality.queue_timeout={queue_timeout}",
        f"--AnalyticsPersonality.interrupt_grace={interrupt_grace}",
        f"--AnalyticsPersonality.setup_timeout={setup_timeout}",
        f"--AnalyticsPersonality.max_requests_per_kernel={max_requests_per_kernel}",
        f"--AnalyticsPersonality.health_timeout={health_timeout}",
    )
    return GatewaySpec(
        course_id=course_id,
        api_name=api_name,
        notebook=Path(notebook),
        version=version,
        ip=ip,
        port=port,
        argv=argv,
        env=env,
        token=token,
        runtime_dir=Path(runtime_dir) if runtime_dir is not None else None,
    )
