"""What every hub-managed service of hub_ext shares: its place, one error shape, one log.

- :class:`HubServiceApp`: a traitlets ``Application`` that knows its name, prefix and listen
  address from what JupyterHub gives a managed service (``JUPYTERHUB_SERVICE_NAME``,
  ``_PREFIX``, ``_URL``), with a default port of its own (:data:`PORTS`);
- :func:`service_entry`: the ``c.JupyterHub.services`` entry that runs one (through the
  lifeline, so it ends with the hub);

- :class:`JSONErrorsMixin`: every error is ``{"error", "message", "request_id"}`` (``error`` a
  short machine word, ``message`` the sentence a person reads), the request id is also the
  ``X-Request-Id`` header, and every answer carries ``nosniff``;
- :func:`log_request`: tornado's ``log_function`` that logs the path only (a query string
  may hold a token) and the caller's name when the handler knows it;
- :mod:`.hubauth`: the handlers' side, which needs JupyterHub (this module does not: the
  analytics image's kernel gateways import :class:`JSONErrorsMixin` from here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
import uuid
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from tornado import web
from traitlets import Integer, Unicode, default, validate
from traitlets.config import Application

from .lifeline import with_lifeline

__all__ = [
    "PORTS",
    "HubServiceApp",
    "JSONErrorsMixin",
    "log_request",
    "service_entry",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: each service's port when run outside the hub (the hub gives managed services a free one)
PORTS = {
    "analytics": 10101,
    "events": 10102,
    "workspace-export": 10103,
    "grading": 10104,
    "courses": 10105,
}


class HubServiceApp(Application):
    """A hub-managed service: where it listens and under which prefix the proxy routes to it."""

    #: the service's name in the hub unless ``$JUPYTERHUB_SERVICE_NAME`` says otherwise
    default_name = ""
    #: every service's command-line options (a service may add its own)
    aliases = {
        "catalog": "CourseCatalog.path",
        "port": "HubServiceApp.port",
        "config": "HubServiceApp.config_file",
    }

    config_file = Unicode(
        "",
        config=True,
        help="""A Python config file to load (``c.<ServiceClass>.<setting> = ...``), after
        the command line. Default: none. Example: ``--config=/srv/jupyterhub/grading_config.py``""",
    )

    service_name = Unicode(
        config=True,
        help="""The service's name in the hub. Default: ``$JUPYTERHUB_SERVICE_NAME``, else
        the service's own name. Example: ``c.AnalyticsService.service_name = "analytics"``""",
    )

    @default("service_name")
    def _default_service_name(self):
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", self.default_name)

    base_url = Unicode(
        config=True,
        help="""URL prefix the hub's proxy routes to this service. Default:
        ``$JUPYTERHUB_SERVICE_PREFIX``, else ``/services/<name>/``.""",
    )

    @default("base_url")
    def _default_base_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    @validate("base_url")
    def _slashes(self, proposal):
        value = proposal["value"].strip("/")
        return f"/{value}/" if value else "/"

    ip = Unicode(
        config=True,
        help="""Address to listen on. Default: the host of ``$JUPYTERHUB_SERVICE_URL``, else
        127.0.0.1. Example: ``c.AnalyticsService.ip = "127.0.0.1"``""",
    )

    @default("ip")
    def _default_ip(self):
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).hostname if url else None) or "127.0.0.1"

    port = Integer(
        config=True,
        help="""Port to listen on. Default: the port of ``$JUPYTERHUB_SERVICE_URL``, else the
        service's own (:data:`PORTS`: analytics 10101, events 10102, workspace-export 10103,
        grading 10104, courses 10105).
        Example: ``c.AnalyticsService.port = 10101``""",
    )

    @default("port")
    def _default_port(self):
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).port if url else None) or PORTS[self.default_name]

    @property
    def url(self) -> str:
        """Where it listens, as a URL (without the prefix)."""
        return f"http://{self.ip}:{self.port}"

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    def make_hub_auth(self, access_scopes: Iterable[str] = (), cache_max_age: int = 300):
        """The service's ``HubOAuth``: a caller's token must hold the service's access scope
        or one of ``access_scopes`` (e.g. a course's) to be let in at all; each handler then
        checks the scope of what it does. Exits, saying why, outside a hub."""
        from jupyterhub.services.auth import HubOAuth

        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise SystemExit(
                f"JUPYTERHUB_API_TOKEN is not set: run the {self.service_name} service as a "
                f"JupyterHub-managed service (see hub_ext.services.*.hubconfig)"
            )
        auth = HubOAuth(api_token=token, cache_max_age=cache_max_age)
        auth.access_scopes = {f"access:services!service={self.service_name}", *access_scopes}
        return auth

    def web_application(self, handlers: list, hub_auth, **settings) -> web.Application:
        """The service's tornado application: its handlers see the service (``service``)
        and ``hub_auth``; OAuth state in a cookie signed with a key of this process; the
        request log of :func:`log_request`."""
        return web.Application(
            handlers,
            service=self,
            hub_auth=hub_auth,
            cookie_secret=secrets.token_bytes(32),
            login_url=hub_auth.login_url,
            xsrf_cookies=False,
            log_function=log_request(self.log),
            **settings,
        )

    async def until_stopped(self) -> None:
        """Return when the hub stops the service (SIGTERM) or at Ctrl-C (SIGINT)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def service_entry(
    name: str,
    module: str,
    *,
    port: int,
    settings: Mapping[str, object] = (),
    catalog_path: str | os.PathLike | None = None,
    options: Mapping[str, object] | None = None,
    python: str = sys.executable,
    **extra,
) -> dict:
    """The ``c.JupyterHub.services`` entry of a hub_ext service run as ``python -m module``.

    ``settings`` are traitlets options (``{"GatewaySupervisor.pool_size": 4}``) put on its
    command line, after the catalog's path (``CourseCatalog.path``, made absolute) and
    before the deployer's ``options`` (which win); ``extra`` are more keys of the entry
    (``oauth_client_allowed_scopes``).
    """
    given = {"CourseCatalog.path": os.path.abspath(catalog_path)} if catalog_path else {}
    given.update(settings)
    given.update(options or {})
    command = [python, "-m", module, *(f"--{k}={v}" for k, v in given.items())]
    return {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": with_lifeline(command, python),
        "display": False,
        "oauth_no_confirm": True,
        **extra,
    }


class JSONErrorsMixin:
    """Mix into a ``tornado.web.RequestHandler`` (before it)."""

    request_id: str

    def initialize(self, **kwargs):
        """Subclasses taking handler arguments call ``super().initialize()`` first."""
        given = self.request.headers.get("X-Request-Id", "")
        # a caller's (the front door's) request id is kept, so one id follows a request
        self.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        self.set_header("X-Request-Id", self.request_id)

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")

    def fail(
        self,
        status: int,
        error: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra,
    ) -> None:
        """Answer ``status`` with the JSON error (once; later calls do nothing).

        The answer starts afresh (``clear()``: the default headers only), so ``headers`` are
        the ones it needs besides (``WWW-Authenticate`` on a 401); ``extra`` are more keys of
        the body.
        """
        if self._finished:
            return
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Request-Id", self.request_id)
        if status == 503:
            self.set_header("Retry-After", "1")
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.finish(
            json.dumps({"error": error, "message": message, "request_id": self.request_id, **extra})
        )

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = f"internal error (request {self.request_id}; details in the service log)"
        else:
            message = self._reason
        self.fail(status_code, self._reason.lower().replace(" ", "_"), message)


def log_request(log: logging.Logger):
    """A tornado ``log_function``: status, method, path (never the query), caller, time."""

    def _log(handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if status < 300 and handler.request.method == "GET":
            level = logging.DEBUG
        user = getattr(handler, "_hub_user_name", "-")
        log.log(
            level,
            "%d %s %s (%s) %.1fms request_id=%s",
            status,
            handler.request.method,
            handler.request.path,
            user,
            1000 * handler.request.request_time(),
            getattr(handler, "request_id", "") or "-",
        )

    return _log
