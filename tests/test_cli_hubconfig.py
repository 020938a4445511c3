"""``hub-ext --hub-config FILE``: the command line uses what the hub's config file sets.

The bug this guards against: the command line and the hub each had their own defaults (a
roster imported to ``./rosters`` while the hub read another directory; an event store the
hub did not use). Here a hub config file sets non-default places, and each command finds
them only by reading that file, as the hub does.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from hub_ext.cli import main
from hub_ext.courses import CourseCatalog
from hub_ext.hubconfig import read_hub_config

from .conftest import day, write_catalog

HUB_CONFIG = """\
from hub_ext.hubconfig import configure_course_hub

c = get_config()  # noqa: F821
configure_course_hub(
    c, {catalog!r}, backend={backend!r}, data_dir={data_dir!r}, events_db={events_db!r}
)
c.CourseOAuthenticator.roster_dir = {roster_dir!r}
"""


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A hub's directory: a catalog, a config file naming non-default places, nothing else."""
    for name in (
        "HUB_EXT_CATALOG",
        "HUB_EXT_ROSTER_DIR",
        "HUB_EXT_EVENTS_DB",
        "HUB_EXT_HUB_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    catalog = write_catalog(
        tmp_path / "catalog",
        [
            {"id": "ds101", "title": "Data", "opens": day(-1), "closes": day(30)},
            {"id": "stat200", "title": "Stats", "opens": day(-1), "closes": day(30)},
        ],
        defaults={"kernels": ["python3"]},
    )
    places = {
        "catalog": str(catalog),
        "backend": "local",
        "data_dir": str(tmp_path / "state"),
        "events_db": f"sqlite:///{tmp_path / 'store' / 'events.sqlite'}",
        "roster_dir": str(tmp_path / "imported-rosters"),
    }
    (tmp_path / "store").mkdir()
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(HUB_CONFIG.format(**places))
    # the shell is elsewhere: nothing may land in the working directory
    elsewhere = tmp_path / "shell"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    CourseCatalog.clear_instance()
    yield config, places
    CourseCatalog.clear_instance()


def test_reading_the_hub_config_changes_nothing(hub_dir):
    config_file, places = hub_dir
    umask = os.umask(0o022)
    os.umask(umask)
    config = read_hub_config(config_file)
    assert config.CourseCatalog.path == places["catalog"]
    assert not Path(places["data_dir"]).exists()  # configure_course_hub would create it 0700
    assert os.umask(umask) == umask  # ... and set the process's umask to 077
    assert not CourseCatalog.initialized()  # ... and install the catalog for the hub
    assert os.listdir(".") == []


def test_import_roster_stores_where_this_hub_reads(hub_dir, capsys):
    from hub_ext.authenticator import CourseOAuthenticator

    config_file, places = hub_dir
    roster = Path("../r.csv")
    roster.write_text("username,role\nzed,learner\n")
    status = main(
        ["import-roster", str(roster), "--course", "ds101", "--hub-config", str(config_file)]
    )
    assert status == 0, capsys.readouterr().err
    assert f"Stored in {places['roster_dir']}" in capsys.readouterr().out
    assert os.listdir(".") == []  # not ./rosters

    # the hub's authenticator, configured by the same file, enrolls zed from it
    config = read_hub_config(config_file)
    authenticator = CourseOAuthenticator(config=config)
    assert authenticator.rosters.groups_for("zed") == {"course:ds101:learner"}


def test_the_hub_config_is_found_by_environment_or_in_the_working_directory(
    hub_dir, monkeypatch, capsys
):
    config_file, places = hub_dir
    roster = Path("../r.csv").resolve()
    roster.write_text("username,role\nzed,learner\n")
    monkeypatch.setenv("HUB_EXT_HUB_CONFIG", str(config_file))
    assert main(["import-roster", str(roster), "--course", "stat200"]) == 0
    assert f"Stored in {places['roster_dir']}" in capsys.readouterr().out
    monkeypatch.delenv("HUB_EXT_HUB_CONFIG")
    monkeypatch.chdir(config_file.parent)  # JupyterHub's own default: ./jupyterhub_config.py
    assert main(["import-roster", str(roster), "--course", "ds101", "--dry-run"]) == 0
    assert "would import 1 enrolment(s)" in capsys.readouterr().out


def test_event_commands_use_the_hubs_store(hub_dir, capsys):
    config_file, places = hub_dir
    argv = ["events", "add-source", "moodle-ds101", "--course", "ds101", "--hub-config"]
    assert main([*argv, str(config_file)]) == 0
    out, err = capsys.readouterr()
    assert "key:" in out
    assert "not checked against a catalog" not in err  # the hub's catalog checked it
    database = places["events_db"].removeprefix("sqlite:///")
    names = sqlite3.connect(database).execute("SELECT name, course_id FROM sources").fetchall()
    assert names == [("moodle-ds101", "ds101")]
    # a course the hub's catalog does not have is refused, by that catalog
    assert main([*argv[:2], "x", "--course", "nope", "--hub-config", str(config_file)]) == 1
    assert "nope" in capsys.readouterr().err
    assert os.listdir(".") == []  # no ./events.sqlite


def test_check_catalog_checks_the_hubs_catalog(hub_dir, capsys):
    config_file, places = hub_dir
    assert main(["check-catalog", "--hub-config", str(config_file)]) == 0
    assert f"{places['catalog']}: 2 course(s)" in capsys.readouterr().out

    Path(places["catalog"]).write_text(
        "courses:\n  - id: ds101\n    title: T\n    opens: soon\n    closes: 2027-01-01\n"
    )
    assert main(["check-catalog", "--hub-config", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert places["catalog"] in err and "opens" in err and "the hub would not start" in err


@pytest.mark.parametrize(
    "body, expected",
    [
        ("raise RuntimeError('no secret in the environment')", "RuntimeError: no secret"),
        (
            "from hub_ext.hubconfig import configure_course_hub\n"
            "configure_course_hub(get_config(), 'x.yaml', backend='mainframe')",
            "Unknown backend 'mainframe'",
        ),
    ],
)
def test_a_broken_hub_config_is_named_not_a_traceback(tmp_path, capsys, body, expected):
    config = tmp_path / "hub.py"
    config.write_text(body + "\n")
    assert main(["import-roster", "r.csv", "--hub-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(config) in err and expected in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:
        main(["events", "sources", "--hub-config", str(tmp_path / "missing.py")])
    assert exited.value.code == 1
    assert "missing.py: no such hub config file" in capsys.readouterr().err
