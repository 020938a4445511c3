"""Course rosters exported from an LMS or a student information system.

Two formats are read (detected from the header row, or chosen with ``format=``):

- **plain CSV**: a ``role`` column (``learner`` or ``teacher``), a ``username`` and/or an
  ``email`` column, and a ``course`` column (optional when the course is given, e.g. by
  ``hub-ext import-roster FILE --course ds101`` or by the catalog's ``rosters:`` field)::

      username,email,course,role
      alice,alice@example.edu,ds101,learner
      ,dan@example.edu,ds101,learner

- **Moodle's participants export** (Participants > select all > "Download table data as"
  CSV): ``Email address`` (and ``Username`` when the site shows it), ``Roles`` (Student ->
  learner; Teacher and Non-editing teacher -> teacher; rows with no role, Guest or
  Manager only are skipped and counted) and ``Status`` (rows that are not Active are skipped
  and counted). The course comes from ``--course``.

**A file with any bad row is rejected whole**: every problem is reported with its line
number (an unknown course or role, a missing column, a duplicate row, an empty or invalid
username or email), and nothing of the file is applied. Skipped rows (Moodle's suspended
enrolments) are not errors; they are counted in the summary.

Rosters reach JupyterHub groups through the course authenticators: at each login and
refresh, a user's roster rows (matched by username, or by a verified email address) add
``course:<id>:<role>`` groups (:class:`RosterIndex`). Imported rosters are kept by
:class:`RosterStore` in one JSON file, replaced atomically; an import replaces that
course's previous import, so a learner dropped from the LMS loses the course at their next
login or refresh.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .courses import ROLES, USERNAME_PATTERN, Catalog, group_name

__all__ = [
    "DEFAULT_ROSTER_DIR",
    "FORMATS",
    "ROSTER_FORMATS",
    "MoodleParticipants",
    "PlainCSV",
    "RosterFormat",
    "ROSTER_DIR_ENV",
    "Roster",
    "RosterEntry",
    "RosterError",
    "RosterIndex",
    "RosterStore",
    "default_roster_dir",
    "load_catalog_rosters",
    "parse_roster",
]


#: the environment variable naming the directory of imported rosters (hub and ``hub-ext``)
ROSTER_DIR_ENV = "HUB_EXT_ROSTER_DIR"
#: the directory of imported rosters when nothing names one, relative to the working directory
DEFAULT_ROSTER_DIR = "rosters"


def default_roster_dir() -> str:
    """Where imported rosters are kept by default: ``$HUB_EXT_ROSTER_DIR``, else ``rosters``.

    The one default of both ``c.CourseOAuthenticator.roster_dir`` (the hub reads there)
    and ``hub-ext import-roster --roster-dir`` (the command line writes there).
    """
    return os.environ.get(ROSTER_DIR_ENV) or DEFAULT_ROSTER_DIR


#: Moodle role names (lowercased) -> course role; None = not enrolled here (row skipped).
MOODLE_ROLES: dict[str, str | None] = {
    "student": "learner",
    "learner": "learner",
    "teacher": "teacher",
    "editing teacher": "teacher",
    "editingteacher": "teacher",
    "non-editing teacher": "teacher",
    "manager": None,
    "guest": None,
    "no roles": None,
}

_USERNAME_RE = re.compile(USERNAME_PATTERN)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class RosterEntry:
    """One person in one course, from one line of a roster file."""

    course: str
    role: str
    username: str | None = None
    email: str | None = None
    line: int = 0

    @property
    def who(self) -> str:
        return self.username or self.email or "?"


@dataclass(frozen=True)
class Roster:
    """A validated roster file: the courses it covers and everyone in them."""

    source: str
    format: str
    courses: frozenset[str]
    entries: tuple[RosterEntry, ...]
    skipped: tuple[str, ...] = ()

    def counts(self, course: str) -> dict[str, int]:
        counts = dict.fromkeys(ROLES, 0)
        for e in self.entries:
            if e.course == course:
                counts[e.role] += 1
        return counts


class RosterError(ValueError):
    """A roster that cannot be used; ``problems`` lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _norm_header(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _read_rows(path: Path, source: str) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise RosterError([f"{source}: cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError as e:
        raise RosterError([f"{source}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise RosterError([f"{source}: line 1: empty file (expected a header row)"])
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = next(reader)
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        row = {
            _norm_header(h): (values[i].strip() if i < len(values) else "")
            for i, h in enumerate(header)
        }
        if len(values) > len(header):
            row["__extra__"] = values[len(header) :]
        rows.append((line, row))
    return [_norm_header(h) for h in header], rows


class _RowProblem(Exception):
    """A row that makes the file unusable (the message names what is wrong)."""


@dataclass(frozen=True)
class _Row:
    """What one row says: who, in which course (None: the import's), in which role."""

    role: str
    username: str | None
    email: str | None
    course: str | None = None


class RosterFormat:
    """One kind of roster export: how to recognise it, which columns it needs, what a row
    says. A format reads a row into a :class:`_Row`, or returns why the row is skipped
    (not an error, counted), or raises :class:`_RowProblem`; :func:`parse_roster` does
    the checks every format shares (course, username, email, duplicates)."""

    name: str

    def recognises(self, header: list[str]) -> bool:
        raise NotImplementedError

    def header_problems(self, header: list[str], course: str | None) -> list[str]:
        raise NotImplementedError

    def read(self, row: dict[str, str], course: str | None) -> _Row | str:
        raise NotImplementedError


class PlainCSV(RosterFormat):
    """``username`` and/or ``email``, ``role`` (learner or teacher), ``course`` (optional
    when the import names the course)."""

    name = "csv"

    def recognises(self, header):
        return True  # the fallback

    def header_problems(self, header, course):
        required = ["role"]
        if "username" not in header and "email" not in header:
            required.append("username or email")
        if "course" not in header and course is None:
            required.append("course (or give --course)")
        return [c for c in required if c not in header]

    def read(self, row, course):
        if course is not None and row.get("course") and row["course"] != course:
            raise _RowProblem(f"course {row['course']!r} but the import is for {course!r}")
        role = row.get("role", "").lower()
        if role not in ROLES:
            raise _RowProblem(
                f"unknown role {row.get('role', '')!r} (expected {' or '.join(ROLES)})"
            )
        return _Row(
            role,
            row.get("username", "").lower() or None,
            row.get("email", "").lower() or None,
            row.get("course", "") or None,
        )


class MoodleParticipants(RosterFormat):
    """Moodle's participants export: ``Email address`` (``Username`` when the site shows
    it), ``Roles``, ``Status``; the course is the import's."""

    name = "moodle"

    def recognises(self, header):
        return "roles" in header and "email_address" in header

    def header_problems(self, header, course):
        required = ["roles"]
        if "email_address" not in header and "username" not in header:
            required.append("email_address")
        return [c for c in required if c not in header]

    def read(self, row, course):
        username = row.get("username", "").lower() or None
        email = row.get("email_address", "").lower() or None
        status = row.get("status", "").strip().lower()
        if status and status != "active":
            return f"{username or email}: status {row['status']!r}"
        names = [r.strip().lower() for r in row.get("roles", "").split(",") if r.strip()]
        unknown = [n for n in names or ["no roles"] if n not in MOODLE_ROLES]
        if unknown:
            raise _RowProblem(
                f"unknown Moodle role {unknown[0]!r} (known: Student, Teacher, "
                "Non-editing teacher, Manager, Guest)"
            )
        mapped = [MOODLE_ROLES[n] for n in names if MOODLE_ROLES[n]]
        if not mapped:
            return f"{username or email}: role {row['roles'] or 'none'}"
        return _Row(max(mapped, key=ROLES.index), username, email)


#: the formats by name, in the order detection tries them (plain CSV last: the fallback)
ROSTER_FORMATS: dict[str, RosterFormat] = {f.name: f for f in (MoodleParticipants(), PlainCSV())}
#: the ``format=`` values (``auto``: detected from the header row)
FORMATS = ("auto", *sorted(ROSTER_FORMATS))


def _detect(header: list[str]) -> RosterFormat:
    return next(f for f in ROSTER_FORMATS.values() if f.recognises(header))


def parse_roster(
    path: os.PathLike | str,
    *,
    catalog: Mapping | None = None,
    course: str | None = None,
    format: str = "auto",
) -> Roster:
    """Read and validate a roster file; raise :class:`RosterError` listing every problem.

    ``course`` is the course the file is for (required for Moodle exports; for plain CSV,
    a ``course`` column may name it instead, and every row must then match ``course`` if
    both are given). With ``catalog``, courses must exist in it.
    """
    path = Path(path)
    source = str(path)
    problems: list[str] = []
    if format not in FORMATS:
        raise RosterError([f"{source}: unknown format {format!r} (use {', '.join(FORMATS)})"])
    if catalog is not None and course is not None and course not in catalog:
        raise RosterError(
            [f"{source}: unknown course {course!r} (the catalog has: {', '.join(catalog)})"]
        )
    header, rows = _read_rows(path, source)
    kind = _detect(header) if format == "auto" else ROSTER_FORMATS[format]

    def problem(line: int, message: str) -> None:
        problems.append(f"{source}: line {line}: {message}")

    if isinstance(kind, MoodleParticipants) and course is None:
        problems.append(f"{source}: a Moodle participants export names no course: give --course")
    missing = kind.header_problems(header, course)
    if missing:
        problem(1, f"missing column(s) {', '.join(missing)} (found: {', '.join(header)})")
    if problems:
        raise RosterError(problems)

    entries: list[RosterEntry] = []
    skipped: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        if "__extra__" in row:
            problem(line, f"more values than the header's {len(header)} columns")
            continue
        try:
            read = kind.read(row, course)
        except _RowProblem as e:
            problem(line, str(e))
            continue
        if isinstance(read, str):
            skipped.append(f"line {line}: {read}")
            continue
        row_course = read.course or course
        username, email = read.username, read.email
        if not row_course:
            problem(line, "no course")
            continue
        if catalog is not None and row_course not in catalog:
            problem(line, f"unknown course {row_course!r} (the catalog has: {', '.join(catalog)})")
            continue
        if not username and not email:
            problem(line, "no username or email")
            continue
        if username and not _USERNAME_RE.match(username):
            problem(line, f"{username!r} is not a valid username")
            continue
        if email and not _EMAIL_RE.match(email):
            problem(line, f"{email!r} is not an email address")
            continue
        key = (row_course, username or email)
        if key in seen:
            problem(line, f"duplicate of line {seen[key]} ({key[1]} in {row_course})")
            continue
        seen[key] = line
        entries.append(RosterEntry(row_course, read.role, username, email, line))

    if problems:
        raise RosterError(problems)
    courses = {course} if course is not None else {e.course for e in entries}
    return Roster(source, kind.name, frozenset(courses), tuple(entries), tuple(skipped))


def load_catalog_rosters(catalog: Catalog) -> list[Roster]:
    """Parse every roster file the catalog's courses reference (their ``rosters:`` field).

    Raises :class:`RosterError` with the problems of every file: the hub should not start
    with a roster it cannot read.
    """
    rosters, problems = [], []
    for c in catalog.values():
        for path in c.rosters:
            try:
                rosters.append(parse_roster(path, catalog=catalog, course=c.id))
            except RosterError as e:
                problems.extend(f"course {c.id!r}: rosters: {p}" for p in e.problems)
    if problems:
        raise RosterError(problems)
    return rosters


# --------------------------------------------------------------------------- lookup


@dataclass
class RosterIndex:
    """Who is in which course according to a set of rosters, by username and by email."""

    by_username: dict[str, set[str]] = field(default_factory=dict)
    by_email: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[RosterEntry]) -> RosterIndex:
        index = cls()
        for e in entries:
            group = group_name(e.course, e.role)
            if e.username:
                index.by_username.setdefault(e.username, set()).add(group)
            if e.email:
                index.by_email.setdefault(e.email.lower(), set()).add(group)
        return index

    def groups_for(self, username: str, emails: Iterable[str] = ()) -> set[str]:
        """The course groups the rosters give ``username`` (or any of its verified ``emails``)."""
        groups = set(self.by_username.get(username, ()))
        for email in emails:
            groups |= self.by_email.get(email.lower(), set())
        return groups


class RosterStore:
    """Imported rosters, one JSON file (``rosters.json``) in ``directory``.

    :meth:`save` replaces the courses a roster covers and writes the file atomically
    (a temporary file renamed over the old one): readers see the old or the new
    rosters, never a mix.
    """

    FILENAME = "rosters.json"

    def __init__(self, directory: os.PathLike | str):
        self.directory = Path(directory)
        self.path = self.directory / self.FILENAME

    def load(self) -> dict[str, dict]:
        """course id -> ``{"source", "format", "imported_at", "entries": [...]}``."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RosterError([f"{self.path}: cannot read the imported rosters: {e}"]) from None
        return data.get("courses", {})

    def entries(self) -> list[RosterEntry]:
        return [
            RosterEntry(**{**entry, "course": course_id})
            for course_id, record in self.load().items()
            for entry in record["entries"]
        ]

    def save(self, roster: Roster, now: datetime | None = None) -> dict[str, dict]:
        """Store ``roster`` (replacing its courses' previous imports); return the old records."""
        courses = self.load()
        previous = {c: courses[c] for c in roster.courses if c in courses}
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        for course_id in sorted(roster.courses):
            courses[course_id] = {
                "source": roster.source,
                "format": roster.format,
                "imported_at": stamp,
                "entries": [
                    {k: v for k, v in asdict(e).items() if k != "course"}
                    for e in roster.entries
                    if e.course == course_id
                ],
            }
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".rosters-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"courses": courses}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return previous
