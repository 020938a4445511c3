"""The course catalog: the one place a course is defined.

A catalog is a YAML file (``hub_config/courses.yaml``)::

    timezone: Europe/Paris          # dates below are in this zone (default UTC)
    defaults:                       # merged into every course
      mem_limit: 1G
    courses:
      - id: ds101
        title: Data analysis with Python
        opens: 2026-09-01           # first day open
        closes: 2026-12-20          # last day open
        grace_days: 14              # learners may still open it (and download) after closing
        kernels: [python3]
        learners: [alice]
        teachers: [tina]

The spawner, the authenticator and every service read the catalog through this module;
none of them re-defines a course. Group names (``course:<id>:learner`` and
``course:<id>:teacher``) are made here and only here.

Loading validates everything at once and raises :class:`CatalogError` with one line
per problem, each naming the file, the line, the course and the field::

    courses.yaml: line 9: course 'ds101' (#2): id: duplicate id (course #1, line 2, has it too)

A course is named by its id; where two entries share an id, by its position too.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jsonschema import Draft202012Validator
from traitlets import TraitError, Unicode, default
from traitlets.config import SingletonConfigurable

__all__ = [
    "API_NAME_PATTERN",
    "ROLES",
    "api_name",
    "analytics_scope",
    "Catalog",
    "CatalogError",
    "Course",
    "CourseCatalog",
    "enrollments_from_groups",
    "group_name",
    "parse_group",
    "teacher_role",
]

#: The roles a person can hold in a course, in the order of least privilege.
ROLES = ("learner", "teacher")

#: A course id is used as a server name, in group and role names, in Docker volume
#: names and in Kubernetes labels: lowercase letters, digits and dashes only.
COURSE_ID_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
#: Usernames as JupyterHub stores them (it lowercases them).
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@+-]*$"
KERNEL_PATTERN = r"^[A-Za-z0-9._-]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: An analytics API name is a URL segment and a file name: the same rules as a course id.
API_NAME_PATTERN = COURSE_ID_PATTERN


def api_name(notebook: os.PathLike | str) -> str:
    """The default API name of a notebook: its file name, lowercase, runs of anything but
    letters and digits as one dash (``Know_Thy Student.ipynb`` -> ``know-thy-student``)."""
    return re.sub(r"[^a-z0-9]+", "-", Path(notebook).stem.lower()).strip("-")


#: What a course's containers may reach (Docker backend): ``hub-only``, the default (the hub's
#: API and nothing else), or ``internet`` (the hub, and addresses beyond the host).
NETWORKS = ("hub-only", "internet")

_GROUP_RE = re.compile(r"^course:(?P<course>[a-z0-9-]+):(?P<role>learner|teacher)$")


def group_name(course_id: str, role: str) -> str:
    """The JupyterHub group that holds a course's learners or teachers."""
    if role not in ROLES:
        raise ValueError(f"unknown course role {role!r} (expected one of {', '.join(ROLES)})")
    return f"course:{course_id}:{role}"


def teacher_role(course_id: str) -> str:
    """The JupyterHub role granted to a course's teacher group."""
    return f"teacher-{course_id}"


def analytics_scope(course_id: str) -> str:
    """The custom scope that lets its holder call a course's analytics APIs."""
    return f"custom:analytics:course:{course_id}"


def learner_role(course_id: str) -> str:
    """The JupyterHub role granted to a course's learner group."""
    return f"learner-{course_id}"


#: what each course role may do with the course's assignments (:func:`grading_scope`)
GRADING_ACTIONS = {"learner": "submit", "teacher": "grade"}


def grading_scope(course_id: str, role: str) -> str:
    """The custom scope of a course's assignments for ``role``: a learner's lets its holder
    fetch and submit (their own work only), a teacher's read and grade everyone's."""
    return f"custom:grading:{GRADING_ACTIONS[role]}:{course_id}"


def parse_group(name: str) -> tuple[str, str] | None:
    """``"course:ds101:learner"`` -> ``("ds101", "learner")``; None for other groups."""
    m = _GROUP_RE.match(name)
    return (m["course"], m["role"]) if m else None


def enrollments_from_groups(group_names: Iterable[str]) -> dict[str, str]:
    """Map course id -> the highest role the groups give (teacher beats learner)."""
    roles: dict[str, str] = {}
    for name in group_names:
        parsed = parse_group(name)
        if parsed is None:
            continue
        course_id, role = parsed
        if ROLES.index(role) >= ROLES.index(roles.get(course_id, ROLES[0])):
            roles[course_id] = role
    return roles


# --------------------------------------------------------------------------- schema

_DURATION = {
    "description": "seconds, or a number with a unit: 90s, 45m, 2h, 1d",
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\d+\s*[smhd]?$"},
    ],
}
#: what JupyterHub's ``ByteSpecification`` (``c.Spawner.mem_limit``) accepts, in words
_BYTES_FORMS = "bytes, or a number with one of the suffixes K, M, G or T: 512M, 2G, 1.5G"
_BYTES = {
    "description": _BYTES_FORMS,
    "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}],
}
_USERS = {"type": "array", "items": {"type": "string", "pattern": USERNAME_PATTERN}}

