"""docs/cli.md is what the commands say about themselves, and every command has help text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from signdb.cli import cli, reference

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_current():
    assert CLI_MD.read_text() == reference.render(), (
        "docs/cli.md is stale: run `python -m signdb.cli.reference --write docs/cli.md`"
    )


def test_the_reference_covers_every_command_with_help_and_version():
    text = CLI_MD.read_text()
    for path, command in reference._walk(cli, "signdb"):
        if not isinstance(command, click.Group):
            assert f"### `{path}`" in text
    assert "-h, --help" in text and "--version" in text


def test_every_command_has_help_text():
    missing = [path for path, cmd in reference._walk(cli, "signdb") if not (cmd.help or "").strip()]
    assert missing == []


def test_every_option_has_help_text():
    bare = [
        f"{path} {param.name}"
        for path, cmd in reference._walk(cli, "signdb")
        for param in cmd.params
        if isinstance(param, click.Option)
        and not param.help
        and not param.hidden
        and param.name not in ("help",)
    ]
    assert bare == []


def test_shell_completion_as_documented_completes_commands():
    """The documented bash line sources a script; completing `signdb da` offers datasets."""
    signdb = [sys.executable, "-m", "signdb"]
    source = subprocess.run(
        signdb, env={**os.environ, "_SIGNDB_COMPLETE": "bash_source"}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert source.returncode == 0 and "_signdb_completion" in source.stdout
    env = {**os.environ, "_SIGNDB_COMPLETE": "bash_complete", "COMP_WORDS": "signdb da",
           "COMP_CWORD": "1"}  # fmt: skip
    offered = subprocess.run(signdb, env=env, capture_output=True, text=True, timeout=60)
    assert "plain,datasets" in offered.stdout.splitlines()
