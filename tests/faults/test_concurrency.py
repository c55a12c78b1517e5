"""Four trainers and a loader at once against one database.

Each must finish (no deadlock, bounded time), log exactly the metric rows its
step count implies, and own exactly its weights: the final tensors differ
between runs, and reloading a run's stored weights reproduces the accuracies
that run recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import signdb_popen

BOUND_SECONDS = 240

TRAINERS = {
    "logreg-a": ["--model", "logreg", "--iterations", "400", "--seed", "1"],
    "logreg-b": ["--model", "logreg", "--iterations", "700", "--seed", "2"],
    "mlp": [
        "--model",
        "mlp",
        "--classes",
        "all",
        "--hidden",
        "16",
        "--iterations",
        "3",
        "--batch-size",
        "32",
        "--seed",
        "3",
    ],
    "softmax": [
        "--model",
        "softmax",
        "--classes",
        "all",
        "--iterations",
        "6",
        "--batch-size",
        "50",
        "--eval-every",
        "7",
        "--seed",
        "4",
    ],
}


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _expected_total(hp: dict, train_size: int, full_batch: bool) -> int:
    batch = None if full_batch else hp.get("batch_size")
    per_epoch = 1 if not batch or batch >= train_size else -(-train_size // batch)
    return hp["iterations"] * per_epoch


@pytest.fixture
def loader_tree(shared_dataset: Path, tmp_path: Path) -> Path:
    """Ten images per label that the mini subset (the first 24) does not hold."""
    root = tmp_path / "more"
    for label_dir in sorted(shared_dataset.iterdir()):
        if label_dir.is_dir():
            (root / label_dir.name).mkdir(parents=True)
            for jpg in sorted(label_dir.iterdir())[24:34]:
                shutil.copy(jpg, root / label_dir.name / jpg.name)
    return root


def test_four_trainers_and_a_loader_at_once(trained_url: str, loader_tree: Path):
    dataset = f"concurrent_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    procs = {
        name: signdb_popen(
            "train",
            "--dataset",
            "mini",
            "--name",
            f"{dataset}-{name}",
            "--json",
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, args in TRAINERS.items()
    }
    procs["loader"] = signdb_popen(
        "load",
        str(loader_tree),
        "--dataset",
        dataset,
        "--workers",
        "1",
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    outputs = {}
    try:
        for name, proc in procs.items():
            remaining = BOUND_SECONDS - (time.monotonic() - started)
            try:
                outputs[name] = proc.communicate(timeout=max(remaining, 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not finish within {BOUND_SECONDS} s (deadlock?)")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1])
        assert "deadlock" not in outputs[name][1].lower()

    loaded = json.loads(outputs["loader"][0])
    assert loaded["dataset"] == dataset
    assert loaded["added"] + loaded["skipped_duplicates"] == 100
    assert loaded["images"] == loaded["added"] and loaded["rejected"] == 0

    results = {name: json.loads(outputs[name][0]) for name in TRAINERS}
    run_ids = {name: r["run_id"] for name, r in results.items()}
    assert len(set(run_ids.values())) == 4
    assert all(r["status"] == "succeeded" for r in results.values())

    finals: dict[str, dict[str, np.ndarray]] = {}
    with psycopg.connect(_conninfo(trained_url), autocommit=True) as conn:
        ((n_images,),) = conn.execute(
            "SELECT count(*) FROM signdb.images i JOIN signdb.datasets d ON d.id = i.dataset_id "
            "WHERE d.name = %s",
            [dataset],
        ).fetchall()
        assert n_images == loaded["images"]
        for name, run_id in run_ids.items():
            status, model, hp, trainer, total, done, train_size = conn.execute(
                "SELECT status, model, hyperparams, trainer, total_steps, steps_done, train_size "
                "FROM signdb.runs WHERE id = %s",
                [run_id],
            ).fetchone()
            assert (status, done) == ("succeeded", total), name
            assert total == _expected_total(hp, train_size, model == "logreg"), name
            assert total == results[name]["steps"]

            # Metrics: one cost and one train_accuracy row per step; test_accuracy
            # every eval_every steps from 0, plus the final one at step == total.
            metrics = {
                metric: sorted(s for (s,) in rows)
                for metric, rows in _grouped(
                    conn.execute(
                        "SELECT name, step FROM signdb.run_metrics WHERE run_id = %s", [run_id]
                    ).fetchall()
                ).items()
            }
            assert set(metrics) == {"cost", "train_accuracy", "test_accuracy"}, name
            assert metrics["cost"] == list(range(total)), name
            assert metrics["train_accuracy"] == list(range(total)), name
            eval_every = trainer.get("eval_every") or max(1, total // 20)
            assert metrics["test_accuracy"] == [*range(0, total, eval_every), total], name

            # Weights: the checkpoints this run's schedule implies, nothing else. An
            # explicit --checkpoint-every is exact; the default schedule may also skip
            # checkpoints that come sooner than training.CHECKPOINT_SECONDS apart.
            every = trainer.get("checkpoint_every") or max(1, total // 10)
            rows = conn.execute(
                "SELECT step, tensor, shape, data, final FROM signdb.weights WHERE run_id = %s",
                [run_id],
            ).fetchall()
            steps = sorted({r[0] for r in rows})
            scheduled = [*range(every, total, every), total]
            if trainer.get("checkpoint_every"):
                assert steps == scheduled, name
            else:
                assert steps[-1] == total and set(steps) <= set(scheduled), name
            per_step = {s: sorted(r[1] for r in rows if r[0] == s) for s in steps}
            assert len({tuple(t) for t in per_step.values()}) == 1, name
            assert all(r[4] == (r[0] == total) for r in rows), name
            finals[name] = {
                r[1]: np.asarray(r[3], dtype=np.float32).reshape(r[2])
                for r in rows
                if r[0] == total
            }

    # Different seeds and data orders: no two runs end with the same tensors.
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(finals[a]) & set(finals[b])
            assert not any(
                finals[a][t].shape == finals[b][t].shape
                and np.array_equal(finals[a][t], finals[b][t])
                for t in shared
            ), (a, b)

    # Each run's own weights reproduce the accuracies it recorded.
    from signdb.db.engine import get_engine, transaction
    from signdb.store import datasets as ds_store
    from signdb.tracking import RunData
    from signdb.training import accuracy, load_model

    engine = get_engine(trained_url)
    for name, run_id in run_ids.items():
        run, model = load_model(engine, run_id)
        with transaction(engine) as session:
            shape = ds_store.get_dataset(session, run.dataset).preprocessing.shape
        data = RunData(engine, run_id, shape, run.classes, run.seed, "on")
        assert accuracy(model, data, "test") == pytest.approx(run.test_accuracy, abs=0), name
        assert accuracy(model, data, "train") == pytest.approx(run.train_accuracy, abs=0), name
        assert results[name]["test_accuracy"] == run.test_accuracy


def _grouped(rows: list[tuple]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for name, step in rows:
        out.setdefault(name, []).append((step,))
    return out
