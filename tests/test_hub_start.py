"""A hub with a broken catalog (or roster) does not start, and says why."""

from __future__ import annotations

import pytest

from tests.conftest import day, write_catalog
from tests.hubtest import HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def start_fails(workdir, catalog) -> str:
    hub = HubProcess(workdir, catalog)
    with pytest.raises(RuntimeError, match="the hub exited with 1") as info:
        await hub.start()
    await hub.stop()
    assert not (workdir / "jupyterhub.sqlite").exists(), "the hub got as far as its database"
    return str(info.value)


async def test_broken_catalog_stops_the_hub_with_every_problem(tmp_path):
    catalog = write_catalog(
        tmp_path / "catalog",
        [
            {"id": "ds101", "title": "A", "opens": "2026-09-01", "closes": "2026-01-01"},
            {"id": "stat200", "title": "B", "opens": day(-1), "closes": day(9), "memory": "2G"},
            {"id": "ir101", "title": "C", "opens": day(-1), "closes": day(9), "kernels": ["ir"]},
        ],
    )
    message = await start_fails(tmp_path / "hub", catalog)
    assert "The course catalog has 3 problem(s); the hub will not start:" in message
    assert (
        "courses.yaml: line 5: course 'ds101': closes: closes (2026-01-01) is before opens (2026-09-01)"
        in message
    )
    assert "line 10: course 'stat200': unknown key 'memory' (did you mean 'mem_limit'?)" in message
    assert (
        "line 16: course 'ir101': kernels: unknown kernel 'ir' (this backend has: python3, stats)"
        in message
    )
    assert "Traceback" not in message


async def test_broken_roster_stops_the_hub(tmp_path):
    directory = tmp_path / "catalog"
    directory.mkdir()
    (directory / "ds101.csv").write_text(
        "username,course,role\nalice,ds101,learner\nbob,ds101,owner\n"
    )
    catalog = write_catalog(
        directory,
        [
            {
                "id": "ds101",
                "title": "A",
                "opens": day(-1),
                "closes": day(9),
                "rosters": ["ds101.csv"],
            }
        ],
    )
    message = await start_fails(tmp_path / "hub", catalog)
    assert "The catalog's rosters have 1 problem(s); the hub will not start:" in message
    assert "course 'ds101': rosters:" in message and "line 3" in message and "owner" in message
