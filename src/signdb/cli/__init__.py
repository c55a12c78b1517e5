"""The ``signdb`` command: one click group, thin commands, one error policy.

Each command opens the database, calls one library function and prints the
result. A :class:`~signdb.errors.SignDBError` becomes a one-line message on
stderr and exit status 1; click's usage errors exit 2.
"""

from __future__ import annotations

import click

from signdb import __version__
from signdb.cli.context import Context, Verbosity, common_options, verbosity_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signdb")
@verbosity_options
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """signdb: image-classification experiments kept in PostgreSQL.

    Load datasets, train and evaluate models, and answer questions with SQL.
    Every command takes --database-url (or $SIGNDB_DATABASE_URL); with neither,
    an embedded PostgreSQL under the data home is started on demand.
    """
    ctx.obj = Verbosity(quiet=quiet, verbose=verbose)


def _register() -> None:
    from signdb.cli import (
        data_commands,
        db_commands,
        demo_commands,
        eval_commands,
        housekeeping_commands,
        model_commands,
        queue_commands,
        serve_commands,
        sweep_commands,
        train_commands,
    )

    for module in (
        db_commands,
        data_commands,
        train_commands,
        sweep_commands,
        eval_commands,
        serve_commands,
        model_commands,
        demo_commands,
        queue_commands,  # after train and sweep: it adds `runs cancel` and `sweep submit`
        housekeeping_commands,  # adds to the runs, datasets and db groups
    ):
        module.register(cli)


_register()


def main() -> None:
    cli(prog_name="signdb")


__all__ = ["Context", "cli", "common_options", "main"]
