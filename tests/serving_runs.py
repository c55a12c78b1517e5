"""The ``served_runs`` fixture's database: a tiny trained run of every model and engine.

The mini dataset (24 real JPEGs per digit) is loaded at 16x16, once in gray and
once in RGB, and each built-in model is trained for an epoch or so and
evaluated, so its test predictions are stored. tests/conftest.py makes it a
session fixture (built once, whichever tests ask); the serving tests add
aliases under names of their own and never change the runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.conftest import _admin, _psycopg_conninfo, fresh_database

#: key -> (dataset, model, engine, classes, hyperparameters). The CNNs cover the
#: default architecture fitted to 16x16 (conv to 256 channels, global average
#: pooling) and a dense layer straight after a convolution (the NHWC flatten).
RUNS = {
    "logreg": ("gray", "logreg", "numpy", [0, 1], {"iterations": 40, "lr": 0.05}),
    "softmax": ("gray", "softmax", "numpy", None, {"iterations": 3}),
    "mlp-numpy": ("gray", "mlp", "numpy", None, {"iterations": 2, "hidden": [16]}),
    "mlp-torch": ("gray", "mlp", "torch", None, {"iterations": 2, "hidden": [16]}),
    "cnn-numpy": ("gray", "cnn", "numpy", [0, 1, 2], {"iterations": 1, "batch_size": 24}),
    "cnn-torch": (
        "rgb",
        "cnn",
        "torch",
        [0, 1, 2],
        {"iterations": 1, "batch_size": 24, "layers": "conv4-pool-dense8"},
    ),
}
DATASETS = {"gray": "mini16", "rgb": "mini16rgb"}


@dataclass
class ServedRuns:
    url: str
    image_dir: Path
    runs: dict[str, int] = field(default_factory=dict)

    @property
    def conninfo(self) -> str:
        return _psycopg_conninfo(self.url)

    def dataset(self, key: str) -> str:
        return DATASETS[RUNS[key][0]]


def build_served_runs(pg_admin_url, template_db, mini_dataset_dir) -> Iterator[ServedRuns]:
    from signdb.data.preprocess import Preprocessing
    from signdb.db.engine import get_engine
    from signdb.evaluation import evaluate
    from signdb.loading import load_dataset
    from signdb.training import TrainerSettings, TrainSpec, train

    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = get_engine(url)
    for color, dataset in DATASETS.items():
        load_dataset(
            engine, mini_dataset_dir, dataset, Preprocessing(size=16, color=color), workers=1
        )
    out = ServedRuns(url, mini_dataset_dir)
    for key, (color, model, engine_name, classes, hyperparams) in RUNS.items():
        spec = TrainSpec(
            dataset=DATASETS[color],
            model=model,
            engine=engine_name,
            classes=classes,
            hyperparams=dict(hyperparams),
            trainer=TrainerSettings(device="cpu"),
        )
        result = train(engine, spec)
        assert result.status == "succeeded", key
        evaluate(engine, result.run_id, bootstrap=0)
        out.runs[key] = result.run_id
    yield out
    engine.dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
