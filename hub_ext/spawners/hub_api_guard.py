"""The hub's API as learners' containers see it: everything but users' group membership.

JupyterHub 6.1 gives *every* token the "identify" scopes of its owner, groups included
(``jupyterhub/scopes.py``: ``identify_scopes``; ``GET /hub/api/user`` adds them whatever
the token's scopes), so no ``server_token_scopes`` keeps a course server's own token
(``$JUPYTERHUB_API_TOKEN``, readable by any code in the server) from listing its learner's
groups: their other courses. Whoever runs code in alice's ds101 server, a ds101 teacher
looking over her shoulder included, would learn she takes stat200.

So the Docker backend's containers do not talk to the hub directly: the hub listens on
127.0.0.1, and this small forwarder, a hub-managed service on the learners' network
gateway, is their ``JUPYTERHUB_API_URL`` (``c.CourseDockerSpawner.hub_connect_url``). It
forwards ``/hub/api/`` requests unchanged, and removes ``groups`` from the user models
it returns (``/hub/api/user``, ``/hub/api/users...``). What a single-user server needs
(reporting activity, the OAuth token exchange, checking its visitors) never reads groups.
The host firewall lets containers reach this port only
(:func:`hub_ext.spawners.docker.ensure_host_firewall`).

It also forwards the prefixes of the hub services a course server calls (``services``:
the grading service, where a learner hands in work), unchanged: each service checks the
caller's token and its scopes itself.

Run by :func:`hub_ext.spawners.docker.docker_hub_config`::

    python -m hub_ext.spawners.hub_api_guard --ip=<gateway> --port=8082 --hub-url=http://127.0.0.1:8081
"""

from __future__ import annotations

import json
import re
from typing import Any

from tornado import httpclient, ioloop, web
from traitlets import Dict, Integer, Unicode
from traitlets.config import Application

__all__ = ["HubAPIGuard", "filter_user_models", "main"]

#: user models are the answers of these paths (below the hub's API prefix)
_USER_MODEL_PATH = re.compile(r"^(user|users(/[^/]+)?)/?$")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


def _without_groups(value: Any) -> Any:
    if isinstance(value, dict) and value.get("kind", "user") == "user":
        return {k: v for k, v in value.items() if k != "groups"}
    return value


def filter_user_models(api_path: str, body: bytes) -> bytes:
    """The answer ``body`` to ``GET <api prefix>/<api_path>``, with no user's ``groups``.

    Pure. Bodies that are not a user model (or a list of them) pass unchanged.
    """
    if not _USER_MODEL_PATH.match(api_path):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, list):
        data = [_without_groups(item) for item in data]
    else:
        data = _without_groups(data)
    return json.dumps(data).encode()


class GuardHandler(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, target: str, filter_groups: bool = True):
        self.target, self.filter_groups = target, filter_groups

    async def forward(self, path: str | None = None):
        path = path or ""
        request = self.request
        headers = {k: v for k, v in request.headers.get_all() if k.lower() not in _HOP_BY_HOP}
        response = await httpclient.AsyncHTTPClient().fetch(
            httpclient.HTTPRequest(
                self.target + request.uri,
                method=request.method,
                headers=headers,
                body=request.body if request.method in ("POST", "PUT", "PATCH") else None,
                follow_redirects=False,
                allow_nonstandard_methods=True,
                request_timeout=self.settings["timeout"],
            ),
            raise_error=False,
        )
        if response.code == 599:  # the hub did not answer
            raise web.HTTPError(502)
        body = response.body or b""
        if self.filter_groups and request.method == "GET" and response.code == 200:
            body = filter_user_models(path, body)
        self.set_status(response.code, response.reason)
        self.clear_header("Content-Type")
        for name, value in response.headers.get_all():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-encoding":
                self.add_header(name, value)
        self.finish(body)

    get = head = post = put = patch = delete = options = forward


class HubAPIGuard(Application):
    """Forwards learners' containers' hub API requests, without users' groups."""

    name = "hub-ext-hub-api-guard"
    description = __doc__.splitlines()[0]
    aliases = {
        "ip": "HubAPIGuard.ip",
        "port": "HubAPIGuard.port",
        "hub-url": "HubAPIGuard.hub_url",
        "api-prefix": "HubAPIGuard.api_prefix",
    }

    ip = Unicode(
        "127.0.0.1",
        config=True,
        help="""Address to listen on: the learners' network gateway. Default: 127.0.0.1.
        Example: ``--ip=172.18.0.1``""",
    )
    port = Integer(
        8082,
        config=True,
        help="""Port to listen on (the only port of the host learners' containers reach).
        Default: 8082. Example: ``--port=8082``""",
    )
    hub_url = Unicode(
        "http://127.0.0.1:8081",
        config=True,
        help="""The hub's own address (where it listens). Default: ``http://127.0.0.1:8081``.
        Example: ``--hub-url=http://127.0.0.1:8081``""",
    )
    api_prefix = Unicode(
        "/hub/api/",
        config=True,
        help="""The hub's API prefix; nothing else is forwarded. Default: ``/hub/api/``.""",
    )
    timeout = Integer(
        60, config=True, help="""Seconds to wait for the hub's answer. Default: 60."""
    )
    services = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Hub services course servers call: URL prefix -> the service's own address,
        forwarded unchanged. Default: none. Example:
        ``--HubAPIGuard.services='{"/services/grading/": "http://127.0.0.1:10104"}'``""",
    )

    def handlers(self) -> list:
        """The routes: the hub's API (without groups), then each service's prefix."""
        prefix = re.escape(self.api_prefix.rstrip("/"))  # /hub/api itself, and below it
        routes = [(prefix + r"(?:/(.*))?", GuardHandler, {"target": self.hub_url.rstrip("/")})]
        for service_prefix, url in self.services.items():
            routes.append(
                (
                    re.escape(service_prefix.rstrip("/")) + r"(?:/(.*))?",
                    GuardHandler,
                    {"target": url.rstrip("/"), "filter_groups": False},
                )
            )
        return routes

    def start(self):
        app = web.Application(self.handlers(), timeout=self.timeout)
        app.listen(self.port, self.ip, xheaders=False)
        self.log.info("Forwarding %s%s to %s", self.ip, self.api_prefix, self.hub_url)
        for service_prefix, url in self.services.items():
            self.log.info("Forwarding %s%s to %s", self.ip, service_prefix, url)
        ioloop.IOLoop.current().start()


def main(argv=None):
    HubAPIGuard.launch_instance(argv)


if __name__ == "__main__":
    main()