_COURSE_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": COURSE_ID_PATTERN},
    "title": {"type": "string", "minLength": 1},
    "description": {"type": "string"},
    "image": {"type": "string", "minLength": 1},
    "environment": {"type": "string", "minLength": 1},
    "kernels": {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"type": "string", "pattern": KERNEL_PATTERN},
    },
    "cpu_limit": {"type": "number", "exclusiveMinimum": 0},
    "mem_limit": _BYTES,
    "opens": {"type": "string"},
    "closes": {"type": "string"},
    "grace_days": {"type": "integer", "minimum": 0},
    "idle_timeout": _DURATION,
    "materials": {"type": "string", "minLength": 1},
    "network": {"enum": list(NETWORKS)},
    "env": {
        "type": "object",
        "propertyNames": {"type": "string", "pattern": ENV_NAME_PATTERN},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "learners": _USERS,
    "teachers": _USERS,
    "rosters": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "notebooks": {
        "type": "array",
        "items": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "required": ["path"],
                    "additionalProperties": False,
                    "properties": {
                        "path": {"type": "string", "minLength": 1},
                        "name": {"type": "string", "pattern": API_NAME_PATTERN},
                    },
                },
            ]
        },
    },
}

_LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cell_timeout": _DURATION,
        "timeout": _DURATION,
        "mem_limit": _BYTES,
        "output_limit": _BYTES,
    },
}
_ASSIGNMENT = {
    "type": "object",
    "required": ["id", "notebook", "due"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": API_NAME_PATTERN},
        "title": {"type": "string", "minLength": 1},
        "notebook": {"type": "string", "minLength": 1},
        "files": {"type": "string", "minLength": 1},
        "release": {"type": "string"},
        "due": {"type": "string"},
        "late": {
            "anyOf": [
                {"enum": ["refuse"]},
                {
                    "type": "object",
                    "required": ["penalty_per_day", "until"],
                    "additionalProperties": False,
                    "properties": {
                        "penalty_per_day": {"type": "number", "minimum": 0, "maximum": 100},
                        "until": {"type": "string"},
                    },
                },
            ],
            "description": "'refuse', or {penalty_per_day: percent of the points, until: a date}",
        },
        "attempts": {"type": "integer", "minimum": 1},
        "timed": _DURATION,
        "limits": _LIMITS,
    },
}
_COURSE_PROPERTIES["assignments"] = {"type": "array", "items": _ASSIGNMENT}

# --- the Kubernetes backend's fields (hub_ext.spawners.kube): one `kubernetes:` mapping per
# course, read only by that backend; anything it does not give is the spawner's own setting
#: a Kubernetes resource quantity (``10Gi``, ``500M``), as a PVC's ``storage`` request takes it
KUBE_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
#: a label key or an extended resource name (``nvidia.com/gpu``): an optional DNS prefix, a name
KUBE_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_KUBE_LABEL_VALUE = {
    "type": "string",
    "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$",
}
_KUBE_RESOURCES = {
    "cpu_limit": {"type": "number", "exclusiveMinimum": 0},
    "mem_limit": _BYTES,
    "cpu_guarantee": {"type": "number", "exclusiveMinimum": 0},
    "mem_guarantee": _BYTES,
}
_COURSE_PROPERTIES["kubernetes"] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpu_guarantee": _KUBE_RESOURCES["cpu_guarantee"],
        "mem_guarantee": _KUBE_RESOURCES["mem_guarantee"],
        "teacher": {"type": "object", "additionalProperties": False, "properties": _KUBE_RESOURCES},
        "storage": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "class": {"type": "string"},
                "size": {"type": "string", "pattern": KUBE_QUANTITY_PATTERN},
            },
        },
        "node_selector": {
            "type": "object",
            "propertyNames": {"pattern": KUBE_KEY_PATTERN},
            "additionalProperties": _KUBE_LABEL_VALUE,
        },
        "tolerations": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string", "pattern": KUBE_KEY_PATTERN},
                    "operator": {"enum": ["Exists", "Equal"]},
                    "value": _KUBE_LABEL_VALUE,
                    "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                    "tolerationSeconds": {"type": "integer", "minimum": 0},
                },
            },
        },
        "extra_resource_limits": {
            "type": "object",
            "propertyNames": {"pattern": KUBE_KEY_PATTERN},
            "additionalProperties": {"type": "integer", "minimum": 1},
        },
        "egress": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["cidr"],
                "additionalProperties": False,
                "properties": {
                    "cidr": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class KubeSettings:
    """A course's ``kubernetes:`` block, parsed (sizes in bytes); read by the Kubernetes
    backend only. None (or empty) leaves the spawner's own setting.

    ``teacher``: limits and guarantees that replace the course's for its teachers;
    ``storage_class``/``storage_size``: the learner's workspace claim; ``node_selector``,
    ``tolerations``: where the course's pods may run (a GPU pool); ``extra_resource_limits``:
    ``{"nvidia.com/gpu": 1}``; ``egress``: ``(cidr, ports)`` the course's pods may reach
    besides the hub (and the internet with ``network: internet``).
    """

    cpu_guarantee: float | None = None
    mem_guarantee: int | None = None
    teacher: Mapping[str, float] = field(default_factory=dict)
    storage_class: str | None = None
    storage_size: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    extra_resource_limits: Mapping[str, int] = field(default_factory=dict)
    egress: tuple[tuple[str, tuple[int, ...]], ...] = ()


def _kube_settings(values: Mapping[str, Any], say: Callable[..., None]) -> KubeSettings:
    """A course's ``kubernetes:`` block (valid by the schema) as :class:`KubeSettings`;
    ``say(field, message, key)`` reports a bad value at its key's line."""
    import ipaddress

    def sizes(block: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = {}
        for key, value in block.items():
            if key.startswith("mem_"):
                try:
                    value = parse_bytes(value)
                except ValueError as e:
                    say("kubernetes", f"{where}{key}: {e}", where.rstrip(".") or key)
                    continue
            out[key] = value
        return out

    top = sizes({k: values[k] for k in ("cpu_guarantee", "mem_guarantee") if k in values}, "")
    egress = []
    for i, rule in enumerate(values.get("egress", ())):
        try:
            cidr = str(ipaddress.ip_network(rule["cidr"], strict=True))
        except ValueError as e:
            say(
                "kubernetes", f"egress[{i}].cidr: {rule['cidr']!r} is not a network ({e})", "egress"
            )
            continue
        egress.append((cidr, tuple(rule.get("ports", ()))))
    storage = values.get("storage", {})
    return KubeSettings(
        **top,
        teacher=sizes(values.get("teacher", {}), "teacher."),
        storage_class=storage.get("class"),
        storage_size=storage.get("size"),
        node_selector=dict(values.get("node_selector", {})),
        tolerations=tuple(dict(t) for t in values.get("tolerations", ())),
        extra_resource_limits=dict(values.get("extra_resource_limits", {})),
        egress=tuple(egress),
    )


# --- end of the Kubernetes backend's fields

_COURSE_SCHEMA = {
    "type": "object",
    "required": ["id", "title", "opens", "closes"],
    "additionalProperties": False,
    "properties": _COURSE_PROPERTIES,
}

#: Fields that may be given once under ``defaults:`` for every course.
DEFAULTABLE = (
    "image",
    "environment",
    "kernels",
    "cpu_limit",
    "mem_limit",
    "grace_days",
    "idle_timeout",
    "network",
    "env",
)

CATALOG_SCHEMA = {
    "type": "object",
    "required": ["courses"],
    "additionalProperties": False,
    "properties": {
        "timezone": {"type": "string"},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: _COURSE_PROPERTIES[k] for k in DEFAULTABLE},
        },
        "courses": {"type": "array", "items": _COURSE_SCHEMA},
    },
}

