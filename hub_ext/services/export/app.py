"""The workspace-export service: ``GET <prefix>/<course>`` -> the caller's workspace as .tar.gz.

The caller is identified by the hub (OAuth cookie for browsers, or a hub API token) and
must hold ``access:services!service=workspace-export`` (the hub gives it to every course's
learners and teachers, see :mod:`.hubconfig`): a token for something else (a server's own
token, one that may only read a name) is refused. Callers export their *own* workspace
only: the workspace is the token owner's, never a user named in the request, so a teacher
looking over a learner's shoulder (through a share) cannot export that learner's work. Their
course groups (read with the service's own token, scope ``read:users:groups``) say which
courses they are enrolled in. The archive is streamed as it is read: the workspace volume
is mounted read-only in a throw-away container that never starts and has no network
(:func:`hub_ext.spawners.docker.write_workspace_archive`). Exports are allowed while a
course is open and during its grace period.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from urllib.parse import quote

import docker
import docker.errors
from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import StreamClosedError
from traitlets import Callable, Dict, Integer, Unicode

from ...courses import CatalogError, CourseCatalog, enrollments_from_groups
from ...spawners.docker import workspace_volume_name, write_workspace_archive
from ...spawners.docker_objects import escape_name
from ..base import HubServiceApp, JSONErrorsMixin, log_request

__all__ = ["WorkspaceExportService", "main"]


class WorkspaceExportService(HubServiceApp):
    """Streams learners' course workspaces (Docker volumes) as .tar.gz archives."""

    name = "hub-ext-workspace-export"
    default_name = "workspace-export"
    description = __doc__.splitlines()[0]
    classes = [CourseCatalog]
    aliases = {"catalog": "CourseCatalog.path", "port": "WorkspaceExportService.port"}

    materials_dirname = Unicode(
        "materials",
        config=True,
        help="""The mount point of the read-only materials inside the workspace (relative to
        it): its empty directory entry is left out of the archive. Default: ``materials``.""",
    )
    docker_kwargs = Dict(
        config=True,
        help="""Extra arguments of ``docker.APIClient`` (the ``DOCKER_HOST`` environment
        is used too). Default: none. Example:
        ``c.WorkspaceExportService.docker_kwargs = {"base_url": "unix:///run/docker.sock"}``""",
    )
    max_concurrent = Integer(
        4,
        config=True,
        help="""Most archives streamed at once (each reads a volume and compresses it).
        Default: 4. Example: ``c.WorkspaceExportService.max_concurrent = 2``""",
    )
    now = Callable(
        default_value=lambda: datetime.now(UTC),
        config=True,
        help="""Clock for the access window (a callable returning an aware datetime).""",
    )

    def initialize(self, argv=None):
        super().initialize(argv)
        self.catalog = CourseCatalog.instance(parent=self).catalog
        self.docker = docker.APIClient(
            version="auto", **docker.utils.kwargs_from_env(), **self.docker_kwargs
        )
        self.hub_auth = HubOAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""))
        self.semaphore = asyncio.Semaphore(self.max_concurrent)
        prefix = self.base_url.rstrip("/")
        self.web_app = web.Application(
            [
                (prefix + r"/oauth_callback", HubOAuthCallbackHandler),
                (prefix + r"/([a-z][a-z0-9-]{0,30}[a-z0-9])/?", ExportHandler),
            ],
            service=self,
            hub_auth=self.hub_auth,
            cookie_secret=secrets.token_bytes(32),
            login_url=self.hub_auth.login_url,
            log_function=log_request(self.log),
        )

    async def user_groups(self, username: str) -> list[str]:
        """The hub groups of ``username`` (with the service's own token)."""
        url = f"{self.hub_auth.api_url}/users/{quote(username, safe='')}"
        req = HTTPRequest(url, headers={"Authorization": f"token {self.hub_auth.api_token}"})
        resp = await AsyncHTTPClient().fetch(req)
        return json.loads(resp.body).get("groups", [])

    async def serve(self):
        self.web_app.listen(self.port, self.ip)
        self.log.info("Workspace export listening on %s:%s%s", self.ip, self.port, self.base_url)
        await asyncio.Event().wait()

    def start(self):
        asyncio.run(self.serve())


