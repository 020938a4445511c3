"""Course pages without a hub: the class from every source, search/sort/pages, CSV, the cache.

The hub-facing parts (scopes, pages, the hub's REST API) are tested on a real hub in
test_coursepage_hub.py and in a real browser in test_coursepage_browser.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from tornado.httpclient import HTTPClientError

from hub_ext.courses import Catalog
from hub_ext.roster import RosterEntry
from hub_ext.services.courses.classlist import ClassList, Query, QueryError, Rosters
from hub_ext.services.courses.hubapi import HubState, HubUnavailable
from hub_ext.services.courses.hubconfig import course_page_scope, courses_roles, courses_service
from tests.conftest import write_catalog


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ds101.csv").write_text(
        "username,email,role\nbob,bob@example.edu,learner\ndora,,learner\n"
        ",eve@example.edu,learner\nnora,,teacher\n"
    )
    path = write_catalog(
        tmp_path / "c",
        [
            {
                "id": "ds101",
                "title": "Data analysis",
                "opens": day(-1),
                "closes": day(30),
                "learners": ["alice", "bob"],
                "teachers": ["tina"],
                "rosters": ["ds101.csv"],
            },
            {"id": "stat200", "title": "Statistics", "opens": day(-1), "closes": day(30)},
        ],
    )
    return Catalog.load(path)


USERS = {
    "alice": {
        "last_activity": "2026-01-02T10:00:00Z",
        "servers": {"ds101": {"ready": True, "last_activity": "2026-01-03T09:00:00Z"}},
    },
    "bob": {"last_activity": "2026-01-01T08:00:00Z", "servers": {"stat200": {"ready": True}}},
    "frank": {"last_activity": None, "servers": {"ds101": {"pending": "spawn"}}},
    "gina": {"last_activity": None, "servers": {}},
}


def build(catalog, users=USERS, members=("alice", "bob", "frank", "gina")) -> ClassList:
    return ClassList.build(
        catalog["ds101"],
        roster_entries=Rosters(catalog).entries(),
        group_members=members,
        users=users,
        server_url=lambda name: f"/user/{name}/ds101/",
    )


def test_the_whole_class_from_every_source(catalog):
    rows = {r.name: r for r in build(catalog).learners}
    assert set(rows) == {"alice", "bob", "dora", "eve@example.edu", "frank", "gina"}  # not nora
    assert rows["alice"].sources == ("catalog",)
    assert rows["bob"].sources == ("catalog", "roster")
    assert rows["bob"].email == "bob@example.edu"
    assert rows["dora"].sources == ("roster",)
    assert rows["eve@example.edu"].sources == ("roster",)
    assert rows["frank"].sources == ("login",)  # in the hub group, nothing else explains it
    assert rows["alice"].state == "running"
    assert rows["alice"].server_url == "/user/alice/ds101/"
    assert rows["alice"].last_activity == "2026-01-03T09:00:00Z"  # the course server's
    assert rows["bob"].state == "logged_in"  # his stat200 server is not this course's
    assert rows["bob"].server_url is None
    assert rows["dora"].state == "new" and rows["dora"].last_activity is None
    assert rows["frank"].state == "pending"
    assert rows["gina"].state == "new"  # a hub user an admin made, never logged in


def test_search_sort_and_pages(catalog):
    cl = build(catalog)
    assert [r.name for r in cl.select(Query(q="EXAMPLE.edu"))] == ["bob", "eve@example.edu"]
    assert [r.name for r in cl.select(Query(q="o"))] == ["bob", "dora"]
    assert [r.name for r in cl.select(Query(state="new"))] == ["dora", "eve@example.edu", "gina"]
    by_state = [r.state for r in cl.select(Query(sort="state"))]
    assert by_state == ["running", "pending", "logged_in", "new", "new", "new"]
    assert [r.name for r in cl.select(Query(sort="name", order="desc"))][0] == "gina"
    recent = [r.name for r in cl.select(Query(sort="last_activity", order="desc"))]
    assert recent[:2] == ["alice", "bob"] and set(recent[2:]) == {
        "dora",
        "eve@example.edu",
        "frank",
        "gina",
    }
    oldest = [r.name for r in cl.select(Query(sort="last_activity"))]
    assert oldest[:2] == ["bob", "alice"]  # and those who have none still come last
    page = cl.page(Query(per_page=2, page=3))
    assert (page["pages"], page["matching"], [r.name for r in page["learners"]]) == (
        3,
        6,
        ["frank", "gina"],
    )
    assert cl.page(Query(page=9))["learners"] == []


@pytest.mark.parametrize(
    "args, field",
    [
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"per_page": "501"}, "per_page"),
        ({"sort": "email"}, "sort"),
        ({"order": "up"}, "order"),
        ({"state": "asleep"}, "state"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_a_bad_parameter_is_named(args, field):
    with pytest.raises(QueryError) as e:
        Query.parse(args)
    assert e.value.field == field and field in str(e.value)


def test_query_links_keep_only_what_differs():
    q = Query.parse({"q": "al", "page": "2"})
    assert q.args() == {"q": "al", "page": "2"}
    assert q.args(page=1) == {"q": "al"}


def test_csv_has_everyone_and_quotes_formulas(catalog):
    entries = [RosterEntry("ds101", "learner", "=cmd", None)]
    cl = ClassList.build(
        catalog["ds101"],
        roster_entries=entries,
        group_members=(),
        users={},
        server_url=lambda n: "",
    )
    rows = list(csv.reader(io.StringIO(cl.csv(Query()))))
    assert rows[0] == ["username", "email", "sources", "state", "last_activity"]
    assert ["'=cmd", "", "roster", "new", ""] in rows
    assert len(rows) == 1 + 3  # alice, bob (catalog), =cmd


def test_a_broken_roster_keeps_the_last_good_rows(catalog, tmp_path, caplog):
    rosters = Rosters(catalog)
    good = rosters.entries()
    assert {e.who for e in good} >= {"dora", "eve@example.edu"}
    (tmp_path / "c" / "ds101.csv").write_text("username,role\ndora,wizard\n")
    assert rosters.entries() == good
    assert "ds101.csv" in rosters.problem and "wizard" in rosters.problem


def test_the_service_token_reads_learner_groups_only(catalog):
    roles = {r["name"]: r for r in courses_roles(catalog)}
    own = roles["service-courses"]
    assert own["services"] == ["courses"]
    assert all("!group=course:" in s and s.endswith(":learner") for s in own["scopes"])
    assert not any(
        s.startswith(("admin", "access:servers", "users", "servers")) for s in own["scopes"]
    )
    entry = courses_service(catalog, catalog_path="x.yaml", port=1)
    assert entry["oauth_client_allowed_scopes"] == [
        course_page_scope("ds101"),
        course_page_scope("stat200"),
    ]


# ------------------------------------------------------------------------ the cache


class FakeHubAPI:
    """Stands in for the hub's REST API (the real one is in test_coursepage_hub.py):
    pages of ``GET /users`` as JupyterHub gives them, and counts the calls."""

    def __init__(self, n_users: int, page: int = 200):
        self.names = [f"u{i:04d}" for i in range(n_users)]
        self.page = page
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def fetch(self, request):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise HTTPClientError(500)
        assert request.headers["Authorization"] == "token secret"
        path, _, query = request.url.partition("?")
        params = dict(p.split("=") for p in query.split("&") if p)
        if "/groups/" in path:
            body = {"name": "g", "users": self.names[:3]}
        else:
            offset = int(params["offset"])
            items = [{"name": n, "servers": {}} for n in self.names[offset : offset + self.page]]
            more = offset + self.page < len(self.names)
            body = {
                "items": items,
                "_pagination": {"next": {"offset": offset + self.page} if more else None},
            }

        class R:
            pass

        r = R()
        r.body = json.dumps(body).encode()
        return r


async def test_pages_through_the_users_and_serves_stale_while_refreshing():
    api = FakeHubAPI(450)
    now = [1000.0]
    state = HubState(
        "http://hub/hub/api", "secret", ["course:ds101:learner"], client=api, clock=lambda: now[0]
    )
    first = await state.snapshot()
    assert len(first.users) == 450 and first.requests == 3 + 1 and api.calls == 4
    assert first.groups["course:ds101:learner"] == frozenset(["u0000", "u0001", "u0002"])
    assert await state.snapshot() is first and api.calls == 4  # fresh: no call
    now[0] += 30  # stale: answered at once, refreshed in the background
    api.gate = asyncio.Event()
    assert await state.snapshot() is first
    assert await state.snapshot() is first  # one refresh at a time
    await asyncio.sleep(0)
    assert api.calls == 5
    api.gate.set()
    await asyncio.sleep(0.05)
    assert (await state.snapshot()).taken_at == 1030.0
    now[0] += 1000  # too old: waits, and a hub that fails says so
    api.gate, api.fail = None, True
    with pytest.raises(HubUnavailable, match="500 to GET /users"):
        await state.snapshot()
