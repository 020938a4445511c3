"""Run a real JupyterHub (with its real configurable-http-proxy) for tests.

:class:`HubProcess` writes a ``jupyterhub_config.py`` that starts from the course hub's
own configuration (:func:`hub_ext.hubconfig.configure_course_hub`) and adds what a test
needs: loopback ports, a temporary database, the development login and an admin service
token. ``extra_config`` is appended verbatim, so a test can add services or override any
setting. Nothing here is faked: the hub spawns real single-user servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.secrets_watch import remember

REPO = Path(__file__).resolve().parent.parent
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
DEV_PASSWORD = "test-password-for-dev-login"

__all__ = ["DEV_PASSWORD", "HubProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    """A JupyterHub subprocess on loopback, its proxy, and clients to talk to it."""

    def __init__(
        self,
        workdir: Path,
        catalog: Path,
        *,
        backend: str = "local",
        extra_config: str = "",
        admin_users: tuple[str, ...] = ("admin",),
        base_config: str | None = None,
        services: tuple[str, ...] = (),
        db_url: str | None = None,
    ):
        """``base_config`` replaces the course-hub part of the generated config (the catalog,
        login, database and workspaces), e.g. to run ``hub_config/demo_config.py`` itself;
        the loopback ports, the proxy and the admin service token are always the harness's.
        ``services``: which of the course hub's services to run (none by default; tests of
        a service add it themselves). ``db_url``: the hub's own database (a SQLite file in
        ``workdir`` by default; e.g. ``postgresql+psycopg://...`` for a database of its own in
        :func:`tests.postgres_fixtures.postgres_url`'s server)."""
        if not PROXY.exists():
            raise RuntimeError(f"{PROXY} is missing: run `make setup` (npm ci) first")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.catalog = Path(catalog)
        self.backend = backend
        self._default_db_url = f"sqlite:///{self.workdir / 'jupyterhub.sqlite'}"
        self.db_url = db_url or self._default_db_url
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.admin_token = secrets.token_hex(32)
        self.password = DEV_PASSWORD  # what login() uses unless told otherwise
        remember(self.admin_token, self.password)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "hub.log"
        self.config_path = self.workdir / "jupyterhub_config.py"
        self.config_path.write_text(self._config(extra_config, admin_users, base_config, services))
        self.proc: subprocess.Popen | None = None
        self._log = None

    def _config(self, extra: str, admin_users, base: str | None, services) -> str:
        w = self.workdir
        if base is None:
            base = f"""\
                configure_course_hub(c, {str(self.catalog)!r}, backend={self.backend!r},
                                     data_dir={str(w)!r}, services={tuple(services)!r})
                c.JupyterHub.db_url = {self.db_url!r}
                c.JupyterHub.cookie_secret_file = {str(w / "cookie_secret")!r}
                c.JupyterHub.cleanup_servers = False
                c.JupyterHub.authenticator_class = "course-dev"
                c.CourseDevAuthenticator.password = {DEV_PASSWORD!r}
                c.Authenticator.admin_users = {set(admin_users)!r}
                c.CourseLocalSpawner.workspace_template = {str(w / "workspaces" / "{course}" / "{username}")!r}
                """
        harness = f"""\
            c.JupyterHub.bind_url = "http://127.0.0.1:{self.port}"
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]
            c.ConfigurableHTTPProxy.pid_file = {str(w / "proxy.pid")!r}
            c.JupyterHub.pid_file = {str(w / "hub.pid")!r}
            c.Spawner.start_timeout = 60
            c.Spawner.http_timeout = 60
            add_service(
                c,
                {{"name": "test-admin", "api_token": {self.admin_token!r}}},
                ["admin:users", "admin:servers", "admin:server_state", "tokens", "list:users", "read:users",
                 "admin:groups", "shares", "read:shares", "list:groups", "read:groups", "read:roles", "list:services"],
            )
            """
        harness = textwrap.dedent(harness)
        if self.db_url != self._default_db_url:  # a base config's own database otherwise
            harness += f"c.JupyterHub.db_url = {self.db_url!r}\n"
        head = "from hub_ext.hubconfig import add_service, configure_course_hub\nc = get_config()  # noqa\n"
        return head + textwrap.dedent(base) + harness + textwrap.dedent(extra)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout: float = 180) -> None:
        # generous: under `make test`'s parallel workers a hub with every service and the
        # OULAD store takes a minute or more to answer on two cores
        self._log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path), "--debug"],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the hub exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    r = await client.get(f"{self.url}/hub/api/", timeout=2)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the hub did not answer within {timeout}s:\n{self.log_tail()}")

    async def stop(self) -> None:
        """Stop the hub (and its proxy); single-user servers keep running (cleanup_servers=False)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None
        self._stop_proxy()
        if self._log:
            self._log.close()
            self._log = None

    def _stop_proxy(self) -> None:
        pid_file = self.workdir / "proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def shutdown(self) -> None:
        """Stop every single-user server, then the hub: what a test leaves behind is gone."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                await self.stop_all_servers()
            except (httpx.HTTPError, ValueError):  # a hub not (yet) answering its API
                pass
        await self.stop()

    async def stop_all_servers(self) -> None:
        r = await self.api("GET", "/users", params={"state": "active"})
        for user in r.json():
            for name in user.get("servers", {}):
                await self.api(
                    "DELETE", f"/users/{user['name']}/servers/{name}", params={"remove": "false"}
                )
        for _ in range(150):
            r = await self.api("GET", "/users", params={"state": "active"})
            if not r.json():
                return
            await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    # ------------------------------------------------------------------ clients

    async def api(
        self, method: str, path: str, *, token: str | None = None, timeout: float = 30, **kwargs
    ) -> httpx.Response:
        """Call the hub's REST API (``/hub/api`` + ``path``) with a token (admin by default)."""
        headers = {"Authorization": f"token {token or self.admin_token}"}
        async with httpx.AsyncClient(
            base_url=f"{self.url}/hub/api", headers=headers, timeout=timeout
        ) as c:
            response = await c.request(method, path, **kwargs)
        if method == "POST" and path.endswith("/tokens") and response.status_code == 201:
            remember(response.json().get("token"))
        return response

    async def login(self, username: str, password: str | None = None) -> httpx.AsyncClient:
        """A browser-like client logged in as ``username`` (the caller closes it)."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30, follow_redirects=True)
        await client.get("/hub/login")
        r = await client.post(
            "/hub/login",
            data={
                "username": username,
                "password": self.password if password is None else password,
                "_xsrf": client.cookies.get("_xsrf", ""),
            },
        )
        if r.status_code != 200 or "/hub/login" in str(r.url):
            await client.aclose()
            raise RuntimeError(f"login of {username} failed: {r.status_code} {r.url}")
        return client

    async def page(self, username: str, path: str) -> httpx.Response:
        """GET a hub page (e.g. ``/hub/home``) as ``username``, logged in through the login form."""
        client = await self.login(username)
        try:
            return await client.get(path)
        finally:
            await client.aclose()

    async def user_token(self, username: str) -> str:
        """Log ``username`` in (so the hub knows their groups) and return an API token of theirs."""
        client = await self.login(username)
        await client.aclose()
        r = await self.api("POST", f"/users/{username}/tokens", json={"note": "test"})
        r.raise_for_status()
        return r.json()["token"]

    async def start_server(
        self, username: str, server: str, *, token: str | None = None, timeout: float = 90
    ):
        """Start ``username/server`` through the REST API and wait until it is ready.

        Returns the hub's final response to the start request (201/202), or raises with the
        refusal's status and message.
        """
        r = await self.api("POST", f"/users/{username}/servers/{server}", token=token)
        if r.status_code >= 400:
            return r
        await self.wait_ready(username, server, timeout=timeout)
        return r

    async def follow_progress(
        self, username: str, server: str, token: str, *, timeout: float = 120
    ) -> list[str]:
        """Start ``username/server`` and return the messages of its progress stream until
        it is ready or failed (the hub must answer the start with 202: a slow_spawn_timeout
        of 0)."""
        r = await self.api("POST", f"/users/{username}/servers/{server}", token=token)
        assert r.status_code == 202, r.text
        messages = []
        async with httpx.AsyncClient(timeout=timeout) as c:
            async with c.stream(
                "GET",
                f"{self.url}/hub/api/users/{username}/servers/{server}/progress",
                headers={"Authorization": f"token {token}"},
            ) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        messages.append(event.get("message", ""))
                        if event.get("ready") or event.get("failed"):
                            break
        return messages

    async def wait_ready(self, username: str, server: str, *, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = await self.api("GET", f"/users/{username}")
            model = r.json().get("servers", {}).get(server)
            if model is None:
                raise RuntimeError(f"{username}/{server} failed to start:\n{self.log_tail()}")
            if model.get("ready"):
                return model
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{username}/{server} not ready after {timeout}s:\n{self.log_tail()}")


def node_available() -> bool:
    return shutil.which("node") is not None and PROXY.exists()


# ------------------------------------------------------------------ processes (host pids)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (host pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not); with ``started`` (its
    :func:`process_started`), only if it is still that process, not one that got its pid
    since (pids wrap at ``pid_max``, 32,768 on this kind of machine, and a test suite
    starting many processes reuses them)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and (started is None or int(fields[19]) == started)


def process_started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""
