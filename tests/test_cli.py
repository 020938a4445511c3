"""``hub-ext``: one package, each command group imported only when one of its commands runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub_ext.cli import COMMANDS, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_by(*argv: str, prefix: str = "hub_ext") -> set[str]:
    """The modules (named ``prefix...``) a fresh interpreter has imported after ``hub-ext ARGV``.

    A subprocess on purpose: what an in-process call imports is hidden by what the other
    tests already imported.
    """
    code = (
        "import json, sys\n"
        "from hub_ext.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefix!r}))), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command_module():
    assert imported_by("--help") == {"hub_ext", "hub_ext.cli"}


def test_a_command_imports_only_its_own_group(tmp_path):
    modules = imported_by("events", "readonly-url", "--db", f"sqlite:///{tmp_path / 'e.db'}")
    assert "hub_ext.cli.events" in modules
    assert not {"hub_ext.cli.catalog", "hub_ext.cli.roster", "hub_ext.cli.analytics"} & modules


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name, (_, help_) in COMMANDS.items():
        assert name in out and help_.split()[0] in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hub-ext {command}")


def test_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["chek-catalog"])
    assert e.value.code == 2
    assert "invalid choice: 'chek-catalog' (choose from 'check-catalog'" in capsys.readouterr().err


#: what ``hub-ext --help`` must not import (each costs from tens of ms to seconds)
HEAVY = ("jupyterhub", "sqlalchemy", "tornado", "traitlets", "yaml", "httpx", "docker", "pandas")


def test_help_imports_nothing_heavy():
    """``hub-ext --help`` stays fast (under 1 s) because it imports no framework: checked by
    what a fresh interpreter has imported, not by a timing."""
    heavy = sorted(m for m in imported_by("--help", prefix="") if m.split(".")[0] in HEAVY)
    assert not heavy, heavy


def run_on_a_terminal(argv: list[str]) -> str:
    """Run ``hub-ext ARGV`` with its stderr on a pseudo-terminal; what it drew there."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        drawn += chunk
    proc.wait(timeout=60)
    os.close(leader)
    return drawn.decode(errors="replace")


def test_an_import_draws_its_progress_on_a_terminal_unless_quiet(tmp_path):
    from tests.test_importers import MOODLE

    log = tmp_path / "logs.csv"
    log.write_text(MOODLE)
    argv = ["import", "moodle-log", str(log), "--course", "ds101"]
    drawn = run_on_a_terminal([*argv, "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    assert "100.0%" in drawn and "\r" in drawn, drawn
    quiet = run_on_a_terminal([*argv, "--db", f"sqlite:///{tmp_path / 'b.db'}", "--quiet"])
    assert "%" not in quiet, quiet


def test_progress_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["import", "oulad", "x", "--progress", "--quiet"])
    assert "not allowed with argument" in capsys.readouterr().err
