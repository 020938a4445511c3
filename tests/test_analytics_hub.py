"""The analytics service behind a real JupyterHub and its proxy, with real kernel gateways.

Acceptance of the analytics issue: a teacher publishes and calls (200, JSON); a learner,
another course's teacher and an anonymous caller are refused; a sleeping cell gives 504
while the rest answers; a gateway killed with -9 comes back; each refusal of the notebook
check comes back with its own message; GET answers are cached (ETag/304) and new events
invalidate them.
"""

import asyncio
import os
import signal
import sqlite3

import httpx
import pytest
import pytest_asyncio

from hub_ext.cli import main as cli_main
from tests.analytics_fixtures import (
    NOTEBOOKS,
    add_events,
    analytics_catalog,
    analytics_hub_config,
    make_store,
    wait_until,
)
from tests.hubtest import HubProcess, cmdline, free_port, node_available, process_tree

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PREFIX = "/services/analytics"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(tmp_path_factory):
    """A hub with the analytics service; tokens of tina (ds101 teacher), sam (stat200 teacher),
    alice (ds101 learner) and admin."""
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    root = tmp_path_factory.mktemp("analytics-hub")
    events = make_store(root / "events.db")
    add_events(events, [("alice", "viewed", "2026-10-01 10:00:00")])
    add_events(events, [("carol", "viewed", "2026-10-01 11:00:00")], course="stat200")
    catalog = analytics_catalog(root / "catalog")
    port = free_port()
    hub = HubProcess(
        root / "hub",
        catalog,
        extra_config=analytics_hub_config(catalog, root / "runtime", events, port),
    )
    await hub.start()
    try:
        tokens = {u: await hub.user_token(u) for u in ("tina", "sam", "alice", "admin")}
        ns = type("Env", (), {"hub": hub, "tokens": tokens, "events": events, "root": root})
        # the catalog's notebook is published at start
        await wait_until(lambda: _api_running(ns, "ds101", "know"), 90, 0.5, "ds101/know running")
        yield ns
    finally:
        await hub.shutdown()
        _stop_leftover_gateways(root / "runtime")


def _stop_leftover_gateways(runtime):
    """The hub stops the service (SIGTERM), which stops its gateways; check none is left."""
    import subprocess

    out = subprocess.run(
        ["pgrep", "-f", str(runtime)], capture_output=True, text=True
    ).stdout.split()
    for pid in out:
        os.kill(int(pid), signal.SIGKILL)
    assert not out, f"gateways outlived the service: {out}"


async def call(env, user, path, method="GET", timeout=120.0, **kwargs):
    headers = kwargs.pop("headers", {})
    if user:
        headers["Authorization"] = f"token {env.tokens[user]}"
    async with httpx.AsyncClient(timeout=timeout) as c:
        return await c.request(method, f"{env.hub.url}{PREFIX}{path}", headers=headers, **kwargs)


async def _api_running(env, course, name):
    return await _api_state(env, "tina", course, name) == "running"


async def _api_state(env, user, course, name):
    r = await call(env, user, "/_api/catalog")
    if r.status_code != 200:
        return None
    for api in r.json()["apis"]:
        if (api["course"], api["name"]) == (course, name):
            return api["state"]
    return None


async def test_teacher_calls_others_are_refused(env):
    r = await call(env, "tina", "/ds101/know/hello")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"hello": "world", "course": "ds101"}
    r = await call(env, "admin", "/ds101/know/learners/alice")
    assert r.status_code == 200 and r.json()["learner"] == "alice"

    for user, status in (("alice", 403), ("sam", 403), (None, 401)):
        r = await call(env, user, "/ds101/know/hello")
        assert r.status_code == status, (user, r.text)
        assert set(r.json()) >= {"error", "message", "request_id"}
    # neither the hub token nor the gateway's reaches the notebook
    r = await call(env, "tina", "/ds101/know/echo", method="POST", json={"a": 1})
    assert r.json() == {"body": {"a": 1}, "args": {}, "has_auth": False}


