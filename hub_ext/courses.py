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
per problem, each naming the file, the course and the field.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
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
        "propertyNames": {"pattern": ENV_NAME_PATTERN},
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
    """One thing wrong with a catalog: where it is and what it is."""

    source: str
    course: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.source]
        if self.course is not None:
            where.append(f"course {self.course!r}")
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
        d = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        if end_of_day:
            return datetime.combine(d + timedelta(days=1), time.min, tz)
        return datetime.combine(d, time.min, tz)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


class _StringDateLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``2026-09-01`` a string, so dates are checked in one place."""


_StringDateLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
        """Read and validate a catalog file; raise :class:`CatalogError` listing every problem.

        ``known_kernels``, when given, is the set of kernel names the chosen backend can
        run; a course that asks for another is a problem.
        """
        path = Path(path)
        source = _display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CatalogError(
                [Problem(source, None, None, f"cannot read: {e.strerror}")]
            ) from None
        try:
            data = yaml.load(text, Loader=_StringDateLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else None
            raise CatalogError(
                [Problem(source, None, where, f"not valid YAML: {getattr(e, 'problem', e)}")]
            ) from None
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
        courses = builder.build(data)
        if builder.problems:
            raise CatalogError(builder.problems)
        return cls(courses, source=source)


class _Builder:
    """Turns catalog data into courses, collecting every problem instead of stopping at one."""

    def __init__(self, source: str, base_dir: Path, known_kernels: Iterable[str] | None):
        self.source = source
        self.base_dir = base_dir
        self.known_kernels = set(known_kernels) if known_kernels is not None else None
        self.problems: list[Problem] = []

    def problem(self, course: str | None, field_: str | None, message: str) -> None:
        self.problems.append(Problem(self.source, course, field_, message))

    def build(self, data: Any) -> list[Course]:
        if data is None:
            self.problem(None, None, "the file is empty (expected a 'courses:' list)")
            return []
        broken = self._schema_problems(data)
        if broken is None:  # the file's structure itself is wrong: nothing more to check
            return []

        tz_name = data.get("timezone", "UTC")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(None, "timezone", f"unknown time zone {tz_name!r} (e.g. Europe/London)")
            return []

        defaults = data.get("defaults", {})
        seen: dict[str, int] = {}
        courses = []
        for index, entry in enumerate(data["courses"]):
            course_id = entry.get("id")
            if course_id in seen:
                self.problem(
                    course_id, "id", f"duplicate id (course #{seen[course_id] + 1} has it too)"
                )
                continue
            if isinstance(course_id, str):
                seen[course_id] = index
            if index in broken:  # its schema problems are reported; check the other courses
                continue
            course = self._course({**defaults, **entry}, tz)
            if course is not None:
                courses.append(course)
        if not data["courses"]:
            self.problem(None, "courses", "no courses defined")
        return courses if not self.problems else []

    def _schema_problems(self, data: Any) -> set[int] | None:
        """Report schema problems; return the indexes of courses that have some, or None
        if the catalog's own structure (outside any one course) is wrong."""
        validator = Draft202012Validator(CATALOG_SCHEMA)
        broken: set[int] | None = set()
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            path = list(error.absolute_path)
            course, fieldpath = None, path
            if len(path) >= 2 and path[0] == "courses" and isinstance(path[1], int):
                entry = data["courses"][path[1]]
                cid = entry.get("id") if isinstance(entry, dict) else None
                course = cid if isinstance(cid, str) else f"#{path[1] + 1}"
                fieldpath = path[2:]
                if broken is not None:
                    broken.add(path[1])
                if not isinstance(entry, dict):
                    broken = None
            else:
                broken = None
            field_ = ".".join(str(p) for p in fieldpath) or None
            self.problem(course, field_, self._explain(error))
        return broken

    @staticmethod
    def _explain(error) -> str:
        """Turn a jsonschema error into a sentence a catalog author understands."""
        v = error.validator
        if v == "required":
            missing = [r for r in error.validator_value if r not in error.instance]
            return f"missing required field {missing[0]!r}" if missing else error.message
        if v == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            hints = []
            for key in extra:
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
        if v == "propertyNames":
            return f"{error.instance!r} is not a valid environment variable name"
        if v == "uniqueItems":
            return f"{error.instance!r} lists the same item twice"
        return error.message

    def _path(self, course_id: str, field_: str, value: str, *, kind: str) -> Path | None:
        path = (self.base_dir / value).resolve()
        ok = path.is_dir() if kind == "directory" else path.is_file()
        if not ok:
            self.problem(course_id, field_, f"{kind} {_display(path)} does not exist")
            return None
        return path

    def _course(self, entry: dict[str, Any], tz: ZoneInfo) -> Course | None:
        cid = entry["id"]
        before = len(self.problems)

        moments = {}
        for key, end in (("opens", False), ("closes", True)):
            try:
                moments[key] = _parse_moment(entry[key], tz, end_of_day=end)
            except ValueError as e:
                self.problem(cid, key, str(e))
        if len(moments) == 2 and moments["closes"] <= moments["opens"]:
            self.problem(
                cid, "closes", f"closes ({entry['closes']}) is before opens ({entry['opens']})"
            )

        kernels = tuple(entry.get("kernels", ("python3",)))
        if self.known_kernels is not None:
            for name in kernels:
                if name not in self.known_kernels:
                    known = ", ".join(sorted(self.known_kernels)) or "none"
                    self.problem(
                        cid, "kernels", f"unknown kernel {name!r} (this backend has: {known})"
                    )

        materials = None
        if "materials" in entry:
            materials = self._path(cid, "materials", entry["materials"], kind="directory")
        environment = None
        if "environment" in entry:
            environment = self._path(cid, "environment", entry["environment"], kind="directory")
        rosters = tuple(
            p
            for p in (self._path(cid, "rosters", r, kind="file") for r in entry.get("rosters", ()))
            if p
        )

        notebooks, names = [], set()
        for item in entry.get("notebooks", ()):
            item = {"path": item} if isinstance(item, str) else item
            name = item.get("name") or api_name(item["path"])
            if not re.match(API_NAME_PATTERN, name):
                self.problem(
                    cid, "notebooks", f"{item['path']!r} gives the API name {name!r}: add a 'name'"
                )
            if name in names:
                self.problem(cid, "notebooks", f"two notebooks are published as {name!r}")
            names.add(name)
            path = self._path(cid, "notebooks", item["path"], kind="file")
            if path:
                notebooks.append(Notebook(name=name, path=path))

        mem_limit = None
        if "mem_limit" in entry:
            try:
                mem_limit = parse_bytes(entry["mem_limit"])
            except ValueError as e:
                self.problem(cid, "mem_limit", str(e))

        both = set(entry.get("learners", ())) & set(entry.get("teachers", ()))
        if both:
            self.problem(cid, "teachers", f"{', '.join(sorted(both))} also listed as learner")

        if len(self.problems) > before:
            return None
        return Course(
            id=cid,
            title=entry["title"],
            description=entry.get("description", ""),
            opens_at=moments["opens"],
            closes_at=moments["closes"],
            image=entry.get("image"),
            environment=environment,
            kernels=kernels,
            cpu_limit=entry.get("cpu_limit"),
            mem_limit=mem_limit,
            grace_days=entry.get("grace_days", 0),
            idle_timeout=parse_duration(entry["idle_timeout"]) if "idle_timeout" in entry else None,
            materials=materials,
            network=entry.get("network", NETWORKS[0]),
            env={k: str(v) for k, v in entry.get("env", {}).items()},
            learners=frozenset(entry.get("learners", ())),
            teachers=frozenset(entry.get("teachers", ())),
            rosters=rosters,
            notebooks=tuple(notebooks),
        )


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
