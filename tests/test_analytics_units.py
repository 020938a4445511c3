"""Pure parts of the analytics service: cache, watermarks, the hub config it asks for."""

import asyncio

from hub_ext.courses import Catalog, analytics_scope
from hub_ext.services.analytics.cache import (
    CachedResponse,
    FileWatermark,
    ResponseCache,
    SQLWatermark,
    ThrottledWatermark,
    cache_key,
    make_etag,
)
from hub_ext.services.analytics.hubconfig import (
    SERVICE_SCOPES,
    analytics_roles,
    analytics_service,
    configure_analytics,
)
from tests.analytics_fixtures import add_events, events_db, readonly_url  # noqa: F401


def entry(body: bytes) -> CachedResponse:
    return CachedResponse(200, {"Content-Type": "application/json"}, body, make_etag("v1", body))


def test_cache_key_and_etag():
    a = cache_key("ds101", "know", "/learners/alice", [("b", "2"), ("a", "1")], "v1", "w1")
    assert a == cache_key("ds101", "know", "/learners/alice", [("a", "1"), ("b", "2")], "v1", "w1")
    assert a != cache_key("ds101", "know", "/learners/alice", [("a", "1"), ("b", "2")], "v2", "w1")
    assert a != cache_key("ds101", "know", "/learners/alice", [("a", "1"), ("b", "2")], "v1", "w2")
    assert make_etag("v1", b"x") != make_etag("v1", b"y") != make_etag("v2", b"y")


def test_lru_bounds():
    cache = ResponseCache(max_entries=2, max_bytes=1000, ttl=0)
    for i in range(3):
        cache.put(i, entry(b"x" * 10))
    assert cache.get(0) is None and cache.get(1) and cache.get(2)
    cache.get(1)  # most recent now
    cache.put(3, entry(b"y"))
    assert cache.get(2) is None and cache.get(1)
    big = ResponseCache(max_entries=10, max_bytes=100, ttl=0)
    big.put("huge", entry(b"z" * 60))  # more than a quarter of the budget: never stored
    assert big.get("huge") is None
    for key in "abcd":
        big.put(key, entry(b"z" * 25))
    assert len(big) == 4
    big.put("e", entry(b"z" * 25))  # 125 bytes > 100: the least recently used goes
    assert big.get("a") is None and big.get("e") and len(big) == 4
    big.drop_api("x", "y")
    assert len(big) == 4


