"""``signdb evaluate``, ``signdb predict`` and ``signdb report``."""

from __future__ import annotations

from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import table


@click.command("evaluate")
@click.argument("run_id", type=int)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="Which of the run's images to score ('all': every split together).",
)
@click.option(
    "--thresholds",
    default="0:1:0.01",
    show_default=True,
    metavar="START:STOP:STEP",
    help="Binary runs: the threshold sweep (STOP included; 0.5 is always added).",
)
@click.option(
    "--bootstrap",
    type=int,
    default=1000,
    show_default=True,
    metavar="N",
    help="Bootstrap resamples for the scores' 95% intervals (0: no intervals).",
)
@click.option(
    "--table",
    "show_table",
    is_flag=True,
    help="Print the paper's metrics table (TP/FP/TN/FN by threshold).",
)
@common_options
def evaluate(
    ctx: Context, run_id: int, split: str, thresholds: str, bootstrap: int, show_table: bool
) -> None:
    """Score a run's images and write predictions, TP/FP/TN/FN rows, scores and curves.

    Binary runs get one row per threshold (positive when probability >=
    threshold); multi-class runs one one-vs-rest row per class at the argmax.
    Every score (accuracy, balanced accuracy, macro/micro/weighted F1, MCC,
    kappa, log loss, Brier, ROC AUC, average precision, ECE) goes to run_scores
    with a bootstrap interval; each class's curve to class_curves. Re-evaluating
    replaces the run's rows for that split in one transaction.
    """
    result = ctx.db.evaluate(run_id, split=split, thresholds=thresholds, bootstrap=bootstrap)
    if show_table and not ctx.as_json:
        click.echo(format_table(result.table))
        return
    ctx.emit(result.as_dict(), _human_evaluation)


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The paper's table: threshold, TP, FP, TN, FN, accuracy, precision, recall, F1."""
    multi = any(r["threshold"] is None for r in rows)
    first = "class" if multi else "threshold"
    header = (
        f"{first:>9} {'TP':>6} {'FP':>6} {'TN':>6} {'FN':>6} "
        f"{'accuracy':>9} {'precision':>9} {'recall':>9} {'F1':>9}"
    )
    lines = [header]
    for r in rows:
        key = str(r["positive_class"]) if multi else f"{r['threshold']:.2f}"
        lines.append(
            f"{key:>9} {r['tp']:>6} {r['fp']:>6} {r['tn']:>6} {r['fn']:>6} "
            f"{_rate(r['accuracy']):>9} {_rate(r['precision']):>9} "
            f"{_rate(r['recall']):>9} {_rate(r['f1']):>9}"
        )
    return "\n".join(lines)


def _human_evaluation(r: dict[str, Any]) -> str:
    head = (
        f"run {r['run_id']} evaluated on {r['split']} ({r['predictions']} images, "
        f"{r['rows']} evaluation rows): accuracy {_rate(r['accuracy'])}, precision "
        f"{_rate(r['precision'])}, recall {_rate(r['recall'])}, F1 {_rate(r['f1'])}"
    )
    rows = [["score", "value", "95% interval"]]
    for metric, s in r["scores"].items():
        interval = "" if s["ci_low"] is None else f"{s['ci_low']:.4f} - {s['ci_high']:.4f}"
        rows.append([metric, _rate(s["value"]), interval])
    return head + "\n\n" + table(rows, right={1})


@click.command("compare")
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="The split whose images both runs scored.",
)
@click.option(
    "--bootstrap",
    type=int,
    default=1000,
    show_default=True,
    metavar="N",
    help="Paired bootstrap resamples for the accuracy difference's 95% interval (0: none).",
)
@common_options
def compare(ctx: Context, run_a: int, run_b: int, split: str, bootstrap: int) -> None:
    """Is RUN_A really better than RUN_B? A paired test on the images both scored.

    Prints each run's accuracy, the images only one of them got right,
    McNemar's exact p-value, and a paired-bootstrap 95% interval for the
    accuracy difference. Runs whose splits differ are refused.
    """
    from signdb.evaluation.compare import describe

    result = ctx.db.compare(run_a, run_b, split=split, bootstrap=bootstrap)
    ctx.emit(result.as_dict(), describe)


@click.command("predict")
@click.option("--run", "run_id", type=int, required=True, help="Run whose final weights to use.")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@common_options
def predict(ctx: Context, run_id: int, images: tuple[str, ...]) -> None:
    """Predict image files with a run's stored weights.

    Each file is preprocessed exactly as the run's dataset was loaded.
    "probability" means what predictions.probability means: the positive
    class's (the second of the run's classes) for binary runs, the predicted
    label's for multi-class runs; "probabilities" lists every class.
    """
    found = ctx.db.predict(run_id, images)
    ctx.emit({"predictions": found}, _human_predictions)


def _human_predictions(r: dict[str, Any]) -> str:
    return "\n".join(
        f"{p['path']}: {p['class']} (label {p['label']}, probability {p['probability']:.4f})"
        for p in r["predictions"]
    )


@click.command("report")
@click.argument("run_id", type=int, required=False)
@click.option("--sweep", metavar="NAME", help="Report on sweep NAME instead of a run.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write index.html into (created if missing).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Binary runs: the threshold marked on the PR and ROC curves.",
)
@common_options
def report(
    ctx: Context, run_id: int | None, sweep: str | None, out_dir: str, threshold: float
) -> None:
    """Write a static, offline HTML report of run RUN_ID (evaluating it first if needed),
    or of a sweep with --sweep NAME."""
    if (run_id is None) == (sweep is None):
        raise click.UsageError("give a RUN_ID or --sweep NAME (one of the two)")
    if sweep is not None:
        from signdb.reporting import write_sweep_report

        path = write_sweep_report(ctx.ready_engine(), sweep, out_dir)
    else:
        path = ctx.db.report(run_id, out_dir, threshold=threshold)
    ctx.emit({"path": str(path)}, lambda r: f"report written to {r['path']}")


def register(cli: click.Group) -> None:
    cli.add_command(evaluate)
    cli.add_command(compare)
    cli.add_command(predict)
    cli.add_command(report)
