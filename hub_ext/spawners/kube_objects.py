"""What the Kubernetes backend creates, as pure builders: course + user in, settings or
manifests out. No cluster, no client, no I/O: :mod:`hub_ext.spawners.kube` feeds the
results to kubespawner's own traits (it makes the pod and the claim), and an operator
applies the per-course objects (``python -m hub_ext.spawners.kube manifests``).

- :func:`course_pod_settings`: the kubespawner traits a course sets for one role (image,
  limits and guarantees, node selector, tolerations, extra resources, labels, storage);
- :func:`course_volumes`: the workspace claim, the materials (read-only) and the
  single-user modules, as kubespawner ``volumes`` / ``volume_mounts`` / ``init_containers``;
- :func:`course_network_policy`: what a course's pods may reach (the hub, DNS, and what
  the course allows) and who may reach them (the hub and the proxy, never another learner);
- :func:`prepull_daemonset`: the course's images on every node that may run it, before
  it opens (zero-to-jupyterhub's pre-puller, per course);
- :func:`sandbox_pod`, :func:`sandbox_network_policy`: code the hub did not write (analytics
  gateways, grading runs) as locked-down pods (:mod:`hub_ext.sandbox.kube`);
- :func:`course_manifests`: every per-course object of a catalog.

Every manifest is a plain dict in the API's own (camelCase) form, as ``kubectl`` takes it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from ..courses import Catalog, Course

__all__ = [
    "COMPONENT_LABEL",
    "COURSE_LABEL",
    "HUB_SELECTOR",
    "PRIVATE_NETWORKS",
    "PROXY_SELECTOR",
    "ROLE_LABEL",
    "SANDBOX_LABEL",
    "course_manifests",
    "course_network_policy",
    "course_pod_settings",
    "course_volumes",
    "k8s_name",
    "prepull_daemonset",
    "sandbox_network_policy",
    "sandbox_pod",
]

#: the labels every object of a course carries (the NetworkPolicy selects pods by them)
COURSE_LABEL = "hub-ext.org/course"
ROLE_LABEL = "hub-ext.org/role"
SANDBOX_LABEL = "hub-ext.org/sandbox"
#: kubespawner's label on the pods it spawns (``KubeSpawner.component_label``)
COMPONENT_LABEL = "singleuser-server"
#: the hub and proxy pods as zero-to-jupyterhub labels them
HUB_SELECTOR = {"component": "hub"}
PROXY_SELECTOR = {"component": "proxy"}
#: the proxy and hub pods zero-to-jupyterhub lets reach user servers
ACCESS_SINGLEUSER = {"hub.jupyter.org/network-access-singleuser": "true"}
#: RFC 1918 ranges and the cloud metadata server: never "the internet"
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32")
#: the container that holds a pre-pull pod's node (zero-to-jupyterhub uses it too)
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

#: seconds a sandbox pod may outlive its wall limit before the cluster ends it
DEADLINE_GRACE = 30

_MANAGED_BY = {"app.kubernetes.io/managed-by": "hub-ext"}


def k8s_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1123 label from ``parts`` (``hub-ext``, ``ds101``, ...): lowercase, dashes,
    at most ``max_length``; a hash keeps two long names apart when it has to cut."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) > max_length:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[: max_length - 9].rstrip("-") + "-" + digest
    return name


def course_labels(course_id: str, role: str | None = None) -> dict[str, str]:
    """The labels of a course's objects (and, with ``role``, of its users' pods)."""
    labels = {COURSE_LABEL: course_id}
    if role is not None:
        labels[ROLE_LABEL] = role
    return labels


def _quantity(n_bytes: int) -> str:
    """Bytes as kubespawner writes memory (whole units where exact, else bytes)."""
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n_bytes % size == 0:
            return f"{n_bytes // size}{unit}"
    return str(n_bytes)


# --------------------------------------------------------------------------- the pod


def course_pod_settings(course: Course, role: str) -> dict[str, Any]:
    """The kubespawner traits ``course`` sets for a user of ``role``, by trait name.

    Only what the course gives: a key that is absent leaves the deployer's setting. A
    teacher's limits and guarantees (``kubernetes.teacher``) replace the course's for
    teachers only. ``mem_*`` are bytes, ``cpu_*`` cores, as JupyterHub's own traits take
    them; ``extra_resource_limits`` values are strings (kubespawner passes them on).
    """
    kube = course.kubernetes
    settings: dict[str, Any] = {"image": course.image} if course.image else {}
    resources = {
        "cpu_limit": course.cpu_limit,
        "mem_limit": course.mem_limit,
        "cpu_guarantee": kube.cpu_guarantee,
        "mem_guarantee": kube.mem_guarantee,
    }
    if role == "teacher":
        resources.update(kube.teacher)
    settings.update({k: v for k, v in resources.items() if v is not None})
    if kube.node_selector:
        settings["node_selector"] = dict(kube.node_selector)
    if kube.tolerations:
        settings["tolerations"] = [dict(t) for t in kube.tolerations]
    if kube.extra_resource_limits:
        settings["extra_resource_limits"] = {
            k: str(v) for k, v in kube.extra_resource_limits.items()
        }
    if kube.storage_class is not None:
        settings["storage_class"] = kube.storage_class
    if kube.storage_size is not None:
        settings["storage_capacity"] = kube.storage_size
    settings["extra_labels"] = course_labels(course.id, role)
    return settings


def course_volumes(
    course: Course,
    *,
    workspace_path: str,
    materials_path: str,
    materials_claim: str | None,
    materials_root: Path | None,
    singleuser_path: str,
    singleuser_image: str,
    singleuser_source: str,
) -> dict[str, Any]:
    """``volumes``, ``volume_mounts`` and ``init_containers`` for kubespawner (by name, so
    a deployer's own entries stay beside them).

    - the workspace: kubespawner's per-server claim (``{pvc_name}``, expanded by
      kubespawner) at ``workspace_path``, read-write;
    - the materials (when the course has some and ``materials_claim`` is set): the
      course's folder of that claim (``subPath``, the folder relative to
      ``materials_root``, where the hub sees the claim), read-only at ``materials_path``;
    - the single-user modules (the course-kernel guard, ``hub_ext_assignments``): copied
      by an init container of ``singleuser_image`` (which has hub_ext, at
      ``singleuser_source``) into an ``emptyDir``, mounted read-only at ``singleuser_path``.

    Raises ValueError when the course's materials are not under ``materials_root``.
    """
    volumes = {
        "hub-ext-workspace": {
            "name": "hub-ext-workspace",
            "persistentVolumeClaim": {"claimName": "{pvc_name}"},
        },
        "hub-ext-singleuser": {"name": "hub-ext-singleuser", "emptyDir": {"sizeLimit": "16Mi"}},
    }
    mounts = {
        "hub-ext-workspace": {"name": "hub-ext-workspace", "mountPath": workspace_path},
        "hub-ext-singleuser": {
            "name": "hub-ext-singleuser",
            "mountPath": singleuser_path,
            "readOnly": True,
        },
    }
    if course.materials is not None and materials_claim:
        root = Path(materials_root) if materials_root is not None else None
        try:
            sub_path = str(PurePosixPath(course.materials.relative_to(root)))
        except (TypeError, ValueError):
            raise ValueError(
                f"course {course.id!r}: materials {course.materials} are not under the "
                f"materials claim's folder ({root}); put them there or set materials_root"
            ) from None
        volumes["hub-ext-materials"] = {
            "name": "hub-ext-materials",
            "persistentVolumeClaim": {"claimName": materials_claim, "readOnly": True},
        }
        mounts["hub-ext-materials"] = {
            "name": "hub-ext-materials",
            "mountPath": materials_path,
            "subPath": sub_path,
            "readOnly": True,
        }
    init = {
        "hub-ext-singleuser": {
            "name": "hub-ext-singleuser",
            "image": singleuser_image,
            "command": ["cp", "-R", f"{singleuser_source.rstrip('/')}/.", "/hub-ext-singleuser/"],
            "volumeMounts": [{"name": "hub-ext-singleuser", "mountPath": "/hub-ext-singleuser"}],
            "securityContext": _locked_down_container(),
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
        }
    }
    return {"volumes": volumes, "volume_mounts": mounts, "init_containers": init}


def _locked_down_container(uid: int = 1000) -> dict[str, Any]:
    """A container's securityContext: non-root, no capability, no privilege gain."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# --------------------------------------------------------------------------- the network


