"""Course servers as Kubernetes pods (kubespawner): an institution's cluster.

- :class:`CourseKubeSpawner`: the course logic on ``KubeSpawner``. The course sets
  kubespawner's own traits (``image``, ``cpu_limit``, ``mem_guarantee``, ``storage_class``,
  ``storage_capacity``, ``volumes``, ``volume_mounts``, ``init_containers``,
  ``node_selector``, ``tolerations``, ``extra_resource_limits``, ``extra_labels``) and
  kubespawner makes the pod and the claim, so every other kubespawner setting a deployer
  configures (``modify_pod_hook``, ``extra_pod_config``, ``service_account``, internal
  SSL, ...) still applies.
- ``python -m hub_ext.spawners.kube manifests CATALOG``: the per-course objects an
  operator applies (each course's NetworkPolicy, the pre-pull DaemonSets of the courses
  about to open, the sandboxes' NetworkPolicy), as YAML for ``kubectl apply -f -``.

What to create is computed by the pure builders of :mod:`hub_ext.spawners.kube_objects`.
No cluster runs where this is tested: the manifests are validated against the Kubernetes
API's OpenAPI schemas instead (``tests/test_kube.py``; the README says how to check them
against a real cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jupyterhub.spawner import SpawnException
from kubespawner import KubeSpawner
from traitlets import TraitError, Unicode, default, observe, validate

from ..courses import Catalog, CatalogError, Course
from .base import CourseSpawnerMixin
from .kube_objects import (
    course_manifests,
    course_pod_settings,
    course_volumes,
    sandbox_network_policy,
)

__all__ = ["CourseKubeSpawner", "kube_hub_config", "main"]

#: the kubespawner traits a course may set (course_pod_settings), and how they combine
#: with the deployer's value: replaced, or merged (dictionaries), or appended (lists)
_REPLACED = (
    "image",
    "cpu_limit",
    "mem_limit",
    "cpu_guarantee",
    "mem_guarantee",
    "storage_class",
    "storage_capacity",
)
_MERGED = ("node_selector", "extra_resource_limits", "extra_labels")
_BY_NAME = ("volumes", "volume_mounts", "init_containers", "tolerations")

#: a workspace claim per learner *and* course: the template must name both
_PER_SERVER_FIELDS = ("{user_server}", "{safe_user_server}", "{escaped_user_server}")
_USER_FIELDS = ("{username}", "{safe_username}", "{escaped_username}", "{userid}")
_SERVER_FIELDS = ("{servername}", "{safe_servername}", "{escaped_servername}")


def _by_name(configured, ours: dict):
    """A deployer's ``volumes``-like value (list or dict) with ours beside it."""
    if isinstance(configured, dict):
        return {**configured, **ours}
    return [*configured, *ours.values()]


