"""The catalog: loading, every kind of mistake, the access window, group names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from hub_ext.cli import main as cli_main
from hub_ext.courses import (
    Catalog,
    CatalogError,
    enrollments_from_groups,
    group_name,
    parse_group,
)
from tests.conftest import standard_courses, write_catalog


def course(**overrides):
    base = {"id": "ds101", "title": "Data", "opens": "2026-09-01", "closes": "2026-12-20"}
    return {**base, **overrides}


def problems(tmp_path, courses, known_kernels=None, **top):
    path = write_catalog(tmp_path, courses, make_materials=False, **top)
    with pytest.raises(CatalogError) as info:
        Catalog.load(path, known_kernels=known_kernels)
    return [str(p) for p in info.value.problems]


def test_loads_the_standard_catalog(catalog_path):
    catalog = Catalog.load(catalog_path)
    assert list(catalog) == [c["id"] for c in standard_courses()]
    ds101 = catalog["ds101"]
    assert ds101.mem_limit == 1024**3
    assert ds101.learner_group == "course:ds101:learner"
    assert ds101.teacher_group == "course:ds101:teacher"
    assert ds101.materials.is_dir()
    assert ds101.env == {"DATASET_DIR": "/srv/data"}
    assert catalog.static_groups("alice") == {
        "course:ds101:learner",
        "course:stat200:learner",
        "course:hist100:learner",
        "course:future101:learner",
        "course:grace200:learner",
    }
    assert catalog.static_groups("tina") == {
        "course:ds101:teacher",
        "course:hist100:teacher",
        "course:future101:teacher",
    }
    assert catalog.static_groups("nobody") == set()


def test_the_shipped_example_catalogs_are_valid():
    from pathlib import Path

    hub_config = Path(__file__).parent.parent / "hub_config"
    local = Catalog.load(hub_config / "courses.yaml")
    assert {"ds101", "stat200", "hist100", "aaa-2013j"} <= set(local)
    docker = Catalog.load(hub_config / "courses-docker.yaml")
    assert list(docker) == list(local)  # the same courses, for the other backend
    assert all(course.image for course in docker.values())
    assert docker["stat200"].kernels == ("ir",)


@pytest.mark.parametrize(
    ("courses", "expected"),
    [
        pytest.param(
            [{"title": "No id", "opens": "2026-09-01", "closes": "2026-12-20"}],
            "course '#1': missing required field 'id'",
            id="missing-id",
        ),
        pytest.param(
            [course(), course(title="Again")],
            "line 6: course 'ds101' (#2): id: duplicate id (course #1, line 2, has it too)",
            id="duplicate-id",
        ),
        pytest.param(
            [course(opens="2026-13-01")],
            "course 'ds101': opens: '2026-13-01' is not a date",
            id="bad-date",
        ),
        pytest.param(
            [course(opens="2026-09-01", closes="2026-01-01")],
            "course 'ds101': closes: closes (2026-01-01) is before opens (2026-09-01)",
            id="closes-before-opens",
        ),
        pytest.param(
            [course(memory="2G")], "course 'ds101': unknown key 'memory'", id="unknown-key"
        ),
        pytest.param(
            [course(mem_limit="-1G")],
            "course 'ds101': mem_limit: '-1G' is not valid",
            id="negative-memory-string",
        ),
        pytest.param(
            [course(mem_limit=-5)],
            "course 'ds101': mem_limit: -5 must be positive",
            id="negative-memory",
        ),
        pytest.param(
            [course(id="DS 101")],
            "course 'DS 101': id: 'DS 101' is not valid: use lowercase letters",
            id="bad-id-characters",
        ),
        pytest.param(
            [course(id="ds:101")], "course 'ds:101': id: 'ds:101' is not valid", id="colon-in-id"
        ),
        pytest.param(
            [course(learners=["Alice Smith"])],
            "course 'ds101': learners.0: 'Alice Smith' is not valid: use a lowercase username",
            id="bad-username",
        ),
        pytest.param(
            [course(cpu_limit=0)],
            "course 'ds101': cpu_limit: 0 must be greater than 0",
            id="zero-cpu",
        ),
        pytest.param(
            [course(materials="nowhere")],
            "course 'ds101': materials: directory",
            id="missing-materials",
        ),
        pytest.param(
            [course(grace_days=-1)],
            "course 'ds101': grace_days: -1 must be at least 0",
            id="negative-grace",
        ),
        pytest.param(
            [course(idle_timeout="soon")],
            "course 'ds101': idle_timeout: 'soon' is not valid: use seconds",
            id="bad-duration",
        ),
        pytest.param(
            [course(network="everything")],
            "course 'ds101': network: 'everything' is not one of hub-only, internet",
            id="bad-network",
        ),
        pytest.param(
            [course(learners=["tina"], teachers=["tina"])],
            "course 'ds101': teachers: tina also listed as learner",
            id="teacher-and-learner",
        ),
    ],
)
def test_each_mistake_gives_one_clear_error(tmp_path, courses, expected):
    found = problems(tmp_path, courses)
    source = str(tmp_path / "courses.yaml")
    assert len(found) == 1, found
    assert (
        found[0].startswith(source.split("/")[-1])
        or source in found[0]
        or "courses.yaml" in found[0]
    )
    assert expected in found[0], found[0]


def test_unknown_kernel_names_the_known_ones(tmp_path):
    found = problems(
        tmp_path, [course(kernels=["python3", "julia-1.9"])], known_kernels={"python3", "ir"}
    )
    assert found == [
        f"{tmp_path / 'courses.yaml'}: line 8: course 'ds101': kernels: unknown kernel 'julia-1.9' "
        "(this backend has: ir, python3)"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, [course(mem_limit=-1), course(id="x y", cpu_limit=-2)])
    assert len(found) == 3, found


def test_error_names_file_course_and_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_catalog(tmp_path, [course(opens="2026-09-01", closes="2026-01-01")])
    with pytest.raises(CatalogError) as info:
        Catalog.load("courses.yaml")
    assert (
        str(info.value)
        == "courses.yaml: line 5: course 'ds101': closes: closes (2026-01-01) is before opens (2026-09-01)"
    )


def test_top_level_mistakes(tmp_path):
    assert problems(tmp_path, [course()], timezone="Mars/Olympus") == [
        f"{tmp_path / 'courses.yaml'}: line 1: timezone: unknown time zone 'Mars/Olympus' (e.g. Europe/London)"
    ]
    (tmp_path / "courses.yaml").write_text("courses: [\n")
    with pytest.raises(CatalogError, match=r"courses.yaml: line \d+: not valid YAML"):
        Catalog.load(tmp_path / "courses.yaml")
    (tmp_path / "courses.yaml").write_text("")
    with pytest.raises(CatalogError, match="the file is empty"):
        Catalog.load(tmp_path / "courses.yaml")
    with pytest.raises(CatalogError, match="cannot read"):
        Catalog.load(tmp_path / "missing.yaml")


_ENTRY = "- {id: ds101, title: A, opens: 2026-09-01, closes: 2026-12-20"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f"courses:\n{_ENTRY}, env: {{1: [a], B: b}}}}\n",
            "line 2: course 'ds101': env.1: ['a'] should be of type",
            id="int-key",
        ),
        pytest.param(
            f"courses:\n{_ENTRY}, 1: x, memory: 2G}}\n",
            "line 2: course 'ds101': unknown key 1, 'memory' (did you mean 'mem_limit'?)",
            id="int-and-str-unknown-keys",
        ),
        pytest.param(
            f"courses:\n{_ENTRY}, env: {{2: b}}}}\n",
            "course 'ds101': env: 2 should be of type string",
            id="env-name-not-a-string",
        ),
        pytest.param(
            "courses:\n- {id: ds101, title: A, opens: 2026-09-01, closes: 9999-12-31}\n",
            "line 2: course 'ds101': closes: '9999-12-31' is out of range",
            id="last-day-of-time",
        ),
        pytest.param(
            f"courses:\n{_ENTRY}, grace_days: 999999999}}\n",
            "course 'ds101': grace_days: 999999999 days after closes is past the year 9999",
            id="grace-past-9999",
        ),
        pytest.param(
            f"timezone: America\ncourses:\n{_ENTRY}}}\n",
            "line 1: timezone: unknown time zone 'America'",
            id="timezone-is-a-directory",
        ),
        pytest.param(
            f'courses:\n{_ENTRY}, materials: "a\\0b"}}\n',
            "course 'ds101': materials: 'a\\x00b' is not a usable path",
            id="nul-in-path",
        ),
        pytest.param(
            "courses: " + "[" * 5000 + "]" * 5000 + "\n",
            "courses.yaml: nested too deeply",
            id="deep",
        ),
        pytest.param(
            f"courses:\n{_ENTRY}, kernels: &k [*k, *k]}}\n",
            "course 'ds101': kernels.0:",
            id="alias-contains-itself",
        ),
    ],
)
def test_odd_input_gets_a_problem_not_a_traceback(tmp_path, text, expected):
    (tmp_path / "courses.yaml").write_text(text)
    with pytest.raises(CatalogError) as info:
        Catalog.load(tmp_path / "courses.yaml")
    assert any(expected in str(p) for p in info.value.problems), str(info.value)


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    (tmp_path / "courses.yaml").write_bytes(b"courses:\n- id: caf\xe9\n")
    with pytest.raises(CatalogError, match=r"courses.yaml: line 2: not UTF-8 text \(byte 19\)"):
        Catalog.load(tmp_path / "courses.yaml")


def test_each_missing_field_is_named(tmp_path):
    found = problems(tmp_path, [{"id": "ds101"}])
    assert [p.split(": ", 2)[2] for p in found] == [
        f"course 'ds101': missing required field {name!r}" for name in ("title", "opens", "closes")
    ]


def test_a_bad_default_is_reported_once_under_defaults(tmp_path):
    found = problems(
        tmp_path,
        [course(), course(id="stat200"), course(id="geo100", kernels=["python3"])],
        known_kernels={"python3"},
        defaults={"mem_limit": "2GB", "kernels": ["julia"], "grace_days": 2},
    )
    assert len(found) == 2, found
    assert ": line 2: defaults.mem_limit: '2GB' is not valid" in found[0]
    assert ": line 4: defaults.kernels: unknown kernel 'julia'" in found[1]


def test_defaults_apply_and_courses_override(tmp_path):
    path = write_catalog(
        tmp_path,
        [course(), course(id="stat200", mem_limit="512M")],
        defaults={"mem_limit": "2G", "idle_timeout": "45m", "kernels": ["python3"]},
    )
    catalog = Catalog.load(path)
    assert catalog["ds101"].mem_limit == 2 * 1024**3
    assert catalog["stat200"].mem_limit == 512 * 1024**2
    assert catalog["ds101"].idle_timeout == 45 * 60


def test_network_defaults_to_hub_only(tmp_path):
    path = write_catalog(
        tmp_path,
        [course(), course(id="web101", network="internet")],
        defaults={"network": "hub-only"},
    )
    catalog = Catalog.load(path)
    assert catalog["ds101"].network == "hub-only"
    assert catalog["web101"].network == "internet"
    path = write_catalog(tmp_path / "plain", [course()])
    assert Catalog.load(path)["ds101"].network == "hub-only"


def test_access_window(tmp_path):
    path = write_catalog(tmp_path, [course(grace_days=14)], timezone="Europe/Paris")
    ds101 = Catalog.load(path)["ds101"]
    at = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    assert ds101.status(at(2026, 8, 31, 21, 59)) == "upcoming"  # 23:59 in Paris
    assert ds101.status(at(2026, 8, 31, 22, 0)) == "open"  # midnight in Paris
    assert ds101.status(at(2026, 12, 20, 22, 59)) == "open"  # last day, 23:59 in Paris
    assert ds101.status(at(2026, 12, 20, 23, 0)) == "grace"
    assert ds101.status(at(2027, 1, 3, 22, 59)) == "grace"
    assert ds101.status(at(2027, 1, 3, 23, 0)) == "closed"
    assert (
        ds101.describe_window()
        == "open from 2026-09-01 to 2026-12-20, work reachable until 2027-01-03"
    )


def test_datetimes_are_accepted(tmp_path):
    path = write_catalog(
        tmp_path, [course(opens="2026-09-01T09:00:00+02:00", closes="2026-12-20T18:00")]
    )
    ds101 = Catalog.load(path)["ds101"]
    assert ds101.opens_at == datetime(2026, 9, 1, 7, 0, tzinfo=UTC)
    assert ds101.closes_at == datetime(2026, 12, 20, 18, 0, tzinfo=UTC)


def test_group_names():
    assert group_name("ds101", "learner") == "course:ds101:learner"
    assert parse_group("course:ds101:teacher") == ("ds101", "teacher")
    assert parse_group("course:ds101:owner") is None
    assert parse_group("staff") is None
    with pytest.raises(ValueError, match="unknown course role"):
        group_name("ds101", "owner")
    assert enrollments_from_groups(
        ["course:ds101:learner", "course:ds101:teacher", "course:stat200:learner", "staff"]
    ) == {"ds101": "teacher", "stat200": "learner"}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``hub-ext ARGS``, in this process: its exit status, stdout and stderr."""
    status = cli_main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_check_catalog_cli_prints_problems(tmp_path, capsys):
    write_catalog(tmp_path, [course(opens="2026-09-01", closes="2026-01-01"), course(id="ds101")])
    status, _, err = run_cli(capsys, "check-catalog", str(tmp_path / "courses.yaml"))
    assert status == 1
    assert (
        "line 5: course 'ds101' (#1): closes: closes (2026-01-01) is before opens (2026-09-01)"
        in err
    )
    assert "line 6: course 'ds101' (#2): id: duplicate id (course #1, line 2, has it too)" in err
    assert "2 problem(s); the hub would not start." in err


