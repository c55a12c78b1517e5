"""Sweeps in one process: what `sweep create` refuses, what a worker writes, what the views say.

The tests with several worker processes, kills and stops are in
tests/faults/test_sweep_workers.py.
"""

from __future__ import annotations

import json
import shutil
import statistics

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

import signdb
from signdb.db import sweep_storage
from signdb.errors import InvalidArgument, NotFound, SignDBError
from signdb.sweeps import SweepRequest, create_sweep, reap, show, work
from tests.helpers import login_role
from tests.helpers import signdb as signdb_cli

CLASSES = ["0", "1", "2"]


@pytest.fixture
def photos(db_url, mini_dataset_dir, tmp_path):
    """Digits 0, 1 and 2 of the mini dataset (24 real images each), at 32x32."""
    for label in CLASSES:
        shutil.copytree(mini_dataset_dir / label, tmp_path / "digits" / label)
    db = signdb.connect(db_url)
    db.load(tmp_path / "digits", "photos", size=32, workers=1)
    return db


def _request(name="s", **kw) -> SweepRequest:
    base = dict(
        name=name,
        dataset="photos",
        model="mlp",
        classes=None,
        params=("lr=loguniform:0.005:0.05", "hidden=[8]", "iterations=2", "batch_size=16"),
        trials=3,
        repeats=2,
    )
    return SweepRequest(**{**base, **kw})


def _studies(pg: psycopg.Connection) -> list[str]:
    return [r[0] for r in pg.execute("SELECT study_name FROM optuna.studies").fetchall()]


# -- create: what it refuses, and that a refusal creates nothing ---------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"params": ("depth=int:1:3",)}, "model 'mlp' has no hyperparameter depth; its hyper"),
        ({"params": ("lr=loguniform:0:1",)}, "loguniform needs 0 < LOW < HIGH"),
        ({"params": ("iterations=int:5:1",)}, "int needs LOW <= HIGH, got 5 > 1"),
        ({"params": ("hidden=choice:",)}, "choice needs at least one value"),
        ({"objective": "test_accuracy"}, "--objective must be val_accuracy or val_f1"),
        ({"val_fraction": 0.0}, "give --val-fraction > 0"),
        ({"params": ("seed=int:1:5",)}, "--param seed is not searched"),
        ({"params": ("iterations=3",)}, "needs at least one searched parameter"),
        ({"params": ("hidden=choice:[8],[0]",)}, "hidden=[0]"),
        ({"sampler": "grid"}, "--sampler grid takes choice spaces only; lr is not one"),
        ({"repeats": 0}, "--repeats must be a whole number >= 1"),
        ({"dataset": "nope"}, "nope"),
        ({"classes": ["0", "7"]}, "class '7' is not in dataset 'photos'"),
    ],
)
def test_a_bad_request_is_named_and_creates_no_study(photos, pg, changes, message):
    with pytest.raises(SignDBError) as raised:
        create_sweep(photos.engine, _request(**changes))
    assert message in str(raised.value)
    assert _studies(pg) == []
    assert pg.execute("SELECT count(*) FROM signdb.sweeps").fetchone()[0] == 0


def test_the_cli_reports_a_bad_space_on_one_line_and_exits_1(photos):
    done = signdb_cli("sweep", "create", "s", "--dataset", "photos", "--param", "lr=loguniform:0:1")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "loguniform needs 0 < LOW < HIGH" in done.stderr


def test_work_and_show_on_an_unknown_sweep_say_so(photos):
    for verb in ("work", "show", "reap"):
        done = signdb_cli("sweep", verb, "nope")
        assert done.returncode == 1, verb
        assert "no sweep named 'nope'" in done.stderr and "sweep create" in done.stderr
    create_sweep(photos.engine, _request("real"))
    with pytest.raises(NotFound, match="the sweeps are real"):
        work(photos.engine, "nope")


def test_create_reopens_the_same_sweep_and_refuses_other_settings(photos, pg):
    first = create_sweep(photos.engine, _request())
    again = create_sweep(photos.engine, _request())
    assert (first.created, again.created) == (True, False)
    assert again.as_dict() | {"created": True} == first.as_dict()
    assert pg.execute("SELECT count(*) FROM optuna.trials").fetchone()[0] == 3  # not 6
    with pytest.raises(InvalidArgument, match=r"repeats is 2, asked 3"):
        create_sweep(photos.engine, _request(repeats=3))


def test_a_study_left_by_an_interrupted_create_is_redone(photos, pg):
    storage = sweep_storage.make_storage(photos.engine.url)
    with sweep_storage.quiet():
        optuna.create_study(study_name="s", storage=storage).enqueue_trial({})
    storage.engine.dispose()
    assert create_sweep(photos.engine, _request()).created
    assert pg.execute("SELECT count(*) FROM optuna.trials").fetchone()[0] == 3


