"""``python -m hub_ext_assignments``: a course's assignments, from inside its course server.

In a course server's terminal (or a notebook cell with ``!``)::

    python -m hub_ext_assignments list              # what is released, what you handed in
    python -m hub_ext_assignments fetch week1       # the exercise, as assignments/week1.ipynb
    python -m hub_ext_assignments submit week1      # hand in assignments/week1.ipynb
    python -m hub_ext_assignments status week1      # every attempt, its score, its feedback

It talks to the hub's grading service (``$HUB_EXT_GRADING_URL``) with the server's own token
(``$JUPYTERHUB_API_TOKEN``), which carries this course's submit scope and nothing of another
course: the server of ds101 can hand in ds101's work only. Nothing is kept here: the service
keeps every attempt, with its time and hash. ``fetch`` never overwrites a file: your work
stays where it is, and a second copy is written beside it.

Standard library only: it runs in any course environment (a Docker image included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

#: the folder of the learner's workspace that fetched assignments go to
ASSIGNMENTS_DIR = "assignments"


class Refused(Exception):
    """The service said no, or could not be reached; the message says why."""


def _settings() -> tuple[str, str, str]:
    url = os.environ.get("HUB_EXT_GRADING_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    course = os.environ.get("COURSE_ID", "")
    if not (url and token and course):
        raise Refused(
            "this is not a course server of a hub that grades assignments "
            "(HUB_EXT_GRADING_URL, JUPYTERHUB_API_TOKEN or COURSE_ID is not set)"
        )
    return url.rstrip("/") + "/", token, course


def call(method: str, path: str, body: dict | None = None, headers: dict | None = None):
    """``method`` the service's ``path`` (under ``api/``); the answer's JSON (and, with
    ``headers``, its headers are put there)."""
    url, token, _ = _settings()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + "api/" + path, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            if headers is not None:
                headers.update(answer.headers.items())
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        raise Refused(f"{message} ({e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        raise Refused(f"the grading service at {url} cannot be reached: {e}") from None


def _assignment_path(course: str, assignment: str) -> str:
    return f"courses/{quote(course)}/assignments/{quote(assignment)}"


def workspace() -> Path:
    """The learner's workspace: the server's root directory."""
    return Path(os.environ.get("JUPYTERHUB_ROOT_DIR") or os.getcwd())


def _free_name(path: Path) -> Path:
    """``path``, or ``name (2).ipynb``, ``name (3).ipynb``...: never a file that exists."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        n += 1
    return candidate


def _score(submission: dict | None) -> str:
    """A submission's state in words: its score once graded."""
    if not submission:
        return "not handed in"
    result = submission.get("result") or {}
    if result.get("final_score") is not None:
        return f"{result['final_score']:g} of {result.get('max_score'):g} points"
    run = submission.get("latest_run") or {}
    return run.get("status") or run.get("state") or "queued"


def list_command(args) -> int:
    _, _, course = _settings()
    assignments = call("GET", f"courses/{quote(course)}/assignments").get("assignments", [])
    if not assignments:
        print(f"No assignment of {course} is released yet.")
    for a in assignments:
        mine = a.get("mine") or {}
        print(f"{a['id']}: {a.get('title', '')} (due {a.get('due_at')})")
        if mine.get("session_ends_at"):
            print(f"    timed: hand it in before {mine['session_ends_at']}")
        if mine.get("attempts_left") is not None:
            print(f"    attempts left: {mine['attempts_left']}")
        if mine.get("refusal"):
            print(f"    {mine['refusal']['message']}")
        print(f"    latest: {_score(mine.get('latest'))}")
    return 0


def fetch_command(args) -> int:
    _, _, course = _settings()
    headers: dict = {}
    notebook = call("POST", _assignment_path(course, args.assignment) + "/fetch", {}, headers)
    target = workspace() / ASSIGNMENTS_DIR / f"{args.assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = target.exists()
    target = _free_name(target)
    with open(target, "x", encoding="utf-8") as f:  # "x": never over a learner's file
        json.dump(notebook, f, indent=1)
    print(f"{args.assignment}: written to {target.relative_to(workspace())}")
    if kept:
        print("  (your earlier copy is kept as it was)")
    if headers.get("X-Grading-Session-Ends"):
        print(f"  timed: hand it in before {headers['X-Grading-Session-Ends']}")
    return 0


def submit_command(args) -> int:
    _, _, course = _settings()
    path = (
        Path(args.file) if args.file else workspace() / ASSIGNMENTS_DIR / f"{args.assignment}.ipynb"
    )
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise Refused(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise Refused(f"{path} is not a notebook (invalid JSON: {e})") from None
    answer = call("POST", _assignment_path(course, args.assignment) + "/submissions", notebook)
    print(f"{args.assignment}: handed in {path.name} (attempt {answer.get('attempt')}).")
    late = answer.get("late") or {}
    if late.get("days"):
        print(f"  {late['days']} day(s) late: {late['penalty']:.0%} of the points are taken off")
    print(f"  submission {answer.get('id')}; the grading runs now: "
          f"python -m hub_ext_assignments status {args.assignment}")  # fmt: skip
    return 0


def status_command(args) -> int:
    _, _, course = _settings()
    answer = call("GET", _assignment_path(course, args.assignment) + "/submissions")
    submissions = answer.get("submissions", [])
    if not submissions:
        print(f"{args.assignment}: nothing handed in yet.")
    for s in submissions:
        print(f"attempt {s.get('attempt')} at {s.get('submitted_at')}: {_score(s)}")
        page = (s.get("links") or {}).get("page")
        if page:
            print(f"    feedback: {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub_ext_assignments", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="the course's released assignments").set_defaults(func=list_command)
    for name, func, help_ in (
        ("fetch", fetch_command, "get an assignment into assignments/ (never overwrites)"),
        ("submit", submit_command, "hand in an assignment for grading"),
        ("status", status_command, "your attempts and their scores"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("assignment", help="the assignment's id, e.g. week1")
        if name == "submit":
            p.add_argument("file", nargs="?", help="the notebook (default assignments/ID.ipynb)")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Refused as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
