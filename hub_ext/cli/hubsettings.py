"""What the hub uses, read from its own config file, for the commands that must agree with it.

``hub-ext import-roster``, ``check-catalog``, ``import`` and ``events`` take
``--hub-config FILE`` (default ``$HUB_EXT_HUB_CONFIG``, else JupyterHub's own default,
``jupyterhub_config.py`` in the working directory, when it exists). The file runs as the
hub runs it (:func:`hub_ext.hubconfig.read_hub_config`: it configures, it changes
nothing), and :class:`HubSettings` reads from the result the catalog, the roster
directory, the event store and the backend. Without a hub config, each falls back to the
same default the hub has (``$HUB_EXT_CATALOG``, ``$HUB_EXT_ROSTER_DIR``,
``$HUB_EXT_EVENTS_DB``...). An option given on the command line wins over both.

Relative paths in the config file are relative to the working directory, as for the hub:
run ``hub-ext`` where the hub runs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HUB_CONFIG_ENV", "HubSettings", "add_hub_config_option", "hub_settings"]

#: the environment variable naming the hub's config file for ``hub-ext``
HUB_CONFIG_ENV = "HUB_EXT_HUB_CONFIG"
#: JupyterHub's own default config file (``JupyterHub.config_file``)
JUPYTERHUB_DEFAULT_CONFIG = "jupyterhub_config.py"
#: the event store when nothing names one: the hub's default (SQLite in its data directory)
DEFAULT_EVENTS_DB = "sqlite:///events.sqlite"


class HubConfigError(Exception):
    """The hub's config file could not be read; the message says which file and why."""


@dataclass(frozen=True)
class HubSettings:
    """The settings ``hub-ext`` shares with the hub (see the module docstring)."""

    #: the config file they were read from, or None (then: the hub's defaults)
    config_file: Path | None
    catalog: str
    roster_dir: str
    events_db: str
    #: "local", "docker" or None (a spawner class the course hub does not know)
    backend: str | None

    @classmethod
    def from_config(cls, config, config_file: Path | None) -> HubSettings:
        from ..hubconfig import BACKENDS
        from ..roster import default_roster_dir

        spawner = config.JupyterHub.get("spawner_class", "")
        backend = next((name for name, cls_ in BACKENDS.items() if cls_ == spawner), None)
        if backend is None and config_file is None:
            backend = "local"
        events = next(
            (s for s in config.JupyterHub.get("services", []) if s.get("name") == "events"), {}
        )
        return cls(
            config_file=config_file,
            catalog=config.CourseCatalog.get("path")
            or os.environ.get("HUB_EXT_CATALOG", "courses.yaml"),
            roster_dir=config.CourseOAuthenticator.get("roster_dir", default_roster_dir()),
            events_db=events.get("environment", {}).get("HUB_EXT_EVENTS_DB")
            or os.environ.get("HUB_EXT_EVENTS_DB")
            or DEFAULT_EVENTS_DB,
            backend=backend,
        )

    def describe(self) -> str:
        where = f"hub config {self.config_file}" if self.config_file else "the hub's defaults"
        return f"settings from {where}"


def add_hub_config_option(parser) -> None:
    """``--hub-config FILE`` (see the module docstring)."""
    parser.add_argument(
        "--hub-config",
        metavar="FILE",
        help="the hub's jupyterhub_config.py, to use the catalog, roster directory and event "
        f"store the hub uses (default ${HUB_CONFIG_ENV}, else ./{JUPYTERHUB_DEFAULT_CONFIG} "
        "if it exists; options given here win)",
    )


def _config_file(args, implicit: bool) -> Path | None:
    named = getattr(args, "hub_config", None) or os.environ.get(HUB_CONFIG_ENV)
    if named:
        return Path(named)
    default = Path(JUPYTERHUB_DEFAULT_CONFIG)
    return default if implicit and default.is_file() else None


def hub_settings(args, *, implicit: bool = True) -> HubSettings:
    """The hub's settings for ``args`` (raises :class:`HubConfigError`, or the catalog's
    :class:`~hub_ext.courses.CatalogError` when the config file's catalog is broken).

    ``implicit=False``: read ``./jupyterhub_config.py`` only when named (the command was
    given what it needs from the config file)."""
    from traitlets.config import Config

    path = _config_file(args, implicit)
    if path is None:
        return HubSettings.from_config(Config(), None)
    from ..courses import CatalogError
    from ..hubconfig import read_hub_config

    try:
        config = read_hub_config(path)
    except CatalogError:
        raise
    except FileNotFoundError as e:
        raise HubConfigError(str(e)) from None
    except SystemExit as e:  # configure_course_hub refuses a backend or service by exiting
        raise HubConfigError(f"{path}: {e.code}") from None
    except Exception as e:  # the deployer's own code: say where, never a traceback
        raise HubConfigError(f"{path}: the config file failed: {type(e).__name__}: {e}") from None
    return HubSettings.from_config(config, path.resolve())


def settings_or_exit(args, *, implicit: bool = True) -> HubSettings:
    """:func:`hub_settings`, or exit 1 saying why (for commands that need no catalog).

    Read once per command (the config file runs once)."""
    from ..courses import CatalogError

    cached = getattr(args, "_hub_settings", None)
    if cached is not None:
        return cached
    try:
        args._hub_settings = hub_settings(args, implicit=implicit)
        return args._hub_settings
    except HubConfigError as e:
        print(f"hub-ext: {e}", file=sys.stderr)
    except CatalogError as e:
        print(f"hub-ext: the hub config's catalog has problems:\n{e}", file=sys.stderr)
    raise SystemExit(1)
