"""`signdb train` and `signdb runs` through the real entry point."""

from __future__ import annotations

import json

import pytest

from tests.helpers import signdb


def test_train_json_and_runs_list_show(trained_url):
    result = signdb(
        "train", "--dataset", "mini", "--iterations", "5", "--name", "cli run", "--json"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) >= {"run_id", "status", "train_accuracy", "test_accuracy"}
    assert out["status"] == "succeeded"
    listed = json.loads(signdb("runs", "list", "--json").stdout)["runs"]
    assert out["run_id"] in [r["run_id"] for r in listed]
    shown = json.loads(signdb("runs", "show", str(out["run_id"]), "--json").stdout)
    assert (
        shown["name"] == "cli run"
        and shown["model"] == "logreg"
        and shown["hyperparams"]["iterations"] == 5
    )
    human = signdb("runs", "list")
    assert "cli run" in human.stdout and "succeeded" in human.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nope"], "no dataset named 'nope'"),
        (["--dataset", "mini", "--classes", "0,x"], "class 'x' is not in dataset 'mini'"),
        (["--dataset", "mini", "--classes", ","], "--classes takes comma-separated"),
        (["--dataset", "mini", "--lr", "0"], "learning rate must be > 0"),
        (["--dataset", "mini", "--iterations", "0"], "iterations must be >= 1"),
        (["--dataset", "mini", "--param", "bogus=1"], "bogus"),
    ],
)
def test_bad_arguments_exit_1_with_one_line(trained_url, args, message):
    result = signdb("train", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_dataset_flag_is_a_usage_error(trained_url):
    assert signdb("train").returncode == 2


def test_runs_show_unknown(trained_url):
    result = signdb("runs", "show", "999999")
    assert result.returncode == 1 and "no run with id 999999" in result.stderr
