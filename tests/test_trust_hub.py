"""Trust boundaries of a whole course hub: its state is private, its services die with it.

Real parts: a JupyterHub with its proxy, the events and analytics services (a published
notebook in its bubblewrap sandbox) and jupyterhub-idle-culler, on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import time

import httpx
import pytest

from tests.analytics_fixtures import NOTEBOOKS, wait_until
from tests.conftest import day, write_catalog
from tests.hubtest import (
    HubProcess,
    cmdline,
    node_available,
    process_alive,
    process_started,
    process_tree,
)

pytestmark = [pytest.mark.slow]


def _catalog(directory):
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOKS / "trivial.ipynb", directory / "know.ipynb")
    return write_catalog(
        directory,
        [
            {
                "id": "ds101",
                "title": "Data analysis with Python",
                "opens": day(-30),
                "closes": day(60),
                "idle_timeout": "30m",
                "learners": ["alice"],
                "teachers": ["tina"],
                "notebooks": [{"path": "know.ipynb", "name": "know"}],
            }
        ],
    )


async def test_state_is_private_and_services_die_with_a_killed_hub(tmp_path):
    """Findings 9 and 11: state files were 0644 in 0755 directories; after the hub died
    without cleanup (SIGKILL), its services, gateways and kernels kept running."""
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    hub = HubProcess(
        tmp_path / "hub", _catalog(tmp_path / "catalog"), services=("events", "analytics")
    )
    await hub.start()
    try:
        token = await hub.user_token("tina")

        async def published():
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(
                    f"{hub.url}/services/analytics/_api/catalog",
                    headers={"Authorization": f"token {token}"},
                )
            return r.status_code == 200 and any(a["state"] == "running" for a in r.json()["apis"])

        await wait_until(published, 90, 0.5, "ds101/know published")
        # the events service has written its store (hub activity): it exists now
        await wait_until(lambda: (hub.workdir / "events.sqlite").exists(), 30, 0.2, "events store")

        # --- finding 9: every state file 0600, every state directory 0700
        state = [
            hub.workdir / "jupyterhub.sqlite",
            hub.workdir / "cookie_secret",
            hub.workdir / "events.sqlite",
            *(hub.workdir / "analytics").rglob("*"),
        ]
        assert any(p.suffix == ".log" for p in state) and any(p.suffix == ".ipynb" for p in state)
        for path in [hub.workdir, *state]:
            if path.is_socket() or path.is_symlink() or not path.exists():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            want = 0o700 if path.is_dir() else 0o600
            assert mode & 0o077 == 0, f"{path} is {oct(mode)} (want {oct(want)})"

        # --- finding 11: SIGKILL the hub; everything it started ends within a minute
        family = [p for p in process_tree(hub.proc.pid) if p != hub.proc.pid]
        commands = {p: cmdline(p) for p in family}
        assert any("hub_ext.services.events" in c for c in commands.values()), commands
        assert any("hub_ext.services.analytics" in c for c in commands.values()), commands
        assert any("jupyterhub_idle_culler" in c for c in commands.values()), commands
        assert any("ipykernel" in c for c in commands.values()), "a gateway's kernels"
        proxy = [p for p, c in commands.items() if "configurable-http-proxy" in c]
        # the proxy outlives the hub on purpose; a pid is known by its start time too
        family = {p: process_started(p) for p in family if p not in proxy}
        os.kill(hub.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(hub.proc.wait, 10)
        started = time.monotonic()
        alive = lambda: [p for p, t in family.items() if process_alive(p, t)]  # noqa: E731
        try:
            await wait_until(lambda: not alive(), 60, 0.5, "the end")
        finally:
            left = {p: commands[p][:120] for p in alive()}
        assert not left, f"still running after the hub died: {left}"
        print(f"everything the hub started ended {time.monotonic() - started:.1f}s after it died")
    finally:
        for pid in process_tree(hub.proc.pid) if hub.proc and hub.proc.poll() is None else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await hub.stop()
