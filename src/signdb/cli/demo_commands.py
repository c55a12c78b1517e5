"""``signdb demo``: the whole product in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from signdb.cli.context import Context, common_options


@click.command("demo")
@click.option(
    "--data",
    type=click.Path(),
    help="Folder of label folders (default: $SIGNDB_DATASET_DIR, else download).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Where to write the HTML report (default: <data home>/reports).",
)
@common_options
def demo(ctx: Context, data: str | None, out_dir: str | None) -> None:
    """Load Sign Language Digits, train the paper's experiment and an MLP, evaluate, report.

    Safe to run again: data already loaded is not loaded twice; new runs are added.
    """
    from signdb import config
    from signdb.demo import run_demo

    say = (lambda msg: None) if ctx.as_json else (lambda msg: click.echo(msg, err=True))
    engine = ctx.ready_engine()
    out = Path(out_dir) if out_dir else config.data_home() / "reports"
    result = run_demo(engine, data=data, out_dir=out, say=say)
    ctx.emit(result.as_dict(), lambda r: _summary(result))


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _summary(result) -> str:
    from signdb.cli.eval_commands import format_table

    s, m = result.paper_run, result.strong_run
    lines = [
        "",
        f"The paper's metrics table (run {s['run_id']}, logistic regression, digits 0 vs 1, test set):",
        format_table(result.paper_table),
        "",
        "Side by side (test set):",
        f"{'':<28} {'logreg 0 vs 1':>20} {'mlp, 10 digits':>16}",
        f"{'run':<28} {s['run_id']:>20} {m['run_id']:>16}",
    ]
    for key, label in [
        ("train_accuracy", "train accuracy"),
        ("test_accuracy", "test accuracy"),
        ("precision", "precision (0.5 / macro)"),
        ("recall", "recall (0.5 / macro)"),
        ("f1", "F1 (0.5 / macro)"),
    ]:
        lines.append(f"{label:<28} {_fmt(s[key]):>20} {_fmt(m[key]):>16}")
    lines += [
        "",
        f"HTML report: {result.report}",
        f"Dataset {result.dataset!r}: {result.images} images ({result.loaded} added now); "
        f"finished in {result.seconds:.0f} s.",
        "",
        "Next, ask the database. Open psql with `signdb sql` (or `signdb sql --role analyst`) and try:",
    ]
    for question, sql in result.queries:
        lines += [f"  -- {question}", *(f"  {line}" for line in sql.splitlines()), ""]
    lines.append("The analyst guide (docs/analyst-guide.md) has many more.")
    lines += [
        "",
        "Or browse, compare and watch the runs: run `signdb serve`, then open "
        "http://127.0.0.1:8765/ in a browser.",
    ]
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    cli.add_command(demo)
