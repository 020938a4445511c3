"""A course's whole class, from every source, and the table a teacher searches (pure).

Who is a learner of a course comes from three places, and a learner may be in several:

- ``catalog``: the course's ``learners:`` list in the catalog;
- ``roster``: a learner row of a roster file (the course's ``rosters:`` files and those
  imported with ``hub-ext import-roster``), by username or, before the first login, by
  email only;
- ``login``: a member of the hub group ``course:<id>:learner`` whom neither of the two
  explains: put there at login by the identity provider's claims (or by a roster row that
  matched their verified email, which the hub's API does not show).

Each learner's state is one of :data:`STATES`, from the hub's users (a learner named by
the catalog or a roster who never logged in has no hub user yet; a user an admin made who
has no activity yet has not logged in either). Nothing here does I/O:
:class:`ClassList` is built from what :mod:`.hubapi` fetched and :class:`Rosters` read.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...courses import Catalog, Course
from ...roster import RosterEntry, RosterError, RosterStore, load_catalog_rosters

__all__ = [
    "SORTS",
    "SOURCES",
    "STATES",
    "ClassList",
    "Learner",
    "Query",
    "QueryError",
    "Rosters",
]

#: where a learner comes from, in the order shown
SOURCES = ("catalog", "roster", "login")
#: a learner's state, in the order "sort by state" puts them, with its words
STATES = {
    "running": "server running",
    "pending": "server starting or stopping",
    "logged_in": "logged in",
    "new": "never logged in",
}
#: what the table can be sorted by
SORTS = ("name", "state", "last_activity", "sources")
ORDERS = ("asc", "desc")
#: a cell of the CSV that a spreadsheet would run as a formula is quoted
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Learner:
    """One row of the table. ``name`` is the hub username (or the email of a roster row
    that has only one); ``last_activity`` an ISO 8601 string from the hub, or None."""

    name: str
    sources: tuple[str, ...]
    state: str
    email: str | None = None
    last_activity: str | None = None
    server_url: str | None = None

    def view(self) -> dict:
        return {
            "name": self.name,
            "email": self.email,
            "sources": list(self.sources),
            "state": self.state,
            "state_text": STATES[self.state],
            "last_activity": self.last_activity,
            "server_url": self.server_url,
        }


class QueryError(ValueError):
    """A search, sort or page parameter that cannot be used; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _positive(name: str, value: str | int, limit: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QueryError(name, f"{name} must be a whole number, not {value!r}") from None
    if number < 1 or (limit is not None and number > limit):
        bound = f"from 1 to {limit}" if limit is not None else "1 or more"
        raise QueryError(name, f"{name} must be {bound}, not {number}")
    return number


@dataclass(frozen=True)
class Query:
    """What the teacher asked for: a search, a state, a sort, a page."""

    q: str = ""
    state: str = ""
    sort: str = "name"
    order: str = "asc"
    page: int = 1
    per_page: int = 50

    #: the largest page one request may ask for
    MAX_PER_PAGE = 500

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> Query:
        """From request arguments (missing ones take their defaults); raises QueryError."""
        q = args.get("q", "").strip()
        if len(q) > 200:
            raise QueryError("q", "the search (q) is longer than 200 characters")
        state = args.get("state", "")
        if state and state not in STATES:
            raise QueryError("state", f"state must be one of {', '.join(STATES)}, not {state!r}")
        sort = args.get("sort", "") or "name"
        if sort not in SORTS:
            raise QueryError("sort", f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        order = args.get("order", "") or "asc"
        if order not in ORDERS:
            raise QueryError("order", f"order must be asc or desc, not {order!r}")
        return cls(
            q=q,
            state=state,
            sort=sort,
            order=order,
            page=_positive("page", args.get("page") or 1),
            per_page=_positive("per_page", args.get("per_page") or 50, cls.MAX_PER_PAGE),
        )

    def args(self, **changes) -> dict[str, str]:
        """The query's non-default arguments, with ``changes`` (for links)."""
        values = {
            "q": self.q,
            "state": self.state,
            "sort": self.sort,
            "order": self.order,
            "page": self.page,
            "per_page": self.per_page,
            **changes,
        }
        defaults = Query()
        return {k: str(v) for k, v in values.items() if v != getattr(defaults, k)}


def _sort_key(sort: str):
    state_rank = {s: i for i, s in enumerate(STATES)}
    if sort == "state":
        return lambda r: (state_rank[r.state], r.name)
    if sort == "sources":
        return lambda r: ([SOURCES.index(s) for s in r.sources], r.name)
    return lambda r: r.name


@dataclass
class ClassList:
    """A course's learners at one moment, ready to be searched, sorted and paged."""

    course: Course
    learners: list[Learner]
    #: when the hub's state was read (seconds, ``time.time()``)
    as_of: float = 0.0
    _by_sort: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        course: Course,
        *,
        roster_entries: Iterable[RosterEntry],
        group_members: Iterable[str],
        users: Mapping[str, dict],
        server_url,
        as_of: float = 0.0,
    ) -> ClassList:
        """Join the sources. ``users``: hub username -> ``{"last_activity", "servers"}`` as
        the hub's REST API gives them; ``server_url(name)``: the URL of ``name``'s server of
        this course."""
        sources: dict[str, set[str]] = {}
        emails: dict[str, str] = {}
        for name in course.learners:
            sources.setdefault(name, set()).add("catalog")
        for e in roster_entries:
            if e.course != course.id or e.role != "learner":
                continue
            key = e.username or e.email
            if not key:
                continue
            sources.setdefault(key, set()).add("roster")
            if e.email:
                emails[key] = e.email
        for name in group_members:
            sources.setdefault(name, set()).add("login")
        learners = []
        for name, found in sources.items():
            if "login" in found and len(found) > 1:
                found.discard("login")  # explained by the catalog or a roster
            user = users.get(name)
            server = (user or {}).get("servers", {}).get(course.id) or {}
            if server.get("ready"):
                state = "running"
            elif server.get("pending"):
                state = "pending"
            elif user is None or not user.get("last_activity"):
                state = "new"  # no hub user yet, or one made by an admin, never used
            else:
                state = "logged_in"
            activity = server.get("last_activity") or (user or {}).get("last_activity")
            learners.append(
                Learner(
                    name=name,
                    sources=tuple(s for s in SOURCES if s in found),
                    state=state,
                    email=emails.get(name),
                    last_activity=activity,
                    server_url=server_url(name) if state == "running" else None,
                )
            )
        learners.sort(key=lambda r: r.name)
        return cls(course=course, learners=learners, as_of=as_of)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for r in self.learners:
            counts[r.state] += 1
        return counts

    def _sorted(self, sort: str, order: str) -> list[Learner]:
        """The learners in this order (kept: each sort is made once per snapshot)."""
        key = (sort, order)
        if key not in self._by_sort:
            if sort == "last_activity":
                # ISO 8601 strings in UTC sort as times; who has none comes last either way
                have = sorted(
                    (r for r in self.learners if r.last_activity),
                    key=lambda r: (r.last_activity, r.name),
                    reverse=order == "desc",
                )
                rows = have + [r for r in self.learners if not r.last_activity]
            else:
                rows = sorted(self.learners, key=_sort_key(sort), reverse=order == "desc")
            self._by_sort[key] = rows
        return self._by_sort[key]

    def select(self, query: Query) -> list[Learner]:
        """Every learner the query matches, in its order (no paging)."""
        rows = self._sorted(query.sort, query.order)
        if query.state:
            rows = [r for r in rows if r.state == query.state]
        if query.q:
            needle = query.q.casefold()
            rows = [
                r
                for r in rows
                if needle in r.name.casefold() or (r.email and needle in r.email.casefold())
            ]
        return rows

    def page(self, query: Query) -> dict:
        """One page of the matching learners, with the counts a pager needs."""
        rows = self.select(query)
        pages = max(1, -(-len(rows) // query.per_page))
        start = (query.page - 1) * query.per_page
        return {
            "course": self.course.id,
            "total": len(self.learners),
            "matching": len(rows),
            "page": query.page,
            "per_page": query.per_page,
            "pages": pages,
            "learners": rows[start : start + query.per_page],
        }

    def csv(self, query: Query) -> str:
        """The matching learners (every page) as CSV, one row per learner."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["username", "email", "sources", "state", "last_activity"])
        for r in self.select(query):
            writer.writerow(
                [
                    _csv_cell(r.name),
                    _csv_cell(r.email),
                    " ".join(r.sources),
                    r.state,
                    r.last_activity or "",
                ]
            )
        return out.getvalue()


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


class Rosters:
    """Every roster row of the catalog's courses, read again when a roster file changes.

    ``roster_dir`` is where ``hub-ext import-roster`` keeps its imports (the authenticator's
    ``roster_dir``); empty: only the catalog's ``rosters:`` files. A roster that has become
    unreadable keeps the last good rows, and :attr:`problem` says why.
    """

    def __init__(self, catalog: Catalog, roster_dir: str | Path = "", log=log):
        self.catalog = catalog
        self.log = log
        self.store = RosterStore(roster_dir) if roster_dir else None
        self._key = None
        self._entries: list[RosterEntry] = []
        self.problem = ""

    def _files(self) -> list[Path]:
        files = [p for c in self.catalog.values() for p in c.rosters]
        return [*files, self.store.path] if self.store else files

    def entries(self) -> list[RosterEntry]:
        """The rows (blocking: file reads; call it off the event loop)."""
        key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in self._files())
        if key != self._key:
            try:
                entries = [e for r in load_catalog_rosters(self.catalog) for e in r.entries]
                if self.store:
                    entries += self.store.entries()
            except RosterError as e:
                if str(e) != self.problem:
                    self.log.error("A roster cannot be read; keeping its last good rows:\n%s", e)
                self.problem = str(e)
            else:
                self._entries, self.problem = entries, ""
            self._key = key
        return self._entries
