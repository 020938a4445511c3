"""A course server starts its course's kernels and no other: the single-user side.

This file is a top-level module on purpose: the course spawners put its directory on the
single-user server's ``PYTHONPATH`` (the local backend directly; the Docker backend mounts
it read-only into the container, whose image need not have ``hub_ext``) and start the
server with ``--ServerApp.kernel_spec_manager_class=hub_ext_course_kernels.CourseKernelSpecManager``.
It imports only jupyter_client and tornado, which every single-user server has.

Why: ``KernelSpecManager.allowed_kernelspecs`` only filters the *list* of kernels
(``find_kernel_specs``); ``get_kernel_spec``, which starting a kernel calls, finds any
installed kernelspec by name, and finds ``python3`` through ipykernel even when it is not
installed as a kernelspec and ``ensure_native_kernel`` is False (jupyter_client 8.10). So
``POST /api/kernels {"name": "python3"}`` started a kernel outside the course.
"""

from __future__ import annotations

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from tornado import web

__all__ = ["CourseKernelSpecManager", "KernelNotInCourse"]


class KernelNotInCourse(NoSuchKernel, web.HTTPError):
    """A kernel the course does not offer: jupyter_client's ``NoSuchKernel`` (what callers
    of ``get_kernel_spec`` expect) that the server's REST API answers with a 404."""

    def __init__(self, name: str, allowed):
        message = f"This course's kernels are {', '.join(sorted(allowed))}; not {name!r}"
        web.HTTPError.__init__(self, 404, message)
        self.args = (name,)

    def __str__(self) -> str:
        return self.log_message


class CourseKernelSpecManager(KernelSpecManager):
    """``KernelSpecManager`` whose ``allowed_kernelspecs`` also bounds what can start.

    With an empty ``allowed_kernelspecs`` it is the stock manager.
    """

    def get_kernel_spec(self, kernel_name: str):
        allowed = self.allowed_kernelspecs
        if allowed and kernel_name not in allowed:
            raise KernelNotInCourse(kernel_name, allowed)
        return super().get_kernel_spec(kernel_name)
