"""HTTP to the gateways' Unix sockets with tornado's own client.

A gateway listens on a Unix socket in its sandbox's scratch directory. Its URL is
``http://gw-<hash>.sock.invalid/...`` (``.invalid`` never resolves in DNS); the resolver
here answers those names with the socket's path, and any other name as usual.
"""

from __future__ import annotations

import socket

from tornado.httpclient import AsyncHTTPClient
from tornado.netutil import DefaultLoopResolver, Resolver

__all__ = ["SocketResolver", "gateway_client"]


class SocketResolver(Resolver):
    """Resolves registered host names to Unix socket paths."""

    def initialize(self, sockets: dict[str, str] | None = None):
        self.sockets: dict[str, str] = {} if sockets is None else sockets
        self.fallback = DefaultLoopResolver()

    async def resolve(self, host, port, family=socket.AF_UNSPEC):
        path = self.sockets.get(host)
        if path is not None:
            return [(socket.AF_UNIX, path)]
        return await self.fallback.resolve(host, port, family)

    def register(self, host: str, path: str) -> None:
        self.sockets[host] = path

    def forget(self, host: str) -> None:
        self.sockets.pop(host, None)


def gateway_client(resolver: SocketResolver, max_clients: int = 64) -> AsyncHTTPClient:
    """A private tornado client whose connections to registered names go to their sockets."""
    return AsyncHTTPClient(force_instance=True, max_clients=max_clients, resolver=resolver)