def test_grid_queues_every_point_once_and_trials_samples_them(photos, pg):
    params = ("lr=choice:0.01,0.02", "hidden=choice:[4],[8],[16]", "iterations=1")
    created = create_sweep(photos.engine, _request(sampler="grid", params=params, trials=None))
    assert created.trials == 6
    fixed = pg.execute(
        "SELECT value_json FROM optuna.trial_system_attributes WHERE key = 'fixed_params'"
    ).fetchall()
    points = {json.dumps(json.loads(v), sort_keys=True) for (v,) in fixed}
    assert len(points) == 6
    with pytest.raises(InvalidArgument, match="more than the grid's 6 points"):
        create_sweep(photos.engine, _request("g2", sampler="grid", params=params, trials=7))
    assert create_sweep(photos.engine, _request("g3", sampler="grid", params=params, trials=4))


# -- one worker, in process -----------------------------------------------------------------
def test_a_worker_runs_every_trial_and_the_views_agree_with_the_runs(photos, pg):
    create_sweep(photos.engine, _request())
    result = work(photos.engine, "s")
    assert result.ran == 3 and len(result.run_ids) == 6 and result.stopped is None
    # The dataset's pixels were read once for six runs on different splits.
    assert result.images_read == 72
    runs = pg.execute(
        "SELECT trial_number, sweep_repeat, seed, status, val_accuracy, test_accuracy, val_f1, "
        "hyperparams->>'lr' FROM signdb.runs WHERE sweep = 's' ORDER BY 1, 2"
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in runs] == [
        (t, r, 42 + r, "succeeded") for t in range(3) for r in range(2)
    ]
    assert all(r[4] is not None and r[5] is not None and r[6] is not None for r in runs)
    # Each run was evaluated on val and test like `signdb evaluate` does.
    evaluated = pg.execute(
        "SELECT count(DISTINCT (e.run_id, e.split)) FROM signdb.evaluations e "
        "JOIN signdb.runs r ON r.id = e.run_id WHERE r.sweep = 's'"
    ).fetchone()[0]
    assert evaluated == 12
    # A trial's value is the mean of its runs' val accuracy.
    trials = {
        n: v
        for n, v in pg.execute(
            "SELECT DISTINCT trial_number, objective FROM signdb.sweep_trials WHERE sweep = 's'"
        ).fetchall()
    }
    for t in range(3):
        mean = statistics.fmean(r[4] for r in runs if r[0] == t)
        assert trials[t] == pytest.approx(mean, abs=1e-12)
    summary = pg.execute(
        "SELECT params->>'lr', trials, runs, objective_mean, test_accuracy_mean, "
        "test_accuracy_sd FROM signdb.sweep_summary WHERE sweep = 's'"
    ).fetchall()
    assert len(summary) == 3
    for lr, n_trials, n_runs, objective, test_mean, test_sd in summary:
        mine = [r for r in runs if r[7] == lr]
        assert (n_trials, n_runs) == (1, 2)
        assert objective == pytest.approx(statistics.fmean(r[4] for r in mine))
        assert test_mean == pytest.approx(statistics.fmean(r[5] for r in mine))
        assert test_sd == pytest.approx(statistics.stdev(r[5] for r in mine))
    # sweep_trials decodes Optuna's stored params into what the runs trained with.
    decoded = pg.execute(
        "SELECT DISTINCT params->>'lr', run_id FROM signdb.sweep_trials WHERE sweep = 's'"
    ).fetchall()
    by_run = {rid: lr for lr, rid in decoded}
    for rid, (lr,) in zip(
        result.run_ids,
        pg.execute(
            "SELECT hyperparams->>'lr' FROM signdb.runs WHERE id = ANY(%s) ORDER BY id",
            [result.run_ids],
        ).fetchall(),
        strict=True,
    ):
        assert float(by_run[rid]) == pytest.approx(float(lr), rel=1e-12)

    shown = show(photos.engine, "s")
    assert shown.trials["complete"] == 3
    best = max(summary, key=lambda r: r[3])
    assert shown.best["value"] == pytest.approx(best[3])
    assert shown.best["test"]["accuracy"] == pytest.approx(best[4])
    assert shown.best["run_id"] in result.run_ids and len(shown.best["run_ids"]) == 2
    assert [row["val_accuracy"]["mean"] for row in shown.table] == sorted(
        (r[3] for r in summary), reverse=True
    )
    # A second worker finds nothing to do and exits at once.
    assert work(photos.engine, "s").ran == 0


def test_categorical_choices_of_lists_reach_the_model_and_the_views(photos, pg):
    params = ("hidden=choice:4,6-4", "lr=0.02", "iterations=1")
    create_sweep(photos.engine, _request(sampler="grid", params=params, trials=None, repeats=1))
    work(photos.engine, "s")
    rows = pg.execute(
        "SELECT t.params->'hidden', r.hyperparams->'hidden' FROM signdb.sweep_trials t "
        "JOIN signdb.runs r ON r.id = t.run_id WHERE t.sweep = 's' ORDER BY 1"
    ).fetchall()
    assert rows == [([4], [4]), ([6, 4], [6, 4])]