class _QueueWriter:
    """A file object for the archive writer thread: chunks go to an asyncio queue (bounded)."""

    def __init__(self, loop, queue: asyncio.Queue):
        self.loop, self.queue, self.aborted = loop, queue, threading.Event()

    def write(self, data) -> int:
        if self.aborted.is_set():
            raise BrokenPipeError("the download was interrupted")
        asyncio.run_coroutine_threadsafe(self.queue.put(bytes(data)), self.loop).result()
        return len(data)

    def flush(self):
        pass


class ExportHandler(JSONErrorsMixin, HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> WorkspaceExportService:
        return self.settings["service"]

    async def get(self, course_id: str):
        service = self.service
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            if "text/html" in self.request.headers.get("Accept", ""):
                return self.redirect(self.get_login_url())
            return self.fail(401, "unauthorized", "Log in to the hub, or send a hub API token.")
        self._hub_user_name = model.get("name", "?")
        try:
            # the token must be one for this service (its access scope), not any token of the user
            self.check_hub_user(model)
        except UserNotAllowed:
            return self.fail(
                403,
                "forbidden",
                f"this token of {model.get('name')} does not allow downloading workspaces "
                f"(it needs access:services!service={service.service_name})",
            )
        if model.get("kind", "user") != "user":
            return self.fail(403, "forbidden", "only people have workspaces to download")
        user = model["name"]
        course = service.catalog.get(course_id)
        if course is None:
            return self.fail(404, "not_found", f"There is no course {course_id!r}.")
        role = enrollments_from_groups(await service.user_groups(user)).get(course.id)
        if role is None:
            return self.fail(
                403, "not_enrolled", f"{user} is not enrolled in {course.id} ({course.title})."
            )
        status = course.status(service.now())
        if status == "closed":
            return self.fail(
                403,
                "course_closed",
                f"{course.id} ({course.title}) is closed: it was {course.describe_window()}. "
                "Ask the course's teachers for your work.",
            )
        # named as the spawner names it, from the spawner's own settings (on our command line)
        volume = workspace_volume_name(service.config, course.id, user)
        try:
            await asyncio.to_thread(service.docker.inspect_volume, volume)
        except docker.errors.NotFound:
            return self.fail(
                404,
                "no_workspace",
                f"{user} has no workspace in {course.id} yet: open the course once.",
            )

        arcname = f"{course.id}-{escape_name(user)}"
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{arcname}-workspace.tar.gz"')
        self.set_header("Cache-Control", "no-store")
        async with service.semaphore:
            await self._stream(volume, course.image, arcname, user)

    async def _stream(self, volume: str, image: str, arcname: str, user: str):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        writer = _QueueWriter(loop, queue)
        done = object()

        def produce():
            try:
                write_workspace_archive(
                    self.service.docker,
                    volume=volume,
                    image=image,
                    arcname=arcname,
                    fileobj=writer,
                    skip_dirs=[self.service.materials_dirname],
                )
                result = done
            except Exception as e:  # reported to the consumer below
                result = e
            if not writer.aborted.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(result), loop).result()

        producer = loop.run_in_executor(None, produce)
        try:
            while True:
                chunk = await queue.get()
                if chunk is done:
                    break
                if isinstance(chunk, Exception):
                    raise chunk
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            self.service.log.info("Export of %s interrupted by %s", volume, user)
        except Exception:
            self.service.log.exception("Export of %s for %s failed", volume, user)
            # headers may be sent: close the connection so the client sees a broken archive
            if self.request.connection and self.request.connection.stream:
                self.request.connection.stream.close()
            return
        finally:
            writer.aborted.set()
            while not queue.empty():
                queue.get_nowait()
            await producer
        self.finish()


def main(argv=None):
    app = WorkspaceExportService.instance()
    try:
        app.initialize(argv)
    except CatalogError as e:
        raise SystemExit(
            f"The workspace export service cannot read the course catalog:\n{e}"
        ) from None
    app.start()
