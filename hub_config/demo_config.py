"""The demo: the example catalog on local processes, SQLite, and a development login.

Started by ``make demo`` (``hub_config/demo.sh``), which first starts the development
OpenID provider (``dev_idp/``) and prints its accounts. Everything the demo writes goes to
``.demo/`` at the top of the repository.

Logins: through the development provider when it runs (``.demo/idp/idp.json``), exactly
as through an institution's; with ``HUB_EXT_DEMO_LOGIN=dev``, a plain form instead
(the catalog's people, password ``demo``).
"""

import json
import os
from pathlib import Path

from hub_ext.authenticator import configure_oidc

c = get_config()  # noqa: F821
here = Path(__file__).resolve().parent
state = Path(os.environ.get("HUB_EXT_DEMO_DIR", here.parent / ".demo"))
state.mkdir(exist_ok=True)

idp_file = state / "idp" / "idp.json"
oidc = os.environ.get("HUB_EXT_DEMO_LOGIN", "oidc") == "oidc" and idp_file.exists()
os.environ.setdefault("HUB_EXT_DATA_DIR", str(state))
# admins: the provider's "hub-admins" group (the demo account "admin" is in it); the
# development login has no groups, so there its "admin" account is named
os.environ.setdefault("HUB_EXT_ADMIN_GROUPS", "hub-admins")
if not oidc:
    os.environ.setdefault("HUB_EXT_ADMIN_USERS", "admin")
load_subconfig(str(here / "jupyterhub_config.py"))  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_ip = "127.0.0.1"
c.ConfigurableHTTPProxy.command = [
    str(here.parent / "node_modules" / ".bin" / "configurable-http-proxy")
]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")
c.JupyterHub.pid_file = str(state / "hub.pid")
c.CourseLocalSpawner.workspace_template = str(state / "workspaces" / "{course}" / "{username}")
c.JupyterHub.cleanup_servers = True

if oidc:
    idp = json.loads(idp_file.read_text())
    configure_oidc(c, idp["issuer"], idp["client_id"], idp["client_secret"])
else:
    c.JupyterHub.authenticator_class = "course-dev"
    c.CourseDevAuthenticator.password = os.environ.get("HUB_EXT_DEMO_PASSWORD", "demo")