class CourseKubeSpawner(CourseSpawnerMixin, KubeSpawner):
    """Course servers as Kubernetes pods (see the module docstring).

    - image: the course's ``image`` from the catalog, and only that (no profile list, no
      options form; a ``profile`` or ``image`` asked for is dropped, and said so);
    - CPU and memory: the course's ``cpu_limit``/``mem_limit`` and its
      ``kubernetes.cpu_guarantee``/``mem_guarantee`` (requests); its teachers get
      ``kubernetes.teacher`` instead where the catalog gives it;
    - workspace: a claim per learner per course (:attr:`pvc_name_template`; kubespawner
      creates it at the first start, ``storage_pvc_ensure``), of the course's
      ``kubernetes.storage`` class and size (else :attr:`storage_class`,
      :attr:`storage_capacity`), mounted at :attr:`workspace_path`. The hub never deletes
      it: not at stop, not when the server is deleted (``delete_pvc = False``);
    - materials: the course's folder of the claim :attr:`materials_claim`, read-only;
    - where: the course's ``kubernetes.node_selector``, ``tolerations`` and
      ``extra_resource_limits`` (a GPU course), beside the deployer's;
    - network: the pods carry the course's labels; the course's NetworkPolicy
      (:func:`~hub_ext.spawners.kube_objects.course_network_policy`, applied by the
      operator) lets them reach the hub and what the course allows, never each other;
    - no Linux capability, no privilege gain, uid 1000 (docker-stacks' jovyan), the
      runtime's seccomp profile.
    """

    workspace_path = Unicode(
        "/home/jovyan/work",
        help="""Where the learner's workspace claim is mounted in the pod; the server's root.

        Default: ``/home/jovyan/work`` (docker-stacks' convention; ``fs_gid`` 100 makes a
        new claim writable by the learner).
        Example: ``c.CourseKubeSpawner.workspace_path = "/home/jovyan"``
        """,
    ).tag(config=True)

    materials_path = Unicode(
        help="""Where the course's materials are mounted, read-only, in the pod.

        Default: ``materials`` inside :attr:`workspace_path`.
        Example: ``c.CourseKubeSpawner.materials_path = "/srv/materials"``
        """,
    ).tag(config=True)

    @default("materials_path")
    def _default_materials_path(self):
        return self.workspace_path.rstrip("/") + "/materials"

    materials_claim = Unicode(
        "hub-ext-materials",
        help="""The PersistentVolumeClaim that holds every course's materials (best
        ``ReadOnlyMany``), one folder per course; "" mounts no materials.

        The hub mounts the same claim at :attr:`materials_root`, so the catalog's
        ``materials:`` folders are checked where the pods will see them; a course's pods
        mount its folder (``subPath``) read-only. Default: ``hub-ext-materials``.
        Example: ``c.CourseKubeSpawner.materials_claim = "course-materials"``
        """,
    ).tag(config=True)

    materials_root = Unicode(
        "/srv/hub-ext/materials",
        help="""Where the hub sees :attr:`materials_claim`: every course's ``materials:``
        must be a folder under it. Default: ``/srv/hub-ext/materials``.
        Example: ``c.CourseKubeSpawner.materials_root = "/mnt/materials"``
        """,
    ).tag(config=True)

    singleuser_image = Unicode(
        "hub-ext/hub:2026.11",
        help="""An image with hub_ext installed (the hub's, ``course_images/hub``): an init
        container of it copies the single-user modules (the course-kernel guard,
        ``hub_ext_assignments``) into the pod, so course images need not install hub_ext.
        Default: ``hub-ext/hub:2026.11``.
        Example: ``c.CourseKubeSpawner.singleuser_image = "registry.example.edu/hub-ext/hub:2026.11"``
        """,
    ).tag(config=True)

    singleuser_source = Unicode(
        "/usr/local/lib/python3.11/site-packages/hub_ext/spawners/singleuser",
        help="""Where :attr:`singleuser_image` has hub_ext's ``spawners/singleuser`` folder.
        Default: where ``pip install`` puts it in the zero-to-jupyterhub hub image.
        Example: ``c.CourseKubeSpawner.singleuser_source = "/opt/venv/lib/python3.11/site-packages/hub_ext/spawners/singleuser"``
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ kubespawner's defaults

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        return "hub-ext-{user_server}"

    @validate("pvc_name_template")
    def _validate_pvc_name_template(self, proposal):
        template = proposal.value
        per_server = any(f in template for f in _PER_SERVER_FIELDS)
        per_learner = any(f in template for f in _USER_FIELDS)
        per_course = any(f in template for f in _SERVER_FIELDS)
        if not (per_server or (per_learner and per_course)):
            raise TraitError(
                f"CourseKubeSpawner.pvc_name_template = {template!r} does not name both the "
                "learner and the course: learners or courses would share a workspace. Use "
                "{user_server} (or {username} and {servername}), e.g. 'hub-ext-{user_server}'."
            )
        return template

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @default("delete_pvc")
    def _default_delete_pvc(self):
        return False  # a learner's work outlives their server, even a deleted one

    @observe("delete_pvc")
    def _warn_delete_pvc(self, change):
        if change.new:
            self.log.warning(
                "CourseKubeSpawner.delete_pvc = True: deleting a course server deletes the "
                "learner's workspace claim (their work) with it"
            )

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]  # with the course's arguments (get_args)

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("container_security_context")
    def _default_container_security_context(self):
        return {
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    @default("image_pull_policy")
    def _default_image_pull_policy(self):
        return "IfNotPresent"

    @default("options_form")
    def _default_options_form(self):
        return ""

    @validate("profile_list")
    def _validate_profile_list(self, proposal):
        if proposal.value:
            raise TraitError(
                "CourseKubeSpawner.profile_list must stay empty: the course catalog decides "
                "each course's image and resources (a profile would let users choose others)."
            )
        return proposal.value

    @default("image")
    def _default_image(self):
        course = self.course
        return course.image if course is not None and course.image else ""

    # ------------------------------------------------------------------ the course

    @property
    def singleuser_path(self) -> str:
        return "/opt/hub-ext/singleuser"  # the init container's copy, read-only

    def apply_course(self, course: Course) -> None:
        configured = {name: self._configured(name) for name in (*_REPLACED, *_MERGED, *_BY_NAME)}
        super().apply_course(course)
        if not course.image:
            raise SpawnException(
                f"{course.id} ({course.title}) has no image in the course catalog; "
                "ask the hub's administrators to add one.",
                reason="no_image",
                status_code=500,
            )
        role = self.course_role(course) or "learner"
        settings = course_pod_settings(course, role)
        for name in _REPLACED:
            setattr(self, name, settings.get(name, configured[name]))
        for name in _MERGED:
            setattr(self, name, {**configured[name], **settings.get(name, {})})
        try:
            volumes = course_volumes(
                course,
                workspace_path=self.workspace_path,
                materials_path=self.materials_path,
                materials_claim=self.materials_claim or None,
                materials_root=Path(self.materials_root),
                singleuser_path=self.singleuser_path,
                singleuser_image=self.singleuser_image,
                singleuser_source=self.singleuser_source,
            )
        except ValueError as e:
            raise SpawnException(
                f"{course.id} ({course.title}) cannot start: {e}. Ask the hub's administrators.",
                reason="materials_outside_claim",
                status_code=500,
            ) from None
        volumes["tolerations"] = {
            f"course-{i}": t for i, t in enumerate(settings.get("tolerations", []))
        }
        for name in _BY_NAME:
            setattr(self, name, _by_name(configured[name], volumes[name]))
        self.working_dir = self.workspace_path
        self.notebook_dir = self.workspace_path

    async def prepare_workspace(self, course: Course) -> str:
        # kubespawner creates the claim at its start (storage_pvc_ensure) if it is missing
        where = f"claim {self.pvc_name} ({self.storage_capacity}"
        if self.storage_class is not None:
            where += f", storage class {self.storage_class or 'none'}"
        return where + f"), at {self.workspace_path}"

    async def load_user_options(self):
        """The catalog decides: a profile or an image asked for (kubespawner's
        ``user_options``) is dropped, and said so; no profile is loaded."""
        asked = {k: v for k, v in (self.user_options or {}).items() if k in ("profile", "image")}
        if asked:
            self.log.warning("Ignoring %s asked for %s", ", ".join(sorted(asked)), self._log_name)
            self._report(42, f"{self.name} runs what its course catalog names, not {asked}")

    async def progress(self):
        """The course's steps (:class:`~hub_ext.spawners.base.CourseSpawnerMixin`) and the
        pod's Kubernetes events (kubespawner's), as they come."""
        async for event in _merged(CourseSpawnerMixin.progress(self), KubeSpawner.progress(self)):
            yield event


async def _merged(*generators):
    """Yield the items of async ``generators`` as each comes, until all are done."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(gen):
        try:
            async for item in gen:
                await queue.put(item)
        finally:
            await queue.put(done)

    tasks = [asyncio.ensure_future(pump(g)) for g in generators]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is done:
                remaining -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()