def _egress_rule(cidr: str, ports: Iterable[int] = (), *, except_: Iterable[str] = ()) -> dict:
    block: dict[str, Any] = {"cidr": cidr}
    if except_:
        block["except"] = list(except_)
    rule: dict[str, Any] = {"to": [{"ipBlock": block}]}
    if ports:
        rule["ports"] = [{"protocol": "TCP", "port": p} for p in ports]
    return rule


def course_network_policy(
    course: Course,
    *,
    namespace: str,
    hub_selector: Mapping[str, str] = HUB_SELECTOR,
    hub_port: int = 8081,
    proxy_selector: Mapping[str, str] = PROXY_SELECTOR,
    proxy_port: int = 8000,
    ingress_selector: Mapping[str, str] = ACCESS_SINGLEUSER,
    server_port: int = 8888,
    dns: bool = True,
    private_networks: Iterable[str] = PRIVATE_NETWORKS,
) -> dict[str, Any]:
    """The NetworkPolicy of ``course``'s servers (its pods, by label).

    In: only from pods labelled ``ingress_selector`` (zero-to-jupyterhub's proxy and hub),
    to the server's port; so no learner's pod reaches another's, of this course or any.
    Out: the hub (``hub_selector``, ``hub_port``), the proxy (``proxy_selector``,
    ``proxy_port``: the hub's services, grading, are reached through it), DNS in
    ``kube-system`` (``dns``), the
    course's ``kubernetes.egress`` rules, and with ``network: internet`` every address but
    ``private_networks`` (the cluster's own, the cloud metadata server).

    NetworkPolicies add up: another policy that selects the same pods can only allow more.
    zero-to-jupyterhub's own singleuser policy must not allow the internet
    (``singleuser.networkPolicy.egressAllowRules.nonPrivateIPs: false``, as in
    ``hub_config/z2jh/values.yaml``), or every course reaches it.
    """
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": dict(hub_selector)}}],
            "ports": [{"protocol": "TCP", "port": hub_port}],
        },
        {
            "to": [{"podSelector": {"matchLabels": dict(proxy_selector)}}],
            "ports": [{"protocol": "TCP", "port": proxy_port}],
        },
    ]
    if dns:
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        }
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        )
    egress += [_egress_rule(cidr, ports) for cidr, ports in course.kubernetes.egress]
    if course.network == "internet":
        egress.append(_egress_rule("0.0.0.0/0", except_=private_networks))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": k8s_name("hub-ext-course", course.id),
            "namespace": namespace,
            "labels": {**course_labels(course.id), **_MANAGED_BY},
        },
        "spec": {
            "podSelector": {"matchLabels": {"component": COMPONENT_LABEL, COURSE_LABEL: course.id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": dict(ingress_selector)}}],
                    "ports": [{"protocol": "TCP", "port": server_port}],
                }
            ],
            "egress": egress,
        },
    }


