"""``signdb runs delete``, ``datasets delete``, ``db status`` and ``db stop``.

The deleting commands show what goes and ask on a terminal (``--yes`` skips the
question; without a terminal, ``--yes`` is required).
"""

from __future__ import annotations

from typing import Any

import click

from signdb.cli.context import Context, common_options, yes_option


@click.command("delete")
@click.argument("run_ids", nargs=-1, required=True, type=int, metavar="RUN_ID...")
@click.option("--force", is_flag=True, help="Also delete runs that are trials of a sweep.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@yes_option
@common_options
def runs_delete(
    ctx: Context, run_ids: tuple[int, ...], force: bool, dry_run: bool, yes: bool
) -> None:
    """Delete runs with their metrics, weights, predictions, evaluations and scores.

    All of them or none, in one transaction. A running run is refused (cancel it
    first); so is a sweep's run unless --force is given.
    """
    from signdb.housekeeping import delete_runs

    engine = ctx.ready_engine()
    plan = delete_runs(engine, list(run_ids), force=force, dry_run=True)
    if not dry_run:
        ctx.confirm(_run_question(plan), yes=yes)
        plan = delete_runs(engine, list(run_ids), force=force)
    ctx.emit(plan.as_dict(), _human_runs)


def _run_question(plan: Any) -> str:
    lines = "\n".join(f"  {line}" for line in plan.described)
    return f"{lines}\nDelete {_rows(plan.rows)}?"


def _rows(rows: dict[str, int]) -> str:
    shown = [f"{n:,} {table.replace('_', ' ')}" for table, n in rows.items() if n]
    return ", ".join(shown) or "nothing"


def _human_runs(r: dict[str, Any]) -> str:
    verb = "deleted" if r["deleted"] else "would delete"
    return f"{verb} {_rows(r['rows'])}"


@click.command("delete")
@click.argument("name")
@click.option(
    "--with-runs", is_flag=True, help="Also delete the runs and sweeps that use the dataset."
)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@yes_option
@common_options
def datasets_delete(ctx: Context, name: str, with_runs: bool, dry_run: bool, yes: bool) -> None:
    """Delete dataset NAME with its classes and images.

    Refused while runs or sweeps use it, unless --with-runs is given (running
    runs are always refused). One transaction: all of it or nothing.
    """
    from signdb.housekeeping import delete_dataset

    engine = ctx.ready_engine()
    plan = delete_dataset(engine, name, with_runs=with_runs, dry_run=True)
    if not dry_run:
        ctx.confirm(f"Delete {_dataset_parts(plan.as_dict())}?", yes=yes)
        plan = delete_dataset(engine, name, with_runs=with_runs)
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    ctx.emit(plan.as_dict(), _human_dataset)


def _dataset_parts(r: dict[str, Any]) -> str:
    parts = [f"dataset {r['dataset']!r} ({r['images']:,} images, {r['classes']} classes)"]
    if r["runs"]:
        parts.append(f"its {len(r['runs'])} run(s) ({_rows(r['rows'])})")
    if r["sweeps"]:
        parts.append(f"sweep(s) {', '.join(r['sweeps'])}")
    return " and ".join(parts)


def _human_dataset(r: dict[str, Any]) -> str:
    return f"{'deleted' if r['deleted'] else 'would delete'} {_dataset_parts(r)}"


@click.command("status")
@common_options
def db_status(ctx: Context) -> None:
    """Show the database server: running or not, version and schema revision; for the
    embedded server also its pid, socket, data directory and size on disk.

    Never starts the embedded server.
    """
    from signdb.housekeeping import server_status

    ctx.emit(server_status(ctx.database_url).as_dict(), _human_status)


def _human_status(r: dict[str, Any]) -> str:
    if not r["embedded"]:
        return (
            f"server {r['url']}: PostgreSQL {r['version']}, schema revision "
            f"{r['revision'] or 'none (run `signdb db upgrade`)'} (code: {r['head']})"
        )
    state = f"running (pid {r['pid']})" if r["running"] else "not running"
    lines = [
        f"embedded PostgreSQL {r['version'] or '(not created yet)'}: {state}",
        f"data directory  {r['data_directory']} ({_size(r['size_bytes'])})",
        f"socket          {r['socket']}",
        f"log             {r['log']}",
    ]
    if r["running"]:
        lines.append(f"schema          revision {r['revision'] or 'none yet'} (code: {r['head']})")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@click.command("stop")
@click.option(
    "--force", is_flag=True, help="Stop even while other clients are connected (they are cut off)."
)
@yes_option
@common_options
def db_stop(ctx: Context, force: bool, yes: bool) -> None:
    """Stop the embedded PostgreSQL cleanly (the next command starts it again).

    Refused while other clients (a trainer, a notebook) are connected, unless
    --force is given. Against --database-url or $SIGNDB_DATABASE_URL it refuses:
    that server is not signdb's to stop.
    """
    from signdb.db.embedded import default_server
    from signdb.housekeeping import stop_embedded
    from signdb.housekeeping.server import check_stoppable

    server = default_server()
    check_stoppable(ctx.database_url, force=force, server=server)  # before asking
    if server.is_running():
        ctx.confirm(f"Stop the embedded PostgreSQL (pid {server.pid()}, {server.pgdata})?", yes=yes)
    result = stop_embedded(ctx.database_url, force=force, server=server)
    ctx.emit(result.as_dict(), _human_stop)


def _human_stop(r: dict[str, Any]) -> str:
    if not r["was_running"]:
        return f"the embedded server ({r['data_directory']}) is not running"
    return f"stopped the embedded PostgreSQL (pid {r['pid']}, {r['data_directory']})"


def register(cli: click.Group) -> None:
    cli.commands["runs"].add_command(runs_delete)
    cli.commands["datasets"].add_command(datasets_delete)
    cli.commands["db"].add_command(db_status)
    cli.commands["db"].add_command(db_stop)