# --------------------------------------------------------------------------- the hub side


#: what of the hub pod's environment a service with sandbox pods needs: the API server's
#: address (the in-cluster configuration's), the node and the pod (the Downward API's, set
#: in ``hub_config/z2jh/values.yaml``)
SANDBOX_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "NODE_NAME", "POD_NAME")


def kube_hub_config(c, *, hub_host: str = "hub", proxy_url: str = "http://proxy-public") -> dict:
    """The hub-side settings of the Kubernetes backend, after
    :func:`hub_ext.hubconfig.configure_course_hub` (``backend="kube"``); returns
    ``{service name: port}`` (the ports the hub's Service and NetworkPolicy must open:
    ``hub.service.extraPorts`` and ``hub.networkPolicy.allowedIngressPorts`` in
    ``hub_config/z2jh/values.yaml``).

    The hub's services run in the hub's pod, but the proxy runs in a pod of its own: each
    hub_ext service listens on the pod's addresses at its own port
    (:data:`hub_ext.services.base.PORTS`) and is known to the hub, and so to the proxy, as
    ``http://<hub_host>:<port>`` (the hub's Service). Course servers reach the grading
    service through the proxy (``proxy_url``, the chart's ``proxy-public`` Service).

    The services that run code in sandbox pods (analytics, grading:
    :class:`~hub_ext.sandbox.kube.KubeSandbox`) are given what of the hub pod's environment
    that needs (:data:`SANDBOX_ENV`: the API server's address, the node and pod names);
    JupyterHub passes a service none of it by itself.
    """
    from ..services.base import PORTS

    opened = {}
    services = []
    sandbox_env = {k: os.environ[k] for k in SANDBOX_ENV if k in os.environ}
    for service in c.JupyterHub.get("services", []):
        name = service.get("name")
        if name in PORTS and service.get("url"):
            port = PORTS[name]
            service = {
                **service,
                "url": f"http://{hub_host}:{port}",
                "command": [*service["command"], "--HubServiceApp.ip=0.0.0.0"],
            }
            if any(arg.endswith(".sandbox=kube") for arg in service["command"]):
                service["environment"] = {**service.get("environment", {}), **sandbox_env}
            opened[name] = port
        services.append(service)
    c.JupyterHub.services = services
    if c.CourseSpawnerMixin.get("grading_url"):
        c.CourseSpawnerMixin.grading_url = f"{proxy_url.rstrip('/')}/services/grading/"
    return opened


