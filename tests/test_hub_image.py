"""The zero-to-jupyterhub hub image (course_images/hub), built here and started for real.

Built by ``course_images/build.sh hub`` on the local ``hub-ext/base`` image (the Dockerfile's
default base, the chart's own ``quay.io/jupyterhub/k8s-hub``, cannot be pulled here), then
started as the chart starts it, as far as one machine without a cluster allows:

- the settings: ``hub.config`` of ``hub_config/z2jh/values.yaml`` as traitlets config, then
  its ``hub.extraConfig`` snippets in their order (what the chart's own
  ``jupyterhub_config.py`` does with them), with what is marked EDIT pointed at this
  machine: the OpenID provider (dev_idp on 127.0.0.1), the hub's database (PostgreSQL from
  Debian's package, started here; psycopg 3: the values' ``psycopg2`` URL is for the chart's
  image, which has that driver), the event store (SQLite in the data volume);
- the catalog: the ConfigMap ``hub-ext-catalog``'s own ``courses.yaml``, mounted read-only
  where the chart mounts it; the materials read-only; a data volume;
- the proxy outside the hub's container, as the chart's proxy pod is: configurable-http-proxy
  on the host. The container shares the host's network; ``hub`` (the chart's Service name,
  where the services are reached) resolves to 127.0.0.1.

Not run here (no cluster): the chart's own ``jupyterhub_config.py`` and ``z2jh.py``, a
course pod (kubespawner's start needs the Kubernetes API).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml
from sqlalchemy import create_engine, text

pytest.register_assert_rewrite("tests.docker_fixtures")

from dev_idp.launch import start_idp, stop_idp  # noqa: E402
from tests.analytics_fixtures import wait_until  # noqa: E402
from tests.docker_fixtures import BASE_IMAGE, IMAGE_TAG, SESSION, require_images  # noqa: E402
from tests.hubtest import PROXY, free_port, node_available  # noqa: E402
from tests.postgres_fixtures import new_database, postgres_url  # noqa: E402, F401

pytestmark = pytest.mark.docker
on_the_hubs_loop = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[1]
Z2JH = REPO / "hub_config" / "z2jh"
HUB_IMAGE = f"hub-ext/hub:{IMAGE_TAG}"
#: the chart's paths in the hub's pod (values.yaml's extraVolumeMounts)
CATALOG, MATERIALS, DATA = (
    "/srv/hub-ext/courses.yaml",
    "/srv/hub-ext/materials",
    "/srv/hub-ext/data",
)
CONFIG = "/srv/test-config/jupyterhub_config.py"

# What the chart's jupyterhub_config.py does with the values (hub.config, then the
# extraConfig snippets by key), then this machine's addresses for what values.yaml marks EDIT.
CHART_LIKE_CONFIG = """\
import yaml
c = get_config()  # noqa
values = yaml.safe_load(open("/srv/test-config/values.yaml"))
for section, traits in values["hub"]["config"].items():
    c[section].update(traits)
c.CourseOAuthenticator.oidc_issuer = {issuer!r}
c.CourseOAuthenticator.client_id = {client_id!r}
c.CourseOAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.JupyterHub.db_url = {db_url!r}
for _key, _snippet in sorted(values["hub"]["extraConfig"].items()):
    exec(_snippet)
# no cluster here: the services' sandbox pods (KubeSandbox) cannot be made, so the services
# use their local default, as the hub image would outside a cluster
for _service in c.JupyterHub.services:
    _service["command"] = [a for a in _service.get("command", []) if not a.endswith(".sandbox=kube")]
