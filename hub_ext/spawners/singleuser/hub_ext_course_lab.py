"""JupyterLab says whose workspace and which course it is: the single-user side.

A Jupyter Server extension (a top-level module, like ``hub_ext_course_kernels`` beside it)
that the course spawners enable with
``--ServerApp.jpserver_extensions={"hub_ext_course_lab": True}`` and
``--LabApp.custom_css=True``. It imports only jupyter_server and tornado, and reads what the
spawner gives every course server: ``COURSE_ID``, ``COURSE_TITLE`` and ``JUPYTERHUB_USER``
(the server's owner).

- **The browser tab**: JupyterLab titles its tab with the page config's ``appName``
  ("notebook.ipynb - JupyterLab"); jupyterlab_server's documented ``page_config_hook``
  (a Tornado setting) sets it to "Data analysis with Python (alice)".
- **A banner** in JupyterLab's top bar: "alice's workspace · Data analysis with Python
  (ds101)", or, to anyone else who opens the server (a teacher looking over the learner's
  shoulder), "You are looking at alice's workspace · ...". It is JupyterLab's own custom
  stylesheet (``LabApp.custom_css``, the ``custom/custom.css`` its page links), served by this
  extension: extensions load in alphabetical order, so this handler answers before
  JupyterLab's static one. (A ``custom.css`` of the learner's own is not served then.)

Why not a JupyterLab (federated) extension: it would need a build with
``@jupyterlab/builder`` and a package to keep in step with every JupyterLab release; these
are two settings JupyterLab and jupyterlab_server support, and the course image needs
nothing more than jupyter_server.
"""

from __future__ import annotations

import os

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

__all__ = ["banner_css", "lab_title"]

_CSS_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;()-_'")


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal: every character outside a small safe set escaped
    (``\\0000b7`` and the space that ends an escape), so a course title cannot end the
    string or the rule."""
    return '"' + "".join(c if c in _CSS_SAFE else f"\\{ord(c):06x} " for c in text) + '"'


def lab_title(course_title: str, owner: str) -> str:
    """The browser tab's title: the course's title and whose workspace it is."""
    return f"{course_title} ({owner})" if owner else course_title


def banner_text(course_id: str, course_title: str, owner: str, visitor: str | None) -> str:
    course = f"{course_title} ({course_id})" if course_title else course_id
    if visitor and owner and visitor != owner:
        return f"You are looking at {owner}'s workspace \u00b7 {course}"
    return f"{owner}'s workspace \u00b7 {course}" if owner else course


def banner_css(text: str) -> str:
    """The stylesheet that shows ``text`` at the start of JupyterLab's top bar."""
    return (
        "/* hub_ext_course_lab: whose workspace, which course */\n"
        "#jp-top-bar::before {\n"
        f"  content: {_css_string(text)};\n"
        "  align-self: center;\n"
        "  margin-right: auto;\n"
        "  padding: 2px 10px;\n"
        "  border-radius: 4px;\n"
        "  font-weight: 600;\n"
        "  white-space: nowrap;\n"
        "  color: var(--jp-ui-inverse-font-color0, #fff);\n"
        "  background: var(--jp-brand-color0, #0d47a1);\n"
        "}\n"
    )


class BannerCSSHandler(JupyterHandler):
    """``custom/custom.css``: the banner, worded for whoever asks."""

    def initialize(self, course_id: str, course_title: str, owner: str):
        self.course_id, self.course_title, self.owner = course_id, course_title, owner

    @web.authenticated
    def get(self, _name: str = "custom.css"):
        user = self.current_user
        visitor = getattr(user, "username", None) or getattr(user, "name", None)
        self.set_header("Content-Type", "text/css; charset=utf-8")
        self.set_header("Cache-Control", "no-store")  # worded per visitor
        self.finish(banner_css(banner_text(self.course_id, self.course_title, self.owner, visitor)))


def _jupyter_server_extension_points():
    return [{"module": "hub_ext_course_lab"}]


def _load_jupyter_server_extension(serverapp):
    course_id = os.environ.get("COURSE_ID", "")
    if not course_id:
        serverapp.log.info("hub_ext_course_lab: not a course server (no COURSE_ID); nothing to do")
        return
    course_title = os.environ.get("COURSE_TITLE", "") or course_id
    owner = os.environ.get("JUPYTERHUB_USER", "")
    settings = serverapp.web_app.settings
    base_url = settings.get("base_url", "/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (
                base_url.rstrip("/") + "/custom/(custom\\.css)",
                BannerCSSHandler,
                {"course_id": course_id, "course_title": course_title, "owner": owner},
            )
        ],
    )


async def _start_jupyter_server_extension(serverapp):
    """Once every extension is loaded (JupyterHub's sets its own ``page_config_hook`` as it
    loads, after this one): add the course's title to whatever hook is there."""
    course_id = os.environ.get("COURSE_ID", "")
    if not course_id:
        return
    title = lab_title(
        os.environ.get("COURSE_TITLE", "") or course_id, os.environ.get("JUPYTERHUB_USER", "")
    )
    settings = serverapp.web_app.settings
    previous = settings.get("page_config_hook")

    def page_config_hook(handler, page_config):
        if previous is not None:
            page_config = previous(handler, page_config)
        page_config["appName"] = title
        return page_config

    settings["page_config_hook"] = page_config_hook
    serverapp.log.info("hub_ext_course_lab: JupyterLab titled %r", title)
