"""``signdb sweep create | work | show | reap``."""

from __future__ import annotations

import json
from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import number, table
from signdb.cli.train_commands import parse_classes
from signdb.db import sweep_storage
from signdb.ml import model_names


@click.group("sweep")
def sweep_group() -> None:
    """Hyperparameter sweeps: an Optuna study in the same database, any number of workers.

    \b
    signdb sweep create lr-hidden --dataset digits --model mlp --classes all \\
        --param lr=loguniform:1e-3:1e-1 --param hidden=choice:[64],[128] --trials 12 --repeats 3
    signdb sweep work lr-hidden        # in as many terminals, on as many machines, as you like
    signdb sweep show lr-hidden
    """


@sweep_group.command("create")
@click.argument("name")
@click.option("--dataset", required=True, help="Dataset to sweep on (see `signdb datasets list`).")
@click.option(
    "--model", type=click.Choice(model_names()), default="mlp", show_default=True, help="Model."
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["numpy", "torch"]),
    default="numpy",
    show_default=True,
    help="Engine the trials train on.",
)
@click.option(
    "--classes",
    default="0,1",
    show_default=True,
    help="Comma-separated class names or labels, or 'all'.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=SPACE",
    help="choice:a,b,c | int:LOW:HIGH | float:LOW:HIGH | loguniform:LOW:HIGH, or a fixed value.",
)
@click.option(
    "--trials",
    type=int,
    help="Trials in the sweep (default: 20; grid: the number of points).",
)
@click.option(
    "--repeats",
    type=int,
    default=1,
    show_default=True,
    help="Runs per trial, with seeds --seed, --seed+1, ...; the trial's value is their mean.",
)
@click.option(
    "--sampler",
    type=click.Choice(["tpe", "random", "grid"]),
    default="tpe",
    show_default=True,
    help="grid runs every combination of choice spaces exactly once.",
)
@click.option(
    "--objective",
    default="val_accuracy",
    show_default=True,
    help="val_accuracy or val_f1: measured on the val split, never on test.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of repeat 0.")
@click.option(
    "--test-fraction",
    type=float,
    default=0.15,
    show_default=True,
    help="Share of each class's images held out for the final test (reported, never used).",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.15,
    show_default=True,
    help="Share held out for choosing the configuration (must be > 0).",
)
@click.option(
    "--split",
    "split_mode",
    type=click.Choice(["auto", "fixed", "hash"]),
    default="auto",
    show_default=True,
    help="fixed: the dataset's own train/val/test split; hash: by the fractions; auto: fixed "
    "when every image has one.",
)
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Stop poor trials of mini-batch models early (Optuna's MedianPruner, per epoch).",
)
@click.option(
    "--heartbeat-seconds",
    type=int,
    default=sweep_storage.HEARTBEAT_SECONDS,
    show_default=True,
    help="How often a worker tells the database it is alive.",
)
@click.option(
    "--grace-seconds",
    type=int,
    default=sweep_storage.GRACE_SECONDS,
    show_default=True,
    help="After this long without a heartbeat a trial is failed and queued again once.",
)
@click.option(
    "--submit",
    "submit_workers",
    type=int,
    metavar="K",
    help="Also queue K sweep workers for `signdb worker` (as `signdb sweep submit NAME K`).",
)
@click.option(
    "--queue", default="default", show_default=True, help="The queue --submit sends them to."
)
@common_options
def sweep_create(
    ctx: Context,
    name: str,
    dataset: str,
    model: str,
    engine_name: str,
    classes: str,
    params: tuple[str, ...],
    trials: int | None,
    repeats: int,
    sampler: str,
    objective: str,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    split_mode: str,
    prune: bool,
    heartbeat_seconds: int,
    grace_seconds: int,
    submit_workers: int | None,
    queue: str,
) -> None:
    """Create sweep NAME (or reopen it with the same settings)."""
    from signdb.sweeps import SweepRequest, create_sweep

    request = SweepRequest(
        name=name,
        dataset=dataset,
        model=model,
        engine=engine_name,
        classes=parse_classes(classes),
        params=params,
        trials=trials,
        repeats=repeats,
        sampler=sampler,
        objective=objective,
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        split=split_mode,
        prune=prune,
        heartbeat_seconds=heartbeat_seconds,
        grace_seconds=grace_seconds,
    )
    result = create_sweep(ctx.ready_engine(), request).as_dict()
    if submit_workers is not None:
        from signdb.queue import submit_sweep

        jobs = submit_sweep(ctx.ready_engine(), name, submit_workers, queue=queue)
        result.update(submitted=len(jobs), queue=queue)
    ctx.emit(result, _human_created)


