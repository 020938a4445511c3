"""The keeper of a local sandbox: the one process between a service and its sandbox.

``python -I -S keeper.py FD -- COMMAND ...`` runs ``COMMAND`` (``bwrap ...``, or the
unconfined backend's command) as its child and ends with it, taking everything the command
started with it. The service holds the write end of the pipe ``FD`` and nothing else does:

- the service gone, however it went (``kill -9``, the OOM killer), the pipe reads as ended,
  and the keeper kills the whole tree: no learner's or notebook's code outlives the service
  that ran it;
- ``K`` on the pipe: kill the whole tree (:meth:`ProcessHandle.kill`);
  ``T``: send ``SIGTERM`` to the command's process group (:meth:`ProcessHandle.terminate`);
- the command ended, whatever it left running is killed, and the keeper exits as the command
  did (its status, or the signal that ended it), so the service reads the command's status.

Why not the parent-death signal alone: bubblewrap drops and changes credentials while it sets
a sandbox up, which clears ``PR_SET_PDEATHSIG``, and asks for it again (``--die-with-parent``)
only afterwards. A service killed in between, in the first milliseconds of a sandbox, left
the sandbox running with ``ppid`` 1, unseen (2 to 8 of 40 in experiments, with or without
a user namespace). A pipe has no such window: it reads as ended when the last process
holding its write end has gone, and only the service holds it (the fd is not inheritable,
and passed to the keeper alone).

The whole tree: the keeper is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so a process
whose parent has died (bubblewrap's init once its launcher is killed, a daemon that forked
twice, ``setsid`` included) becomes the keeper's child. Killing is a loop: kill every child,
reap one, until none is left. A pid namespace (bubblewrap's) dies with its init.

The keeper itself killed, its command gets ``SIGKILL`` (a parent-death signal, asked for
before it runs: an unconfined command keeps it; bubblewrap asks for its own again).

Standard library only, and run with ``-I -S``: nothing of the sandbox's environment
(``PYTHONPATH``...) reaches it, and it starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def children() -> list[int]:
    """The pids whose parent is this process (zombies included), from ``/proc``."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, the last ")" ends it
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(name))
    return found


def kill_tree() -> None:
    """Kill every process below this one, and reap them: kill each child, wait for one, and
    again, until no child is left (an orphan of a killed child becomes ours meanwhile)."""
    while True:
        kids = children()
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    while True:  # zombies reparented after the last listing
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def exit_as(status: int) -> None:
    """End this process as a child that ended with wait ``status`` did."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    sig = -code
    if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these have no handler to reset
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # a signal whose default is to go on (SIGCHLD...)


def _ignore(signum, frame) -> None:  # a handler, not SIG_IGN: exec resets it for the child
    pass


def run(control: int, argv: list[str]) -> None:
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    os.set_inheritable(control, False)
    # the command's process group is the keeper's: ``T`` reaches the command and what it
    # started in it; the keeper itself goes on, to reap and clean up
    signal.signal(signal.SIGTERM, _ignore)
    # poll, not select: the fd keeps the number it had in the service, which may be past 1024
    poller = select.poll()
    poller.register(control, select.POLLIN)
    if poller.poll(0):  # killed, or the service gone, before the start
        os._exit(128 + signal.SIGKILL)
    keeper = os.getpid()
    child = os.fork()
    if child == 0:
        try:
            # the keeper itself killed (the OOM killer): its command goes with it
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != keeper:
                os._exit(128 + signal.SIGKILL)
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"hub-ext sandbox: cannot run {argv[0]}: {e.strerror}\n".encode())
        os._exit(127)
    watch = os.pidfd_open(child)
    poller.register(watch, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if watch in ready:
            _, status = os.waitpid(child, 0)
            kill_tree()  # what the command left running ends with it
            exit_as(status)
        try:
            asked = os.read(control, 64)
        except InterruptedError:
            continue
        if not asked or b"K" in asked:  # the service is gone, or asks for the end
            kill_tree()
            exit_as(signal.SIGKILL)  # as the command, killed
        if b"T" in asked:
            os.killpg(os.getpgrp(), signal.SIGTERM)


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        sys.exit("usage: python -I -S keeper.py FD -- COMMAND [ARG ...]")
    run(int(args[0]), args[2:])


if __name__ == "__main__":
    main()
