"""``signdb compare RUN_A RUN_B``: do two runs really differ, on the same images?

Both runs' predictions are paired image by image on the split. Only
discordant images carry evidence: ``a_only_correct`` (b) and
``b_only_correct`` (c). McNemar's exact test asks whether b and c differ more
than chance would make them (b ~ Binomial(b + c, 1/2) if the runs are equally
good); the paired bootstrap gives a 95% interval for the accuracy difference,
resampling images jointly so the runs' shared easy and hard images cancel.

The pairing only means something when both runs split the dataset the same
way: runs with different test sets are refused, naming the flags to align.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.evaluation.service import check_split
from signdb.ml.scores import mcnemar_exact, paired_bootstrap_difference
from signdb.results import Result
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
from signdb.tracking.predictions import BOOTSTRAP, BOOTSTRAP_SEED, check_bootstrap


@dataclass
class CompareResult(Result):
    """Two runs on the same images: accuracies, discordant counts, McNemar, paired interval.

    >>> a, b = [r["run_id"] for r in db.runs()[-2:]]  # the example database's two runs
    >>> _ = [db.evaluate(run, split="test") for run in (a, b)]
    >>> result = db.compare(a, b)
    >>> result.images > 0 and 0 <= result.mcnemar_p <= 1
    True
    """

    runs: list[int]
    split: str
    images: int
    accuracy: list[float]
    accuracy_difference: float
    accuracy_difference_ci: list[float] | None
    a_only_correct: int
    b_only_correct: int
    both_correct: int
    both_wrong: int
    mcnemar_p: float


def compare(
    engine: Engine, run_a: int, run_b: int, *, split: str = "test", bootstrap: int = BOOTSTRAP
) -> CompareResult:
    """Pair two evaluated runs' predictions on ``split`` and test their difference."""
    check_split(split)
    bootstrap = check_bootstrap(bootstrap)
    if run_a == run_b:
        raise InvalidArgument(f"compare needs two different runs, got run {run_a} twice")
    with transaction(engine, f"reading runs {run_a} and {run_b}") as session:
        a, b = run_store.get_run(session, run_a), run_store.get_run(session, run_b)
        if a.dataset_id != b.dataset_id:
            raise InvalidArgument(
                f"run {run_a} is on dataset {a.dataset!r} and run {run_b} on {b.dataset!r}; "
                "compare runs on the same dataset"
            )
        for run in (a, b):
            if not prediction_store.count_predictions(session, run.id, split):
                raise InvalidArgument(
                    f"run {run.id} has no {split} predictions; run `signdb evaluate {run.id} "
                    f"--split {split}` first"
                )
        only_a, only_b = prediction_store.assignment_difference(session, run_a, run_b, split)
        if only_a or only_b:
            raise InvalidArgument(
                f"runs {run_a} and {run_b} put different images in their {split} split "
                f"({only_a} only in run {run_a}'s, {only_b} only in run {run_b}'s), so their "
                f"predictions cannot be paired; train both with the same --seed, "
                f"--test-fraction and --val-fraction (run {run_a}: seed {a.seed}, test "
                f"{a.test_fraction}, val {a.val_fraction}; run {run_b}: seed {b.seed}, test "
                f"{b.test_fraction}, val {b.val_fraction}) and the same classes"
            )
        pairs = prediction_store.paired_predictions(session, run_a, run_b, split)
    if not pairs:
        raise InvalidArgument(f"runs {run_a} and {run_b} scored no {split} image in common")
    rows = np.asarray(pairs, dtype=np.int64)
    right_a, right_b = rows[:, 2] == rows[:, 1], rows[:, 3] == rows[:, 1]
    b_count = int(np.count_nonzero(right_a & ~right_b))
    c_count = int(np.count_nonzero(~right_a & right_b))
    interval = None
    if bootstrap:
        low, high = paired_bootstrap_difference(
            right_a, right_b, n_resamples=bootstrap, seed=BOOTSTRAP_SEED
        )
        interval = [low, high]
    acc_a, acc_b = float(right_a.mean()), float(right_b.mean())
    return CompareResult(
        runs=[run_a, run_b],
        split=split,
        images=len(rows),
        accuracy=[acc_a, acc_b],
        accuracy_difference=acc_a - acc_b,
        accuracy_difference_ci=interval,
        a_only_correct=b_count,
        b_only_correct=c_count,
        both_correct=int(np.count_nonzero(right_a & right_b)),
        both_wrong=int(np.count_nonzero(~right_a & ~right_b)),
        mcnemar_p=mcnemar_exact(b_count, c_count),
    )


def describe(r: dict[str, Any]) -> str:
    """The human form of a comparison, as ``signdb compare`` prints it."""
    a, b = r["runs"]
    ci = r["accuracy_difference_ci"]
    interval = "" if ci is None else f" (95% interval {ci[0]:+.4f} to {ci[1]:+.4f})"
    verdict = "differ" if r["mcnemar_p"] < 0.05 else "do not differ significantly"
    return (
        f"runs {a} and {b} on the same {r['images']} {r['split']} images:\n"
        f"  accuracy {r['accuracy'][0]:.4f} vs {r['accuracy'][1]:.4f}, difference "
        f"{r['accuracy_difference']:+.4f}{interval}\n"
        f"  only run {a} right: {r['a_only_correct']}, only run {b} right: "
        f"{r['b_only_correct']}, both right: {r['both_correct']}, both wrong: {r['both_wrong']}\n"
        f"  McNemar's exact p = {r['mcnemar_p']:.4g}: the runs {verdict} at the 5% level"
    )