def _human_created(r: dict[str, Any]) -> str:
    verb = "created" if r["created"] else "reopened (same settings)"
    return (
        f"sweep {r['sweep']} {verb}: {r['trials']} trials x {r['repeats']} repeats, "
        f"{r['sampler']} over {', '.join(r['space'])}, objective {r['objective']}\n"
        + (
            f"{r['submitted']} sweep worker(s) queued on {r['queue']} for `signdb worker`"
            if r.get("submitted")
            else f"start workers with: signdb sweep work {r['sweep']}"
        )
    )


@sweep_group.command("work")
@click.argument("name")
@click.option("--max-trials", type=int, help="Stop after this many trials (default: until done).")
@common_options
def sweep_work(ctx: Context, name: str, max_trials: int | None) -> None:
    """Run trials of sweep NAME until it has all its trials; start any number of workers."""
    from signdb.sweeps import work

    progress = _WorkProgress(ctx)
    try:
        result = work(
            ctx.ready_engine(),
            name,
            max_trials=max_trials,
            on_trial=progress.trial_done,
            progress=progress,
        )
    finally:
        progress.close()
    if result.stopped and not ctx.as_json:
        click.echo(f"stopped: {result.stopped}", err=True)
    ctx.emit(
        result.as_dict(),
        lambda r: (
            f"worker ran {r['ran']} trial(s) of sweep {r['sweep']}: runs "
            f"{', '.join(map(str, r['run_ids'])) or 'none'}"
        ),
    )


class _WorkProgress:
    """A step bar for the trial in hand and one line per finished trial (stderr, terminals)."""

    def __init__(self, ctx: Context) -> None:
        self.enabled = ctx.interactive
        self.bar = None
        self.trial: int | None = None

    def __call__(self, trial: int, step: int, total: int, cost: float) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.trial != trial or step == 1:
            from tqdm import tqdm

            self.close()
            self.trial = trial
            self.bar = tqdm(total=total, unit="step", desc=f"trial {trial}", leave=False)
        self.bar.update(1)
        self.bar.set_postfix(cost=f"{cost:.4f}", refresh=False)

    def trial_done(self, outcome: Any) -> None:
        if not self.enabled:
            return
        self.close()
        value = "" if outcome.value is None else f", value {outcome.value:.4f}"
        click.echo(
            f"trial {outcome.number}: {outcome.state}{value} "
            f"{json.dumps(outcome.params)} runs {outcome.run_ids}",
            err=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@sweep_group.command("show")
@click.argument("name")
@common_options
def sweep_show(ctx: Context, name: str) -> None:
    """Trials by state, the best configuration (on val) and the parameter-vs-metrics table."""
    from signdb.sweeps import show

    ctx.emit(show(ctx.ready_engine(), name).as_dict(), _human_show)


def _pm(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "-"
    sd = "" if cell["sd"] is None else f" ± {cell['sd']:.3f}"
    return f"{cell['mean']:.3f}{sd}"


def _param(value: Any) -> str:
    """A parameter as ``--param`` writes it: ``0.001``, ``adam``, a layer list ``256-128``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return "-".join(map(str, value))
    return value if isinstance(value, str) else json.dumps(value)


def _human_show(r: dict[str, Any]) -> str:
    states = ", ".join(f"{k} {v}" for k, v in r["trials"].items() if v)
    lines = [
        f"sweep {r['sweep']}: {r['model']} on {r['dataset']}, {r['sampler']}, "
        f"{r['budget']} trials x {r['repeats']} repeats, objective {r['objective']}",
        f"trials: {states or 'none yet'}",
    ]
    best = r["best"]
    if best:
        test = ", ".join(f"{k} {number(v)}" for k, v in best["test"].items())
        lines.append(
            f"best: {' '.join(f'{k}={_param(v)}' for k, v in sorted(best['params'].items()))}  "
            f"{r['objective']} {number(best['value'])}"
            f"  (test {test}; run {best['run_id']})"
        )
    if r["table"]:
        names = sorted({k for row in r["table"] for k in row["params"]})
        head = [*names, "runs"] + [
            f"{s} {m}" for s in ("val", "test") for m in ("acc", "prec", "rec", "f1")
        ]
        rows = [head]
        for row in r["table"]:
            cells = [_param(row["params"].get(n)) for n in names] + [str(row["runs"])]
            for split in ("val", "test"):
                for metric in ("accuracy", "precision", "recall", "f1"):
                    cells.append(_pm(row[f"{split}_{metric}"]))
            rows.append(cells)
        lines += ["", table(rows, right=set(range(len(names), len(head))))]
    return "\n".join(lines)


@sweep_group.command("reap")
@click.argument("name")
@common_options
def sweep_reap(ctx: Context, name: str) -> None:
    """Fail the trials of NAME whose worker died, and queue each again once."""
    from signdb.sweeps import reap

    ctx.emit(
        reap(ctx.ready_engine(), name).as_dict(),
        lambda r: (
            f"sweep {r['sweep']}: failed trials {r['failed'] or 'none'}, "
            f"queued again as {r['queued'] or 'none'}"
        ),
    )


def register(cli: click.Group) -> None:
    cli.add_command(sweep_group)
