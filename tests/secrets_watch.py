"""No secret in any log of the test session: the secrets the tests make, looked for at the end.

The harnesses :func:`remember` what they create (the hub's admin token, users' tokens, the
development login's password); at the end of the session :func:`leaks` also reads the
secrets the hubs wrote (cookie secrets, the development provider's client secret) and
looks for all of them, and for any ``NAME=value`` of a token variable or an
``Authorization`` header with its credential, in every log file the session wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["leaks", "remember"]

_KNOWN: set[str] = set()
#: a file that marks a directory whose logs hold planted secrets (the check's own test)
PLANTED = ".planted-secrets"
#: a token-like variable or header with its value, wherever it is logged
_PATTERNS = [
    re.compile(
        r"(JUPYTERHUB_API_TOKEN|CONFIGPROXY_AUTH_TOKEN|KG_AUTH_TOKEN|JPY_API_TOKEN|"
        r"JUPYTERHUB_CRYPT_KEY|client_secret)['\"]?\s*[=:]\s*['\"]?([A-Za-z0-9_\-]{16,})"
    ),
    re.compile(
        r"[Aa]uthorization['\"]?\s*[:=]\s*['\"]?(token|bearer|basic)\s+([A-Za-z0-9_\-=+/]{16,})"
    ),
]


def remember(*values: str | None) -> None:
    """Secrets to look for in the logs (short or empty values are not secrets worth a look)."""
    _KNOWN.update(v for v in values if v and len(v) >= 12)


def _written_secrets(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("cookie_secret"):
        found.add(
            path.read_bytes().hex() if path.stat().st_size == 32 else path.read_text().strip()
        )
    for path in root.rglob("idp.json"):
        try:
            found.add(json.loads(path.read_text()).get("client_secret") or "")
        except (OSError, ValueError):
            pass
    return {s for s in found if len(s) >= 12}


def leaks(root: Path, *, include_planted: bool = False) -> list[str]:
    """``file: what`` for every secret found in a log file under ``root``."""
    secrets = _KNOWN | _written_secrets(root)
    found = []
    planted = set() if include_planted else {p.parent for p in root.rglob(PLANTED)}
    for path in sorted(root.rglob("*.log")):
        if any(path.is_relative_to(d) for d in planted):
            continue  # the check's own test plants secrets on purpose
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for secret in secrets:
            if secret in text:
                found.append(f"{path}: a secret of the tests ({secret[:4]}...)")
        for pattern in _PATTERNS:
            for match in pattern.finditer(text):
                found.append(f"{path}: {match.group(0)[:40]}...")
    return found