# --------------------------------------------------------------------------- the command


def _days(text: str) -> timedelta:
    return timedelta(days=float(text))


def main(argv: list[str] | None = None) -> int:
    """``python -m hub_ext.spawners.kube manifests CATALOG``: print the per-course objects
    (YAML documents) for ``kubectl apply -f -``; the catalog's problems otherwise."""
    import yaml

    parser = argparse.ArgumentParser(prog="python -m hub_ext.spawners.kube")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser(
        "manifests",
        help="each course's NetworkPolicy, the pre-pull DaemonSets of courses about to open",
    )
    cmd.add_argument("catalog", help="the course catalog (YAML)")
    cmd.add_argument(
        "--namespace", default="default", help="the hub's namespace (default: default)"
    )
    cmd.add_argument(
        "--prepull-days",
        type=_days,
        default=timedelta(days=2),
        help="pre-pull a course's image this many days before it opens (default: 2)",
    )
    cmd.add_argument(
        "--extra-image",
        action="append",
        default=[],
        help="pull this image too on the courses' nodes (e.g. CourseKubeSpawner.singleuser_image)",
    )
    cmd.add_argument("--now", help="the date to plan for (ISO 8601; default: now)")
    args = parser.parse_args(argv)
    try:
        catalog = Catalog.load(args.catalog)
    except CatalogError as e:
        print(e, file=sys.stderr)
        return 1
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    manifests = course_manifests(
        catalog,
        now,
        namespace=args.namespace,
        prepull_ahead=args.prepull_days,
        extra_images=args.extra_image,
    )
    manifests.append(sandbox_network_policy(namespace=args.namespace))
    yaml.safe_dump_all(manifests, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
