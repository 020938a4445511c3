"""No sandbox: for code the institution vetted (the catalog's notebooks) where none can be made.

It runs the spec as a local process of the service's own account, with the spec's
environment only (nothing of the service's is inherited) and its rlimits, but with the
service's view of the files and the network. Only notebooks listed in the catalog run
this way; teachers' runtime publishing is refused (the analytics service says why).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from traitlets import default

from .base import SCRATCH, ProcessHandle, Sandbox, SandboxSpec, rlimits

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
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {"HOME": str(spec.scratch), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(spec.env)
        workdir = str(spec.scratch) if spec.workdir == SCRATCH else spec.workdir
        log = await asyncio.to_thread(open, log_path, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=workdir,
                preexec_fn=rlimits(spec.limits),
            )
        finally:
            log.close()
        self.log.warning(
            "%s runs unsandboxed (pid %d): vetted catalog code only", spec.name, proc.pid
        )
        return ProcessHandle(proc, log_path)
