"""The end-to-end demo: data in, two models trained and evaluated, the paper's table out.

Idempotent: a dataset that is already fully loaded is not loaded again, and
every run adds new runs next to the old ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from signdb import config
from signdb.data.formats import count_inputs
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.errors import InputError
from signdb.evaluation import evaluate
from signdb.loading import load_dataset
from signdb.reporting import write_report
from signdb.results import Result, not_in_json
from signdb.store import datasets as ds_store
from signdb.training import TrainSpec, train

#: The dataset's name in the database, as in every example of the docs.
DATASET = "digits"
#: The download (``signdb datasets fetch``) it comes from when no folder is given.
SOURCE = "sign-language-digits"
PAPER_RUN = dict(model="logreg", classes=[0, 1], hyperparams={})
STRONG_RUN = dict(model="mlp", classes=None, hyperparams={})

ANALYST_QUERIES = [
    (
        "Which run is best for each dataset and class set?",
        "SELECT dataset, classes, run_id, model, test_accuracy, test_f1\n"
        "FROM signdb.leaderboard WHERE rank = 1;",
    ),
    (
        "How did the paper's run's cost fall?",
        "SELECT step, value FROM signdb.learning_curves\n"
        "WHERE run_id = {paper_run} AND metric = 'cost' ORDER BY step;",
    ),
    (
        "Which threshold maximises F1 for the paper's run?",
        "SELECT threshold, precision, recall, f1 FROM signdb.evaluations\n"
        "WHERE run_id = {paper_run} AND split = 'test' ORDER BY f1 DESC NULLS LAST LIMIT 1;",
    ),
]

Say = Callable[[str], None]


@dataclass
class DemoResult(Result):
    dataset: str
    images: int
    loaded: int
    paper_run: dict[str, Any]
    strong_run: dict[str, Any]
    report: str
    seconds: float
    paper_table: list[dict[str, Any]] = not_in_json(default_factory=list)
    queries: list[tuple[str, str]] = not_in_json(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "seconds": round(self.seconds, 1),
            "queries": [sql for _, sql in self.queries],
        }


def locate_data(data: str | Path | None, say: Say) -> Path:
    """--data, else $SIGNDB_DATASET_DIR (or the checkout's ../shared copy), else download."""
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise InputError(f"--data {path} does not exist; point it at a folder of label folders")
        return path
    local = config.dataset_dir()
    if local.is_dir():
        return local
    from signdb.data.fetch import fetch_dataset

    say(f"no local copy at {local}; downloading the dataset")
    return fetch_dataset(SOURCE, cache_dir=config.data_home() / "cache")


def _ensure_loaded(engine: Engine, path: Path, say: Say) -> tuple[int, int]:
    """(images in the dataset, images added now); skips decoding when nothing is missing."""
    expected = count_inputs(path)
    with transaction(engine, "counting the demo's images") as session:
        try:
            have = ds_store.count_images(session, ds_store.get_dataset(session, DATASET).id)
        except InputError:
            have = 0
    if have and have >= expected:
        say(f"dataset {DATASET!r} already holds {have} images; not loading again")
        return have, 0
    say(f"loading {path} into dataset {DATASET!r}")
    result = load_dataset(engine, path, DATASET, Preprocessing())
    return result.images, result.added


def run_demo(engine: Engine, *, data: str | Path | None, out_dir: Path, say: Say) -> DemoResult:
    started = time.monotonic()
    path = locate_data(data, say)
    images, added = _ensure_loaded(engine, path, say)

    say("training the paper's experiment: logistic regression, digits 0 vs 1, lr 0.01, 150 steps")
    paper = train(engine, TrainSpec(dataset=DATASET, name="demo: logreg 0 vs 1", **PAPER_RUN))
    say(f"  run {paper.run_id}: test accuracy {paper.test_accuracy:.3f}")
    say("training a stronger model: an MLP on all 10 digits")
    strong = train(engine, TrainSpec(dataset=DATASET, name="demo: mlp 10 digits", **STRONG_RUN))
    say(f"  run {strong.run_id}: test accuracy {strong.test_accuracy:.3f}")

    say("evaluating both on their test sets")
    paper_eval = evaluate(engine, paper.run_id, split="test", thresholds="0:1:0.01")
    strong_eval = evaluate(engine, strong.run_id, split="test")

    say("writing the HTML report")
    report = write_report(engine, strong.run_id, out_dir / f"run-{strong.run_id}")
    queries = [(q, sql.format(paper_run=paper.run_id)) for q, sql in ANALYST_QUERIES]
    return DemoResult(
        dataset=DATASET,
        images=images,
        loaded=added,
        paper_run={**paper.as_dict(), **_headline(paper_eval), "model": "logreg", "classes": "0,1"},
        strong_run={**strong.as_dict(), **_headline(strong_eval), "model": "mlp", "classes": "0-9"},
        paper_table=[r for r in paper_eval.table if round(r["threshold"] * 100) % 10 == 0],
        report=str(report),
        seconds=time.monotonic() - started,
        queries=queries,
    )


def _headline(result: Any) -> dict[str, Any]:
    return {"precision": result.precision, "recall": result.recall, "f1": result.f1}
