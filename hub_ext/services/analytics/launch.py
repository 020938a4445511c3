"""What to launch for one published notebook: a pure builder, and nothing that runs it.

:func:`gateway_spec` turns (course, API name, notebook, token, options) into a
:class:`GatewaySpec`: the gateway's command line and environment as the sandbox sees
them, and the :class:`~hub_ext.sandbox.SandboxSpec` to run it in. It starts nothing,
reads no file and picks no port, so it is tested without running anything; every sandbox
backend (bubblewrap, Docker, none) runs the same spec.

Inside the sandbox (paths are the sandbox's; :meth:`Sandbox.seen_at` maps them for the
unconfined backend):

- ``/srv/api/notebook.ipynb``: the notebook, read-only;
- ``/srv/data/events.sqlite``: the course's read-only extract (``HUB_EXT_EVENTS_URL``);
- ``/srv/run``: the scratch directory: the gateway's Unix socket, ``HOME``, kernel files,
  and the lifeline file the service touches.

The gateway's environment is built from an allow-list, never copied from the service: no
hub or service token reaches a notebook. The gateway token goes in ``KG_AUTH_TOKEN``
(not on the command line, where ``ps`` would show it); kernel gateway removes it from
the kernels' environment.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...sandbox import Bind, Limits, SandboxSpec
from ...sandbox.base import SCRATCH

__all__ = ["GatewaySpec", "gateway_spec", "PASSED_ENV", "NOTEBOOK", "DATA", "SOCKET"]

#: variables of the service's environment a gateway may inherit (locale and clock only)
PASSED_ENV = ("LANG", "LC_ALL", "TZ")

PERSONALITY = "hub_ext.services.analytics.personality"
#: where the sandbox sees the notebook, the course's data and the gateway's socket
NOTEBOOK = "/srv/api/notebook.ipynb"
DATA = "/srv/data"
SOCKET = f"{SCRATCH}/gateway.sock"
LIFELINE = f"{SCRATCH}/lifeline"


@dataclass(frozen=True)
class GatewaySpec:
    """Everything needed to start one kernel gateway for one (course, notebook)."""

    course_id: str
    api_name: str
    notebook: Path
    version: str
    #: the gateway's Unix socket, as the service sees it
    socket: Path
    sandbox: SandboxSpec = field(repr=False)
    token: str = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.course_id}/{self.api_name}"

    @property
    def host(self) -> str:
        """The made-up host name the service's HTTP client resolves to :attr:`socket`."""
        digest = hashlib.sha1(str(self.socket).encode(), usedforsecurity=False).hexdigest()[:12]
        return f"gw-{digest}.sock.invalid"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def lifeline(self) -> Path:
        return self.sandbox.scratch / LIFELINE.rsplit("/", 1)[1]

    @property
    def argv(self) -> tuple[str, ...]:
        return self.sandbox.argv

    @property
    def env(self) -> Mapping[str, str]:
        return self.sandbox.env

    def __repr__(self) -> str:  # no token, no environment (it holds the token)
        return f"<GatewaySpec {self.key} v{self.version} {self.socket}>"


def _identity(source: Path, target: str) -> str:
    return target


