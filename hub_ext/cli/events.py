"""``hub-ext import ...`` and ``hub-ext events ...``: fill the event store, manage xAPI sources.

The store is ``--db URL``, else the hub config's (``--hub-config``, see :mod:`.hubsettings`),
else ``$HUB_EXT_EVENTS_DB``, else ``sqlite:///events.sqlite`` in the working directory (the
events service's default too).

A source belongs to one course: ``hub-ext events add-source NAME --course ID`` (required),
and the events service lets it read, write and void only that course's statements. The
course is checked against the catalog (``--catalog FILE``, else the hub config's, else
``$HUB_EXT_CATALOG``) when there is one, else only its form is.
"""

from __future__ import annotations

import os
import sys

from . import add_command
from .hubsettings import add_hub_config_option, settings_or_exit

__all__ = ["add_commands"]


def _store(args):
    from ..services.events.store import EventStore

    return EventStore(args.db or settings_or_exit(args).events_db)


def _progress(args):
    from ..services.events.importers import Progress

    # a bar on stderr when it is a terminal; --progress forces it, --quiet silences it
    return Progress(enabled=False if args.quiet else True if args.progress else None)


def _finish(report) -> int:
    for table in sorted(report.read):
        print(f"{table:<16} {report.read[table]:>10,} read {report.new.get(table, 0):>10,} new")
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.problem_count > len(report.problems):
        print(f"... and {report.problem_count - len(report.problems)} more", file=sys.stderr)
    if report.problem_count:
        print(f"{report.problem_count} bad line(s) skipped; fix them and import again "
              "(rows already imported are not duplicated).", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _run(func, args, *a, **kw) -> int:
    from ..services.events.importers import LineError

    try:
        report = func(_store(args), *a, progress=_progress(args), **kw)
    except (LineError, FileNotFoundError, ValueError) as e:
        print(f"hub-ext import: {e}", file=sys.stderr)
        return 1
    return _finish(report)


def import_oulad_cmd(args) -> int:
    from ..services.events.importers import import_oulad

    return _run(import_oulad, args, args.directory, student_vle=args.vle)


def import_futurelearn_cmd(args) -> int:
    from ..services.events.importers import (
        FUTURELEARN_EXPORTS,
        futurelearn_export,
        import_futurelearn,
    )

    files = {}
    named = [("step-activity", args.step_activity), ("enrolments", args.enrolments)]
    try:
        for export, path in named + [(futurelearn_export(f), f) for f in args.files]:
            if path is None:
                continue
            keyword = FUTURELEARN_EXPORTS[export][0]
            if keyword in files:
                raise ValueError(f"two {export} exports given: {files[keyword]} and {path}")
            files[keyword] = path
        starts_at = _course_start(args)
    except ValueError as e:
        print(f"hub-ext import futurelearn: {e}", file=sys.stderr)
        return 2
    if not files:
        print(
            "hub-ext import futurelearn: give the run's export files (e.g. "
            "ecsa-6_step-activity.csv ecsa-6_question-response.csv)",
            file=sys.stderr,
        )
        return 2
    return _run(import_futurelearn, args, args.course, starts_at=starts_at, **files)


def _course_start(args):
    """The run's start: ``--start``, else the catalog course's ``opens`` (``--catalog``)."""
    from datetime import datetime

    if args.start:
        try:
            return datetime.strptime(args.start, "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"--start {args.start!r} is not a date (YYYY-MM-DD)") from None
    if args.catalog:
        from ..courses import Catalog

        catalog = Catalog.load(args.catalog)
        if args.course not in catalog:
            raise ValueError(f"no course {args.course!r} in the catalog {catalog.source}")
        return catalog[args.course].opens_at
    return None


def import_moodle_cmd(args) -> int:
    from ..services.events.importers import import_moodle_log

    return _run(
        import_moodle_log,
        args,
        args.file,
        args.course,
        timezone=args.timezone,
        time_format=args.time_format,
    )


def _check_course(course_id: str, catalog_path: str | None) -> str | None:
    """What is wrong with ``course_id`` as a source's course, else None."""
    import re

    from ..courses import COURSE_ID_PATTERN, Catalog, CatalogError

    if not re.match(COURSE_ID_PATTERN, course_id):
        return (
            f"{course_id!r} is not a course id (lowercase letters, digits and dashes, "
            "starting with a letter, 2-32 characters)"
        )
    if not catalog_path:
        return None
    try:
        catalog = Catalog.load(catalog_path)
    except CatalogError as e:
        problems = "\n  ".join(str(p) for p in e.problems)
        return f"the catalog {catalog_path} cannot be read:\n  {problems}"
    if course_id not in catalog:
        return (
            f"no course {course_id!r} in the catalog {catalog.source} "
            f"(its courses: {', '.join(catalog) or 'none'})"
        )
    return None


def add_source_cmd(args) -> int:
    if not args.course:
        print("hub-ext events add-source: --course ID is required: a source may read and write "
              "only one course's statements (e.g. --course ds101)", file=sys.stderr)  # fmt: skip
        return 2
    settings = settings_or_exit(args)
    catalog = args.catalog or (
        settings.catalog if settings.config_file else os.environ.get("HUB_EXT_CATALOG")
    )
    problem = _check_course(args.course, catalog)
    if problem:
        print(f"hub-ext events add-source: {problem}", file=sys.stderr)
        return 1
    store = _store(args)
    store.create()
    try:
        key, secret = store.add_source(args.name, args.course)
    except ValueError as e:
        print(f"hub-ext events add-source: {e}", file=sys.stderr)
        return 1
    if not catalog:
        print(f"note: course {args.course!r} was not checked against a catalog "
              "(give --catalog FILE or set HUB_EXT_CATALOG)", file=sys.stderr)  # fmt: skip
    print(f"source {args.name!r} of course {args.course!r} added. Give these to the LMS "
          "(the secret is shown only once):")  # fmt: skip
    print(f"  key:    {key}\n  secret: {secret}")
    return 0


def remove_source_cmd(args) -> int:
    if not _store(args).remove_source(args.name):
        print(f"hub-ext events remove-source: no source named {args.name!r}", file=sys.stderr)
        return 1
    return 0


def sources_cmd(args) -> int:
    store = _store(args)
    store.create()
    legacy = []
    for s in store.sources():
        print(
            f"{s['name']:<20} key {s['key']:<18} course {s['course_id'] or '-':<12} added {s['created']:%Y-%m-%d}"
        )
        if not s["course_id"]:
            legacy.append(s["name"])
    for name in legacy:
        print(f"source {name!r} has no course: the events service refuses it; re-create it with "
              f"`hub-ext events remove-source {name}` and `hub-ext events add-source {name} "
              "--course ID`", file=sys.stderr)  # fmt: skip
    return 0


def readonly_url_cmd(args) -> int:
    print(_store(args).readonly_url)
    return 0


def _common(p) -> None:
    p.add_argument(
        "--db",
        help="the store's SQLAlchemy URL (default: the hub config's, else $HUB_EXT_EVENTS_DB, "
        "else sqlite:///events.sqlite)",
    )
    add_hub_config_option(p)


def add_commands(subparsers) -> None:
    imp = add_command(
        subparsers,
        "import",
        description="Import CSV exports into the event store (streaming, idempotent).",
    )
    sub = imp.add_subparsers(dest="format", required=True, metavar="FORMAT")

    def importer(name, help_, func):
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p)
        shown = p.add_mutually_exclusive_group()
        shown.add_argument(
            "--progress",
            action="store_true",
            help="draw the progress bar even when stderr is not a terminal",
        )
        shown.add_argument(
            "--quiet",
            action="store_true",
            help="no progress bar (default: one on stderr when it is a terminal)",
        )
        p.set_defaults(func=func)
        return p

    p = importer(
        "oulad",
        "the Open University Learning Analytics Dataset (a module presentation AAA/2013J becomes course aaa-2013j)",
        import_oulad_cmd,
    )
    p.add_argument("directory", help="the OULAD directory (courses.csv, studentInfo.csv, ...)")
    p.add_argument(
        "--vle",
        help="the studentVle CSV (default: studentVle*.csv in the directory or its original_format/)",
    )

    p = importer(
        "futurelearn",
        "a FutureLearn run's exports: enrolments, step-activity, question-response, "
        "video-stats, team-members, weekly-sentiment-, archetype- and leaving-survey-responses",
        import_futurelearn_cmd,
    )
    p.add_argument("--course", required=True, help="the course id the run becomes, e.g. ds101")
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="export files, each told apart by its name (<course>-<run>_<export>.csv, e.g. "
        "ecsa-6_question-response.csv) or else its header; any of them, in any order",
    )
    p.add_argument("--step-activity", help="the step-activity CSV (or give it as a FILE)")
    p.add_argument("--enrolments", help="the enrolments CSV (or give it as a FILE)")
    p.add_argument(
        "--start",
        help="the run's first day, YYYY-MM-DD (default: the catalog course's opens with "
        "--catalog; the exports do not say it, and the first visit is often a team preview)",
    )
    p.add_argument("--catalog", help="the course catalog whose course gives the run's start")

    p = importer("moodle-log", "a Moodle log export (CSV)", import_moodle_cmd)
    p.add_argument("file", help="the log CSV")
    p.add_argument("--course", required=True, help="the course id the log belongs to, e.g. ds101")
    p.add_argument(
        "--timezone", default="UTC", help="the time zone of the Time column (default UTC)"
    )
    p.add_argument(
        "--time-format",
        help="strptime format of the Time column (default: tries Moodle's usual ones)",
    )

    ev = add_command(subparsers, "events")
    sub = ev.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "add-source",
        usage="hub-ext events add-source NAME --course ID [--catalog FILE] [--db URL]",
        help="allow a system (e.g. an LMS) to post xAPI statements of one course; prints its key and secret",
        description="Register an xAPI source of one course. It may read, post and void only "
        "that course's statements (a statement naming another course is refused with 403), "
        "and never the hub's own activity records.",
    )
    _common(p)
    p.add_argument("name", help="a name for the source, e.g. moodle-ds101")
    p.add_argument(
        "--course",
        metavar="ID",
        help="required: the course (a catalog course id, e.g. ds101) whose statements the "
        "source may post and read",
    )
    p.add_argument(
        "--catalog",
        metavar="FILE",
        help="the course catalog to check --course against (default: the hub config's, else "
        "$HUB_EXT_CATALOG; without either only the id's form is checked)",
    )
    p.set_defaults(func=add_source_cmd)
    p = sub.add_parser("remove-source", help="revoke a source's credentials")
    _common(p)
    p.add_argument("name")
    p.set_defaults(func=remove_source_cmd)
    p = sub.add_parser("sources", help="list the sources (never their secrets)")
    _common(p)
    p.set_defaults(func=sources_cmd)
    p = sub.add_parser("readonly-url", help="print the read-only URL the analytics notebooks get")
    _common(p)
    p.set_defaults(func=readonly_url_cmd)
