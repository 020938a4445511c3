"""The handlers of hub services: callers identified by the hub, refused by scope.

Apart from :mod:`.base` because it needs JupyterHub, which the analytics image (where
kernel gateways import :mod:`.base`'s JSON errors) does not have.
"""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import get_accepted_mimetype
from tornado import web

from .base import JSONErrorsMixin

__all__ = ["HubServiceHandler", "NotFoundMixin", "PageErrorsMixin"]


class HubServiceHandler(JSONErrorsMixin, HubOAuthenticated, web.RequestHandler):
    """A handler of a hub service: the caller is whom the hub says the token or cookie is.

    ``prepare`` asks the hub without blocking the loop (``HubAuthenticated``'s own
    ``get_current_user`` would) and answers 403 for a token that does not open the
    service; :meth:`require_user` gives the caller, or answers (a login redirect for a
    browser, else 401). Each handler then checks the scope of what it does.
    """

    #: the scopes besides the service's access scope that let a token in, in words
    other_scopes = ""
    #: how :meth:`answer` writes what JSON does not know (``json.dumps``'s ``default``)
    json_default = None

    @property
    def service(self):
        return self.settings["service"]

    @property
    def log(self):
        return self.service.log

    async def prepare(self):
        model = await self.hub_auth.get_user(self, sync=False)
        user = None
        if model:
            self._hub_user_name = model.get("name", "?")
            try:
                user = self.check_hub_user(model)
            except UserNotAllowed:
                name = self.service.service_name
                needs = f"access:services!service={name}" + (
                    f" or {self.other_scopes}" if self.other_scopes else ""
                )
                return self.fail(
                    403,
                    "forbidden",
                    f"this token of {model.get('name')} does not allow using the {name} "
                    f"service (it needs {needs})",
                )
        self._hub_auth_user_cache = user
        self.current_user = user

    def require_user(self) -> dict | None:
        """The caller, or None after answering (a login redirect for browsers, else 401)."""
        if self._finished:
            return None
        if self.current_user:
            return self.current_user
        if self.request.method == "GET" and "text/html" in self.request.headers.get("Accept", ""):
            self.redirect(self.get_login_url())
        else:
            self.fail(
                401,
                "unauthorized",
                "log in to the hub, or send a hub API token (Authorization: token ...)",
            )
        return None

    def answer(self, value, status: int = 200) -> None:
        """Answer ``value`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value, default=self.json_default))


class PageErrorsMixin:
    """Mix into a service's handler (before it): an error that a browser's page asked for is
    a page saying what the JSON error (:meth:`~.base.JSONErrorsMixin.fail`) says to programs,
    with the same status, reason and request id.

    The service's ``error.html`` template gets ``status``, ``title``, ``error``, ``message``,
    ``extra`` (the JSON error's other keys) and ``request_id``; :meth:`render_page` renders it
    (a service with a page frame of its own overrides it).
    """

    #: an error page's title, by status
    titles: dict[int, str] = {}
    #: the title of a refusal without one of its own, and of a server error
    refusal_title = "The request was refused"
    error_title = "Something went wrong"

    def wants_html(self) -> bool:
        """A browser asking for a page (``Accept`` prefers ``text/html`` to JSON)."""
        accept = self.request.headers.get("Accept", "")
        return self.request.method in ("GET", "HEAD") and (
            get_accepted_mimetype(accept, ["text/html", "application/json"]) == "text/html"
        )

    def render_page(self, template: str, **namespace) -> None:
        self.render(template, **namespace)

    def fail(self, status, error, message, *, headers=None, **extra):
        if self._finished:
            return
        if not self.wants_html():
            return super().fail(status, error, message, headers=headers, **extra)
        self.clear()
        self.set_status(status)
        self.set_header("X-Request-Id", self.request_id)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        # tornado's render reads current_user: never let it ask the hub again (a refusal
        # in prepare() renders before the caller is known)
        self._hub_auth_user_cache = getattr(self, "_hub_auth_user_cache", None)
        title = self.titles.get(status) or (
            self.error_title if status >= 500 else self.refusal_title
        )
        self.render_page(
            "error.html",
            status=status,
            title=title,
            error=error,
            message=message,
            extra=extra,
            request_id=self.request_id,
        )


class NotFoundMixin:
    """Mix into a service's base handler (before it): any path the service does not have
    is a JSON 404, once the caller is identified (for the log)."""

    async def prepare(self):
        await super().prepare()
        self.fail(404, "not_found", f"no such path {self.request.path}")
