"""The ``signdb`` command: one click group, thin commands, one error policy.

Each command opens the database, calls one library function and prints the
result. A :class:`~signdb.errors.SignDBError` becomes a one-line message on
stderr and exit status 1; click's usage errors exit 2.
"""

from __future__ import annotations

import importlib.util
import sys

import click

from signdb import __version__
from signdb.cli.context import Context, common_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signdb")
def cli() -> None:
    """signdb: image-classification experiments kept in PostgreSQL.

    Load datasets, train and evaluate models, and answer questions with SQL.
    Every command takes --database-url (or $SIGNDB_DATABASE_URL); with neither,
    an embedded PostgreSQL under the data home is started on demand.
    """


def _register() -> None:
    from signdb.cli import (
        data_commands,
        db_commands,
        demo_commands,
        eval_commands,
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
    ):
        module.register(cli)


_register()


def main() -> None:
    _pose_as_package_main()
    cli(prog_name="signdb")


def _pose_as_package_main() -> None:
    """Let multiprocessing see the ``signdb`` script as what it is: ``python -m signdb``.

    A forkserver or spawn worker (a load's decoders) first re-runs its parent's
    ``__main__``. For the console script that is ``import signdb.cli``: half a
    second of imports in every decoding worker before its first file (0.1 s of
    the 1.9 s ``signdb load`` of the digits). A package's ``__main__`` is never re-run
    (``multiprocessing.spawn._fixup_main_from_name``), so the script takes that
    module's spec. Only the script itself is relabelled: it is the module whose
    ``main`` is this function and that has no spec of its own.
    """
    script = sys.modules.get("__main__")
    if script is None or getattr(script, "__spec__", None) is not None:
        return
    if getattr(script, "main", None) is main:
        script.__spec__ = importlib.util.find_spec("signdb.__main__")


__all__ = ["Context", "cli", "common_options", "main"]
