"""The README's CLI reference matches --help, and every command has help text."""

from __future__ import annotations

from pathlib import Path

import click

from signdb.cli import cli, reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_cli_reference_is_current():
    text = README.read_text()
    assert reference.splice(text) == text, (
        "README's CLI reference is stale: run `python -m signdb.cli.reference --write README.md`"
    )


def test_every_command_has_help_text():
    missing = [path for path, cmd in reference._walk(cli, "signdb") if not (cmd.help or "").strip()]
    assert missing == []


def test_every_option_has_help_text():
    bare = [
        f"{path} {param.name}"
        for path, cmd in reference._walk(cli, "signdb")
        for param in cmd.params
        if isinstance(param, click.Option) and not param.help and param.name not in ("help",)
    ]
    assert bare == []