def test_check_catalog_cli_summarises(catalog_path, capsys):
    status, out, err = run_cli(capsys, "check-catalog", str(catalog_path))
    assert status == 0, err
    assert "5 course(s)" in out
    assert "ds101" in out and "open" in out
    assert "hist100      closed" in out


def test_check_catalog_cli_checks_kernels(tmp_path, capsys):
    write_catalog(tmp_path, [course(kernels=["no-such-kernel"])])
    _, _, err = run_cli(capsys, "check-catalog", str(tmp_path / "courses.yaml"))
    assert "unknown kernel 'no-such-kernel'" in err
    status, _, _ = run_cli(
        capsys, "check-catalog", "--no-kernel-check", str(tmp_path / "courses.yaml")
    )
    assert status == 0


def test_catalog_yaml_round_trip_keeps_dates_as_text(tmp_path):
    # YAML would turn 2026-09-01 into a date object; the loader keeps the text to check it once.
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"courses": [course()]}).replace("'", ""))
    assert Catalog.load(path)["ds101"].opens_at.date().isoformat() == "2026-09-01"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("2G", 2 * 1024**3), ("512M", 512 * 1024**2), ("1.5G", int(1.5 * 1024**3)), (1000, 1000)],
)
def test_mem_limit_accepts_what_jupyterhub_accepts(tmp_path, given, expected):
    from jupyterhub.spawner import Spawner

    path = write_catalog(tmp_path, [course(mem_limit=given)])
    assert Catalog.load(path)["ds101"].mem_limit == expected
    assert Spawner(mem_limit=given).mem_limit == expected  # the trait the spawner sets


