"""``signdb models alias|unalias|list|show`` and ``signdb export``."""

from __future__ import annotations

import getpass
from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import number, table


def _who() -> str:
    """Who changes an alias from the command line: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


@click.group("models")
def models() -> None:
    """Name trained runs for serving: aliases such as `champion`, and their history.

    A served model is an alias or run-<id>. `signdb serve` resolves an alias on
    every request, so re-pointing one takes effect at once, without a restart.
    """


@models.command("alias")
@click.argument("name")
@click.argument("run_id", type=int)
@common_options
def alias(ctx: Context, name: str, run_id: int) -> None:
    """Point alias NAME at run RUN_ID (created if new); the change is kept in the history.

    The run must be servable: a built-in run with final weights, or any run
    with an ONNX model stored by run.save_onnx(...).
    """
    from signdb.serving import set_alias

    result = set_alias(ctx.ready_engine(), name, run_id, _who())
    ctx.emit(result, _human_alias)


def _human_alias(r: dict[str, Any]) -> str:
    if not r["changed"]:
        return f"{r['name']} already points at run {r['run_id']}"
    if r["previous_run_id"] is None:
        return f"{r['name']} -> run {r['run_id']} (new alias)"
    return f"{r['name']} -> run {r['run_id']} (was run {r['previous_run_id']})"


@models.command("unalias")
@click.argument("name")
@common_options
def unalias(ctx: Context, name: str) -> None:
    """Remove alias NAME (its history stays in model_alias_history)."""
    from signdb.serving import remove_alias

    result = remove_alias(ctx.ready_engine(), name, _who())
    ctx.emit(result, lambda r: f"removed {r['name']} (it pointed at run {r['removed_run_id']})")


@models.command("list")
@common_options
def list_(ctx: Context) -> None:
    """The aliases and the runs they point at."""
    from signdb.serving import list_models

    ctx.emit({"models": list_models(ctx.ready_engine())}, _human_list)


def _human_list(r: dict[str, Any]) -> str:
    if not r["models"]:
        return "no aliases yet; `signdb models alias champion RUN_ID` makes one"
    rows = [["alias", "run", "model", "engine", "dataset", "status", "test F1", "updated by"]]
    rows += [
        [
            m["name"],
            str(m["run_id"]),
            m["model"],
            m["engine"],
            m["dataset"],
            m["status"],
            number(m["test_f1"]),
            m["updated_by"],
        ]
        for m in r["models"]
    ]
    return table(rows, right={1, 6})


@models.command("show")
@click.argument("name")
@click.option("--history", default=20, show_default=True, help="How many changes to show.")
@common_options
def show(ctx: Context, name: str, history: int) -> None:
    """An alias (the run it points at and its recent changes), or run-<id> (its aliases)."""
    from signdb.serving import show_model

    ctx.emit(show_model(ctx.ready_engine(), name, history=history), _human_show)


def _human_show(r: dict[str, Any]) -> str:
    head = f"{r['name']}: run {r['run_id']} ({r['model']}, {r['engine']}, dataset {r['dataset']})"
    if "history" not in r:
        aliases = ", ".join(r["aliases"]) or "none"
        return f"{head}\nservable: {'yes' if r['servable'] else 'no'}; aliases: {aliases}"
    rows = [["when", "run", "was", "by"]]
    rows += [
        [
            h["changed_at"].isoformat(timespec="seconds"),
            "-" if h["run_id"] is None else str(h["run_id"]),
            "-" if h["previous_run_id"] is None else str(h["previous_run_id"]),
            h["changed_by"],
        ]
        for h in r["history"]
    ]
    return head + "\n\n" + table(rows, right={1, 2})


@click.command("export")
@click.argument("run_id", type=int)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="File format.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write (replaced if it exists).",
)
@common_options
def export(ctx: Context, run_id: int, fmt: str, out: str) -> None:
    """Write run RUN_ID's model as an ONNX file, for onnxruntime, Triton or any ONNX runtime.

    Built-in runs (every model, numpy and torch engines) are exported from
    their final weights; a run that stored its own model (run.save_onnx) gets
    that file. The input is float32 [N, H, W, C] in [0, 1] (uint8 pixels / 255);
    the outputs are probabilities [N, K] and label [N]. The file's metadata
    holds the class names and the preprocessing.
    """
    from signdb.serving import export_model

    result = export_model(ctx.ready_engine(), run_id, out, fmt)
    ctx.emit(
        result,
        lambda r: (
            f"run {r['run_id']} written to {r['path']} ({r['bytes']:,} bytes, "
            f"{len(r['classes'])} classes, from {r['source']})"
        ),
    )


def register(cli: click.Group) -> None:
    cli.add_command(models)
    cli.add_command(export)
