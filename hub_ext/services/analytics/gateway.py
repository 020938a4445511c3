"""jupyter-kernel-gateway as the sandbox runs it: on a Unix socket, with a lifeline.

``python -m hub_ext.services.analytics.gateway --SocketGatewayApp.unix_socket=/srv/run/gw.sock
--SocketGatewayApp.lifeline=/srv/run/lifeline ...`` is kernel gateway's own application
(every ``--KernelGatewayApp.*`` option applies) with two differences:

- it listens on a Unix socket instead of a TCP port, so a sandbox without any network
  (its own network namespace, or a container with ``network_mode: none``) still answers
  the analytics service, and nothing else can reach it;
- it exits when its ``lifeline`` file has not been touched for ``lifeline_timeout``
  seconds: the analytics service touches it while it runs, so a gateway whose service
  died (a container outlives its parent) stops on its own.
"""

from __future__ import annotations

import os
import time

from kernel_gateway.gatewayapp import KernelGatewayApp
from tornado import ioloop, netutil
from traitlets import Float, Unicode

__all__ = ["SocketGatewayApp", "main"]


class SocketGatewayApp(KernelGatewayApp):
    unix_socket = Unicode(
        "",
        config=True,
        help="""Path of the Unix socket to listen on (mode 0600); empty: TCP, as kernel
        gateway does. Example: ``--SocketGatewayApp.unix_socket=/srv/run/gateway.sock``""",
    )
    lifeline = Unicode(
        "",
        config=True,
        help="""A file the analytics service touches while it runs; the gateway exits when it
        is older than ``lifeline_timeout``. Empty: no lifeline.""",
    )
    lifeline_timeout = Float(
        60.0,
        config=True,
        help="""Seconds without a touch of the lifeline after which the gateway exits.
        Default: 60.""",
    )

    def init_http_server(self):
        if not self.unix_socket:
            return super().init_http_server()
        from tornado import httpserver

        self.http_server = httpserver.HTTPServer(self.web_app, xheaders=False)
        if os.path.exists(self.unix_socket):
            os.unlink(self.unix_socket)
        self.http_server.add_socket(netutil.bind_unix_socket(self.unix_socket, mode=0o600))

    def start_app(self):
        if self.unix_socket:
            # kernel gateway's start_app prints a TCP address; say where we really are
            super(KernelGatewayApp, self).start()
            self.log.info("Kernel gateway listening on unix socket %s", self.unix_socket)
        else:
            super().start_app()
        if self.lifeline:
            ioloop.PeriodicCallback(self._check_lifeline, 5000).start()

    def _check_lifeline(self):
        try:
            age = time.time() - os.stat(self.lifeline).st_mtime
        except FileNotFoundError:
            age = float("inf")
        if age > self.lifeline_timeout:
            self.log.warning("No sign of the analytics service for %.0fs: stopping", age)
            self.stop()


def main(argv=None):
    SocketGatewayApp.launch_instance(argv)


if __name__ == "__main__":
    main()