# the chart's proxy pod: here configurable-http-proxy on the host
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
# the test's own token: read the hub's services and roles
c.JupyterHub.services.append({{"name": "test-reader", "api_token": {token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "test-reader", "scopes": ["list:services", "read:services", "list:groups", "read:groups"],
     "services": ["test-reader"]}}
)
"""


def build_hub_image(tmp: Path) -> None:
    """``course_images/build.sh hub`` (reused when its recipe has not changed)."""
    env = {**os.environ, "HUB_EXT_DIGESTS": str(tmp / "digests.txt")}
    done = subprocess.run(
        ["sh", str(REPO / "course_images" / "build.sh"), "hub"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert done.returncode == 0, f"build.sh hub failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def hub_image(docker_client, tmp_path_factory):
    require_images(docker_client, BASE_IMAGE)
    build_hub_image(tmp_path_factory.mktemp("hub-image"))
    return HUB_IMAGE


def deployment_files(root: Path) -> dict[str, Path]:
    """The ConfigMap's catalog, the values, the materials folders it names, a data folder."""
    configmap = yaml.safe_load((Z2JH / "catalog-configmap.yaml").read_text())
    catalog = root / "courses.yaml"
    catalog.write_text(configmap["data"]["courses.yaml"])
    materials = root / "materials"
    for course in yaml.safe_load(catalog.read_text())["courses"]:
        if course.get("materials"):
            (root / course["materials"]).mkdir(parents=True, exist_ok=True)
    materials.mkdir(exist_ok=True)
    config = root / "config"
    config.mkdir()
    (config / "values.yaml").write_text((Z2JH / "values.yaml").read_text())
    data = root / "data"
    data.mkdir()
    os.chown(data, 1000, 100)  # the hub runs as uid 1000, as in the chart
    return {"catalog": catalog, "materials": materials, "config": config, "data": data}


class ChartLikeHub:
    """The hub image's container and its proxy on the host."""

    def __init__(self, client, image: str, root: Path, db_url: str):
        self.client, self.image, self.root, self.db_url = client, image, root, db_url
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.files = deployment_files(root)
        self.container = None
        self.proxy = None
        self.idp = None

    def start(self) -> None:
        self.idp = start_idp(self.root / "idp", [f"{self.url}/hub/oauth_callback"])
        proxy_token = secrets.token_hex(32)
        self.proxy_log = open(self.root / "proxy.log", "wb")
        self.proxy = subprocess.Popen(
            [
                str(PROXY),
                *("--ip", "127.0.0.1", "--port", str(self.port)),
                *("--api-ip", "127.0.0.1", "--api-port", str(self.proxy_api_port)),
                "--default-target",
                f"http://127.0.0.1:{self.hub_port}",
            ],
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
            stdout=subprocess.DEVNULL,
            stderr=self.proxy_log,
        )
        (self.files["config"] / "jupyterhub_config.py").write_text(
            CHART_LIKE_CONFIG.format(
                issuer=self.idp.issuer,
                client_id=self.idp.client_id,
                port=self.port,
                hub_port=self.hub_port,
                proxy_api_port=self.proxy_api_port,
                db_url=self.db_url,
                token=self.token,
            )
        )
        env = {
            "OAUTH_CLIENT_SECRET": self.idp.client_secret,
            "HUB_EXT_EVENTS_DB": f"sqlite:///{DATA}/events.sqlite",
            "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),  # the chart's generated key
            "CONFIGPROXY_AUTH_TOKEN": proxy_token,
            "PGPASSWORD": secrets.token_urlsafe(16),  # as the chart passes it (trusted here)
        }
        binds = {
            str(self.files["config"]): {"bind": "/srv/test-config", "mode": "ro"},
            str(self.files["catalog"]): {"bind": CATALOG, "mode": "ro"},
            str(self.files["materials"]): {"bind": MATERIALS, "mode": "ro"},
            str(self.files["data"]): {"bind": DATA, "mode": "rw"},
        }
        host = self.client.create_host_config(
            network_mode="host", binds=binds, extra_hosts={"hub": "127.0.0.1"}
        )
        self.container = self.client.create_container(
            self.image,
            ["jupyterhub", "--config", CONFIG],
            environment=env,
            host_config=host,
            name=f"{SESSION}-z2jh-hub",
            labels={"org.hub-ext.test": SESSION},
        )["Id"]
        self.client.start(self.container)

    def logs(self) -> str:
        if self.container is None:
            return ""
        return self.client.logs(self.container).decode(errors="replace")

    def stop(self) -> None:
        if self.container is not None:
            self.client.remove_container(self.container, force=True)
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(10)
            self.proxy_log.close()
        if self.idp is not None:
            stop_idp(self.idp.pid)

    async def api(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.get(
                f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"}
            )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chart_hub(hub_image, docker_client, tmp_path_factory, postgres_url):  # noqa: F811
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    hub = ChartLikeHub(
        docker_client,
        hub_image,
        tmp_path_factory.mktemp("z2jh-hub"),
        new_database(postgres_url, "z2jh_hub"),
    )
    try:
        await asyncio.to_thread(hub.start)

        async def up():
            state = docker_client.inspect_container(hub.container)["State"]
            assert state["Running"], f"the hub's container exited:\n{hub.logs()[-4000:]}"
            try:
                return (await hub.api("/")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, 120, 0.5, f"the hub in {hub_image} answering")
        yield hub
    except BaseException:
        print(hub.logs()[-6000:])
        raise
    finally:
        await asyncio.to_thread(hub.stop)


@on_the_hubs_loop
async def test_the_image_runs_the_course_hub_of_the_example_deployment(chart_hub):
    logs = chart_hub.logs()
    assert "Using Authenticator: hub_ext.authenticator.CourseOAuthenticator" in logs, logs
    assert "Using Spawner: hub_ext.spawners.kube.CourseKubeSpawner" in logs, logs
    assert (await chart_hub.api("/")).json()["version"] == "6.1.1"
    # the services the example turns on, reached at the chart's Service name
    services = (await chart_hub.api("/services")).json()
    for name in ("events", "analytics", "grading", "courses"):
        assert services[name]["url"].startswith("http://hub:"), services[name]


@on_the_hubs_loop
async def test_the_catalog_comes_from_the_mounted_configmap(chart_hub):
    """Every course of the ConfigMap's catalog has its groups (made from its roles)."""
    courses = [c["id"] for c in yaml.safe_load(chart_hub.files["catalog"].read_text())["courses"]]
    groups = {g["name"] for g in (await chart_hub.api("/groups")).json()}
    assert groups >= {f"course:{c}:{role}" for c in courses for role in ("learner", "teacher")}


@on_the_hubs_loop
async def test_the_hubs_database_is_postgresql(chart_hub):
    engine = create_engine(chart_hub.db_url)
    try:
        with engine.connect() as conn:
            roles = {r[0] for r in conn.execute(text("SELECT name FROM roles"))}
    finally:
        engine.dispose()
    assert {"teacher-ds101", "learner-ds101", "service-courses"} <= roles


@on_the_hubs_loop
async def test_login_goes_to_the_configured_provider(chart_hub):
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{chart_hub.url}/hub/oauth_login")
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(chart_hub.idp.issuer), r.headers["location"]


def test_the_single_user_modules_are_where_the_image_says(hub_image):
    """CourseKubeSpawner's init container copies hub_ext's single-user modules out of this
    image (``singleuser_source``): on hub-ext/base they are in /opt/venv, not where the
    chart's image has them (the spawner's default); the README says to set it."""
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", hub_image, "python", "-c",
            textwrap.dedent("""\
                import hub_ext.spawners.singleuser as m, os
                print(m.__path__[0]); print(sorted(os.listdir(m.__path__[0])))
            """),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path, listing = done.stdout.splitlines()[:2]
    assert path == "/opt/venv/lib/python3.11/site-packages/hub_ext/spawners/singleuser"
    assert "hub_ext_assignments.py" in listing, listing


def test_a_catalog_naming_missing_materials_stops_the_hub_with_the_line(hub_image, tmp_path):
    """The ConfigMap's catalog names a materials folder the claim does not have: the hub in
    the image stops at start with the file, line, course and field, before anything else."""
    files = deployment_files(tmp_path)
    (files["materials"] / "hist100").rmdir()
    (files["config"] / "jupyterhub_config.py").write_text(
        CHART_LIKE_CONFIG.format(
            issuer="http://127.0.0.1:9/",
            client_id="course-hub",
            port=free_port(),
            hub_port=free_port(),
            proxy_api_port=free_port(),
            db_url=f"sqlite:///{DATA}/jupyterhub.sqlite",
            token=secrets.token_hex(32),
        )
    )
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none",
            "-e", f"HUB_EXT_EVENTS_DB=sqlite:///{DATA}/events.sqlite",
            "-v", f"{files['config']}:/srv/test-config:ro",
            "-v", f"{files['catalog']}:{CATALOG}:ro",
            "-v", f"{files['materials']}:{MATERIALS}:ro",
            "-v", f"{files['data']}:{DATA}",
            hub_image, "jupyterhub", "--config", CONFIG,
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    line = next(
        n for n, text in enumerate(files["catalog"].read_text().splitlines(), 1)
        if "materials/hist100" in text
    )  # fmt: skip
    assert (
        f"{CATALOG}: line {line}: course 'hist100': materials: directory "
        f"{MATERIALS}/hist100 does not exist"
    ) in done.stdout + done.stderr, done.stderr[-2000:]
    assert not (files["data"] / "jupyterhub.sqlite").exists()
