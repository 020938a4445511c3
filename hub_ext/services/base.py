"""What every hub-managed service of hub_ext shares: one error shape, one request log.

- :class:`JSONErrorsMixin`: every error is ``{"error", "message", "request_id"}`` (``error`` a
  short machine word, ``message`` the sentence a person reads), the request id is also the
  ``X-Request-Id`` header, and every answer carries ``nosniff``;
- :func:`log_request`: tornado's ``log_function`` that logs the path only (a query string
  may hold a token) and the caller's name when the handler knows it.
"""

from __future__ import annotations

import json
import logging
import uuid

from tornado import web

__all__ = ["JSONErrorsMixin", "log_request"]


class JSONErrorsMixin:
    """Mix into a ``tornado.web.RequestHandler`` (before it)."""

    request_id: str

    def initialize(self, *args, **kwargs):
        self.request_id = uuid.uuid4().hex[:16]
        self.set_header("X-Request-Id", self.request_id)
        super().initialize(*args, **kwargs)

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")

    def fail(self, status: int, error: str, message: str, **extra) -> None:
        """Answer ``status`` with the JSON error (once; later calls do nothing)."""
        if self._finished:
            return
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Request-Id", self.request_id)
        if status == 503:
            self.set_header("Retry-After", "1")
        self.finish(
            json.dumps({"error": error, "message": message, "request_id": self.request_id, **extra})
        )

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = f"internal error (request {self.request_id}; details in the service log)"
        else:
            message = self._reason
        self.fail(status_code, self._reason.lower().replace(" ", "_"), message)


def log_request(log: logging.Logger):
    """A tornado ``log_function``: status, method, path (never the query), caller, time."""

    def _log(handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if status < 300 and handler.request.method == "GET":
            level = logging.DEBUG
        user = getattr(handler, "_hub_user_name", "-")
        log.log(
            level,
            "%d %s %s (%s) %.1fms",
            status,
            handler.request.method,
            handler.request.path,
            user,
            1000 * handler.request.request_time(),
        )

    return _log