async def test_browser_oauth(env):
    client = await env.hub.login("tina")
    try:
        r = await client.get(f"{PREFIX}/", headers={"Accept": "text/html"})
        assert r.status_code == 200, (r.status_code, r.url)
        # a browser's front page: the caller's courses and their APIs
        assert "text/html" in r.headers["content-type"]
        assert f'href="{PREFIX}/ds101/know/"' in r.text and "stat200" not in r.text
        r = await client.get(f"{PREFIX}/", headers={"Accept": "application/json"})
        assert [a["name"] for a in r.json()["apis"]] == ["know"]
        r = await client.get(f"{PREFIX}/ds101/know/hello")
        assert r.status_code == 200 and r.json()["course"] == "ds101"
        r = await client.get(f"{PREFIX}/stat200/anything/x")
        assert r.status_code == 403
    finally:
        await client.aclose()
    learner = await env.hub.login("alice")
    try:
        r = await learner.get(f"{PREFIX}/ds101/know/hello", headers={"Accept": "text/html"})
        assert r.status_code == 403
    finally:
        await learner.aclose()


async def test_catalog_lists_what_the_caller_may_use(env):
    r = await call(env, "tina", "/_api/catalog")
    body = r.json()
    assert body["courses"] == ["ds101"]
    (api,) = body["apis"]
    assert api["url"] == f"{PREFIX}/ds101/know/"
    assert {(x["verb"], x["path"]) for x in api["routes"]} == {
        ("GET", "/hello"),
        ("GET", "/learners/:id"),
        ("POST", "/echo"),
        ("GET", "/pid"),
    }
    r = await call(env, "sam", "/_api/catalog")
    assert r.json()["courses"] == ["stat200"] and r.json()["apis"] == []
    r = await call(env, "admin", "/")
    assert r.json()["courses"] == ["ds101", "stat200"]
    assert (await call(env, "alice", "/")).status_code == 403


async def test_get_cache_etag_and_watermark(env):
    path = "/ds101/know/learners/alice"
    first = await call(env, "tina", path, params={"v": "1"})
    second = await call(env, "tina", path, params={"v": "1"})
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert first.json() == second.json()
    etag = second.headers["etag"]
    r = await call(env, "tina", path, params={"v": "1"}, headers={"If-None-Match": etag})
    assert r.status_code == 304
    # another query string is another answer
    assert (await call(env, "tina", path, params={"v": "2"})).headers["x-cache"] == "miss"
    # new events move the watermark: the next GET is a miss with the new count
    before = first.json()["events"]
    add_events(env.events, [("alice", "viewed", "2026-10-03T10:00:00")])

    async def fresh():
        r = await call(env, "tina", path, params={"v": "1"})
        return r if r.json()["events"] == before + 1 else None

    r = await wait_until(fresh, 10, 0.2, "the watermark to invalidate the cache")
    assert r.headers["x-cache"] == "miss" and r.headers["etag"] != etag


async def test_publish_replace_withdraw_through_the_cli(env, capsys, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env.tokens["tina"])
    hub_url = ["--hub-url", env.hub.url]
    status = await asyncio.to_thread(
        cli_main,
        [
            "publish",
            str(NOTEBOOKS / "raising.ipynb"),
            "--course",
            "ds101",
            "--name",
            "risky",
            *hub_url,
        ],
    )
    assert status == 0, capsys.readouterr().err
    assert "published ds101/risky" in capsys.readouterr().out
    r = await call(env, "tina", "/ds101/risky/boom")
    assert r.status_code == 500
    assert r.json()["error"] == "execution_error" and "Traceback" not in r.text
    assert (await call(env, "tina", "/ds101/risky/ok")).json() == {"ok": True}

    # replace it with another notebook: new routes, old ones gone
    assert (
        await asyncio.to_thread(
            cli_main,
            [
                "publish",
                str(NOTEBOOKS / "pandas_agg.ipynb"),
                "--course",
                "ds101",
                "--name",
                "risky",
                *hub_url,
            ],
        )
        == 0
    )
    assert (await call(env, "tina", "/ds101/risky/hello")).status_code == 200
    assert (await call(env, "tina", "/ds101/risky/boom")).status_code == 404

    # another course's teacher cannot publish here
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env.tokens["sam"])
    assert (
        await asyncio.to_thread(
            cli_main,
            [
                "publish",
                str(NOTEBOOKS / "trivial.ipynb"),
                "--course",
                "ds101",
                "--name",
                "xx",
                *hub_url,
            ],
        )
        == 1
    )
    assert "refused (403)" in capsys.readouterr().err

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env.tokens["tina"])
    r = await call(env, "tina", "/_api/courses/ds101/apis/Bad_Name", method="PUT", content=b"{}")
    assert r.status_code == 400 and r.json()["error"] == "bad_name"
    assert (
        await asyncio.to_thread(cli_main, ["withdraw", "risky", "--course", "ds101", *hub_url]) == 0
    )
    assert (await call(env, "tina", "/ds101/risky/hello")).status_code == 404