def test_mem_limit_refuses_what_jupyterhub_refuses(tmp_path):
    found = problems(tmp_path, [course(mem_limit="2GB")])
    assert len(found) == 1, found
    assert "course 'ds101': mem_limit: '2GB' is not valid" in found[0]
    assert "512M, 2G" in found[0] and "K, M, G or T" in found[0]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [("Know_Thy Student.ipynb", "know-thy-student"), ("course-overview.ipynb", "course-overview")],
)
def test_api_name_is_one_rule(tmp_path, filename, expected):
    """The catalog's, the CLI's and the service's names agree (the service's route and check)."""
    import re

    from hub_ext.courses import API_NAME_PATTERN, api_name
    from hub_ext.services.analytics import app

    assert api_name(filename) == expected
    (tmp_path / filename).write_text("{}")
    path = write_catalog(tmp_path, [course(notebooks=[filename])])
    assert [nb.name for nb in Catalog.load(path)["ds101"].notebooks] == [expected]
    assert re.fullmatch(API_NAME_PATTERN, expected) and app._NAME.match(expected)
    from hub_ext.cli import analytics as cli

    assert cli.api_name is api_name  # the CLI's default name is the catalog's rule itself


def test_eight_mistakes_are_reported_in_one_pass(tmp_path):
    found = problems(
        tmp_path,
        [
            course(memory="2G", opens="2026-09-01", closes="2026-01-01"),  # unknown key + dates
            course(id="stat200", mem_limit="2GB", materials="nowhere"),  # size + materials
            course(id="hist100", kernels=["julia"], rosters=["missing.csv"]),  # kernel + roster
            course(id="geo100", cpu_limit=0, notebooks=["missing.ipynb"]),  # cpu + notebook
        ],
        known_kernels={"python3"},
        defaults={"grace_days": -1},
    )
    for expected in (
        "unknown key 'memory'",
        "closes (2026-01-01) is before opens (2026-09-01)",
        "'2GB' is not valid",
        "materials: directory",
        "unknown kernel 'julia'",
        "rosters: file",
        "cpu_limit: 0 must be greater than 0",
        "notebooks: file",
        "grace_days: -1 must be at least 0",
    ):
        assert any(expected in p for p in found), (expected, found)


def test_duplicate_ids_name_entry_and_line(tmp_path):
    found = problems(tmp_path, [course(), course(title="Again")])
    assert any("#2" in p and "courses.yaml:" in p and "line" in p for p in found), found
