"""``signdb train`` and ``signdb runs ...``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import number, table
from signdb.errors import InvalidArgument
from signdb.ml import model_names, parse_param


def parse_classes(value: str) -> list[str] | None:
    """``--classes 0,1``, ``--classes cat,dog`` or ``--classes all`` (None)."""
    if value.strip().lower() == "all":
        return None
    classes = [v.strip() for v in value.split(",") if v.strip() != ""]
    if not classes:
        raise InvalidArgument(
            f"--classes takes comma-separated class names or labels, or 'all', got {value!r}; "
            "e.g. --classes 0,1 or --classes cat,dog"
        )
    return classes


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param key=value`` pairs, each value read by :func:`signdb.ml.parse_param`."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(
                f"--param takes KEY=VALUE, got {pair!r}; e.g. --param momentum=0.9"
            )
        out[key] = parse_param(key, raw)
    return out


def train_options(func: Callable) -> Callable:
    """Every flag of ``signdb train`` that describes a run (``signdb submit`` takes them too)."""
    for option in reversed(_TRAIN_OPTIONS):
        func = option(func)
    return func


_TRAIN_OPTIONS = [
    click.option("--dataset", help="Dataset to train on (see `signdb datasets list`)."),
    click.option(
        "--model",
        type=click.Choice(model_names()),
        default="logreg",
        show_default=True,
        help="logreg is the paper's algorithm; softmax, mlp and cnn are multi-class.",
    ),
    click.option(
        "--classes",
        default="0,1",
        show_default=True,
        help="Comma-separated class names or labels, or 'all'.",
    ),
    click.option("--lr", type=float, help="Learning rate (model default: logreg 0.01)."),
    click.option(
        "--iterations", type=int, help="Full-batch steps (logreg) or epochs (mini-batch models)."
    ),
    click.option("--batch-size", type=int, help="Mini-batch size (softmax/mlp/cnn)."),
    click.option(
        "--seed", type=int, default=42, show_default=True, help="Seed for the split and the model."
    ),
    click.option(
        "--test-fraction",
        type=float,
        default=0.15,
        show_default=True,
        help="Share of each class's images held out for testing.",
    ),
    click.option(
        "--val-fraction",
        type=float,
        default=0.0,
        show_default=True,
        help="Share held out for validation (model selection); never moves a test image.",
    ),
    click.option(
        "--split",
        "split_mode",
        type=click.Choice(["auto", "fixed", "hash"]),
        default="auto",
        show_default=True,
        help="fixed: the train/val/test split the dataset came with; hash: by --test-fraction and "
        "--val-fraction; auto: fixed when every image has one.",
    ),
    click.option("--name", help="A label for the run."),
    click.option(
        "--engine",
        "engine_name",
        type=click.Choice(["numpy", "torch"]),
        help="numpy (default; every model) or torch (mlp, cnn; pip install 'signdb[torch]').",
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="torch engine: auto picks CUDA when torch.cuda.is_available().",
    ),
    click.option("--hidden", help="MLP hidden layer sizes joined by -, e.g. 256-128."),
    click.option(
        "--optimizer",
        type=click.Choice(["sgd", "momentum", "adam"]),
        help="Optimizer (softmax/mlp/cnn).",
    ),
    click.option("--l2", type=float, help="L2 weight decay."),
    click.option("--layers", help="CNN architecture, e.g. conv16-pool-conv32-pool-dense128."),
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any other model hyperparameter.",
    ),
    click.option(
        "--cache",
        type=click.Choice(["auto", "on", "off"]),
        default="auto",
        show_default=True,
        help="Keep decoded images in memory (auto: when they fit 1 GiB).",
    ),
    click.option(
        "--eval-every", type=int, help="Log test accuracy every N steps (default: 20 times a run)."
    ),
    click.option(
        "--checkpoint-every",
        type=int,
        help="Store a checkpoint every N steps (default: 10 per run).",
    ),
]


@click.command("train")
@train_options
@click.option(
    "--resume",
    "resume_id",
    type=int,
    metavar="RUN_ID",
    help="Continue RUN_ID from its last checkpoint.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    help="Train the run on N processes of this machine with torch.distributed (--engine "
    "torch), as `torchrun --standalone --nproc-per-node N -m signdb train ...` does.",
)
@click.option(
    "--read-database-url",
    "read_urls",
    multiple=True,
    metavar="URL",
    help="A hot standby to read the images from (repeat for several; ranks spread over "
    "them); default $SIGNDB_READ_DATABASE_URL. Writes go to --database-url.",
)
@common_options
def train(
    ctx: Context,
    resume_id: int | None,
    nproc: int | None,
    read_urls: tuple[str, ...],
    **flags: Any,
) -> None:
    """Train a model on a dataset, logging metrics, checkpoints and weights to PostgreSQL.

    The defaults reproduce the paper's experiment: logistic regression on digits 0
    and 1, every weight 0.01, bias 0, learning rate 0.01, 150 full-batch steps.
    """
    from signdb import training
    from signdb.training.distributed import train_distributed, world_from_env

    # Everything is checked before a server starts.
    if resume_id is None and not flags["dataset"]:
        raise click.UsageError("--dataset is required (or --resume RUN_ID)")
    engine_name = flags["engine_name"]
    spec = spec_from_flags(flags) if resume_id is None else None
    world = world_from_env()
    if nproc is not None and nproc > 1:
        if world is not None:
            raise InvalidArgument("--nproc starts its own processes; leave it out under torchrun")
        _launch(ctx, nproc, read_urls, engine=(engine_name or "numpy", resume_id))
        return
    ctx.read_database_urls = read_urls
    engine = ctx.db.engine
    standbys = ctx.db.standbys
    progress = TrainProgress(ctx)
    try:
        if world is not None:
            if world.rank != 0:
                progress.enabled = False
            result = train_distributed(
                engine,
                world,
                spec,
                resume_id=resume_id,
                engine_name=engine_name,
                standbys=standbys,
                progress=progress,
            )
        elif spec is None:
            result = training.resume(
                engine, resume_id, progress=progress, engine_name=engine_name, standbys=standbys
            )
        else:
            result = training.train(engine, spec, progress=progress, standbys=standbys)
    finally:
        progress.close()
    if world is None or world.rank == 0:  # one result for the whole launch
        ctx.emit(result.as_dict(), _human_result)


def _launch(
    ctx: Context, nproc: int, read_urls: tuple[str, ...], *, engine: tuple[str, int | None]
) -> None:
    """``--nproc N``: this command again on N ranks (rank 0 prints the result)."""
    import os

    from signdb.training.launch import launch

    if engine[1] is None and engine[0] != "torch":
        raise InvalidArgument(
            f"--nproc {nproc} needs --engine torch (the {engine[0]} engine trains in one process)"
        )
    click_ctx = click.get_current_context()
    from signdb.tracking.feed import check_global_batch

    check_global_batch(click_ctx.params.get("batch_size"), nproc)  # before starting anything
    # URLs travel in the environment: a password on a command line is visible in `ps`.
    if ctx.database_url:
        os.environ["SIGNDB_DATABASE_URL"] = ctx.database_url
    if read_urls:
        os.environ["SIGNDB_READ_DATABASE_URL"] = " ".join(read_urls)
    args = command_line(click_ctx, drop={"nproc", "database_url", "read_urls"})
    launch(nproc, ["train", *args], engine=ctx.db.engine, quiet=ctx.as_json)


def command_line(click_ctx: click.Context, drop: set[str]) -> list[str]:
    """The options given on the command line, as flags again (the children's argv)."""
    from click.core import ParameterSource

    args: list[str] = []
    for param in click_ctx.command.params:
        name = param.name or ""
        if name in drop or not isinstance(param, click.Option):
            continue
        if click_ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            continue
        value = click_ctx.params[name]
        if param.is_flag:
            args += [param.opts[0]] if value else []
            continue
        for item in value if param.multiple else [value]:
            args += [param.opts[0], str(item)]
    return args


def spec_from_flags(flags: dict[str, Any]) -> Any:
    """The :class:`~signdb.training.TrainSpec` the flags of :func:`train_options` describe."""
    from signdb import training

    flags = dict(flags)
    settings = training.TrainerSettings(
        cache=flags.pop("cache"),
        eval_every=flags.pop("eval_every"),
        checkpoint_every=flags.pop("checkpoint_every"),
        device=flags.pop("device"),
    )
    described = {
        key: flags.pop(key)
        for key in ("dataset", "model", "seed", "test_fraction", "val_fraction", "name")
    }
    classes, params = flags.pop("classes"), flags.pop("params")
    split, engine_name = flags.pop("split_mode"), flags.pop("engine_name")
    return training.TrainSpec(
        **described,
        classes=parse_classes(classes),
        hyperparams=hyperparams_from_flags(flags, params),
        split=split,
        engine=engine_name or "numpy",
        trainer=settings,
    )


def hyperparams_from_flags(flags: dict[str, Any], params: tuple[str, ...]) -> dict[str, Any]:
    """The model hyperparameters the user set: ``--param`` pairs, then the named flags.

    Only flags given on the command line are passed on, so each model keeps its
    own defaults (logreg's are the paper's).
    """
    hyper = parse_params(params)
    hidden = flags.pop("hidden", None)
    hyper.update({k: v for k, v in flags.items() if v is not None})
    if hidden:
        hyper["hidden"] = parse_param("hidden", hidden)
    return hyper


def _human_result(r: dict) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    val = f"val accuracy {pct(r['val_accuracy'])}, " if r.get("val_accuracy") is not None else ""
    return (
        f"run {r['run_id']} {r['status']}: train accuracy {pct(r['train_accuracy'])}, "
        f"{val}test accuracy {pct(r['test_accuracy'])} after {r['steps']} steps"
    )


class TrainProgress:
    """A tqdm bar on stderr showing the cost; silent unless stderr is a terminal."""

    def __init__(self, ctx: Context) -> None:
        self.bar = None
        self.enabled = ctx.interactive

    def __call__(self, step: int, total: int, cost: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=step - 1, unit="step", desc="training", leave=False
            )
        self.bar.update(1)
        self.bar.set_postfix(cost=f"{cost:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.group("runs")
def runs_group() -> None:
    """List and inspect training runs."""


@runs_group.command("list")
@click.option("--dataset", help="Only runs on this dataset.")
@click.option(
    "--limit", type=int, default=50, show_default=True, help="Show at most this many runs."
)
@common_options
def runs_list(ctx: Context, dataset: str | None, limit: int) -> None:
    """Runs with status and headline metrics, newest first."""
    result = {"runs": ctx.db.runs(dataset=dataset, limit=limit)}
    ctx.emit(result, _format_runs_table)


@runs_group.command("show")
@click.argument("run_id", type=int)
@common_options
def runs_show(ctx: Context, run_id: int) -> None:
    """Everything recorded about one run."""
    ctx.emit(ctx.db.run(run_id), _format_run)


def _format_runs_table(result: dict) -> str:
    if not result["runs"]:
        return "(no runs yet: `signdb train --dataset NAME` starts one)"
    rows = [
        ("run", "status", "model", "dataset", "classes", "train_acc", "test_acc", "test_f1", "name")
    ]
    for r in result["runs"]:
        rows.append(
            (
                str(r["run_id"]),
                r["status"],
                r["model"],
                str(r["dataset"]),
                ",".join(r.get("class_names") or map(str, r["classes"])),
                number(r["train_accuracy"]),
                number(r["test_accuracy"]),
                number(r["test_f1"]),
                r["name"] or "",
            )
        )
    return table(rows, right={0, 5, 6, 7})


def _format_run(r: dict) -> str:
    width = max(len(k) for k in r)
    return "\n".join(
        f"{k:<{width}}  {json.dumps(v, default=str) if isinstance(v, (dict, list)) else number(v)}"
        for k, v in r.items()
    )


def register(cli: click.Group) -> None:
    cli.add_command(train)
    cli.add_command(runs_group)