@pytest.mark.parametrize(
    "name, code",
    [
        ("bad_no_routes", "no-routes"),
        ("bad_duplicate_route", "duplicate-route"),
        ("bad_unsupported_verb", "unsupported-verb"),
        ("bad_malformed_path", "malformed-path"),
        ("bad_syntax", "does-not-compile"),
    ],
)
async def test_publish_refusals_name_the_cell(env, name, code):
    r = await call(
        env,
        "tina",
        "/_api/courses/ds101/apis/bad",
        method="PUT",
        content=(NOTEBOOKS / f"{name}.ipynb").read_bytes(),
    )
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "notebook_refused"
    assert [p["code"] for p in body["problems"]] == [code]
    problem = body["problems"][0]
    if problem["cell"] is not None:
        assert f"cell {problem['cell']} ({problem['first_line']!r})" in problem["message"]


async def test_publish_setup_error_names_the_cell(env):
    r = await call(
        env,
        "tina",
        "/_api/courses/ds101/apis/broken",
        method="PUT",
        content=(NOTEBOOKS / "setup_error.ipynb").read_bytes(),
    )
    assert r.status_code == 422
    assert (
        r.json()["message"]
        == "setup cell 2 ('DATA = {}') raised ZeroDivisionError: division by zero"
    )
    assert (await call(env, "tina", "/ds101/broken/x")).status_code == 404


async def test_sleeping_cell_504_while_the_rest_answers(env):
    r = await call(
        env,
        "tina",
        "/_api/courses/ds101/apis/sleepy",
        method="PUT",
        content=(NOTEBOOKS / "sleepy.ipynb").read_bytes(),
    )
    assert r.status_code == 201, r.text
    # execution_timeout is 3 s: the client's own limit is the timeout + 1 s (+ proxy slack)
    sleeping = asyncio.ensure_future(call(env, "tina", "/ds101/sleepy/sleep", timeout=3 + 1 + 2))
    await asyncio.sleep(0.5)
    assert (await call(env, "tina", "/ds101/sleepy/ok")).status_code == 200
    assert (await call(env, "tina", "/ds101/know/hello")).status_code == 200
    r = await sleeping
    assert r.status_code == 504 and r.json()["error"] == "execution_timeout"
    await wait_until(lambda: _ok(env, "/ds101/sleepy/ok"), 15, 0.3, "sleepy/ok after the interrupt")
    r = await call(env, "tina", "/ds101/sleepy/sleep", timeout=3 + 1 + 2)
    assert r.status_code == 504


async def _ok(env, path):
    return (await call(env, "tina", path, params={"n": os.urandom(4).hex()})).status_code == 200


def _sandbox_pids(pattern: str) -> list[int]:
    """The sandboxes (bwrap processes, host pids) whose command line matches ``pattern``."""
    import subprocess

    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _descendants(root: int) -> list[tuple[int, str]]:
    """(host pid, command line) of every descendant of ``root``."""
    return [(pid, cmdline(pid)) for pid in process_tree(root)[1:]]


async def test_kill_9_kernel_and_gateway_recover(env):
    # the pids a notebook reports are its sandbox's: find the host's through the sandbox
    sandboxes = _sandbox_pids("bwrap .*ds101/know--")
    assert sandboxes, "the gateway of ds101/know runs in a bubblewrap sandbox"
    kernels = [
        pid
        for sandbox in sandboxes
        for pid, cmd in _descendants(sandbox)
        if "ipykernel_launcher" in cmd
    ]
    assert kernels, "its kernels run inside the sandbox"
    # a kernel: the next call succeeds (the dead kernel is replaced, setup cells re-run)
    for pid in kernels:
        os.kill(pid, signal.SIGKILL)
    r = await call(
        env, "tina", "/ds101/know/hello", params={"after": "kernel"}, timeout=2 + 3 + 1 + 2
    )
    assert r.status_code == 200
    # the gateway: kill its sandbox
    for pid in sandboxes:
        os.kill(pid, signal.SIGKILL)
    statuses = []
    for i in range(60):
        # every call is bounded: queue timeout (2 s) + execution timeout (3 s) + 1 s + slack
        r = await call(env, "tina", "/ds101/know/hello", params={"i": i}, timeout=2 + 3 + 1 + 2)
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
        assert r.status_code in (502, 503), r.text
        await asyncio.sleep(0.3)
    assert statuses[-1] == 200, statuses
    assert (await call(env, "tina", "/ds101/know/learners/alice")).status_code == 200


