"""The command line: every registered command loads and explains itself; --help stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from panorooms3d import __version__
from panorooms3d.cli import COMMANDS, cli


def test_version_and_help_list_every_command() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["--version"]).output
    out = runner.invoke(cli, ["--help"]).output
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from panorooms3d.cli import cli; from click.testing import CliRunner; "
            "CliRunner().invoke(cli, ['--help']); "
            "print(','.join(m for m in ('bpy', 'torch', 'open3d', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"--help imported {out}"


def test_unknown_command_is_a_clean_error() -> None:
    result = CliRunner().invoke(cli, ["renderr"])
    assert result.exit_code != 0 and "No such command" in result.output
