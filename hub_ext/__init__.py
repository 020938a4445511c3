"""hub_ext: a course-aware JupyterHub (catalog, spawners, authenticator, services)."""

__version__ = "0.1.0"
