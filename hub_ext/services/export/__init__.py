"""Workspace export: a learner downloads their course workspace as a ``.tar.gz``.

A hub-managed service (Docker backend). ``GET /services/workspace-export/<course>`` streams
the caller's workspace volume for that course while the course is open and during its
grace period, whether or not their server runs. See :mod:`.app` and :mod:`.hubconfig`.
"""

from .app import WorkspaceExportService, main
from .hubconfig import SERVICE_NAME, export_service, export_service_role

__all__ = [
    "SERVICE_NAME",
    "WorkspaceExportService",
    "export_service",
    "export_service_role",
    "main",
]
