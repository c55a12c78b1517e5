"""What every command shares: the database it talks to, how it prints, and the common options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy import Engine

from signdb.errors import SignDBError


@dataclass
class Context:
    """What every command gets: how to reach the database and how to print."""

    database_url: str | None
    as_json: bool
    #: Hot standbys for image reads (``--read-database-url``); empty: the environment's.
    read_database_urls: tuple[str, ...] = ()
    _engine: Engine | None = None
    _db: Any = None

    @property
    def engine(self) -> Engine:
        """The engine, schema unchecked: for the commands that manage the schema itself."""
        if self._engine is None:
            from signdb.db.engine import get_engine, resolve_url

            url, _ = resolve_url(self.database_url)
            self._engine = get_engine(url)
        return self._engine

    @property
    def db(self) -> Any:
        """The :class:`signdb.Database` every other command works through (``signdb.connect``)."""
        if self._db is None:
            from signdb.api import connect

            self._db = connect(self.database_url, read_url=list(self.read_database_urls) or None)
        return self._db

    def ready_engine(self) -> Engine:
        """The engine of :attr:`db`: the schema verified, the embedded server migrated."""
        return self.db.engine

    def emit(
        self, result: dict[str, Any], human: Callable[[dict[str, Any]], str] | None = None
    ) -> None:
        if self.as_json:
            click.echo(json.dumps(result, default=_json_default, sort_keys=False))
        elif human is not None:
            click.echo(human(result))
        else:
            for key, value in result.items():
                click.echo(f"{key}: {value}")

    @property
    def interactive(self) -> bool:
        return not self.as_json and sys.stderr.isatty()


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def common_options(func: Callable) -> Callable:
    """``--database-url`` and ``--json``, shared by every command."""

    @click.option(
        "--database-url",
        envvar="SIGNDB_DATABASE_URL",
        show_envvar=True,
        default=None,
        metavar="URL",
        help="PostgreSQL URL; default: the embedded server under the data home.",
    )
    @click.option(
        "--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout."
    )
    @functools.wraps(func)
    def wrapper(database_url: str | None, as_json: bool, **kwargs: Any) -> Any:
        ctx = Context(database_url=database_url, as_json=as_json)
        try:
            return func(ctx, **kwargs)
        except SignDBError as e:
            raise click.ClickException(str(e)) from None

    return wrapper