async def test_single_flight():
    cache = ResponseCache()
    calls = 0
    gate = asyncio.Event()

    async def fetch():
        nonlocal calls
        calls += 1
        await gate.wait()
        return entry(b'{"n": 1}'), True

    tasks = [asyncio.ensure_future(cache.get_or_fetch("k", fetch)) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sum(1 for _, hit in results if not hit) == 1
    assert (await cache.get_or_fetch("k", fetch))[1] is True

    async def not_cacheable():
        return entry(b"err"), False

    assert (await cache.get_or_fetch("e", not_cacheable))[1] is False
    assert cache.get("e") is None


async def test_throttled_watermark_and_sql(events_db):  # noqa: F811
    now = [100.0]
    sql = SQLWatermark(readonly_url(events_db), "SELECT MAX(id), COUNT(*) FROM statements")
    wm = ThrottledWatermark(sql, interval=1.0, clock=lambda: now[0])
    first = await wm("ds101")
    add_events(events_db, [("bob", "viewed", "2026-10-04T10:00:00")])
    assert await wm("ds101") == first, "within the interval the source is not asked again"
    now[0] += 1.5
    assert await wm("ds101") != first, "new events move the watermark"

    calls = []

    def plain(course):
        calls.append(course)
        return 7

    wm2 = ThrottledWatermark(plain, interval=10, clock=lambda: now[0])
    assert await wm2("a") == "7" and await wm2("a") == "7" and calls == ["a"]


def test_file_watermark(tmp_path):
    path = tmp_path / "store.db"
    wm = FileWatermark(str(path), str(tmp_path / "store.db-wal"))
    missing = wm("c")
    path.write_bytes(b"1")
    assert wm("c") != missing


def catalog():
    return Catalog.from_data(
        {
            "courses": [
                {
                    "id": "ds101",
                    "title": "DS",
                    "opens": "2026-01-01",
                    "closes": "2027-01-01",
                    "teachers": ["tina"],
                },
                {"id": "stat200", "title": "Stats", "opens": "2026-01-01", "closes": "2027-01-01"},
            ]
        }
    )


def test_hubconfig_least_privilege(tmp_path):
    cat = catalog()
    svc = analytics_service(
        cat,
        catalog_path=tmp_path / "courses.yaml",
        port=10123,
        options={"GatewaySupervisor.pool_size": 4},
    )
    assert svc["name"] == "analytics" and svc["url"] == "http://127.0.0.1:10123"
    assert "roles" not in svc and SERVICE_SCOPES == []
    assert svc["oauth_client_allowed_scopes"] == [
        analytics_scope("ds101"),
        analytics_scope("stat200"),
    ]
    # it runs through the lifeline (it ends with the hub), as every hub_ext service does
    assert svc["command"][1:4] == ["-m", "hub_ext.services.lifeline", "--"]
    assert svc["command"][5:7] == ["-m", "hub_ext.services.analytics"]
    assert "--GatewaySupervisor.pool_size=4" in svc["command"]
    callers, admins = analytics_roles(cat, admin_users={"root"})
    assert callers["scopes"] == ["access:services!service=analytics"]
    assert callers["groups"] == ["course:ds101:teacher", "course:stat200:teacher"]
    assert set(admins["scopes"]) == {
        "access:services!service=analytics",
        *map(analytics_scope, cat),
    }
    assert admins["users"] == ["root"]

    from traitlets.config import Config

    c = Config()
    c.JupyterHub.services = [{"name": "other"}]
    configure_analytics(c, cat, catalog_path=tmp_path / "courses.yaml")
    assert [s["name"] for s in c.JupyterHub.services] == ["other", "analytics"]
    assert set(c.JupyterHub.custom_scopes) == {analytics_scope("ds101"), analytics_scope("stat200")}
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["analytics-callers"]


async def test_published_notebooks_survive_a_restart(tmp_path, monkeypatch):
    """What the service publishes at start: the catalog's notebooks, runtime ones, not withdrawn ones."""
    from hub_ext.courses import CourseCatalog
    from hub_ext.services.analytics.app import AnalyticsService
    from tests.analytics_fixtures import analytics_catalog

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token-for-a-unit-test")
    cat = analytics_catalog(tmp_path / "cat")

    def fresh_app():
        CourseCatalog.clear_instance()
        AnalyticsService.clear_instance()
        app = AnalyticsService()
        app.initialize(
            [f"--CourseCatalog.path={cat}", f"--GatewaySupervisor.runtime_dir={tmp_path / 'rt'}"]
        )
        return app

    app = fresh_app()
    assert app.base_url == "/services/analytics/"
    assert [(c, n, f) for c, n, _, f in app.startup_notebooks()] == [("ds101", "know", True)]
    app._store("stat200", "extra", b"{}")
    assert await app.withdraw("ds101", "know") is False  # not running, but withdrawn for good
    app = fresh_app()
    assert [(c, n, f) for c, n, _, f in app.startup_notebooks()] == [("stat200", "extra", False)]
    app._store("ds101", "know", b"{}")  # published again at runtime: the withdrawal is lifted
    assert sorted((c, n) for c, n, _, _ in fresh_app().startup_notebooks()) == [
        ("ds101", "know"),
        ("stat200", "extra"),
    ]
    CourseCatalog.clear_instance()
    AnalyticsService.clear_instance()


def test_what_notebooks_import_needs_no_hub():
    """The analytics image and the sandbox have no JupyterHub: the queries module the shipped
    notebooks import must not pull it (nor docker) in. A fresh interpreter, since this test
    process has imported everything already."""
    import subprocess
    import sys

    code = (
        "import sys, hub_ext.services.events.queries, hub_ext.services.analytics.gateway\n"
        "import hub_ext.services.analytics.personality  # loaded by the gateway in the image\n"
        "bad = sorted(m for m in ('jupyterhub', 'docker', 'dockerspawner') if m in sys.modules)\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
