"""JupyterHub configuration for a course hub: start here.

Run:  jupyterhub -f hub_config/jupyterhub_config.py

Everything about a course lives in the catalog (``courses.yaml`` beside this file). This
file chooses the backend and says how the hub itself runs; edit the marked settings.
"""

import os
from pathlib import Path

from hub_ext.hubconfig import configure_course_hub, configure_docker_tier

c = get_config()  # noqa: F821 (provided by JupyterHub)
here = Path(__file__).resolve().parent

# --- the one setting that picks the backend --------------------------------------------
# "local":  local processes, one OS account, no isolation (demos, development)
# "docker": one container per learner per course (a department's server)
BACKEND = os.environ.get("HUB_EXT_BACKEND", "local")

# the catalog: kernels and environments for "local", images for "docker"
default_catalog = "courses-docker.yaml" if BACKEND == "docker" else "courses.yaml"
CATALOG = os.environ.get("HUB_EXT_CATALOG", str(here / default_catalog))
# where the services keep their data (the event store, published notebooks)
DATA_DIR = os.environ.get("HUB_EXT_DATA_DIR", ".")
# Hub admins (they may also call every course's analytics). Preferred: your provider's
# admin group, as its name appears in the provider's `groups` claim, e.g. {"hub-admins"}:
# members become admins at login and stop being admins when removed from it. Only if your
# provider has no such group, name accounts: hub usernames as your provider gives them (see
# username_policy), e.g. {"jdoe"}. Nobody is an admin until you fill in one of the two.
ADMIN_GROUPS: set[str] = set(os.environ.get("HUB_EXT_ADMIN_GROUPS", "").split())
ADMIN_USERS: set[str] = set(os.environ.get("HUB_EXT_ADMIN_USERS", "").split())
catalog = configure_course_hub(
    c,
    CATALOG,
    backend=BACKEND,
    data_dir=DATA_DIR,
    # the learning-event store: SQLite in DATA_DIR by default; PostgreSQL in production
    events_db=os.environ.get("HUB_EXT_EVENTS_DB"),  # e.g. postgresql://events@db/events
    admin_groups=ADMIN_GROUPS,  # hub admins by the provider's group
    admin_users=ADMIN_USERS,  # hub admins by name
    public_url=os.environ.get("HUB_EXT_PUBLIC_URL", "http://127.0.0.1:8000"),
)
if BACKEND == "docker":
    # the learners' network and the workspace download (needs a running Docker engine)
    configure_docker_tier(c, catalog, CATALOG)

# --- how people log in -------------------------------------------------------------------
# Your institution's OpenID Connect provider: its issuer URL is enough, the endpoints come
# from its discovery document (read when the hub starts; the hub will not start, saying
# why, if it cannot be read). Register the hub at the provider as a confidential client
# (client_secret_post, the authorization_code and refresh_token grants) with the callback
# URL below. The client secret comes from the environment, never from this file; the hub
# also needs JUPYTERHUB_CRYPT_KEY (openssl rand -hex 32) for the encrypted auth state.
# c.JupyterHub.authenticator_class = "course-oauth"
# c.CourseOAuthenticator.oidc_issuer = "https://idp.example.edu/realms/uni"
# c.CourseOAuthenticator.client_id = "jupyterhub"
# c.CourseOAuthenticator.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
# c.CourseOAuthenticator.oauth_callback_url = "https://hub.example.edu/hub/oauth_callback"
# c.CourseOAuthenticator.enable_auth_state = True
# a private CA for the provider's certificate:
# c.CourseOAuthenticator.http_request_kwargs = {"ca_certs": "/etc/ssl/certs/uni-ca.pem"}
# Usernames: the provider's preferred_username by default; an email-based policy takes
# only verified addresses, and only in your own domain(s):
# c.CourseOAuthenticator.username_policy = "email_local_part"
# c.CourseOAuthenticator.email_domains = ["example.edu"]

# --- where the hub keeps its state ------------------------------------------------------
# SQLite is fine for one server; use PostgreSQL when you run several hub replicas.
# c.JupyterHub.db_url = "postgresql://jupyterhub@db/jupyterhub"
# c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
# c.CourseLocalSpawner.workspace_template = "/srv/workspaces/{course}/{username}"

# Keep learners' servers running across a hub restart (the spawner state finds them again).
c.JupyterHub.cleanup_servers = False
