"""The zero-to-jupyterhub deployment (``hub_config/z2jh/``), checked offline: no cluster,
no ``helm`` here.

- ``values.yaml``, merged over the chart's defaults as helm merges them, against the chart's
  own ``values.schema.json`` (chart 4.4.0, copied in ``hub_config/z2jh/chart-4.4.0/``);
- the catalog ConfigMap holds exactly ``courses.yaml``, and the catalog loads;
- the ConfigMap and ``objects.yaml`` against the Kubernetes API's schemas;
- the services' ports the hub config opens are the ones ``values.yaml`` exposes.

Not verified here: the chart's templates rendered with these values (``helm template``),
the hub image starting with them, and a login. See the README's "Kubernetes" section.
"""

from __future__ import annotations

import json

import jsonschema
import yaml

from hub_ext.services.base import PORTS
from tests.hubtest import REPO
from tests.test_kube import validate

Z2JH = REPO / "hub_config" / "z2jh"


def merged(base, over):
    """helm's merge of values: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: merged(base.get(k), v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def test_values_are_valid_for_the_chart():
    schema = json.loads((Z2JH / "chart-4.4.0" / "values.schema.json").read_text())
    defaults = yaml.safe_load((Z2JH / "chart-4.4.0" / "values.yaml").read_text())
    ours = yaml.safe_load((Z2JH / "values.yaml").read_text())
    values = merged(defaults, ours)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )
    assert values["hub"]["db"]["type"] == "postgres"
    assert values["singleuser"]["storage"]["type"] == "none"
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is False
    config = values["hub"]["extraConfig"]["10-hub-ext"]
    assert 'backend="kube"' in config and "kube_hub_config(c)" in config
    compile(config, "10-hub-ext", "exec")
    # the ports kube_hub_config gives the services are the ones the hub's Service opens
    opened = {p["port"] for p in values["hub"]["service"]["extraPorts"]}
    wanted = {PORTS[name] for name in ("analytics", "events", "grading")}
    assert opened == wanted == set(values["hub"]["networkPolicy"]["allowedIngressPorts"])
    # a mistake is caught: the schema is not a formality
    broken = merged(values, {"hub": {"db": {"type": "postgresql"}}})
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_the_catalog_configmap_is_the_catalog():
    configmap = yaml.safe_load((Z2JH / "catalog-configmap.yaml").read_text())
    validate(configmap)
    assert configmap["metadata"]["name"] == "hub-ext-catalog"
    assert configmap["data"]["courses.yaml"] == (Z2JH / "courses.yaml").read_text()


def test_the_objects_beside_the_chart_are_valid():
    objects = [d for d in yaml.safe_load_all((Z2JH / "objects.yaml").read_text()) if d]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert names == {
        ("PersistentVolumeClaim", "hub-ext-materials"),
        ("PersistentVolumeClaim", "hub-ext-data"),
        ("Role", "hub-ext-sandbox-logs"),
        ("RoleBinding", "hub-ext-sandbox-logs"),
    }
    for manifest in objects:
        validate(manifest)
    # the sandbox pods' output, and nothing more than the chart's hub Role already gives
    (role,) = [o for o in objects if o["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]


def test_the_extra_config_configures_the_course_hub_on_kubernetes(tmp_path, monkeypatch):
    """The hub's extraConfig of values.yaml, run as the hub runs a config file (but only
    configuring: hub_ext.hubconfig.read_hub_config), on the example catalog."""
    from hub_ext.hubconfig import read_hub_config

    values = yaml.safe_load((Z2JH / "values.yaml").read_text())
    code = values["hub"]["extraConfig"]["10-hub-ext"]
    (tmp_path / "courses.yaml").write_text((Z2JH / "courses.yaml").read_text())
    for course in ("ds101", "stat200", "hist100"):
        (tmp_path / "materials" / course).mkdir(parents=True)
    code = code.replace("/srv/hub-ext/courses.yaml", str(tmp_path / "courses.yaml"))
    code = code.replace("/srv/hub-ext/data", str(tmp_path / "data"))
    (tmp_path / "jupyterhub_config.py").write_text("c = get_config()\n" + code)
    monkeypatch.setenv("HUB_EXT_EVENTS_DB", "postgresql+psycopg://hub@postgres/hub_ext_events")
    c = read_hub_config(tmp_path / "jupyterhub_config.py")
    assert c.JupyterHub.spawner_class == "hub_ext.spawners.kube.CourseKubeSpawner"
    urls = {s["name"]: s.get("url") for s in c.JupyterHub.services}
    assert urls["events"] == "http://hub:10102" and urls["grading"] == "http://hub:10104"
    assert urls["analytics"] == "http://hub:10101"
    assert c.CourseSpawnerMixin.grading_url == "http://proxy-public/services/grading/"
    # teachers' notebooks and learners' hand-ins run in pods beside the services (KubeSandbox),
    # on the hub's node (the Downward API's spec.nodeName), owned by the hub's pod
    commands = {s["name"]: s.get("command", []) for s in c.JupyterHub.services}
    assert "--GatewaySupervisor.sandbox=kube" in commands["analytics"]
    assert "--Autograder.sandbox=kube" in commands["grading"]
    env = values["hub"]["extraEnv"]
    assert env["NODE_NAME"] == {"valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert env["POD_NAME"] == {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    from hub_ext.sandbox.kube import KubeSandbox

    assert KubeSandbox.data_root.default_value == values["hub"]["extraVolumeMounts"][2]["mountPath"]
    assert KubeSandbox.data_claim.default_value == "hub-ext-data"