#: what catalog authors write instead of the catalog's own names
_SYNONYMS = {
    "memory": "mem_limit",
    "mem": "mem_limit",
    "ram": "mem_limit",
    "cpu": "cpu_limit",
    "cpus": "cpu_limit",
    "start": "opens",
    "start_date": "opens",
    "open": "opens",
    "end": "closes",
    "end_date": "closes",
    "close": "closes",
    "students": "learners",
    "instructors": "teachers",
    "staff": "teachers",
    "grace": "grace_days",
    "grace_period": "grace_days",
    "kernel": "kernels",
    "timeout": "idle_timeout",
    "name": "title",
    "environment_variables": "env",
}

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalog: where it is and what it is.

    ``line`` is the line of the file (1-based) where the problem is, when the catalog was
    read from a file; ``entry`` the course's position in the list (1-based), given when
    its id does not tell it apart (two courses share it).
    """

    source: str
    course: str | None
    field: str | None
    message: str
    line: int | None = None
    entry: int | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.course is not None:
            where.append(f"course {self.course!r}" + (f" (#{self.entry})" if self.entry else ""))
        if self.field:
            where.append(self.field)
        return ": ".join([*where, self.message])


class CatalogError(ValueError):
    """A catalog that cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------- parsing helpers

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bytes(value: int | str) -> int:
    """``"2G"`` -> 2147483648, parsed by JupyterHub's own ``mem_limit`` trait, so the catalog
    accepts exactly what the spawner does; ValueError naming the accepted forms otherwise."""
    # imported here: this module is also imported where JupyterHub is not installed (the
    # analytics image and sandbox, through the event store), and only the hub parses sizes
    from jupyterhub.traitlets import ByteSpecification

    try:
        parsed = ByteSpecification().validate(None, value)
    except (TraitError, ValueError, OverflowError, TypeError):
        parsed = None
    if not isinstance(parsed, int) or parsed <= 0:
        raise ValueError(f"{value!r} is not valid: use {_BYTES_FORMS}")
    return parsed


def parse_duration(value: int | str) -> int:
    """``"45m"`` -> 2700 seconds."""
    if isinstance(value, int):
        return value
    m = re.match(r"^(\d+)\s*([smhd]?)$", value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 90s, 45m or 2h")
    return int(m[1]) * _SECONDS[m[2]]


def _parse_moment(value: str, tz: ZoneInfo, *, end_of_day: bool) -> datetime:
    """A date (``2026-09-01``) or an ISO 8601 date-time, as an aware datetime.

    A bare date means the start of that day for ``opens`` and the end of that day for
    ``closes``: a course that "closes 2026-12-20" is open all of the 20th.
    """
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    try:
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time.min, tz)
        else:
            moment = datetime.fromisoformat(value)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=tz)
        moment.astimezone(UTC)  # the spawner and the access checks compare it with UTC
    except OverflowError:
        raise ValueError(f"{value!r} is out of range (years 1 to 9999)") from None
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    return moment