# --------------------------------------------------------------------------- pre-pulling


def prepull_daemonset(
    course: Course,
    *,
    namespace: str,
    extra_images: Iterable[str] = (),
    pause_image: str = PAUSE_IMAGE,
    image_pull_secrets: Iterable[str] = (),
) -> dict[str, Any] | None:
    """A DaemonSet that pulls ``course``'s image (and ``extra_images``, e.g. the hub image
    whose init container copies the single-user modules) onto every node the course's
    pods may run on (its node selector and tolerations), as zero-to-jupyterhub's
    continuous pre-puller does: one init container per image that exits at once, then
    a pause container that holds the node. None when the course names no image."""
    if not course.image:
        return None
    images = list(dict.fromkeys([course.image, *extra_images]))
    labels = {**course_labels(course.id), **_MANAGED_BY, "component": "hub-ext-prepuller"}
    puller = {"limits": {"cpu": "50m", "memory": "32Mi"}, "requests": {"cpu": "0", "memory": "0"}}
    init = [
        {
            "name": f"pull-{i}",
            "image": image,
            "command": ["/bin/sh", "-c", "echo Pulling complete"],
            "resources": puller,
            "securityContext": _locked_down_container(65534),
        }
        for i, image in enumerate(images)
    ]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
        "initContainers": init,
        "containers": [
            {
                "name": "pause",
                "image": pause_image,
                "resources": puller,
                "securityContext": _locked_down_container(65534),
            }
        ],
    }
    kube = course.kubernetes
    if kube.node_selector:
        pod_spec["nodeSelector"] = dict(kube.node_selector)
    if kube.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in kube.tolerations]
    if image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": k8s_name("hub-ext-prepull", course.id),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {
            "selector": {
                "matchLabels": {COURSE_LABEL: course.id, "component": labels["component"]}
            },
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "100%"},
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def course_manifests(
    catalog: Catalog,
    now: datetime,
    *,
    namespace: str,
    prepull_ahead: timedelta = timedelta(days=2),
    extra_images: Iterable[str] = (),
    **policy: Any,
) -> list[dict[str, Any]]:
    """Every per-course object of ``catalog`` at ``now``: each course's NetworkPolicy
    (closed ones too: a teacher may still open a grace-period server), and a pre-pull
    DaemonSet for each course that opens within ``prepull_ahead`` or is open (or in its
    grace period). ``policy`` goes to :func:`course_network_policy`."""
    manifests = []
    extra_images = list(extra_images)
    for course in catalog.values():
        manifests.append(course_network_policy(course, namespace=namespace, **policy))
        if course.status(now) != "closed" and now >= course.opens_at - prepull_ahead:
            daemonset = prepull_daemonset(course, namespace=namespace, extra_images=extra_images)
            if daemonset is not None:
                manifests.append(daemonset)
    return manifests


