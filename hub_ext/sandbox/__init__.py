"""Run code the hub did not write: one interface, a backend per tier.

Teachers' analytics notebooks (and, later, learners' submissions at grading) are code the
hub did not write. They run only through a :class:`Sandbox`: "run this command with these
read-only inputs, this writable scratch space, these limits and this network policy"
(:class:`SandboxSpec`). Backends:

- :class:`~hub_ext.sandbox.bubblewrap.BubblewrapSandbox` (the embedded default): Debian's
  ``bubblewrap``; new user, PID, mount, network, IPC and UTS namespaces, no capabilities,
  a read-only view of the interpreter and nothing else of the host, a private ``/tmp``;
- :class:`~hub_ext.sandbox.docker.DockerSandbox` (the Docker tier): a container of the
  course's analytics image, non-root, read-only root filesystem, no capabilities,
  ``no-new-privileges``, PID, memory and CPU limits, no network at all;
- :class:`~hub_ext.sandbox.kube.KubeSandbox` (the Kubernetes tier): a pod beside the
  service, locked down as the container is, its environment in a Secret, denied every
  connection by a NetworkPolicy.

Nothing reaches a sandbox that its spec does not name: not the caller's environment (the
spec's ``env`` is the whole environment), not a hub file, not another process. A sandbox
answers its caller over a Unix socket in its scratch directory, so it needs no network.
"""

from . import base
from .base import *  # noqa: F403 (the interface; the backends are imported when chosen)

__all__ = base.__all__
