"""The smallest "single-user server" a hub can spawn: answers every request with 200.

bench_scale spawns it instead of jupyterhub-singleuser so that the hub, not JupyterLab, is
measured. It listens where the spawner says (``JUPYTERHUB_SERVICE_URL``, which JupyterHub's
spawners set), answers the hub's readiness check, and ignores its arguments. Standard
library only, imported lazily: it starts in a few tens of milliseconds.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ready": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):  # quiet: 500 of them write to the hub's log otherwise
        pass


def main() -> int:
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    server = ThreadingHTTPServer((url.hostname, url.port), _Ok)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # the spawner's stop (SIGINT): no traceback in the hub's log
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
