"""No sandbox: for code the institution vetted (the catalog's notebooks) where none can be made.

It runs the spec as a local process of the service's own account, with the spec's
environment only (nothing of the service's is inherited) and its rlimits, but with the
service's view of the files and the network. Only notebooks listed in the catalog run
this way; teachers' runtime publishing is refused (the analytics service says why).
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import default

from .base import SCRATCH, ProcessHandle, Sandbox, SandboxSpec, start_process

__all__ = ["Unconfined"]


class Unconfined(Sandbox):
    kind = "none"
    isolates = False

    @default("python")
    def _default_python(self):
        import sys

        return sys.executable

    def seen_at(self, source: Path, target: str) -> str:
        return str(source)

    def check(self) -> None:
        return None

    async def launch(self, spec: SandboxSpec, log_path: Path) -> ProcessHandle:
        self.prepare_scratch(spec.scratch)
        env = {"HOME": str(spec.scratch), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(spec.env)
        workdir = str(spec.scratch) if spec.workdir == SCRATCH else spec.workdir
        handle = await start_process(list(spec.argv), env, log_path, spec.limits, cwd=workdir)
        self.log.warning(
            "%s runs unsandboxed (pid %d): vetted catalog code only", spec.name, handle.pid
        )
        return handle