class _Map(dict):
    """A mapping read from the catalog file: ``line``, where it starts; ``lines``, key -> line."""

    __slots__ = ("line", "lines")


class _Seq(list):
    """A list read from the catalog file: ``line``, where it starts; ``lines``, each item's."""

    __slots__ = ("line", "lines")


class _CatalogLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``2026-09-01`` a string, so dates are checked in one place, and
    records lines (1-based) in its mappings and lists (:class:`_Map`, :class:`_Seq`)."""

    def construct_located_map(self, node):
        data = _Map()
        data.line, data.lines = node.start_mark.line + 1, {}
        yield data
        data.update(self.construct_mapping(node))  # flattens merge keys (<<) into node.value
        for key_node, _ in node.value:  # the keys are built already: construct_object reuses them
            data.lines[self.construct_object(key_node)] = key_node.start_mark.line + 1

    def construct_located_seq(self, node):
        data = _Seq()
        data.line = node.start_mark.line + 1
        data.lines = [item.start_mark.line + 1 for item in node.value]
        yield data
        data.extend(self.construct_sequence(node))


_CatalogLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CatalogLoader.add_constructor("tag:yaml.org,2002:map", _CatalogLoader.construct_located_map)
_CatalogLoader.add_constructor("tag:yaml.org,2002:seq", _CatalogLoader.construct_located_seq)


def _line(node: Any, key: Any = None) -> int | None:
    """The line where ``node`` starts, or where its item ``key`` is (else where ``node``
    starts); None for data that was not read from a file by :class:`_CatalogLoader`."""
    if not isinstance(node, _Map | _Seq):
        return None
    if key is None:
        return node.line
    try:
        return node.lines[key]
    except (KeyError, IndexError, TypeError):
        return node.line


def _line_at(data: Any, path: Iterable[Any]) -> int | None:
    """The line of the deepest part of ``path`` (keys and indexes from ``data``) in the file."""
    line = _line(data)
    for key in path:
        line = _line(data, key) or line
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _display(path: os.PathLike | str) -> str:
    """A path as the user would recognise it: relative to the working directory if inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Notebook:
    """A notebook a course publishes as a JSON API (served by the analytics service)."""

    name: str
    path: Path


@dataclass(frozen=True)
class LatePolicy:
    """Submissions after the due date: accepted until ``until``, losing ``penalty_per_day``
    (a fraction of the points, 0 to 1) for each day or part of a day late."""

    penalty_per_day: float
    until: datetime


@dataclass(frozen=True)
class Assignment:
    """An exercise of a course, graded in the sandbox (the grading service serves it).

    ``notebook`` is the teacher's source notebook with nbgrader's cell metadata (answers,
    tests with points, hidden tests); learners fetch its student version from
    ``release_at`` and submit until ``due_at`` (later only under ``late``). ``attempts``:
    how many submissions count (None: any number). ``timed``: seconds a learner has from
    their first fetch (None: no timed session). ``limits``: the grading's own limits
    (``cell_timeout``, ``timeout`` in seconds; ``mem_limit``, ``output_limit`` in bytes),
    over the grading service's defaults.
    """

    id: str
    title: str
    notebook: Path
    release_at: datetime
    due_at: datetime
    late: LatePolicy | None = None
    attempts: int | None = None
    timed: int | None = None
    limits: Mapping[str, float] = field(default_factory=dict)
    files: Path | None = None


