"""Assignments (issue #11): nbgrader's notebooks fetched, handed in, graded in the sandbox.

A hub-managed service, one for all courses (``/services/grading/``):

- :mod:`.policy`: may this learner fetch or submit now (pure, with the caller's clock);
- :mod:`.store`: fetches, every submission (never deleted), grading runs, manual grades;
- :mod:`.queue`: the workers, and why a restart loses and repeats nothing;
- :mod:`.statements`: each graded run as xAPI statements in the event store;
- :mod:`.app`: the HTTP API and the pages; :mod:`.hubconfig`: what the hub's config says.

and the grading engine it runs:

- :mod:`.notebooks`: check a teacher's nbgrader source notebook (the catalog does, at
  load), make the student version, prepare a submission (the source's tests and locked
  cells put back, hidden tests in);
- :mod:`.autograde`: run a prepared submission in a throwaway sandbox, cell by cell, and
  score it outside (:class:`~.autograde.Autograder`);
- :mod:`.scoring`: nbgrader's scoring rules on the executed notebook, and the feedback.

Importing this package imports none of them (the hub's config and the spawners need only
:mod:`.hubconfig`).

**What runs where.** The sandbox (bubblewrap or Docker; never ``none``) holds only a
Python kernel. The grader, outside, sends it the prepared notebook's cells one at a time
over ZeroMQ (Unix sockets in the sandbox's scratch directory; the sandbox has no network)
and builds the executed notebook from the kernel's replies. So:

- the learner's code sees: the interpreter and its libraries (read-only), the
  assignment's data files (read-only), a private ``/tmp`` and a scratch directory (both
  thrown away), the cells sent so far. It sees no other submission, no hub file, no
  token, no network, and *no cell that has not been sent yet*: the tests, visible or
  hidden, are not on its filesystem; each reaches the kernel as the request that runs it;
- the learner's code can write: its scratch directory and ``/tmp`` (discarded), and
  whatever the kernel says. It cannot write the executed notebook, the scores or the
  grader's files: nothing it prints or writes is read as a result ("fake result JSON",
  overwritten files: ignored). It can kill its own kernel (the grading says "crashed").
- limits: per cell (interrupted; the notebook stops if the kernel does not come back),
  per notebook, output (counted by the grader; one oversized message is refused by
  ZeroMQ before it is read), memory and processes (the sandbox: a pids cgroup where
  rlimits do not bind, i.e. as root).

**Hidden tests, "never readable before grading".** They are in the notebook only once it
is prepared (in the grader), and in the sandbox only from the moment their cell runs,
after every cell before it. What that does *not* prevent: code from an earlier cell that
stays active in the kernel (an IPython hook, a thread) can read a hidden test when it
arrives, and print it. Such code runs after the learner's answers have been scored by
the tests before it; what it prints reaches the learner only through the feedback, from
which every hidden line is removed (:func:`.scoring.redactor`). An *encoded* copy
(base64, one bit per run) is not caught: the points themselves are a side channel.

**The limit of in-kernel tests (as in nbgrader).** The tests call the learner's code in
one Python process, so that code can change what the tests do. What the language fixes
cannot be changed: an ``assert`` statement raises the real ``AssertionError`` whatever
the learner binds to that name, and a rebound ``AssertionError`` still makes a failing
test fail. Against the rest, before each test cell the grader (1) runs again the
teacher's definitions from the locked cells before it (imports, functions, literal
constants: a rebound check function is put back), and (2) sends a check that must fail
(``assert False`` with a fresh nonce): a kernel that reports it otherwise (input
transformers that blank cells, asserts compiled away, a patched ``run_cell``) makes the
grading "tampered", and no later test counts. Code that recognises the test cells and
subverts only them (e.g. patching a library function the tests use, or forging replies
with the kernel's own key) is not detected; the sandbox ensures that what it can change
is this one grading of this one learner. Removing that would need tests that do not run
in the learner's process.
"""

from .hubconfig import SERVICE_NAME, grading_roles, grading_service

__all__ = ["SERVICE_NAME", "grading_roles", "grading_service"]