def gateway_spec(
    course_id: str,
    api_name: str,
    notebook: os.PathLike | str,
    *,
    version: str,
    token: str,
    scratch: os.PathLike | str,
    data_dir: os.PathLike | str | None = None,
    python: str = "python3",
    seen_at: Callable[[Path, str], str] = _identity,
    pool_size: int,
    execution_timeout: float,
    queue_timeout: float,
    interrupt_grace: float,
    setup_timeout: float,
    max_requests_per_kernel: int,
    health_timeout: float,
    lifeline_timeout: float,
    limits: Limits | None = None,
    course_env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    image: str | None = None,
    log_level: str = "INFO",
) -> GatewaySpec:
    """The guarded kernel gateway serving ``notebook`` (a host path), as a sandboxed run.

    ``scratch`` is the host directory the sandbox may write (its socket ends up there);
    ``data_dir`` the host directory of the course's extract (bound read-only at
    :data:`DATA`). ``seen_at(host_path, sandbox_path)`` says where the process sees a
    bound path (the sandbox's own path, except for the unconfined backend). ``base_env``
    is the environment to take :data:`PASSED_ENV` from (default ``os.environ``);
    ``course_env`` (the catalog's ``env:`` of the course) is added, then ``COURSE_ID``,
    ``HUB_EXT_API``, ``HUB_EXT_EVENTS_URL`` (the extract, read-only) and the token.
    The limits and timeouts have no default here: they are the supervisor's
    (:meth:`GatewaySupervisor.gateway_options`, the one place their defaults live).
    """
    from .extracts import EXTRACT_NAME, extract_url

    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, not {pool_size}")
    if not token:
        raise ValueError("a gateway needs a token")
    notebook = Path(notebook)
    scratch = Path(scratch)
    binds = [Bind(notebook, NOTEBOOK)]
    if data_dir is not None:
        binds.append(Bind(Path(data_dir), DATA))
    run = seen_at(scratch, SCRATCH)

    base_env = os.environ if base_env is None else base_env
    env = {k: base_env[k] for k in PASSED_ENV if k in base_env}
    env.update({k: str(v) for k, v in (course_env or {}).items()})
    events_url = ""
    if data_dir is not None:
        events_url = extract_url(f"{seen_at(Path(data_dir), DATA)}/{EXTRACT_NAME}")
    env.update(
        {
            "COURSE_ID": course_id,
            "HUB_EXT_API": api_name,
            "HUB_EXT_EVENTS_URL": events_url,
            "KG_AUTH_TOKEN": token,
            "PYTHONUNBUFFERED": "1",
            "HOME": run,
            "JUPYTER_RUNTIME_DIR": f"{run}/jupyter-runtime",
            "IPYTHONDIR": f"{run}/ipython",
            "MPLCONFIGDIR": f"{run}/matplotlib",
        }
    )
    argv = (
        python,
        "-m",
        "hub_ext.services.analytics.gateway",
        f"--KernelGatewayApp.api={PERSONALITY}",
        f"--KernelGatewayApp.seed_uri={seen_at(notebook, NOTEBOOK)}",
        f"--SocketGatewayApp.unix_socket={seen_at(scratch / 'gateway.sock', SOCKET)}",
        f"--SocketGatewayApp.lifeline={seen_at(scratch / 'lifeline', LIFELINE)}",
        f"--SocketGatewayApp.lifeline_timeout={lifeline_timeout}",
        f"--KernelGatewayApp.prespawn_count={pool_size}",
        f"--KernelGatewayApp.log_level={log_level}",
        f"--AnalyticsPersonality.execution_timeout={execution_timeout}",
        f"--AnalyticsPersonality.queue_timeout={queue_timeout}",
        f"--AnalyticsPersonality.interrupt_grace={interrupt_grace}",
        f"--AnalyticsPersonality.setup_timeout={setup_timeout}",
        f"--AnalyticsPersonality.max_requests_per_kernel={max_requests_per_kernel}",
        f"--AnalyticsPersonality.health_timeout={health_timeout}",
    )
    sandbox = SandboxSpec(
        name=f"analytics {course_id}/{api_name} v{version[:8]}",
        argv=argv,
        env=env,
        scratch=scratch,
        binds=tuple(binds),
        limits=limits or Limits(),
        network="none",
        image=image,
        labels={"course": course_id, "api": api_name, "purpose": "analytics"},
    )
    return GatewaySpec(
        course_id=course_id,
        api_name=api_name,
        notebook=notebook,
        version=version,
        socket=scratch / "gateway.sock",
        sandbox=sandbox,
        token=token,
    )