# --------------------------------------------------------------------------- sandboxes


def sandbox_pod(
    spec,
    *,
    namespace: str,
    image: str,
    uid: int,
    data_claim: str,
    data_root: Path,
    node_name: str | None = None,
    secret_name: str | None = None,
    scratch_target: str = "/srv/run",
    name: str | None = None,
    extra_labels: dict[str, str] | None = None,
    owner_references: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Pod, Secret) that run a :class:`~hub_ext.sandbox.SandboxSpec` (pure).

    The spec's paths are the service's: its scratch directory and read-only inputs must
    lie under ``data_root``, where the service mounts the claim ``data_claim``; the pod
    mounts the same claim, each path by its ``subPath`` (the inputs read-only). The
    gateway answers over the Unix socket in its scratch directory, so the pod runs on the
    service's own node (``node_name``, the Downward API's ``spec.nodeName`` of the service)
    and needs no network: :func:`sandbox_network_policy` denies it every connection.
    The environment (it may hold the run's own token) goes in the Secret, not in the pod.

    Locked down as the Docker sandbox is: non-root ``uid``, read-only root filesystem, no
    capability, no privilege gain, the runtime's seccomp profile, no service-account
    token, no service links, a private ``/tmp`` (memory, 256 MiB), CPU and memory limits,
    ``activeDeadlineSeconds`` from ``limits.wall`` (plus :data:`DEADLINE_GRACE`). Kubernetes has no per-pod process or
    file-size limit (the kubelet's ``podPidsLimit`` is per node): those are not set.
    ``name`` (default: from the spec's), ``extra_labels`` and ``owner_references`` (the
    service's pod, so that the cluster deletes its sandboxes with it) go on both objects.
    Raises ValueError for a path outside ``data_root``.
    """
    data_root = Path(data_root)
    name = name or k8s_name("hub-ext-sandbox", spec.name)
    secret_name = secret_name or name

    def sub_path(path: Path) -> str:
        try:
            return str(PurePosixPath(Path(path).relative_to(data_root)))
        except ValueError:
            raise ValueError(
                f"sandbox {spec.name}: {path} is not under {data_root} (the claim {data_claim})"
            ) from None

    mounts = [
        {"name": "data", "mountPath": scratch_target, "subPath": sub_path(spec.scratch)},
        *(
            {
                "name": "data",
                "mountPath": bind.target,
                "subPath": sub_path(bind.source),
                "readOnly": not bind.writable,
            }
            for bind in spec.binds
        ),
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    limits = spec.limits
    resource_limits: dict[str, str] = {}
    if limits.memory is not None:
        resource_limits["memory"] = _quantity(limits.memory)
    if limits.cpu is not None:
        resource_limits["cpu"] = f"{int(limits.cpu * 1000)}m"
    container = {
        "name": "sandbox",
        "image": image,
        "command": list(spec.argv),
        "workingDir": spec.workdir,
        "env": [{"name": "HOME", "value": scratch_target}],
        "envFrom": [{"secretRef": {"name": secret_name}}],
        "volumeMounts": mounts,
        "resources": {"limits": resource_limits, "requests": dict(resource_limits)},
        "securityContext": {**_locked_down_container(uid), "readOnlyRootFilesystem": True},
    }
    labels = {SANDBOX_LABEL: k8s_name(spec.name), **_MANAGED_BY}
    labels.update({f"hub-ext.org/{k}": k8s_name(v) for k, v in spec.labels.items()})
    labels.update(extra_labels or {})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid},
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": data_claim}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        ],
    }
    if node_name:
        pod_spec["nodeName"] = node_name
    if limits.wall is not None:
        # the caller's own timer ends the run at ``wall``; the deadline is the cluster's
        # backstop (a service killed meanwhile), a little later
        pod_spec["activeDeadlineSeconds"] = math.ceil(limits.wall) + DEADLINE_GRACE
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner_references:
        metadata["ownerReferences"] = owner_references
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**metadata, "name": secret_name},
        "type": "Opaque",
        "stringData": {k: str(v) for k, v in spec.env.items()},
    }
    return pod, secret


def sandbox_network_policy(*, namespace: str) -> dict[str, Any]:
    """Deny every connection to and from sandbox pods (their caller uses a Unix socket)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "hub-ext-sandbox", "namespace": namespace, "labels": _MANAGED_BY},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": SANDBOX_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
