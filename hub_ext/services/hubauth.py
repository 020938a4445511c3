"""The handlers of hub services: callers identified by the hub, refused by scope.

Apart from :mod:`.base` because it needs JupyterHub, which the analytics image (where
kernel gateways import :mod:`.base`'s JSON errors) does not have.
"""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from .base import JSONErrorsMixin

__all__ = ["HubServiceHandler", "NotFoundMixin"]


class HubServiceHandler(JSONErrorsMixin, HubOAuthenticated, web.RequestHandler):
    """A handler of a hub service: the caller is whom the hub says the token or cookie is.

    ``prepare`` asks the hub without blocking the loop (``HubAuthenticated``'s own
    ``get_current_user`` would) and answers 403 for a token that does not open the
    service; :meth:`require_user` gives the caller, or answers (a login redirect for a
    browser, else 401). Each handler then checks the scope of what it does.
    """

    #: the scopes besides the service's access scope that let a token in, in words
    other_scopes = ""

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


class NotFoundMixin:
    """Mix into a service's base handler (before it): any path the service does not have
    is a JSON 404, once the caller is identified (for the log)."""

    async def prepare(self):
        await super().prepare()
        self.fail(404, "not_found", f"no such path {self.request.path}")
