"""Render every command's ``--help`` as Markdown, for the README's CLI reference.

``python -m signdb.cli.reference --write README.md`` rewrites the block between
the markers; a test fails when the README is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from signdb.cli import cli

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"


def _walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}"
        out.append((path, command))
        if isinstance(command, click.Group):
            out.extend(_walk(command, path))
    return out


def render() -> str:
    parts = []
    for path, command in _walk(cli, "signdb"):
        if isinstance(command, click.Group):
            continue
        ctx = click.Context(command, info_name=path, terminal_width=100, max_content_width=100)
        parts.append(f"#### `{path}`\n\n```text\n{command.get_help(ctx)}\n```\n")
    return "\n".join(parts)


def splice(readme: str) -> str:
    head, sep, rest = readme.partition(START)
    if not sep:
        raise SystemExit(f"README has no {START} marker")
    _, sep, tail = rest.partition(END)
    if not sep:
        raise SystemExit(f"README has no {END} marker")
    return f"{head}{START}\n{render()}{END}{tail}"


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(splice(path.read_text()))
    else:
        sys.stdout.write(render())


if __name__ == "__main__":
    main(sys.argv[1:])
