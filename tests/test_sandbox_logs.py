"""A sandboxed run's output: what its log keeps, on the local backend (real bubblewrap).

A sandboxed process (a teacher's notebook's gateway, a learner's submission being graded)
writes its output to a log file of the service, which is kept after the run. What it
writes is the attacker's to choose: the log keeps the newest ``Limits.log`` bytes, never all
of it. The Docker and Kubernetes backends copy the output themselves, through the same
:class:`~hub_ext.sandbox.base.CappedLog` (their tests: ``test_docker_sandbox.py``,
``test_kube_sandbox.py``).
"""

from __future__ import annotations

import logging
import sys

import pytest

from hub_ext.sandbox import Limits, SandboxSpec, SandboxUnavailable, make_sandbox
from hub_ext.sandbox.base import CappedLog, log_tail, trim_log

pytestmark = pytest.mark.slow

MiB = 1024**2


def test_trim_keeps_the_newest_bytes_and_says_what_went(tmp_path):
    log = tmp_path / "run.log"
    assert trim_log(log, 10) is False  # no log yet: nothing to do
    log.write_bytes(b"0123456789" * 5)
    assert trim_log(log, 100) is False and log.read_bytes() == b"0123456789" * 5
    assert trim_log(log, 15) is True
    first, rest = log.read_bytes().split(b"\n", 1)
    assert (
        first
        == b"[hub-ext: 35 bytes of earlier output dropped; a run's log keeps its last 15 bytes]"
    )
    assert rest == b"567890123456789"
    assert not (tmp_path / "run.log.trim").exists()


def test_a_copier_s_log_never_holds_much_more_than_twice_its_limit(tmp_path):
    log = tmp_path / "copied.log"
    largest = 0
    with CappedLog(log, 1000) as capped:
        for i in range(5000):
            capped.write(b"%09d\n" % i)
            largest = max(largest, log.stat().st_size)
    assert largest <= 2 * 1000 + 100
    text = log.read_bytes()
    assert len(text) < 1000 + 100 and text.endswith(b"000004999\n")  # the end, whole


@pytest.fixture
def bubblewrap():
    try:
        return make_sandbox("bubblewrap", log=logging.getLogger("test"))
    except SandboxUnavailable as e:
        pytest.fail(f"bubblewrap must work here (make setup installs it): {e}")


def flood_spec(tmp_path, code: str, **limits) -> SandboxSpec:
    return SandboxSpec(
        name="flood",
        argv=(sys.executable, "-c", code),
        env={"PATH": "/usr/bin:/bin"},
        scratch=tmp_path / "run",
        limits=Limits(wall=60, **limits),
    )


async def test_a_run_that_floods_its_output_leaves_a_log_of_the_limit(bubblewrap, tmp_path):
    code = (
        "import os\nchunk = b'x' * 1024**2\n"
        "for _ in range(30):\n    os.write(1, chunk)\n"
        "os.write(2, b'the-end\\n')\n"
    )
    log = tmp_path / "logs" / "flood.log"
    result = await bubblewrap.run(flood_spec(tmp_path, code, log=MiB), log)
    assert result.returncode == 0 and not result.timed_out, result.output[-500:]
    assert log.stat().st_size < MiB + 200
    assert log_tail(log, 100).endswith("the-end\n")


async def test_a_log_at_the_file_size_limit_does_not_kill_the_next_run(bubblewrap, tmp_path):
    """A gateway restarted onto its own log: the log is appended to, and the process may
    write no file past ``file_size`` (its rlimit counts the log too). Were the old log kept
    whole, the first line the new run wrote would fail (EFBIG: Python ignores SIGXFSZ; exit
    120), and every restart after."""
    log = tmp_path / "logs" / "gateway.log"
    log.parent.mkdir()
    log.write_bytes(b"an old line of a gateway's access log\n" * (2 * MiB // 38 + 1))
    code = "print('up again', flush=True)"
    # the log limit (8 MiB by default) above the rlimit: cut to half the rlimit at launch
    result = await bubblewrap.run(flood_spec(tmp_path, code, file_size=2 * MiB), log)
    assert result.returncode == 0, (result.returncode, result.output[-300:])
    assert result.output.endswith("up again\n")
    assert log.stat().st_size < MiB + 200


class _EngineFellBehind:
    """A Docker engine's API as the Docker sandbox's follower saw it in a flood (seen in
    CI: 24 MiB written in 0.6 s, ``max-size`` 1 MiB): the followed stream ends before the
    output does; the engine's retained copy has the end. Only what the follower calls."""

    def __init__(self, streamed: list[bytes], kept: bytes):
        self.streamed, self.kept = streamed, kept

    def logs(self, container, *, stream, follow=False):
        return iter(self.streamed) if stream else self.kept

    def wait(self, container):
        return {"StatusCode": 0}

    def inspect_container(self, container):
        return {"State": {"OOMKilled": False}}

    def remove_container(self, container, force):
        pass


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("fell_behind", [True, False])
async def test_a_container_log_ends_as_the_output_did_when_the_follower_fell_behind(
    fell_behind, tmp_path
):
    """The followed stream of a container's output can end short of the output (the
    engine rotating its copy under a fast writer): the log then gets the engine's own copy
    of the end, marked; when the stream was whole, nothing is added."""
    import asyncio

    from hub_ext.sandbox.docker import ContainerHandle

    output = [b"d" * 16384] * 200 + [b"last-of-the-container\n"]
    streamed = output[:120] if fell_behind else output
    kept = b"".join(output)[-(2 * MiB) :]  # the engine keeps the newest two files
    log = tmp_path / "run.log"
    handle = ContainerHandle(
        _EngineFellBehind(streamed, kept), "f" * 64, log, MiB, asyncio.get_running_loop()
    )
    assert await asyncio.wait_for(handle.wait(), 10) == 0
    text = log.read_bytes()
    assert text.endswith(b"last-of-the-container\n") and len(text) < MiB + 200
    assert (b"log follower fell behind" in text) is fell_behind
