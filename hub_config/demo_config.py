"""The demo: the example catalog on local processes, SQLite, and a development login.

Started by ``make demo`` (which also prints the accounts). Everything it writes goes to
``.demo/`` at the top of the repository.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821
here = Path(__file__).resolve().parent
state = Path(os.environ.get("HUB_EXT_DEMO_DIR", here.parent / ".demo"))
state.mkdir(exist_ok=True)

load_subconfig(str(here / "jupyterhub_config.py"))  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_ip = "127.0.0.1"
c.ConfigurableHTTPProxy.command = [str(here.parent / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")
c.JupyterHub.pid_file = str(state / "hub.pid")
c.CourseLocalSpawner.workspace_template = str(state / "workspaces" / "{course}" / "{username}")
c.JupyterHub.cleanup_servers = True

# Development login: the catalog's learners and teachers, one shared password.
c.JupyterHub.authenticator_class = "course-dev"
c.CourseDevAuthenticator.password = os.environ.get("HUB_EXT_DEMO_PASSWORD", "demo")
c.Authenticator.admin_users = {"admin"}
