"""`signdb models alias|list|show|unalias` and `signdb export`, through the real entry point."""

from __future__ import annotations

import json
import uuid

import numpy as np
import onnxruntime
import pytest

from tests.helpers import signdb


def run_cli(runs, *args):
    return signdb(*args, env={"SIGNDB_DATABASE_URL": runs.url})


def test_alias_list_show_and_unalias(served_runs):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    a, b = served_runs.runs["softmax"], served_runs.runs["cnn-numpy"]
    made = run_cli(served_runs, "models", "alias", name, str(a), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["previous_run_id"] is None
    moved = run_cli(served_runs, "models", "alias", name, str(b))
    assert moved.returncode == 0 and moved.stdout.strip() == f"{name} -> run {b} (was run {a})"
    listed = json.loads(run_cli(served_runs, "models", "list", "--json").stdout)["models"]
    mine = next(m for m in listed if m["name"] == name)
    assert (mine["run_id"], mine["model"], mine["dataset"]) == (b, "cnn", "mini16")
    shown = json.loads(run_cli(served_runs, "models", "show", name, "--json").stdout)
    assert [h["run_id"] for h in shown["history"]] == [b, a]
    human = run_cli(served_runs, "models", "show", name).stdout
    assert f"{name}: run {b} (cnn, numpy, dataset mini16)" in human
    gone = run_cli(served_runs, "models", "unalias", name, "--json")
    assert json.loads(gone.stdout) == {"name": name, "removed_run_id": b}
    run_show = json.loads(run_cli(served_runs, "models", "show", f"run-{a}", "--json").stdout)
    assert run_show["servable"] is True and name not in run_show["aliases"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "alias", "run-5", "1"), "alias 'run-5' is not a valid name"),
        (("models", "alias", "fine", "987654"), "no run with id 987654"),
        (("models", "show", "nothing-here"), "no model 'nothing-here'"),
        (("models", "unalias", "nothing-here"), "no alias 'nothing-here'"),
        (("export", "987654", "--out", "/tmp/x.onnx"), "no run with id 987654"),
        (
            ("export", "1", "--out", "/nonexistent/dir/x.onnx"),
            "the folder /nonexistent/dir does not exist",
        ),
    ],
)
def test_bad_requests_exit_1_with_one_line(served_runs, args, message):
    result = run_cli(served_runs, *args)
    assert result.returncode == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_export_writes_a_file_onnxruntime_runs(served_runs, tmp_path):
    run_id = served_runs.runs["cnn-torch"]
    out = tmp_path / "model.onnx"
    result = run_cli(
        served_runs, "export", str(run_id), "--format", "onnx", "--out", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert summary["classes"] == ["0", "1", "2"] and summary["input"]["name"] == "images"
    session = onnxruntime.InferenceSession(str(out))
    proba, label = session.run(None, {"images": np.zeros((2, 16, 16, 3), np.float32)})
    assert proba.shape == (2, 3) and label.shape == (2,)
    assert not list(tmp_path.glob(".model.onnx.*"))  # no temporary file left behind
    human = run_cli(served_runs, "export", str(run_id), "--out", str(out))
    assert human.stdout.startswith(f"run {run_id} written to {out}")
