"""``hub-ext check-catalog [FILE]``: the catalog's problems, or a summary of its courses.

Without FILE: the catalog the hub uses (its config file's, see :mod:`.hubsettings`),
checked as the hub checks it (kernels against those installed here on the local backend
only: a Docker course's kernels are in its image).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from ..courses import Catalog, CatalogError
from ..kernels import installed_kernels
from . import add_command
from .hubsettings import HubConfigError, add_hub_config_option, hub_settings


def _problems(e: CatalogError) -> int:
    for problem in e.problems:
        print(problem, file=sys.stderr)
    print(f"{len(e.problems)} problem(s); the hub would not start.", file=sys.stderr)
    return 1


def check_catalog(args) -> int:
    """Validate a course catalog: print every problem (file, line, course, field), or a
    summary of the courses. Exit status 1 if there is a problem."""
    try:
        settings = hub_settings(args, implicit=not args.file)
    except HubConfigError as e:
        print(f"hub-ext: {e}", file=sys.stderr)
        return 1
    except CatalogError as e:  # the hub config's own catalog: the hub would not start
        return _problems(e)
    check_kernels = not args.no_kernel_check and settings.backend == "local"
    try:
        catalog = Catalog.load(
            args.file or settings.catalog,
            known_kernels=installed_kernels() if check_kernels else None,
        )
    except CatalogError as e:
        return _problems(e)
    now = datetime.now(UTC)
    print(f"{catalog.source}: {len(catalog)} course(s)")
    for course in catalog.values():
        print(
            f"  {course.id:<12} {course.status(now):<8} {course.title}\n"
            f"  {'':<12} {course.describe_window()}; kernels {', '.join(course.kernels)}; "
            f"{len(course.learners)} learner(s), {len(course.teachers)} teacher(s) listed; "
            f"{len(course.notebooks)} API notebook(s), {len(course.assignments)} assignment(s)"
        )
    if args.accounts:
        print("\nPeople the catalog lists:")
        for username in sorted(catalog.static_users):
            roles = ", ".join(
                f"{course.id} ({role})"
                for course in catalog.values()
                for role in sorted(course.static_roles(username))
            )
            print(f"  {username:<12} {roles}")
    return 0


def add_commands(subparsers) -> None:
    p = add_command(subparsers, "check-catalog", check_catalog)
    p.add_argument(
        "file",
        nargs="?",
        help="the catalog, e.g. hub_config/courses.yaml (default: the hub's, see --hub-config)",
    )
    add_hub_config_option(p)
    p.add_argument(
        "--no-kernel-check",
        action="store_true",
        help="do not check kernels against those installed here (e.g. for a Docker catalog)",
    )
    p.add_argument("--accounts", action="store_true", help="also list the people the catalog names")
