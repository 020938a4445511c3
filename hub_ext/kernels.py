"""The Jupyter kernels installed in this Python environment (the local backend's kernels)."""

from __future__ import annotations

__all__ = ["installed_kernels"]


def installed_kernels() -> set[str]:
    """Kernel names installed in this Python environment (the local backend's kernels)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return set(KernelSpecManager().find_kernel_specs())
