"""The grading queue: N workers over the store's ``runs``, surviving any stop of the service.

The queue *is* the ``runs`` table; nothing about a job lives only in memory. So:

- **a submission is never lost**: it and its first run are written in one transaction
  before the learner hears 202;
- **a half-graded job is graded again**: at start (:meth:`GradingQueue.start`), runs left
  ``running`` by a service that died (kill -9, a power cut) go back to ``queued``, before
  any worker claims; then every queued run is graded, oldest first;
- **graded exactly once per run**: a worker claims a run (``queued`` -> ``running``, one
  more ``tries``) with a conditional update, and writes the result and ``done`` in one
  transaction that holds only if its claim still does; a sandbox killed with its service
  leaves nothing behind that counts;
- **statements at least once, stored once**: after ``done``, the run's xAPI statements go
  to the event store with ids fixed by (submission, run) and ``insert ... on conflict do
  nothing``, then the run is marked ``published``; runs done but not published (the
  service died in between) are published again at start.

Each job re-reads the assignment's source notebook (so a regrade sees the new tests), makes
the prepared submission and grades it with an :class:`~hub_ext.services.grading.autograde.Autograder` of the
assignment: the service's ``c.Autograder`` settings (the sandbox, the defaults), with the
assignment's ``limits`` over them. Where no sandbox can be made the job is put back and
the worker waits ``retry_seconds``: nothing is graded unsandboxed, nothing is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import os
from datetime import UTC, datetime

import nbformat
from traitlets import Any, Float, Integer, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ...courses import Catalog
from ...sandbox import SandboxUnavailable
from ..events.models import Assessment
from ..events.store import EventStore
from .autograde import Autograder
from .notebooks import AssignmentError, load_source, prepare_submission, read_notebook
from .statements import assessment_rows, run_statements
from .store import GradingStore, Job

__all__ = ["LIMIT_TRAITS", "GradingQueue"]

#: an assignment's ``limits`` keys -> the Autograder traits they override
LIMIT_TRAITS = {
    "cell_timeout": "cell_timeout",
    "timeout": "notebook_timeout",
    "mem_limit": "memory_limit",
    "output_limit": "output_limit",
}


class _TryAgain(Exception):
    """A run that may succeed a little later (it goes back to the queue, as a try)."""


class GradingQueue(LoggingConfigurable):
    """Grades the store's queued runs with ``workers`` concurrent sandboxes."""

    workers = Integer(
        config=True,
        help="""How many submissions are graded at once (each in its own sandbox, about one
        core while it runs). Default: one per core, at most 2.
        Example: ``c.GradingQueue.workers = 4``""",
    )

    @default("workers")
    def _default_workers(self):
        return max(1, min(2, os.cpu_count() or 1))

    @validate("workers")
    def _at_least_one(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"c.GradingQueue.workers must be at least 1, not {proposal['value']}")
        return proposal["value"]

    retry_seconds = Float(
        10.0,
        config=True,
        help="""Seconds a worker waits before trying again when no sandbox can be made (the
        job stays queued). Default: 10. Example: ``c.GradingQueue.retry_seconds = 30``""",
    )
    idle_seconds = Float(
        5.0,
        config=True,
        help="""Seconds an idle worker waits before looking at the queue again when nothing
        told it of new work (another process may have queued some). Default: 5.""",
    )
    max_tries = Integer(
        3,
        config=True,
        help="""How many times one run is tried before it is given up as ``not_gradable``
        (each try that a stop or an error of the service interrupted counts), so a run
        that makes the service fail cannot hold a worker for ever. Default: 3.""",
    )
    home = Unicode(
        "http://localhost:8000",
        config=True,
        help="""The hub's public URL: the ``homePage`` of hub accounts in the statements,
        as the hub's own statements have it. Default: ``http://localhost:8000``.""",
    )

    store = Any(help="the :class:`~.store.GradingStore`")
    catalog = Any(help="the :class:`~hub_ext.courses.Catalog`")
    events = Any(None, allow_none=True, help="the :class:`EventStore`, or None: no statements")
    now = Any(help="the clock: a callable returning an aware datetime")

    @default("now")
    def _default_now(self):
        return lambda: datetime.now(UTC)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store: GradingStore
        self.catalog: Catalog
        self.events: EventStore | None
        self._graders: dict[tuple[str, str], Autograder] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        #: publications under way (their threads write on when a worker is cancelled)
        self._publishing: set[asyncio.Future] = set()
        #: why nothing is graded now (no sandbox), or ""
        self.problem = ""

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Requeue what a previous run left half-graded, publish what it left unpublished,
        then start the workers."""
        requeued = await asyncio.to_thread(self.store.requeue_interrupted)
        if requeued:
            self.log.warning("%d grading run(s) interrupted by a stop: graded again", requeued)
            await asyncio.to_thread(self._remove_leftovers)
        if self.events is not None:
            rows = [r for c in self.catalog.values() for r in assessment_rows(c.id, c.assignments)]
            await asyncio.to_thread(self.events.upsert, Assessment, rows)
        await self.publish_pending()
        self._tasks = [asyncio.ensure_future(self._work(i)) for i in range(self.workers)]

    def _remove_leftovers(self) -> None:
        """Containers of gradings a killed service left running (the Docker tier; a
        bubblewrap sandbox ends with the service: its keeper sees to it). Before any worker starts, so none of
        them is a grading of this run."""
        try:
            backend = Autograder(parent=self, log=self.log).backend
        except SandboxUnavailable:
            return
        if hasattr(backend, "remove_leftovers"):
            gone = backend.remove_leftovers()
            if gone:
                self.log.warning("Removed %d grading sandbox(es) left by a previous run", gone)

    async def stop(self) -> None:
        """Stop the workers; a run being graded stays ``running`` and is graded again at
        the next start (its sandbox is killed as the grading is cancelled)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # a publication under way ends first: its thread would write on after the stop
        # (into a store the caller may close next), and the run would look unpublished
        await asyncio.gather(*self._publishing, return_exceptions=True)

    def notify(self) -> None:
        """New work is queued: wake an idle worker."""
        self._wake.set()

    # ------------------------------------------------------------------ workers

    async def _work(self, index: int) -> None:
        while True:
            try:
                job = await asyncio.to_thread(self.store.claim, self.now())
            except Exception:
                self.log.exception("worker %d: could not read the queue", index)
                job = None
            if job is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
                except TimeoutError:
                    pass
                continue
            if job.tries > self.max_tries:
                self.log.error(
                    "Run %s/%d given up after %d tries", job.submission_id, job.run, self.max_tries
                )
                await self._finish(
                    job,
                    "not_gradable",
                    f"grading failed {self.max_tries} times; the service log says why",
                )
                continue
            try:
                await self.run_job(job)
            except SandboxUnavailable as e:
                self.problem = f"no sandbox can be made: {e}"
                self.log.error(
                    "Grading paused: %s (run %s/%d stays queued)",
                    self.problem,
                    job.submission_id,
                    job.run,
                )
                await asyncio.to_thread(functools.partial(self.store.release, job, count_try=False))
                await asyncio.sleep(self.retry_seconds)
            except _TryAgain as e:
                self.log.warning(
                    "Run %s/%d: %s; graded again in %gs (try %d of %d)",
                    job.submission_id,
                    job.run,
                    e,
                    self.retry_seconds,
                    job.tries,
                    self.max_tries,
                )
                await asyncio.to_thread(self.store.release, job)
                await asyncio.sleep(self.retry_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                # a bug of ours must not lose the job: back in the queue, and say so
                self.log.exception(
                    "Grading run %s/%d failed; it stays queued", job.submission_id, job.run
                )
                await asyncio.to_thread(self.store.release, job)
                await asyncio.sleep(self.retry_seconds)

    def autograder(self, course_id: str, assignment) -> Autograder:
        """The assignment's grader: the service's ``c.Autograder`` with the assignment's
        limits, in its course's image (where the course names one)."""
        key = (course_id, assignment.id)
        if key not in self._graders:
            overrides = {
                LIMIT_TRAITS[k]: v for k, v in assignment.limits.items() if k in LIMIT_TRAITS
            }
            course = self.catalog.get(course_id)
            if course is not None and course.image:  # the course's environment (Docker tier)
                overrides["image"] = course.image
            self._graders[key] = Autograder(parent=self, log=self.log, **overrides)
        return self._graders[key]

    async def run_job(self, job: Job) -> None:
        """Grade one claimed run, write its result, publish its statements."""
        course = self.catalog.get(job.course_id)
        assignment = course.assignment(job.assignment_id) if course else None
        label = f"{job.course_id}/{job.assignment_id} attempt {job.attempt} of {job.learner}"
        if assignment is None:
            await self._finish(job, "not_gradable", "the assignment is no longer in the catalog")
            return
        try:
            source = await asyncio.to_thread(load_source, assignment.notebook)
        except (OSError, AssignmentError) as e:
            if job.tries < self.max_tries:  # e.g. a teacher saving it this very moment
                raise _TryAgain(f"the source notebook cannot be read now ({e})") from None
            self.log.error("Cannot grade %s: the source notebook: %s", label, e)
            await self._finish(
                job,
                "not_gradable",
                "the assignment's notebook cannot be read; its teachers are told in the service log",
            )
            return
        raw = await asyncio.to_thread(self.store.notebook, job.submission_id)
        try:
            submitted = read_notebook(f"attempt {job.attempt}", raw)
        except Exception:  # checked at submission; a notebook read then must read now
            await self._finish(job, "not_gradable", "the submitted notebook cannot be read")
            return
        prepared = prepare_submission(source, submitted, f"attempt {job.attempt}")
        grader = self.autograder(job.course_id, assignment)
        await asyncio.to_thread(lambda: grader.backend)  # made (and checked) off the loop
        self.problem = ""
        self.log.info("Grading %s (run %d, try %d)", label, job.run, job.tries)
        result = await grader.grade(
            prepared,
            files=assignment.files,
            name=f"{job.course_id}-{job.assignment_id}-{job.submission_id[:8]}",
            labels={"course": job.course_id, "assignment": job.assignment_id},
        )
        feedback = nbformat.writes(result.feedback).encode() if result.feedback else None
        written = await asyncio.to_thread(
            self.store.finish,
            job,
            now=self.now(),
            status=result.status,
            result=result.as_dict(),
            feedback=feedback,
            source_version=source.version,
        )
        if written:
            self.log.info("Graded %s (run %d): %s", label, job.run, result.message)
            await self.publish_pending()
        else:
            self.log.warning(
                "Run %s/%d was claimed again meanwhile: this result is dropped",
                job.submission_id,
                job.run,
            )

    async def _finish(self, job: Job, status: str, message: str) -> None:
        result = {
            "status": status,
            "message": message,
            "total": 0.0,
            "max_points": None,
            "tests": [],
            "notes": [],
        }
        await asyncio.to_thread(
            self.store.finish,
            job,
            now=self.now(),
            status=status,
            result=result,
            feedback=None,
            source_version=None,
        )

    # ------------------------------------------------------------------ statements

    async def publish_pending(self) -> int:
        """Write the statements of every done, unpublished run; how many runs."""
        if self.events is None:
            return 0
        publishing = asyncio.ensure_future(asyncio.to_thread(self._publish_pending))
        self._publishing.add(publishing)
        publishing.add_done_callback(self._publishing.discard)
        return await asyncio.shield(publishing)  # a cancelled worker leaves it to stop()

    def _publish_pending(self) -> int:
        count = 0
        for done in self.store.unpublished():
            if done["run_final_score"] is not None:
                course = self.catalog.get(done["course_id"])
                assignment = course.assignment(done["assignment_id"]) if course else None
                title = assignment.title if assignment else done["assignment_id"]
                rows = run_statements(done, assignment_title=title, home=self.home.rstrip("/"))
                self.events.add_statements(rows)
            self.store.mark_published(done["id"], done["run_run"], done["manual_revision"])
            count += 1
        return count
