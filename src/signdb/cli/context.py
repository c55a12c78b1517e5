"""What every command shares: the database it talks to, how it prints, and the common options."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy import Engine

from signdb.errors import SignDBError


@dataclass
class Verbosity:
    """The global ``-q``/``-v`` flags: given before the command or among its options."""

    quiet: bool = False
    verbose: int = 0


@dataclass
class Context:
    """What every command gets: how to reach the database and how to print."""

    database_url: str | None
    as_json: bool
    #: Hot standbys for image reads (``--read-database-url``); empty: the environment's.
    read_database_urls: tuple[str, ...] = ()
    quiet: bool = False
    verbose: int = 0
    _engine: Engine | None = None
    _db: Any = None

    @property
    def engine(self) -> Engine:
        """The engine, schema unchecked: for the commands that manage the schema itself."""
        if self._engine is None:
            from signdb.db.engine import get_engine, resolve_url

            url, embedded = resolve_url(self.database_url)
            self._engine = get_engine(url)
            self.note(f"database {_where(url, embedded)}")
        return self._engine

    @property
    def db(self) -> Any:
        """The :class:`signdb.Database` every other command works through (``signdb.connect``)."""
        if self._db is None:
            from signdb.api import connect

            self._db = connect(self.database_url, read_url=list(self.read_database_urls) or None)
            self.note(f"database {_where(self._db.url, self.database_url is None)}")
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
        """Progress bars: a person is watching stderr, and asked for neither --json nor -q."""
        return not self.as_json and not self.quiet and sys.stderr.isatty()

    def note(self, message: str) -> None:
        """A line on stderr under ``-v``."""
        if self.verbose:
            click.echo(f"signdb: {message}", err=True)

    def confirm(self, question: str, *, yes: bool) -> None:
        """Go on when ``yes`` or when the person at the terminal agrees; refuse otherwise."""
        if yes:
            return
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"{question} needs a confirmation and stdin is not a terminal; "
                "pass --yes to go ahead without asking"
            )
        if not click.confirm(question, default=False, err=True):
            raise click.ClickException("cancelled; nothing was changed")


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _where(url: Any, embedded: bool) -> str:
    from signdb.config import redact

    return f"{redact(url)}{' (embedded)' if embedded else ''}"


def verbosity_options(func: Callable) -> Callable:
    """``-q``/``-v``: shown on ``signdb --help``, also accepted after a command (hidden there)."""
    func = click.option(
        "-v",
        "--verbose",
        count=True,
        help="Say which database is used, how long the command took, and log migrations "
        "(-vv: every SQL statement); on an error, show its traceback.",
    )(func)
    return click.option(
        "-q", "--quiet", is_flag=True, help="No progress bars (results and errors still print)."
    )(func)


def _verbosity(quiet: bool, verbose: int) -> Verbosity:
    root = click.get_current_context().find_root()
    given = root.obj if isinstance(root.obj, Verbosity) else Verbosity()
    return Verbosity(quiet=quiet or given.quiet, verbose=max(verbose, given.verbose))


def configure_logging(verbose: int) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("signdb: %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)  # "Running upgrade ..."
    if verbose >= 2:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)


def yes_option(func: Callable) -> Callable:
    return click.option("-y", "--yes", is_flag=True, help="Do it without asking for confirmation.")(
        func
    )


def common_options(func: Callable) -> Callable:
    """``--database-url`` and ``--json``, shared by every command (and the hidden -q/-v)."""

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
    @click.option("-q", "--quiet", is_flag=True, hidden=True)
    @click.option("-v", "--verbose", count=True, hidden=True)
    @functools.wraps(func)
    def wrapper(
        database_url: str | None, as_json: bool, quiet: bool, verbose: int, **kwargs: Any
    ) -> Any:
        flags = _verbosity(quiet, verbose)
        ctx = Context(database_url, as_json, quiet=flags.quiet, verbose=flags.verbose)
        configure_logging(flags.verbose)
        started = time.perf_counter()
        try:
            return func(ctx, **kwargs)
        except SignDBError as e:
            if ctx.verbose:
                traceback.print_exc(file=sys.stderr)
            raise click.ClickException(str(e)) from None
        finally:
            ctx.note(f"{time.perf_counter() - started:.2f} s")

    return wrapper
