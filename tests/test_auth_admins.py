"""Who is a hub admin with the shipped ``hub_config/jupyterhub_config.py``: nobody until the
institution says so (a real hub and proxy, started from that file as an institution would).

Admins by the provider's group (``admin_groups``), granted and revoked at login and refresh,
are tested against the real provider in test_auth_oidc (``test_admin_by_provider_group``).
"""

from __future__ import annotations

import os

import pytest

from tests.hubtest import REPO, HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_shipped_config_names_no_admin(tmp_path):
    saved = os.environ.get("HUB_EXT_DATA_DIR")
    (tmp_path / "data").mkdir()
    os.environ["HUB_EXT_DATA_DIR"] = str(tmp_path / "data")
    hub = HubProcess(
        tmp_path / "hub",
        REPO / "hub_config" / "courses.yaml",
        base_config=(
            f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})  # noqa\n"
            f"c.JupyterHub.db_url = 'sqlite:///{tmp_path / 'hub' / 'jupyterhub.sqlite'}'\n"
        ),
    )
    try:
        await hub.start()
        r = await hub.api("GET", "/users")
        assert r.status_code == 200, r.text
        assert [u["name"] for u in r.json() if u["admin"]] == []
        assert (await hub.api("GET", "/users/hubadmin")).status_code == 404
    finally:
        await hub.shutdown()
        if saved is None:
            os.environ.pop("HUB_EXT_DATA_DIR", None)
        else:
            os.environ["HUB_EXT_DATA_DIR"] = saved
