"""``hub-ext check-notebook``, ``hub-ext publish`` and ``hub-ext withdraw``: analytics notebooks.

``check-notebook`` works offline: it lists a notebook's routes, or every reason it would be
refused. ``publish`` and ``withdraw`` talk to the hub's analytics service with the token in
``JUPYTERHUB_API_TOKEN`` (a course teacher's token; the service checks the course scope).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..courses import api_name
from ..services.analytics.notebook import NotebookError, check_notebook
from . import add_command

SERVICE_PREFIX = "/services/analytics"


def _checked(path: Path, *, count: bool = False):
    """The checked notebook at ``path``, else None after printing why (and, with ``count``,
    how many problems)."""
    try:
        return check_notebook(path)
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
    except NotebookError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        if count:
            print(f"{len(e.problems)} problem(s); the notebook would be refused.", file=sys.stderr)
    return None


def check_notebook_command(args) -> int:
    """List the routes of an annotated notebook ('# GET /learners/:id' cells), or every
    reason the analytics service would refuse it. Exit status 1 if refused."""
    nb = _checked(Path(args.notebook), count=True)
    if nb is None:
        return 1
    print(f"{nb.source}: {len(nb.routes)} route(s), kernel {nb.kernel_name}, version {nb.version}")
    for route in nb.routes:
        extra = f", ResponseInfo in cell {route.response_cell}" if route.response_cell else ""
        print(f"  {route.verb:<6} {route.path:<32} cell {route.cell}{extra}")
    setup = ", ".join(str(i) for i in nb.setup_cells) or "none"
    print(f"  setup cells (run when a kernel starts): {setup}")
    return 0


def _request(method: str, url: str, token: str, body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"token {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"message": e.reason}


def _api_url(args, name: str) -> str | None:
    hub = (args.hub_url or os.environ.get("JUPYTERHUB_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not hub.startswith(("http://", "https://")):
        print(f"--hub-url {hub!r} must start with http:// or https://", file=sys.stderr)
        return None
    return f"{hub}{SERVICE_PREFIX}/_api/courses/{args.course}/apis/{name}"


def _token() -> str | None:
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        print(
            "JUPYTERHUB_API_TOKEN is not set: create a token at /hub/token and export it",
            file=sys.stderr,
        )
    return token


def publish_command(args) -> int:
    """Check a notebook, then publish it through the hub's analytics service as
    /services/analytics/<course>/<name>/. Uses JUPYTERHUB_API_TOKEN (a token of a teacher
    of the course). Publishing a name again replaces it."""
    path = Path(args.notebook)
    nb = _checked(path)
    if nb is None:
        return 1
    token = _token()
    name = args.name or api_name(path)
    url = _api_url(args, name)
    if not token or not url:
        return 1
    try:
        status, reply = _request("PUT", url, token, nb.raw)
    except OSError as e:
        print(f"cannot reach the hub at {url}: {e}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"refused ({status}): {reply.get('message', reply)}", file=sys.stderr)
        for problem in reply.get("problems", []):
            print(f"  {problem['message']}", file=sys.stderr)
        return 1
    print(f"published {args.course}/{name} (version {reply.get('version')}) at {reply.get('url')}")
    for route in reply.get("routes", []):
        print(f"  {route['verb']:<6} {route['path']}")
    return 0


def withdraw_command(args) -> int:
    """Stop serving a published analytics API. Uses JUPYTERHUB_API_TOKEN."""
    token = _token()
    url = _api_url(args, args.name)
    if not token or not url:
        return 1
    try:
        status, reply = _request("DELETE", url, token)
    except OSError as e:
        print(f"cannot reach the hub at {url}: {e}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"refused ({status}): {reply.get('message', reply)}", file=sys.stderr)
        return 1
    print(f"withdrew {args.course}/{args.name}")
    return 0


def add_commands(subparsers) -> None:
    p = add_command(subparsers, "check-notebook", check_notebook_command)
    p.add_argument("notebook", help="the .ipynb file")

    hub_help = "the hub's public URL (default: $JUPYTERHUB_URL or http://127.0.0.1:8000)"
    p = add_command(subparsers, "publish", publish_command)
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--course", required=True, help="the course id, e.g. ds101")
    p.add_argument("--name", help="the API name (default: the file name, e.g. know-thy-student)")
    p.add_argument("--hub-url", help=hub_help)

    p = add_command(subparsers, "withdraw", withdraw_command)
    p.add_argument("name", help="the API name")
    p.add_argument("--course", required=True, help="the course id, e.g. ds101")
    p.add_argument("--hub-url", help=hub_help)