@dataclass(frozen=True)
class Course:
    """One course, as the catalog defines it. Immutable; build it with :class:`Catalog`."""

    id: str
    title: str
    opens_at: datetime
    closes_at: datetime
    description: str = ""
    image: str | None = None
    environment: Path | None = None
    kernels: tuple[str, ...] = ("python3",)
    cpu_limit: float | None = None
    mem_limit: int | None = None
    grace_days: int = 0
    idle_timeout: int | None = None
    materials: Path | None = None
    network: str = NETWORKS[0]
    env: Mapping[str, str] = field(default_factory=dict)
    learners: frozenset[str] = frozenset()
    teachers: frozenset[str] = frozenset()
    rosters: tuple[Path, ...] = ()
    notebooks: tuple[Notebook, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    kubernetes: KubeSettings = field(default_factory=KubeSettings)

    @property
    def learner_group(self) -> str:
        return group_name(self.id, "learner")

    @property
    def teacher_group(self) -> str:
        return group_name(self.id, "teacher")

    @property
    def default_kernel(self) -> str:
        return self.kernels[0]

    @property
    def grace_ends_at(self) -> datetime:
        return self.closes_at + timedelta(days=self.grace_days)

    def status(self, now: datetime | None = None) -> str:
        """``"upcoming"``, ``"open"``, ``"grace"`` (closed, work still reachable) or ``"closed"``."""
        now = now or datetime.now(UTC)
        if now < self.opens_at:
            return "upcoming"
        if now < self.closes_at:
            return "open"
        if now < self.grace_ends_at:
            return "grace"
        return "closed"

    def describe_window(self) -> str:
        """The dates in words, for messages: 'open from 2026-09-01 to 2026-12-20 (...)'."""
        last_day = self.closes_at - timedelta(microseconds=1)
        text = f"open from {self.opens_at:%Y-%m-%d} to {last_day:%Y-%m-%d}"
        if self.grace_days:
            grace_last = self.grace_ends_at - timedelta(microseconds=1)
            text += f", work reachable until {grace_last:%Y-%m-%d}"
        return text

    def assignment(self, assignment_id: str) -> Assignment | None:
        return next((a for a in self.assignments if a.id == assignment_id), None)

    def static_roles(self, username: str) -> set[str]:
        """The roles the catalog's own lists give ``username`` in this course."""
        roles = set()
        if username in self.learners:
            roles.add("learner")
        if username in self.teachers:
            roles.add("teacher")
        return roles


class Catalog(Mapping[str, Course]):
    """The courses of one catalog file, by id, in the file's order."""

    def __init__(self, courses: Iterable[Course], source: str = "<catalog>"):
        self._courses = {c.id: c for c in courses}
        self.source = source

    def __getitem__(self, course_id: str) -> Course:
        return self._courses[course_id]

    def __iter__(self):
        return iter(self._courses)

    def __len__(self) -> int:
        return len(self._courses)

    def __repr__(self) -> str:
        return f"<Catalog {self.source} courses={list(self._courses)}>"

    @property
    def groups(self) -> list[str]:
        """Every course group this catalog defines."""
        return [group_name(cid, role) for cid in self._courses for role in ROLES]

    def static_groups(self, username: str) -> set[str]:
        """The course groups the catalog's own learner/teacher lists give ``username``."""
        return {
            group_name(c.id, role)
            for c in self._courses.values()
            for role in c.static_roles(username)
        }

    @property
    def static_users(self) -> set[str]:
        """Everyone the catalog names in a course's learners or teachers."""
        return {u for c in self._courses.values() for u in c.learners | c.teachers}

    # ------------------------------------------------------------------- loading

    @classmethod
    def load(
        cls, path: os.PathLike | str, *, known_kernels: Iterable[str] | None = None
    ) -> Catalog:
        """Read and validate a catalog file; raise :class:`CatalogError` listing every problem,
        each with its line in the file.

        ``known_kernels``, when given, is the set of kernel names the chosen backend can
        run; a course that asks for another is a problem.
        """
        path = Path(path)
        source = _display(path)

        def fail(message: str, line: int | None = None) -> NoReturn:
            raise CatalogError([Problem(source, None, None, message, line=line)]) from None

        try:
            raw = path.read_bytes()
        except OSError as e:
            fail(f"cannot read: {e.strerror}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            fail(f"not UTF-8 text (byte {e.start + 1})", raw[: e.start].count(b"\n") + 1)
        try:
            data = yaml.load(text, Loader=_CatalogLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            fail(f"not valid YAML: {getattr(e, 'problem', e)}", mark.line + 1 if mark else None)
        except RecursionError:
            fail(_TOO_DEEP)
        return cls.from_data(data, source=source, base_dir=path.parent, known_kernels=known_kernels)

    @classmethod
    def from_data(
        cls,
        data: Any,
        *,
        source: str = "<catalog>",
        base_dir: os.PathLike | str = ".",
        known_kernels: Iterable[str] | None = None,
    ) -> Catalog:
        """Validate already-parsed catalog data (the structure of the YAML file)."""
        builder = _Builder(source, Path(base_dir), known_kernels)
        try:
            courses = builder.build(data)
        except RecursionError:
            courses = []
            builder.problem(None, None, _TOO_DEEP)
        if builder.problems:
            raise CatalogError(builder.problems)
        return cls(courses, source=source)


_TOO_DEEP = "nested too deeply (or a YAML alias refers to itself)"


def _under(paths: set[tuple], prefix: tuple) -> set:
    """The keys just below ``prefix`` among ``paths``: ``{("a", "b", 1)}, ("a",)`` -> ``{"b"}``."""
    n = len(prefix)
    return {p[n] for p in paths if len(p) > n and p[:n] == prefix}


#: ``say(field, message, item=None)``: report a problem in one field of a course (or of
#: ``defaults``), at that field's line or, with ``item``, at the line of its item-th element
_Say = Callable[..., None]


class _Builder:
    """Turns catalog data into courses, collecting every problem instead of stopping at one.

    Every section and every course is checked, each field on its own: a field that is wrong
    is reported and left out, so only the checks that need its value are skipped (a course
    whose ``opens`` is not a date gets no "closes before opens"; a bad default is reported
    once, under ``defaults``, and not given to the courses).
    """

    def __init__(self, source: str, base_dir: Path, known_kernels: Iterable[str] | None):
        self.source = source
        self.base_dir = base_dir
        self.known_kernels = set(known_kernels) if known_kernels is not None else None
        self.problems: list[Problem] = []

    def problem(
        self,
        course: str | None,
        field_: str | None,
        message: str,
        *,
        line: int | None = None,
        entry: int | None = None,
    ) -> None:
        self.problems.append(Problem(self.source, course, field_, message, line, entry))

    def reporter(
        self, values: Any, course: str | None = None, entry: int | None = None, prefix: str = ""
    ) -> _Say:
        """A :data:`_Say` for the fields of ``values`` (a course entry, or ``defaults``)."""

        def say(field_: str, message: str, item: int | None = None) -> None:
            line = _line(values.get(field_), item) if item is not None else None
            line = line or _line(values, field_)
            self.problem(course, prefix + field_, message, line=line, entry=entry)

        return say

    def build(self, data: Any) -> list[Course]:
        if data is None:
            self.problem(None, None, "the file is empty (expected a 'courses:' list)")
            return []
        entries = data.get("courses") if isinstance(data, dict) else None
        entries = entries if isinstance(entries, list) else []
        # a course is named by its id; by its position too where its id does not tell it apart
        ids = [e.get("id") if isinstance(e, dict) else None for e in entries]
        shared = Counter(i for i in ids if isinstance(i, str))
        labels = [
            (cid, n + 1 if shared[cid] > 1 else None)
            if isinstance(cid, str)
            else (f"#{n + 1}", None)
            for n, cid in enumerate(ids)
        ]
        bad = self._schema_problems(data, labels)
        if not isinstance(data, dict):
            return []

        tz = self._timezone(data, bad)
        defaults = data.get("defaults", {})
        if isinstance(defaults, dict):
            given = {k: v for k, v in defaults.items() if k in DEFAULTABLE}
            say = self.reporter(defaults, prefix="defaults.")
            defaults = self._fields(given, _under(bad, ("defaults",)), tz, say)
        else:  # reported by the schema
            defaults = {}

        seen: dict[str, int] = {}
        courses = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):  # reported by the schema
                continue
            course, number = labels[index]
            say = self.reporter(entry, course, number)
            cid = entry.get("id")
            if isinstance(cid, str) and cid in seen:
                first = seen[cid]
                line = _line(entries, first)
                at = f", line {line}," if line else ""
                say("id", f"duplicate id (course #{first + 1}{at} has it too)")
            elif isinstance(cid, str):
                seen[cid] = index
            skip = _under(bad, ("courses", index))
            bad_assignments = _under(bad, ("courses", index, "assignments"))
            values = self._fields(entry, skip - {"assignments"}, tz, say, inherited=defaults)
            if isinstance(entry.get("assignments"), list):
                values["assignments"] = self._assignments(
                    entry["assignments"], bad_assignments, tz, say, values
                )
            courses.append(values)
        if "courses" in data and not entries and ("courses",) not in bad:
            self.problem(None, "courses", "no courses defined", line=_line(data, "courses"))
        if self.problems:
            self.problems.sort(key=lambda p: p.line or 0)  # in the file's order
            return []
        return [Course(**values) for values in courses]

    def _schema_problems(self, data: Any, labels: list[tuple[str, int | None]]) -> set[tuple]:
        """Report every schema problem; return the paths of the values that are wrong.

        A missing or an unknown key is no wrong value: the rest of its mapping is checked.
        """
        bad: set[tuple] = set()
        required: set[tuple] = set()
        errors = Draft202012Validator(CATALOG_SCHEMA).iter_errors(data)
        for error in sorted(errors, key=lambda e: [(type(p).__name__, p) for p in e.absolute_path]):
            path = tuple(error.absolute_path)
            course, entry, fieldpath = None, None, path
            if len(path) >= 2 and path[0] == "courses" and isinstance(path[1], int):
                (course, entry), fieldpath = labels[path[1]], path[2:]
            field_ = ".".join(str(p) for p in fieldpath) or None
            line = _line_at(data, path)
            if error.validator == "required":  # one error per missing key: report them once
                if path not in required:
                    required.add(path)
                    for key in error.validator_value:
                        if key not in error.instance:
                            message = f"missing required field {key!r}"
                            self.problem(course, field_, message, line=line, entry=entry)
                continue
            if error.validator == "additionalProperties":
                unknown = _unknown_keys(error)
                line = _line(error.instance, unknown[0]) if unknown else line
            else:
                bad.add(path)
            self.problem(course, field_, self._explain(error), line=line, entry=entry)
        return bad

    def _timezone(self, data: dict, bad: set[tuple]) -> ZoneInfo:
        """The catalog's time zone; UTC if it names none, or a wrong one (reported), so that
        the dates are still checked."""
        name = data.get("timezone", "UTC")
        if ("timezone",) not in bad:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                message = f"unknown time zone {name!r} (e.g. Europe/London)"
                self.problem(None, "timezone", message, line=_line(data, "timezone"))
        return ZoneInfo("UTC")

    @staticmethod
    def _explain(error) -> str:
        """Turn a jsonschema error into a sentence a catalog author understands."""
        v = error.validator
        if v == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            hints = []
            for key in _unknown_keys(error):
                close = (
                    [_SYNONYMS[key]]
                    if key in _SYNONYMS
                    else difflib.get_close_matches(str(key), allowed, n=1)
                )
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            return f"unknown key {', '.join(hints)}; allowed: {', '.join(allowed)}"
        if v == "pattern":
            what = {
                COURSE_ID_PATTERN: "lowercase letters, digits and dashes, starting with a letter, 2-32 characters",
                USERNAME_PATTERN: "a lowercase username (letters, digits, . _ @ + -)",
                KERNEL_PATTERN: "a kernel name (letters, digits, . _ -)",
                ENV_NAME_PATTERN: "an environment variable name (letters, digits, _; no digit first)",
            }.get(error.validator_value, f"the pattern {error.validator_value}")
            return f"{error.instance!r} is not valid: use {what}"
        if v == "anyOf" and "description" in error.schema:
            if isinstance(error.instance, int | float) and error.instance <= 0:
                return f"{error.instance!r} must be positive ({error.schema['description']})"
            return f"{error.instance!r} is not valid: use {error.schema['description']}"
        if v in ("exclusiveMinimum", "minimum"):
            return f"{error.instance!r} must be {'greater than' if v == 'exclusiveMinimum' else 'at least'} {error.validator_value}"
        if v == "type":
            return f"{error.instance!r} should be of type {error.validator_value}"
        if v == "enum":
            return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
        if v == "uniqueItems":
            return f"{error.instance!r} lists the same item twice"
        return error.message

    def _fields(
        self,
        values: Mapping[str, Any],
        skip: set,
        tz: ZoneInfo,
        say: _Say,
        inherited: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check and parse the fields of one course (or of ``defaults``), each on its own,
        leaving out those in ``skip`` (wrong by the schema); then, over ``inherited`` (the
        parsed defaults), the rules between fields. Return the valid fields, named as
        :class:`Course`'s are."""
        given = {
            k: v
            for k, v in values.items()
            if k in _COURSE_PROPERTIES and k not in skip and k != "assignments"
        }
        plain = ("id", "title", "description", "image", "cpu_limit", "grace_days", "network")
        out: dict[str, Any] = {k: given[k] for k in plain if k in given}
        for key, end in (("opens", False), ("closes", True)):
            if key in given:
                try:
                    out[f"{key}_at"] = _parse_moment(given[key], tz, end_of_day=end)
                except ValueError as e:
                    say(key, str(e))
        if "kernels" in given:
            out["kernels"] = tuple(given["kernels"])
            if self.known_kernels is not None:
                known = ", ".join(sorted(self.known_kernels)) or "none"
                for i, name in enumerate(given["kernels"]):
                    if name not in self.known_kernels:
                        say("kernels", f"unknown kernel {name!r} (this backend has: {known})", i)
        for key in ("materials", "environment"):
            if key in given:
                out[key] = self._path(say, key, given[key], kind="directory")
        if "rosters" in given:
            found = (
                self._path(say, "rosters", r, kind="file", item=i)
                for i, r in enumerate(given["rosters"])
            )
            out["rosters"] = tuple(p for p in found if p)
        if "notebooks" in given:
            out["notebooks"] = self._notebooks(given["notebooks"], say)
        if "mem_limit" in given:
            try:
                out["mem_limit"] = parse_bytes(given["mem_limit"])
            except ValueError as e:
                say("mem_limit", str(e))
        if "idle_timeout" in given:
            out["idle_timeout"] = parse_duration(given["idle_timeout"])
        if "kubernetes" in given:
            out["kubernetes"] = _kube_settings(given["kubernetes"], say)
        if "env" in given:
            out["env"] = {k: str(v) for k, v in given["env"].items()}
        for key in ("learners", "teachers"):
            if key in given:
                out[key] = frozenset(given[key])

        out = {**(inherited or {}), **out}
        if "opens_at" in out and "closes_at" in out and out["closes_at"] <= out["opens_at"]:
            say("closes", f"closes ({values['closes']}) is before opens ({values['opens']})")
        both = out.get("learners", frozenset()) & out.get("teachers", frozenset())
        if both:
            say("teachers", f"{', '.join(sorted(both))} also listed as learner")
        if "closes_at" in out and "grace_days" in out:
            try:
                (out["closes_at"] + timedelta(days=out["grace_days"])).astimezone(UTC)
            except OverflowError:
                say("grace_days", f"{out['grace_days']} days after closes is past the year 9999")
        return out

    def _assignments(
        self, items: list, bad: set, tz: ZoneInfo, say: _Say, course: Mapping[str, Any]
    ) -> tuple[Assignment, ...]:
        """The course's assignments; each problem names the assignment (its id) and its item
        line. An item with a schema problem (reported) is left out; ``course`` holds the
        course's parsed fields (its dates, for the checks against them)."""
        found, ids = [], {}
        for i, item in enumerate(items):
            if i in bad or not isinstance(item, dict):
                continue

            def about(field_: str, message: str, at: int | None = None, _id=item["id"]) -> None:
                say(field_, f"{_id!r}: {message}", at)

            if item["id"] in ids:
                about(
                    "assignments",
                    f"duplicate assignment id (item {ids[item['id']] + 1} has it too)",
                    i,
                )
                continue
            ids[item["id"]] = i
            assignment = self._assignment(item, i, tz, about, course)
            if assignment is not None:
                found.append(assignment)
        return tuple(found)

    def _assignment(
        self, item: dict, i: int, tz: ZoneInfo, about: _Say, course: Mapping[str, Any]
    ) -> Assignment | None:
        """One assignment (``about`` names it in its messages), or None if it is unusable."""

        def tell(message: str) -> None:
            about("assignments", message, i)

        values: dict[str, Any] = {"id": item["id"], "title": item.get("title", item["id"])}
        moments = {}
        for key, default_key, end in (("release", "opens_at", False), ("due", None, True)):
            if key in item:
                try:
                    moments[key] = _parse_moment(item[key], tz, end_of_day=end)
                except ValueError as e:
                    tell(f"{key}: {e}")
            elif default_key in course:
                moments[key] = course[default_key]
        late = item.get("late", "refuse")
        if isinstance(late, dict):
            try:
                until = _parse_moment(late["until"], tz, end_of_day=True)
                values["late"] = LatePolicy(late["penalty_per_day"] / 100, until)
            except ValueError as e:
                tell(f"late.until: {e}")
        if "attempts" in item:
            values["attempts"] = item["attempts"]
        if "timed" in item:
            values["timed"] = parse_duration(item["timed"])
            if values["timed"] == 0:
                tell("timed: 0 leaves no time; leave 'timed' out for an untimed assignment")
        limits = dict(item.get("limits", {}))
        for key in ("cell_timeout", "timeout"):
            if key in limits:
                limits[key] = parse_duration(limits[key])
        for key in ("mem_limit", "output_limit"):
            if key in limits:
                try:
                    limits[key] = parse_bytes(limits[key])
                except ValueError as e:
                    tell(f"limits.{key}: {e}")
                    limits.pop(key)
        values["limits"] = limits

        def in_field(name: str) -> _Say:
            return lambda field_, message, at=None: about(field_, f"{name}: {message}", at)

        if "files" in item:
            values["files"] = self._path(
                in_field("files"), "assignments", item["files"], kind="directory", item=i
            )
        notebook = self._path(
            in_field("notebook"), "assignments", item["notebook"], kind="file", item=i
        )
        if notebook is not None:
            for problem in _assignment_problems(notebook):
                tell(problem)
        if "release" not in moments or "due" not in moments or notebook is None:
            return None
        release, due = moments["release"], moments["due"]
        if due <= release:
            given = item.get("release", "the course opens")
            tell(f"due ({item['due']}) is before release ({given})")
        reachable = course.get("closes_at")
        if reachable is not None and "grace_days" in course:
            reachable += timedelta(days=course["grace_days"])
        if reachable is not None and due > reachable:
            last = reachable - timedelta(microseconds=1)
            tell(
                f"due ({item['due']}) is after the course's work is reachable "
                f"({last:%Y-%m-%d}): learners could not submit"
            )
        if "late" in values and values["late"].until <= due:
            tell(f"late.until ({item['late']['until']}) is not after due ({item['due']})")
        return Assignment(notebook=notebook, release_at=release, due_at=due, **values)

    def _notebooks(self, items: list, say: _Say) -> tuple[Notebook, ...]:
        notebooks, names = [], set()
        for i, item in enumerate(items):
            item = {"path": item} if isinstance(item, str) else item
            name = item.get("name") or api_name(item["path"])
            if not re.match(API_NAME_PATTERN, name):
                say("notebooks", f"{item['path']!r} gives the API name {name!r}: add a 'name'", i)
            if name in names:
                say("notebooks", f"two notebooks are published as {name!r}", i)
            names.add(name)
            path = self._path(say, "notebooks", item["path"], kind="file", item=i)
            if path:
                notebooks.append(Notebook(name=name, path=path))
        return tuple(notebooks)

    def _path(
        self, say: _Say, field_: str, value: str, *, kind: str, item: int | None = None
    ) -> Path | None:
        try:
            path = (self.base_dir / value).resolve()
            ok = path.is_dir() if kind == "directory" else path.is_file()
        except (OSError, ValueError) as e:  # a NUL byte, a name too long
            say(
                field_,
                f"{value!r} is not a usable path ({getattr(e, 'strerror', None) or e})",
                item,
            )
            return None
        if not ok:
            say(field_, f"{kind} {_display(path)} does not exist", item)
            return None
        return path


def _assignment_problems(notebook: Path) -> list[str]:
    """What is wrong with an assignment's source notebook (nbgrader's cell metadata), each
    naming the cell and its grade_id; the grading package reads it as the grader will."""
    from .services.grading.notebooks import AssignmentError, load_source

    try:
        load_source(notebook)
    except AssignmentError as e:
        return [f"notebook: {problem}" for problem in e.problems]
    return []


def _unknown_keys(error) -> list:
    """The keys an ``additionalProperties`` error is about, in the file's order."""
    allowed = error.schema.get("properties", {})
    unknown = [key for key in error.instance if key not in allowed]
    return sorted(unknown, key=lambda key: _line(error.instance, key) or 0)


# --------------------------------------------------------------------------- configurable


class CourseCatalog(SingletonConfigurable):
    """The hub's catalog, shared by the spawner, the authenticator and the hub config.

    Configure it once::

        c.CourseCatalog.path = "/srv/jupyterhub/courses.yaml"

    Every component asks ``CourseCatalog.instance(config=self.config).catalog``, so the
    file is read and validated once per process.
    """

    path = Unicode(
        help="""Path to the course catalog (YAML).

        Default: the ``HUB_EXT_CATALOG`` environment variable if set, else
        ``courses.yaml`` in the working directory.
        Example: ``c.CourseCatalog.path = "/srv/jupyterhub/courses.yaml"``
        """,
    ).tag(config=True)

    @default("path")
    def _default_path(self):
        return os.environ.get("HUB_EXT_CATALOG", "courses.yaml")

    _catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        """The loaded catalog (loaded and validated on first use)."""
        if self._catalog is None:
            self._catalog = Catalog.load(self.path)
            self.log.info("Course catalog %s: %s", self._catalog.source, ", ".join(self._catalog))
        return self._catalog

    def set_catalog(self, catalog: Catalog) -> None:
        """Use an already-validated catalog (the hub config loads it early to fail fast)."""
        self._catalog = catalog
