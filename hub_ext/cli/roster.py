"""``hub-ext import-roster FILE --course ID``: validate an LMS roster and store it for the hub."""

from __future__ import annotations

import sys

from ..courses import Catalog, CatalogError
from ..roster import (
    DEFAULT_ROSTER_DIR,
    FORMATS,
    ROSTER_DIR_ENV,
    RosterError,
    RosterStore,
    parse_roster,
)
from . import add_command
from .hubsettings import HubConfigError, add_hub_config_option, hub_settings


def import_roster(args) -> int:
    """Validate a roster exported from an LMS or SIS and store it where the hub's
    authenticator reads it. A file with any bad row is rejected whole (every problem is
    listed with its line number) and nothing is stored. An import replaces the course's
    previous import."""
    try:
        settings = hub_settings(args)
        catalog = Catalog.load(args.catalog or settings.catalog)
    except HubConfigError as e:
        print(f"hub-ext: {e}", file=sys.stderr)
        return 1
    except CatalogError as e:
        print(f"The catalog has problems:\n{e}", file=sys.stderr)
        return 1
    try:
        roster = parse_roster(args.file, catalog=catalog, course=args.course, format=args.format)
    except RosterError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(
            f"{len(e.problems)} problem(s): nothing was imported (a roster is applied whole or not at all).",
            file=sys.stderr,
        )
        return 1
    store = RosterStore(args.roster_dir or settings.roster_dir)
    previous = {} if args.dry_run else store.save(roster)
    verb = "would import" if args.dry_run else "imported"
    print(f"{roster.source} ({roster.format}): {verb} {len(roster.entries)} enrolment(s)")
    for course_id in sorted(roster.courses):
        counts = roster.counts(course_id)
        line = f"  {course_id}: {counts['learner']} learner(s), {counts['teacher']} teacher(s)"
        if course_id in previous:
            old = previous[course_id]
            line += f" (replaces {len(old['entries'])} from {old['source']}, {old['imported_at']})"
        print(line)
    if roster.skipped:
        print(f"  {len(roster.skipped)} row(s) skipped:")
        for message in roster.skipped:
            print(f"    {message}")
    if not args.dry_run:
        print(f"Stored in {store.path}; it applies at each person's next login or refresh.")
    return 0


def add_commands(subparsers) -> None:
    p = add_command(subparsers, "import-roster", import_roster)
    p.add_argument("file", help="the roster CSV file")
    p.add_argument("--course", help="the course id (required for a Moodle export), e.g. ds101")
    p.add_argument(
        "--catalog",
        help="the course catalog (default: the hub config's, else $HUB_EXT_CATALOG, "
        "else courses.yaml)",
    )
    p.add_argument(
        "--roster-dir",
        help="where imported rosters are kept (default: the hub config's "
        f"c.CourseOAuthenticator.roster_dir, else ${ROSTER_DIR_ENV}, else ./{DEFAULT_ROSTER_DIR}: "
        "the hub's own default)",
    )
    add_hub_config_option(p)
    p.add_argument("--format", choices=FORMATS, default="auto", help="the file's format")
    p.add_argument("--dry-run", action="store_true", help="validate and summarise, store nothing")
