"""Guarded kernel gateways, against real gateways and real kernels (no hub here).

Covers the launch spec (pure), the personality's guards (timeouts, kernel recovery,
JSON errors, bodies), the supervisor (setup errors, watchdog, replace, withdraw).
"""

import asyncio
import os
import signal

import pytest
import traitlets

from hub_ext.services.analytics.launch import gateway_spec
from hub_ext.services.analytics.supervisor import GatewayFailed, default_gateway_options
from tests.analytics_fixtures import *  # noqa: F403
from tests.analytics_fixtures import (
    add_events,
    gateway_http,
    gw_get,
    kill,
    pid_alive,
    publish,
    wait_until,
)

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ the spec (pure)


def test_spec_is_pure_and_keeps_secrets_out():
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "JUPYTERHUB_API_TOKEN": "hub-secret",
        "CONFIGPROXY_AUTH_TOKEN": "proxy-secret",
        "AWS_SECRET": "x",
    }
    spec = gateway_spec(
        "ds101",
        "know",
        "/srv/nb/know.ipynb",
        version="abc",
        token="gw-secret",
        scratch="/rt/sandboxes/ds101/know",
        data_dir="/rt/data/ds101",
        python="/venv/bin/python",
        **{**default_gateway_options(), "pool_size": 3},
        course_env={"DATASET_DIR": "/srv/data"},
        base_env=base,
    )
    assert spec.argv[:3] == ("/venv/bin/python", "-m", "hub_ext.services.analytics.gateway")
    assert "--KernelGatewayApp.api=hub_ext.services.analytics.personality" in spec.argv
    assert "--KernelGatewayApp.prespawn_count=3" in spec.argv
    # paths as the sandbox sees them; the host paths are only in the binds
    assert "--KernelGatewayApp.seed_uri=/srv/api/notebook.ipynb" in spec.argv
    assert "--SocketGatewayApp.unix_socket=/srv/run/gateway.sock" in spec.argv
    assert {(str(b.source), b.target, b.writable) for b in spec.sandbox.binds} == {
        ("/srv/nb/know.ipynb", "/srv/api/notebook.ipynb", False),
        ("/rt/data/ds101", "/srv/data", False),
    }
    assert str(spec.sandbox.scratch) == "/rt/sandboxes/ds101/know"
    assert spec.sandbox.network == "none"
    assert str(spec.socket) == "/rt/sandboxes/ds101/know/gateway.sock"
    assert spec.env["COURSE_ID"] == "ds101"
    assert (
        spec.env["HUB_EXT_EVENTS_URL"] == "sqlite:///file:/srv/data/events.sqlite?mode=ro&uri=true"
    )
    assert spec.env["DATASET_DIR"] == "/srv/data"
    assert spec.env["KG_AUTH_TOKEN"] == "gw-secret"
    assert spec.env["LANG"] == "C.UTF-8" and spec.env["HOME"] == "/srv/run"
    for secret in ("hub-secret", "proxy-secret", "x", "/root"):
        assert secret not in spec.env.values()
    assert not any("gw-secret" in a for a in spec.argv)
    assert "gw-secret" not in repr(spec) and "gw-secret" not in repr(spec.sandbox)
    with pytest.raises(ValueError, match="token"):
        gateway_spec(
            "ds101",
            "k",
            "x.ipynb",
            version="v",
            token="",
            scratch="/s",
            **default_gateway_options(),
        )
    with pytest.raises(ValueError, match="pool_size"):
        gateway_spec(
            "ds101", "k", "x.ipynb", version="v", token="t", scratch="/s",
            **{**default_gateway_options(), "pool_size": 0},
        )  # fmt: skip


def test_gateway_limits_have_one_default():
    """The supervisor's traits are the only defaults; the builder and the personality take them."""
    import inspect

    from hub_ext.services.analytics.personality import AnalyticsPersonality
    from hub_ext.services.analytics.supervisor import GatewaySupervisor

    options = default_gateway_options()
    params = inspect.signature(gateway_spec).parameters
    assert all(params[name].default is inspect.Parameter.empty for name in options)
    assert options["pool_size"] == GatewaySupervisor.class_traits()["pool_size"].default_value
    personality = AnalyticsPersonality.class_traits()
    for name in ("execution_timeout", "queue_timeout", "setup_timeout", "health_timeout"):
        assert personality[name].default_value in (None, traitlets.Undefined), name


# ------------------------------------------------------------------ a working API