# ------------------------------------------------------------------ trust boundaries


async def _publish_attacker(env, name="attacker"):
    body = (NOTEBOOKS / "attacker.ipynb").read_bytes()
    r = await call(env, "tina", f"/_api/courses/ds101/apis/{name}", method="PUT", content=body)
    assert r.status_code in (200, 201), r.text
    return r


async def test_a_teachers_notebook_cannot_reach_the_hub(env):
    """Finding 1: a ds101 teacher publishes a notebook that reads every process's environment,
    the hub's files and the event store, writes the store and calls the hub's ports. In the
    sandbox each attempt is refused, and it sees ds101's events only."""
    await _publish_attacker(env)
    hub_dir = env.hub.workdir
    files = [
        hub_dir / "jupyterhub.sqlite",
        hub_dir / "cookie_secret",
        hub_dir / "jupyterhub_config.py",
        env.events,  # the whole event store
        env.root / "runtime" / "data" / "stat200" / "events.sqlite",  # another course's extract
        env.root / "runtime" / "logs",
        "/proc/1/environ",
        "/etc/shadow",
    ]
    ports = [env.hub.port, env.hub.hub_port, env.hub.proxy_api_port]
    r = await call(
        env,
        "tina",
        "/ds101/attacker/attack",
        params={"file": [str(f) for f in files], "port": ports},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["environ"]["secrets"] == {}, got["environ"]
    assert got["environ"]["gateway_tokens"] <= 1, "only its own gateway is visible"
    assert not any("jupyterhub" in p or "node" in p for p in got["environ"]["processes"]), got
    assert got["env"] == []
    assert got["uid"] != 0 and got["capabilities"] == ["0000000000000000"]
    for path, outcome in got["files"].items():
        if path == "/proc/1/environ":  # its own sandbox's first process: nothing of the hub's
            assert "refused" in outcome or "4a55505954" not in outcome["got"], outcome
            continue
        assert "refused" in outcome, (path, outcome)
    assert "refused" in got["write_store"], got["write_store"]
    assert got["courses"] == {"got": ["ds101"]}, got["courses"]
    assert "refused" in got["sources"] and "no such table" in got["sources"]["refused"]
    for port, outcome in got["ports"].items():
        assert "refused" in outcome, (port, outcome)
    # and the store was not written
    with sqlite3.connect(env.events) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "pwned" not in tables


async def test_a_token_with_other_scopes_is_refused(env):
    """The service authorizes by the token's scopes, not by whose token it is: a token of
    tina's that may only read her name does not call her course's analytics."""
    r = await env.hub.api(
        "POST",
        "/users/tina/tokens",
        json={"note": "narrow", "scopes": ["read:users:name!user=tina"]},
    )
    assert r.status_code == 201, r.text
    narrow = r.json()["token"]
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.get(
            f"{env.hub.url}{PREFIX}/ds101/know/hello", headers={"Authorization": f"token {narrow}"}
        )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


async def test_answers_are_inert(env):
    """Finding 4: a notebook declaring text/html is refused (JSON error naming the route);
    every answer carries nosniff and a restrictive CSP."""
    await _publish_attacker(env, "attacker-html")
    r = await call(env, "tina", "/ds101/attacker-html/html")
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == "unsafe_content_type" and "/html" in body["message"]
    assert "<script>" not in r.text
    ok = await call(env, "tina", "/ds101/know/hello")
    for response in (r, ok):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_the_notebook_never_learns_who_asked(env):
    """Finding 5: the cache is shared by the course's callers, so answers must not depend on
    the caller: no caller identity reaches the notebook (and admin and teacher get one answer)."""
    await _publish_attacker(env, "attacker-who")
    a = await call(env, "tina", "/ds101/attacker-who/whoami")
    b = await call(env, "admin", "/ds101/attacker-who/whoami")
    assert a.status_code == b.status_code == 200
    headers = {h.lower() for h in a.json()["headers"]}
    assert not headers & {"x-hub-user", "authorization", "cookie"}, headers
    assert a.json() == b.json()
