"""Run a hub-managed service so that it ends with the hub that started it.

``python -m hub_ext.services.lifeline -- COMMAND ...`` asks the kernel to send the service
``SIGTERM`` when its parent (the hub) dies, however it dies (``SIGKILL`` included), sets
the umask to 077 (what the service writes is its own), and becomes ``COMMAND``. The death
signal survives ``exec``, so it works for services we did not write (jupyterhub-idle-culler)
as for ours, which stop their gateways and kernels on ``SIGTERM``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "with_lifeline", "main"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def with_lifeline(command: list[str], python: str = sys.executable) -> list[str]:
    """``command``, run through the lifeline (for a ``c.JupyterHub.services`` entry)."""
    return [python, "-m", "hub_ext.services.lifeline", "--", *command]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: python -m hub_ext.services.lifeline -- COMMAND [ARG ...]")
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the hub died before the death signal was asked for
        sys.exit("the hub that started this service is gone")
    os.umask(0o077)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