async def test_routes_answer_json_and_read_the_events(supervisor, events_db):
    gw = await publish(supervisor, "trivial")
    r = await gw_get(gw, "/hello")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"hello": "world", "course": "ds101"}

    r = await gw_get(gw, "/learners/alice")
    assert r.status_code == 200 and r.json() == {"learner": "alice", "events": 2}
    add_events(events_db, [("alice", "viewed", "2026-10-02T09:00:00")])
    assert (await gw_get(gw, "/learners/alice")).json()["events"] == 3

    # charset in the content type: parsed; the gateway token and cookies never reach REQUEST
    r = await gw_get(
        gw,
        "/echo?x=1&token=leak",
        method="POST",
        content='{"é": [1, 2]}'.encode(),
        headers={"Content-Type": "application/json; charset=utf-8", "Cookie": "c=1"},
    )
    assert r.status_code == 200
    assert r.json() == {"body": {"é": [1, 2]}, "args": {"x": ["1"]}, "has_auth": False}
    r = await gw_get(
        gw,
        "/echo",
        method="POST",
        content='{"a": "latin"}'.encode("latin-1"),
        headers={"Content-Type": "application/vnd.api+json; charset=latin-1"},
    )
    assert r.json()["body"] == {"a": "latin"}


async def test_errors_are_json(supervisor):
    gw = await publish(supervisor, "trivial")
    cases = [
        (
            "POST",
            "/echo",
            {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ("DELETE", "/hello", {}, 405, "method_not_allowed"),
        ("GET", "/nowhere", {}, 404, "not_found"),
    ]
    for method, path, kwargs, status, error in cases:
        r = await gw_get(gw, path, method=method, **kwargs)
        assert r.status_code == status, (path, r.text)
        body = r.json()
        assert set(body) == {"error", "message", "request_id"} and body["error"] == error
        assert r.headers["x-request-id"] == body["request_id"]
    async with gateway_http(gw) as client:
        r = await client.get(gw.spec.url + "/hello")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await client.get(gw.spec.url + "/hello", params={"token": gw.spec.token})
        assert r.status_code == 401, "the token is accepted only in the Authorization header"


async def test_raising_cell_gives_json_500_and_logs_the_traceback(supervisor):
    gw = await publish(supervisor, "raising")
    r = await gw_get(gw, "/boom", headers={"X-Request-Id": "req-boom-1"})
    assert r.status_code == 500
    body = r.json()
    assert body == {
        "error": "execution_error",
        "message": "ValueError: no such learner: secret-detail",
        "request_id": "req-boom-1",
    }
    assert "Traceback" not in r.text and "raise ValueError" not in r.text
    log = gw.process.log_tail()
    assert "request req-boom-1: GET /boom raised ValueError" in log
    assert 'raise ValueError("no such learner: secret-detail")' in log
    assert (await gw_get(gw, "/ok")).json() == {"ok": True}


# ------------------------------------------------------------------ guards


async def test_sleep_forever_times_out_and_the_api_keeps_answering(supervisor_factory):
    sup = supervisor_factory(pool_size=2)
    gw = await publish(sup, "sleepy")
    other = await publish(sup, "trivial")
    # the client gives up well after the guard should have answered
    sleeping = asyncio.ensure_future(gw_get(gw, "/sleep", timeout=sup.execution_timeout + 5))
    await asyncio.sleep(0.5)
    # meanwhile: the same API's other route (the second kernel) and another API answer
    assert (await gw_get(gw, "/ok")).status_code == 200
    assert (await gw_get(other, "/hello")).status_code == 200
    r = await sleeping
    assert r.status_code == 504 and r.json()["error"] == "execution_timeout"
    # afterwards: both kernels serve; the route answers (with its guard) again
    await wait_until(lambda: _free_is(gw, 2), what="the interrupted kernel back in the pool")
    pids = {(await gw_get(gw, "/ok")).json()["pid"] for _ in range(4)}
    assert len(pids) == 2, "requests are spread over both kernels"
    r = await gw_get(gw, "/sleep", timeout=sup.execution_timeout + 5)
    assert r.status_code == 504


async def gw_free(gw):
    """The free kernels, per the gateway's health check."""
    return (await gw.health(10)).body.get("free", 0)


async def test_queue_timeout_503(supervisor_factory):
    sup = supervisor_factory(pool_size=1, execution_timeout=5.0, queue_timeout=1.0)
    gw = await publish(sup, "sleepy")
    sleeping = asyncio.ensure_future(gw_get(gw, "/sleep", timeout=15))
    await asyncio.sleep(0.5)
    r = await gw_get(gw, "/ok", timeout=10)
    assert r.status_code == 503 and r.json()["error"] == "queue_timeout"
    assert r.headers["retry-after"] == "1"
    assert (await sleeping).status_code == 504
    await wait_until(lambda: gw_free(gw), what="the kernel back after the interrupt")
    assert (await gw_get(gw, "/ok")).status_code == 200


async def test_kill_9_kernel_then_calls_succeed(supervisor):
    gw = await publish(supervisor, "trivial")
    pid = (await gw_get(gw, "/pid")).json()["pid"]
    kill(pid)
    await wait_until(lambda: not pid_alive(pid), what="the kernel to die")
    r = await gw_get(
        gw, "/pid", timeout=supervisor.queue_timeout + supervisor.execution_timeout + 1
    )
    assert r.status_code == 200
    new_pid = r.json()["pid"]
    assert new_pid != pid
    # the setup cell ran again on the new kernel (it defines COURSE)
    assert (await gw_get(gw, "/hello")).json()["course"] == "ds101"


async def test_kernel_killed_during_a_request(supervisor_factory):
    sup = supervisor_factory(execution_timeout=20.0)
    gw = await publish(sup, "sleepy")
    pid = (await gw_get(gw, "/ok")).json()["pid"]
    sleeping = asyncio.ensure_future(gw_get(gw, "/sleep", timeout=25))
    await asyncio.sleep(1)
    kill(pid)
    r = await sleeping
    assert r.status_code == 502 and r.json()["error"] == "kernel_died"
    r = await wait_until(lambda: _ok_or_none(gw), what="the replacement kernel")
    assert r.json()["pid"] != pid


async def _ok_or_none(gw):
    r = await gw_get(gw, "/ok", timeout=10)
    return r if r.status_code == 200 else None


async def test_kill_9_gateway_is_restarted(supervisor):
    gw = await publish(supervisor, "trivial")
    kernel_pid = (await gw_get(gw, "/pid")).json()["pid"]
    old_token = gw.spec.token
    kill(gw.process.pid)
    await wait_until(
        lambda: gw.state == "running" and gw.spec.token != old_token, what="the gateway restarted"
    )
    assert gw.restarts == 1
    r = await gw_get(gw, "/hello")
    assert r.status_code == 200 and r.json()["course"] == "ds101"
    # the old gateway's kernel does not outlive it
    await wait_until(lambda: not pid_alive(kernel_pid), what="the orphaned kernel to exit")


async def test_watchdog_restarts_a_hung_gateway(supervisor):
    gw = await publish(supervisor, "trivial")
    old_pid = gw.process.pid  # its keeper's, whose process group the gateway is in
    os.killpg(old_pid, signal.SIGSTOP)  # alive, listening, answering nothing
    await wait_until(
        lambda: gw.state == "running" and gw.process.pid != old_pid, what="the watchdog's restart"
    )
    assert "failed health checks" in gw.message or gw.restarts == 1
    assert (await gw_get(gw, "/hello")).status_code == 200
    assert not pid_alive(old_pid)


async def test_setup_error_fails_fast_naming_the_cell(supervisor):
    with pytest.raises(GatewayFailed) as info:
        await publish(supervisor, "setup_error")
    message = str(info.value)
    assert message == "setup cell 2 ('DATA = {}') raised ZeroDivisionError: division by zero"
    assert info.value.detail["cell"] == 2
    assert "setup-error" not in supervisor.gateways


async def test_recycled_kernel_keeps_serving(supervisor_factory):
    sup = supervisor_factory(max_requests_per_kernel=5)
    gw = await publish(sup, "trivial")
    pids = []

    async def pid():
        r = await gw_get(gw, "/pid")
        assert r.status_code == 200, r.text  # the old kernel serves while its successor starts
        pids.append(r.json()["pid"])
        return pids[-1]

    first = [await pid() for _ in range(5)]
    assert first == [first[0]] * 5
    await wait_until(lambda: _differs(pid, first[0]), what="the recycled kernel's successor")
    assert (await gw.health(10)).body["recycled"] >= 1
    assert (await gw_get(gw, "/hello")).json()["course"] == "ds101", (
        "setup cells ran on the successor"
    )
    await wait_until(lambda: not pid_alive(first[0]), what="the recycled kernel to stop")


async def _differs(pid, old):
    return await pid() != old


async def test_replace_and_withdraw(supervisor, tmp_path):
    gw1 = await publish(supervisor, "trivial", api="know")
    assert supervisor.gateways["ds101/know"] is gw1
    gw2 = await publish(supervisor, "raising", api="know")  # replace: another notebook
    assert supervisor.gateways["ds101/know"] is gw2
    assert gw1.state == "stopped" and gw1.process.returncode is not None
    assert (await gw_get(gw2, "/ok")).status_code == 200
    # a replacement that fails leaves the running version in place
    with pytest.raises(GatewayFailed):
        await publish(supervisor, "setup_error", api="know")
    assert supervisor.gateways["ds101/know"] is gw2 and gw2.state == "running"
    assert await supervisor.withdraw("ds101", "know")
    assert "ds101/know" not in supervisor.gateways and gw2.process.returncode is not None
    assert not await supervisor.withdraw("ds101", "know")


async def _free_is(gw, n):
    return await gw_free(gw) == n


async def test_a_gateway_whose_service_is_gone_stops_itself(supervisor_factory):
    """A container does not die with its parent: a gateway exits when its lifeline is no
    longer touched (the service that supervised it died)."""
    sup = supervisor_factory(lifeline_interval=1.0)  # the gateway waits 6 s without a touch
    gw = await publish(sup, "trivial")
    assert (await gw_get(gw, "/hello")).status_code == 200
    sup._lifeline_task.cancel()  # the service "dies": nobody touches the lifeline any more
    gw.state = "stopped"  # and nobody restarts the gateway
    old = gw.spec.lifeline.stat().st_mtime - 60
    os.utime(gw.spec.lifeline, (old, old))
    await wait_until(lambda: gw.process.returncode is not None, 30, 0.5, "the gateway to exit")
