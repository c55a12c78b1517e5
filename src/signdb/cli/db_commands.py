"""``signdb db ...`` and ``signdb sql``: schema management and a psql shell."""

from __future__ import annotations

import os
import shutil

import click

from signdb.cli.context import Context, common_options
from signdb.errors import ConfigError, SchemaOutOfDate


@click.group("db")
def db_group() -> None:
    """Create, inspect and check the signdb schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@common_options
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate the database to the latest schema (safe to re-run)."""
    from signdb.db import migrate

    rev = migrate.upgrade(ctx.engine, revision)
    ctx.emit({"revision": rev}, lambda r: f"database at revision {r['revision']}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option(
    "--drop-sweeps",
    is_flag=True,
    help="Below the sweeps revision, also drop Optuna's tables (schema optuna).",
)
@common_options
def db_downgrade(ctx: Context, revision: str, drop_sweeps: bool) -> None:
    """Migrate down to REVISION ('base' removes every signdb table; sweeps stay unless
    --drop-sweeps)."""
    from signdb.db import migrate

    rev = migrate.downgrade(ctx.engine, revision, drop_sweeps=drop_sweeps)
    ctx.emit({"revision": rev}, lambda r: f"database at revision {r['revision']}")


@db_group.command("current")
@common_options
def db_current(ctx: Context) -> None:
    """Show the database's schema revision and the code's head revision."""
    from signdb.db import migrate

    result = {
        "revision": migrate.current_revision(ctx.engine),
        "head": migrate.head_revision(ctx.engine),
    }
    ctx.emit(result, lambda r: f"revision {r['revision']} (head {r['head']})")


@db_group.command("check")
@common_options
def db_check(ctx: Context) -> None:
    """Fail unless the schema is at head and matches the code (no drift)."""
    from signdb.db import migrate

    status = migrate.check(ctx.engine)
    result = {
        "revision": status.revision,
        "head": status.head,
        "ok": status.ok,
        "drift": status.drift,
    }
    if status.ok:
        ctx.emit(result, lambda r: f"schema is current (revision {r['revision']})")
        return
    if ctx.as_json:
        ctx.emit(result)
    if status.revision != status.head:
        raise SchemaOutOfDate(
            f"the database is at revision {status.revision}, the code at {status.head}; "
            "run `signdb db upgrade`"
        )
    raise SchemaOutOfDate(
        f"the schema differs from the code: {'; '.join(status.drift)}; "
        "add a migration for the change"
    )


@db_group.command("grant")
@common_options
def db_grant(ctx: Context) -> None:
    """(Re)create the roles signdb_analyst and signdb_writer and grant them on this database."""
    from signdb.db import roles

    roles.grant_roles(ctx.ready_engine())
    ctx.emit({"roles": list(roles.ROLES)}, lambda r: "granted: " + ", ".join(r["roles"]))


@click.command("sql")
@click.option("--role", type=click.Choice(["analyst", "writer"]), help="SET ROLE for the session.")
@common_options
def sql(ctx: Context, role: str | None) -> None:
    """Open psql on the current database."""
    from signdb.db.embedded import _package_bin_dir

    url = ctx.ready_engine().url
    psql = shutil.which("psql") or str(_package_bin_dir() / "psql")
    if not os.path.exists(psql):
        raise ConfigError(
            "psql was not found; install the PostgreSQL client (e.g. apt install postgresql-client)"
        )
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password  # keep it off the command line (visible in ps)
    args = [
        psql,
        "-h",
        str(url.query.get("host") or url.host or "localhost"),
        "-U",
        url.username or "postgres",
        "-d",
        url.database or "postgres",
    ]
    if url.port:
        args += ["-p", str(url.port)]
    if role:
        env["PGOPTIONS"] = f"-c role=signdb_{role}"
    os.execvpe(psql, args, env)


def register(cli: click.Group) -> None:
    cli.add_command(db_group)
    cli.add_command(sql)
