"""A course server's files, with errors a learner can read: the single-user side.

A top-level module, like ``hub_ext_course_kernels`` beside it: the course spawners put this
directory on the server's ``PYTHONPATH`` and start it with
``--ServerApp.contents_manager_class=hub_ext_course_contents.CourseContentsManager``.
It imports only jupyter_server and tornado.

Why: the course's materials are mounted read-only, and jupyter_server turns any error but
EPERM/EACCES into a 500 whose message holds the server-side path, so saving into
``materials/`` showed ``Unexpected error while saving file: materials/x.ipynb [Errno 30]
Read-only file system: '/srv/.../materials/x.ipynb'``. Here a write refused by a read-only
file system (EROFS) is a 403 with one sentence that names the file by its path in the
workspace, never by its path on the server.
"""

from __future__ import annotations

import errno
import functools

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

__all__ = ["CourseContentsManager", "read_only_message"]

#: a read-only mount (the materials). EPERM/EACCES are jupyter_server's own 403
#: ("Permission denied: materials/x.ipynb", an API path already).
_READ_ONLY = {errno.EROFS}


def read_only_message(path: str, action: str = "save", *, folder: bool = False) -> str:
    """The sentence shown for a write refused at ``path`` (an API path in the workspace;
    ``folder``: ``path`` is the folder itself, as for a new file in it)."""
    path = path.strip("/")
    top = path.split("/", 1)[0] if (folder or "/" in path) else ""
    where = f"the folder {top}/" if top else "this folder"
    what_next = (
        "create it elsewhere in your workspace"
        if folder
        else "save your own copy outside it (File > Save As)"
    )
    return (
        f"Cannot {action} {path or 'this file'}: {where} is read-only (course materials "
        f"cannot be changed), so {what_next}."
    )


def _read_only_cause(exc: BaseException) -> OSError | None:
    """The read-only ``OSError`` behind ``exc`` (itself, or what jupyter_server wrapped)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _READ_ONLY:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _friendly(action: str, path_arg: int = 1, *, folder: bool = False):
    """Wrap a contents-manager method: a read-only refusal becomes a 403 in plain words."""

    def wrap(method):
        @functools.wraps(method)
        async def wrapper(self, *args, **kwargs):
            try:
                return await method(self, *args, **kwargs)
            except Exception as e:
                if isinstance(e, web.HTTPError) and e.status_code not in (403, 500):
                    raise
                if _read_only_cause(e) is None:
                    raise
                path = args[path_arg - 1] if len(args) >= path_arg else kwargs.get("path", "")
                message = read_only_message(str(path), action, folder=folder)
                raise web.HTTPError(403, message) from None

        return wrapper

    return wrap


class CourseContentsManager(AsyncLargeFileManager):
    """jupyter_server's default contents manager (``AsyncLargeFileManager``), whose
    refused writes say so in one sentence without a server path."""

    @_friendly("save", path_arg=2)
    async def save(self, model, path=""):
        return await super().save(model, path)

    @_friendly("delete")
    async def delete_file(self, path):
        return await super().delete_file(path)

    @_friendly("move", path_arg=1)
    async def rename_file(self, old_path, new_path):
        return await super().rename_file(old_path, new_path)

    @_friendly("create a file in", path_arg=1, folder=True)
    async def new_untitled(self, path="", type="", ext=""):
        return await super().new_untitled(path, type, ext)

    @_friendly("copy into", path_arg=2)
    async def copy(self, from_path, to_path=None):
        return await super().copy(from_path, to_path)
