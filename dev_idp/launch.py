"""Start and stop the development OpenID Connect provider (``dev_idp/server.mjs``).

Used by the test fixtures and by ``make demo``::

    python -m dev_idp.launch start --state-dir .demo/idp \\
        --redirect-uri http://127.0.0.1:8000/hub/oauth_callback
    python -m dev_idp.launch stop --state-dir .demo/idp

``start`` runs the provider in the background on a free loopback port, waits until it
answers, writes ``idp.json`` (issuer, pid, client id and secret; mode 0600) in the state
directory and prints the issuer and the demo accounts (never the client secret).
The hub's config reads ``idp.json`` (see :func:`read_state`) and passes it to
:func:`hub_ext.authenticator.configure_oidc`. ``stop`` ends the provider by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DEFAULT_ACCOUNTS", "DevIdP", "read_state", "start_idp", "stop_idp"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER = HERE / "server.mjs"
DEFAULT_ACCOUNTS = HERE / "accounts.json"
STATE_FILE = "idp.json"


@dataclass
class DevIdP:
    """A running development provider and the one client registered with it."""

    issuer: str
    pid: int
    client_id: str
    client_secret: str
    accounts: str
    log: str

    def hub_settings(self) -> dict:
        """The keyword arguments of :func:`hub_ext.authenticator.configure_oidc`."""
        return {
            "issuer_url": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start_idp(
    state_dir: os.PathLike | str,
    redirect_uris: list[str],
    *,
    accounts: os.PathLike | str = DEFAULT_ACCOUNTS,
    client_id: str = "course-hub",
    client_secret: str | None = None,
    access_token_ttl: int = 3600,
    timeout: float = 20,
) -> DevIdP:
    """Start the provider; return once its discovery document answers.

    ``redirect_uris`` are the hub's OAuth callback URLs
    (``http://127.0.0.1:<port>/hub/oauth_callback``). A new random client secret is made
    unless one is given. ``access_token_ttl`` (seconds) is how long an access token lasts
    before the hub must use its refresh token. Raises ``RuntimeError`` with the provider's log if it fails.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the development provider needs Node.js")
    if not (REPO / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed: run `npm ci` in the repository")
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    client_secret = client_secret or secrets.token_urlsafe(32)
    clients = state / "clients.json"
    _write_private(
        clients,
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": client_id,
                        "client_secret": client_secret,
                        "redirect_uris": list(redirect_uris),
                    }
                ]
            }
        ),
    )
    log_path = state / "idp.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                node,
                str(SERVER),
                "--accounts",
                str(accounts),
                "--clients",
                str(clients),
                "--access-token-ttl",
                str(access_token_ttl),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    issuer = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the development provider exited with {proc.returncode}:\n"
                + log_path.read_text(errors="replace")
            )
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("issuer="):
                issuer = line.split("=", 1)[1].strip()
        if issuer:
            try:
                with urllib.request.urlopen(
                    f"{issuer}/.well-known/openid-configuration", timeout=2
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
        time.sleep(0.05)
    else:
        stop_idp(proc.pid)
        raise RuntimeError(
            f"the development provider did not answer within {timeout}s:\n"
            + log_path.read_text(errors="replace")
        )
    idp = DevIdP(
        issuer=issuer,
        pid=proc.pid,
        client_id=client_id,
        client_secret=client_secret,
        accounts=str(Path(accounts).resolve()),
        log=str(log_path),
    )
    _write_private(state / STATE_FILE, json.dumps(asdict(idp), indent=1))
    return idp


def read_state(state_dir: os.PathLike | str) -> DevIdP:
    """The provider started in ``state_dir`` (from its ``idp.json``)."""
    return DevIdP(**json.loads((Path(state_dir) / STATE_FILE).read_text()))


def stop_idp(pid: int, timeout: float = 10) -> None:
    """Stop the provider with process id ``pid`` (SIGTERM, then SIGKILL); no error if gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll for existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            done = 0
        if done:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def describe_accounts(accounts: os.PathLike | str) -> str:
    """The demo accounts as a table (username, password, groups) for the demo's banner."""
    rows = json.loads(Path(accounts).read_text())["accounts"]
    lines = [f"  {'username':<10} {'password':<14} groups"]
    for a in rows:
        lines.append(f"  {a['username']:<10} {a['password']:<14} {', '.join(a.get('groups', []))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev_idp.launch", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start the provider in the background")
    p.add_argument("--state-dir", required=True, help="where idp.json, clients.json and idp.log go")
    p.add_argument(
        "--redirect-uri", action="append", required=True, help="the hub's OAuth callback URL"
    )
    p.add_argument("--accounts", default=str(DEFAULT_ACCOUNTS), help="accounts JSON file")
    p.add_argument("--client-id", default="course-hub")
    p = sub.add_parser("stop", help="stop the provider started in --state-dir")
    p.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        try:
            idp = start_idp(
                args.state_dir, args.redirect_uri, accounts=args.accounts, client_id=args.client_id
            )
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(
            f"Development identity provider: {idp.issuer} (pid {idp.pid}, client {idp.client_id})"
        )
        print("Demo accounts (development only):")
        print(describe_accounts(idp.accounts))
        return 0
    try:
        idp = read_state(args.state_dir)
    except FileNotFoundError:
        print(f"no provider state in {args.state_dir}", file=sys.stderr)
        return 0
    stop_idp(idp.pid)
    (Path(args.state_dir) / STATE_FILE).unlink(missing_ok=True)
    print(f"stopped the development identity provider (pid {idp.pid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
