"""``signdb submit``, ``signdb worker``, ``signdb queue``, ``signdb runs cancel`` and
``signdb sweep submit``: the run queue's commands."""

from __future__ import annotations

import logging
from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import table
from signdb.cli.train_commands import spec_from_flags, train_options

queue_option = click.option(
    "--queue",
    default="default",
    show_default=True,
    help="The queue to send to: free text; workers take the queues they are started with.",
)
priority_option = click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Higher runs first; equal priorities go oldest first.",
)


@click.command("submit")
@train_options
@queue_option
@priority_option
@common_options
def submit(ctx: Context, queue: str, priority: int, **flags: Any) -> None:
    """Queue a training run for `signdb worker`: the flags of `signdb train`, checked the same way.

    Prints the run id; the run waits with status queued until a worker on its
    queue takes it, then trains exactly as `signdb train` would.
    """
    from signdb.queue import submit as submit_run

    if not flags["dataset"]:
        raise click.UsageError("--dataset is required")
    run_id = submit_run(ctx.db.engine, spec_from_flags(flags), queue=queue, priority=priority)
    ctx.emit(
        {"run_id": run_id, "status": "queued", "queue": queue, "priority": priority},
        lambda r: f"run {r['run_id']} queued on {r['queue']} (priority {r['priority']})",
    )


@click.command("worker")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    default=("default",),
    show_default=True,
    help="A queue to take runs from (repeat for several).",
)
@click.option(
    "--concurrency",
    type=int,
    default=1,
    show_default=True,
    help="Runs trained at once, each in its own process.",
)
@click.option("--until-empty", is_flag=True, help="Stop once no queued run is left.")
@common_options
def worker(ctx: Context, queues: tuple[str, ...], concurrency: int, until_empty: bool) -> None:
    """Train queued runs until stopped; start any number, on any machine that reaches the database.

    SIGTERM or Ctrl-C: each run in hand stops at its next step, checkpoints and
    goes back to the queue for another worker. A worker that dies is noticed by
    the others after $SIGNDB_WORKER_GRACE_SECONDS (60) without its heartbeat;
    its run is resumed elsewhere from its last checkpoint, once.
    """
    from signdb.queue.worker import WorkerSettings, run_worker

    settings = WorkerSettings(queues=queues, concurrency=concurrency, until_empty=until_empty)
    engine = ctx.db.engine  # the schema checked (and an embedded server migrated) first
    _log_to_stderr()
    url = engine.url.render_as_string(hide_password=False)
    run_worker(url, settings, log=lambda line: click.echo(f"signdb worker: {line}", err=True))


def _log_to_stderr() -> None:
    """procrastinate's own warnings and errors, one line each."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("signdb worker: %(name)s: %(levelname)s: %(message)s"))
    for name in ("procrastinate", "signdb"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.WARNING)


@click.command("queue")
@common_options
def queue_show(ctx: Context) -> None:
    """Queued and running submitted runs: queue, priority, worker, attempt and age."""
    from signdb.queue import queue_overview

    ctx.emit({"runs": queue_overview(ctx.db.engine)}, _format_queue)


def _format_queue(result: dict) -> str:
    if not result["runs"]:
        return "(the queue is empty: `signdb submit --dataset NAME` queues a run)"
    rows = [("run", "status", "queue", "priority", "worker", "attempt", "steps", "age")]
    for r in result["runs"]:
        worker_at = f"{r['worker_host']}:{r['worker_pid']}" if r["worker_host"] else ""
        steps = f"{r['steps_done']}/{r['total_steps']}" if r["total_steps"] else ""
        rows.append(
            (
                str(r["run_id"]),
                r["status"],
                r["queue"],
                str(r["priority"]),
                worker_at,
                str(r["attempt"]),
                steps,
                f"{r['age_seconds']:.0f} s",
            )
        )
    return table(rows, right={0, 3, 5, 7})


@click.command("cancel")
@click.argument("run_id", type=int)
@common_options
def runs_cancel(ctx: Context, run_id: int) -> None:
    """Cancel a submitted run: a queued one never starts; a running one stops at its next step."""
    from signdb.queue import cancel_run

    result = cancel_run(ctx.db.engine, run_id)
    ctx.emit(
        result,
        lambda r: (
            f"run {r['run_id']} cancelled"
            if not r["cancel_requested"]
            else f"run {r['run_id']} stops at its next step, checkpoints and ends cancelled"
        ),
    )


@click.command("submit")
@click.argument("name")
@click.argument("workers", type=int)
@queue_option
@priority_option
@common_options
def sweep_submit(ctx: Context, name: str, workers: int, queue: str, priority: int) -> None:
    """Queue WORKERS sweep workers for sweep NAME: `signdb worker`s run them like `sweep work`."""
    from signdb.queue import submit_sweep

    jobs = submit_sweep(ctx.db.engine, name, workers, queue=queue, priority=priority)
    ctx.emit(
        {"sweep": name, "queue": queue, "workers": len(jobs), "job_ids": jobs},
        lambda r: f"{r['workers']} worker(s) of sweep {r['sweep']} queued on {r['queue']}",
    )


def register(cli: click.Group) -> None:
    cli.add_command(submit)
    cli.add_command(worker)
    cli.add_command(queue_show)
    cli.commands["runs"].add_command(runs_cancel)  # type: ignore[attr-defined]
    cli.commands["sweep"].add_command(sweep_submit)  # type: ignore[attr-defined]
