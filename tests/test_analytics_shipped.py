"""The shipped analytics notebooks answer the same under our guarded gateway as under stock KG.

Real parts: the OULAD import in a SQLite event store (tests/events_fixtures.py), the
notebooks in kernelgateway_notebooks/, a bare jupyter-kernel-gateway and ours, side by side.
"""

import httpx
import pytest

from hub_ext.services.analytics.extracts import CourseExtracts
from hub_ext.services.analytics.notebook import check_notebook
from hub_ext.services.analytics.supervisor import GatewaySupervisor
from tests.events_fixtures import NOTEBOOKS, oulad_store, start_gateway  # noqa: F401

pytestmark = pytest.mark.slow

COURSE = "aaa-2013j"
CALLS = {
    "know_thy_student.ipynb": [
        "/learners/28400",
        "/learners/28400/sessions",
        "/learners/28400/sessions?gap=1440",
        "/learners/999999999",
        "/learners/28400/sessions?gap=0",
        "/segments",
        "/charts/learners/28400",
        "/charts/learners/999999999",
        "/charts/learners/28400/sessions?gap=1440",
        "/charts/segments",
    ],
    "course_overview.ipynb": ["/summary", "/activity/daily", "/charts/activity/daily"],
    "resource_heatmap.ipynb": ["/charts/heatmap?measure=learners&limit=10"],
}


@pytest.mark.parametrize("notebook", sorted(CALLS))
async def test_same_answers_as_stock_notebook_http(notebook, oulad_store, tmp_path):  # noqa: F811
    nb = check_notebook(NOTEBOOKS / notebook)  # the shipped notebooks pass the check
    bare = start_gateway(notebook, oulad_store, COURSE, tmp_path)
    # ours: in the sandbox, over the course's extract, as the analytics service runs it
    data = tmp_path / "runtime" / "data"
    CourseExtracts(store_url=oulad_store.readonly_url, root=str(data)).build(COURSE)
    sup = GatewaySupervisor(
        pool_size=1,
        runtime_dir=str(tmp_path / "runtime"),
        execution_timeout=60.0,
        queue_timeout=60.0,
        health_interval=5.0,
    )
    try:
        ours = await sup.publish(COURSE, "api", nb)
        sandboxed = httpx.AsyncHTTPTransport(uds=str(ours.spec.socket))
        async with (
            httpx.AsyncClient(timeout=120) as client,
            httpx.AsyncClient(timeout=120, transport=sandboxed) as to_ours,
        ):
            for path in CALLS[notebook]:
                want = await client.get(bare.url + path)
                got = await to_ours.get(
                    ours.spec.url + path, headers={"Authorization": f"token {ours.spec.token}"}
                )
                assert got.status_code == want.status_code, (path, got.text)
                assert got.json() == want.json(), path
                assert got.headers["content-type"].startswith("application/json")
    finally:
        await sup.stop_all()
        bare.stop()
