"""Autograding throughput: N submissions graded in the sandbox vs the same notebooks run with
nbclient directly (no sandbox), in the same run; and, when it is there, nbgrader's own
``nbgrader autograde`` on the same N.

    .venv/bin/python tests/benchmarks/bench_grading.py [--submissions 20|100] [--concurrency 1 2]

The submissions are the fixture assignment of ``tests/grading_fixtures.py`` (correct,
wrong and partial answers in turn). Each is prepared (hidden tests in), then:

- **nbclient** (the baseline): ``NotebookClient(...).async_execute()`` with a local kernel
  of this environment, one kernel per notebook, as a bare grader would;
- **sandbox**: :meth:`Autograder.grade` (``c.Autograder.sandbox``, ``auto``: bubblewrap
  here): a new sandbox and kernel per submission, the grader's guards, scoring;
- **nbgrader** (``make nbgrader-ref``; ``--no-nbgrader`` to leave it out): ``nbgrader
  autograde`` over the same submissions (one process, one after the other, as it runs).

At each concurrency: submissions/s, p50 and p95 seconds from start to result, and the
ratios against nbclient at the same concurrency. Goals (issue #11): at least 0.5x bare
nbclient per core, and faster than nbgrader. Not a timed test: it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from hub_ext.services.grading.autograde import Autograder  # noqa: E402
from hub_ext.services.grading.notebooks import prepare_submission  # noqa: E402
from tests.grading_fixtures import ANSWERS, assignment, submission, write_source  # noqa: E402

KINDS = ("correct", "wrong", "partial")
NBGRADER = Path(os.environ.get("HUB_EXT_NBGRADER_REF", REPO / ".nbgrader-ref"))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def timed(items, call, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, per-item seconds) of ``call(item)`` for every item, ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(item):
        async with gate:
            t0 = time.perf_counter()
            await call(item)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    return time.perf_counter() - t0, latencies


def line(label: str, wall: float, lat: list[float], base: tuple[float, list[float]] | None) -> str:
    rate = len(lat) / wall
    text = (
        f"  {label:<28} n={len(lat):>3}  {rate:6.2f}/s  p50 {statistics.median(lat):6.2f} s"
        f"  p95 {pct(lat, 95):6.2f} s"
    )
    if base:
        base_rate = len(base[1]) / base[0]
        text += (
            f"  throughput x{rate / base_rate:5.2f}  p95 x{pct(lat, 95) / pct(base[1], 95):5.2f}"
        )
    return text


def nbgrader_autograde(workdir: Path, student, n: int) -> tuple[float, int]:
    """Seconds ``nbgrader autograde`` takes for ``n`` submissions (after generate_assignment)."""
    course = workdir / "nbgrader"
    (course / "source" / "week1").mkdir(parents=True)
    write_source(course / "source" / "week1")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
    )
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(NBGRADER),
        "HOME": str(course),
        "LANG": "C.UTF-8",
    }

    def run(*args):
        subprocess.run(
            [sys.executable, "-m", "nbgrader", *args, "--force"],
            cwd=course,
            env=env,
            check=True,
            capture_output=True,
        )

    run("generate_assignment", "week1")
    release = nbformat.read(str(course / "release" / "week1" / "squares.ipynb"), as_version=4)
    for i in range(n):
        folder = course / "submitted" / f"learner{i:03d}" / "week1"
        folder.mkdir(parents=True)
        nbformat.write(submission(release, ANSWERS[KINDS[i % 3]]), str(folder / "squares.ipynb"))
    t0 = time.perf_counter()
    run("autograde", "week1", "--create")
    return time.perf_counter() - t0, n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=20, help="how many (e.g. 20 or 100)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nbgrader", action="store_true", help="leave nbgrader out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        workdir = Path(tmp)
        source, student = assignment(workdir)
        prepared = [
            prepare_submission(source, submission(student, ANSWERS[KINDS[i % 3]]))
            for i in range(args.submissions)
        ]
        grader = Autograder(runtime_dir=str(workdir / "grading"), cell_timeout=30)
        print(
            f"{args.submissions} submissions of a {len(source.nb.cells)}-cell assignment; "
            f"sandbox: {grader.backend.kind}; {os.cpu_count()} cores"
        )

        async def bare(p):
            nb = nbformat.from_dict(copy.deepcopy(p.nb))
            client = NotebookClient(nb, kernel_name="python3", timeout=30, allow_errors=True)
            await client.async_execute()

        async def sandboxed(p):
            result = await grader.grade(p)
            assert result.status == "graded", result.message

        await bare(prepared[0])  # warm: imports, page cache
        await sandboxed(prepared[0])
        for concurrency in args.concurrency:
            print(f"concurrency {concurrency}")
            base = await timed(prepared, bare, concurrency)
            print(line("nbclient, no sandbox (base)", *base, None))
            print(
                line(
                    "sandbox (Autograder.grade)",
                    *await timed(prepared, sandboxed, concurrency),
                    base,
                )
            )
        if not args.no_nbgrader and (NBGRADER / "nbgrader").is_dir():
            seconds, n = await asyncio.to_thread(
                nbgrader_autograde, workdir, student, args.submissions
            )
            print(
                f"nbgrader autograde (sequential): {n / seconds:6.2f}/s ({seconds:.1f} s for {n})"
            )
        elif not args.no_nbgrader:
            print(f"nbgrader: not in {NBGRADER} (make nbgrader-ref)")


if __name__ == "__main__":
    asyncio.run(main())