def test_max_trials_stops_a_worker_and_another_finishes_the_sweep(photos):
    create_sweep(photos.engine, _request(repeats=1))
    assert work(photos.engine, "s", max_trials=1).ran == 1
    assert work(photos.engine, "s").ran == 2
    assert show(photos.engine, "s").trials["complete"] == 3


def test_random_sampler_draws_the_same_points_for_the_same_seed(photos, pg):
    for name in ("r1", "r2"):
        create_sweep(photos.engine, _request(name, sampler="random", repeats=1))
        work(photos.engine, name)
    lrs = {
        name: [
            r[0]
            for r in pg.execute(
                "SELECT hyperparams->>'lr' FROM signdb.runs WHERE sweep = %s ORDER BY trial_number",
                [name],
            )
        ]
        for name in ("r1", "r2")
    }
    assert lrs["r1"] == lrs["r2"] and len(set(lrs["r1"])) == 3


def test_the_median_pruner_stops_a_hopeless_trial_and_its_run_succeeds(photos, pg):
    # Five good learning rates complete first (the pruner's startup); then one that
    # cannot learn is stopped after its second epoch, below the median of the five.
    lrs = "0.002,0.003,0.004,0.005,0.006,0.0000001"
    params = (f"lr=choice:{lrs}", "hidden=[16]", "iterations=6", "batch_size=8")
    create_sweep(photos.engine, _request(sampler="grid", params=params, trials=None, repeats=1))
    result = work(photos.engine, "s")
    states = [t["state"] for t in result.trials]
    assert states == ["complete"] * 5 + ["pruned"]
    ((pruned, status, done, total, val_f1),) = pg.execute(
        "SELECT t.pruned, r.status, r.steps_done, r.total_steps, r.val_f1 "
        "FROM signdb.sweep_trials t JOIN signdb.runs r ON r.id = t.run_id "
        "WHERE t.sweep = 's' AND t.trial_number = 5"
    ).fetchall()
    assert pruned and status == "succeeded" and 0 < done < total
    assert val_f1 is None  # a pruned run is not evaluated
    kept = pg.execute("SELECT count(*) FROM signdb.sweep_summary WHERE sweep = 's'").fetchone()[0]
    assert kept == 5


def test_a_failing_trial_is_failed_with_its_error_and_the_sweep_goes_on(photos, pg):
    # lr far too high makes the cost overflow; the trainer names the step.
    params = ("lr=choice:0.02,1e30", "hidden=[8]", "iterations=2")
    create_sweep(photos.engine, _request(sampler="grid", params=params, trials=None, repeats=1))
    result = work(photos.engine, "s")
    assert sorted(t["state"] for t in result.trials) == ["complete", "failed"]
    ((error,),) = pg.execute(
        "SELECT value_json FROM optuna.trial_user_attributes WHERE key = 'error'"
    ).fetchall()
    assert "diverged at step" in json.loads(error) and "lower the learning rate" in json.loads(
        error
    )
    assert show(photos.engine, "s").trials == {
        "waiting": 0, "running": 0, "complete": 1, "pruned": 0, "fail": 1
    }  # fmt: skip


def test_reap_with_nothing_stale_changes_nothing(photos):
    create_sweep(photos.engine, _request())
    assert reap(photos.engine, "s").as_dict() == {
        "sweep": "s", "failed": [], "queued": [], "runs_interrupted": 0
    }  # fmt: skip


def test_a_trial_claimed_and_never_beaten_is_reaped_as_an_orphan(photos, pg):
    create_sweep(photos.engine, _request(heartbeat_seconds=1, grace_seconds=2))
    pg.execute(  # a worker killed between its claim and its first heartbeat
        "UPDATE optuna.trials SET state = 'RUNNING', "
        "datetime_start = (now() AT TIME ZONE 'UTC') - interval '1 minute' WHERE number = 0"
    )
    reaped = reap(photos.engine, "s")
    assert reaped.failed == [0] and reaped.queued == [3]
    assert work(photos.engine, "s").ran == 3


# -- roles ----------------------------------------------------------------------------------
def test_a_worker_needs_only_the_writer_role(photos, db_url, pg_admin_url):
    create_sweep(photos.engine, _request(repeats=1))
    with login_role(pg_admin_url, "signdb_writer") as user:
        url = make_url(db_url).set(username=user).render_as_string(hide_password=False)
        done = signdb_cli("sweep", "work", "s", "--json", env={"SIGNDB_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ran"] == 3
        reaped = signdb_cli("sweep", "reap", "s", env={"SIGNDB_DATABASE_URL": url})
        assert reaped.returncode == 0, reaped.stderr
