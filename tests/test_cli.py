"""``hub-ext``: one package, each command group imported only when one of its commands runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub_ext.cli import COMMANDS, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_by(*argv: str) -> set[str]:
    """The ``hub_ext`` modules a fresh interpreter has imported after ``hub-ext ARGV``.

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
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hub_ext'))), file=sys.stderr)\n"
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
