"""Model aliases and their history; runs of people's own code made servable by run.save_onnx."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import onnxruntime
import psycopg
import pytest
from onnx import TensorProto, helper, numpy_helper

import signdb
from signdb.db.engine import get_engine, transaction
from signdb.errors import InvalidArgument, ModelNotFound, ModelNotServable, NotFound
from signdb.serving import (
    export_model,
    list_models,
    remove_alias,
    resolve_model,
    set_alias,
    show_model,
)
from signdb.store.aliases import aliases_of_run


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def _history(runs, name: str) -> list[tuple]:
    with psycopg.connect(runs.conninfo) as conn:
        return conn.execute(
            "SELECT run_id, previous_run_id, changed_by FROM signdb.model_alias_history "
            "WHERE alias = %s ORDER BY event_id",
            [name],
        ).fetchall()


def test_pointing_re_pointing_and_removing_keep_the_history(served_runs):
    engine = get_engine(served_runs.url)
    a, b = served_runs.runs["softmax"], served_runs.runs["mlp-torch"]
    name = _name()
    first = set_alias(engine, name, a, "alice")
    assert (first["previous_run_id"], first["changed"], first["updated_by"]) == (
        None,
        True,
        "alice",
    )
    second = set_alias(engine, name, b, "bob")
    assert (second["previous_run_id"], second["run_id"]) == (a, b)
    same = set_alias(engine, name, b, "carol")
    assert same["changed"] is False and same["updated_by"] == "bob"
    shown = show_model(engine, name)
    assert shown["run_id"] == b and shown["model"] == "mlp" and shown["engine"] == "torch"
    assert [(h["run_id"], h["previous_run_id"]) for h in shown["history"]] == [(b, a), (a, None)]
    assert name in [m["name"] for m in list_models(engine)]
    assert remove_alias(engine, name, "dave") == {"name": name, "removed_run_id": b}
    assert _history(served_runs, name) == [(a, None, "alice"), (b, a, "bob"), (None, b, "dave")]
    with pytest.raises(ModelNotFound, match=f"no model {name!r}"):
        show_model(engine, name)
    with pytest.raises(ModelNotFound, match=f"no alias {name!r}"):
        remove_alias(engine, name, "dave")


def test_an_aliased_run_cannot_be_deleted_and_its_aliases_are_named(served_runs):
    engine = get_engine(served_runs.url)
    run_id = served_runs.runs["logreg"]
    names = sorted(_name() for _ in range(2))
    for name in names:
        set_alias(engine, name, run_id, "alice")
    with transaction(engine) as session:
        assert set(names) <= set(aliases_of_run(session, run_id))
    with psycopg.connect(served_runs.conninfo) as conn:
        # PostgreSQL 18 says restrict_violation (23001), 15 foreign_key_violation (23503).
        with pytest.raises(psycopg.errors.IntegrityError, match="fk_model_aliases_run_id_runs"):
            conn.execute("DELETE FROM signdb.runs WHERE id = %s", [run_id])
    shown = show_model(engine, f"run-{run_id}")
    assert set(names) <= set(shown["aliases"]) and shown["servable"] is True


def test_a_change_made_in_plain_sql_is_in_the_history_too(served_runs):
    a, b = served_runs.runs["softmax"], served_runs.runs["mlp-numpy"]
    name = _name()
    with psycopg.connect(served_runs.conninfo, autocommit=True) as conn:
        conn.execute("SET ROLE signdb_writer")
        conn.execute(
            "INSERT INTO signdb.model_aliases (name, run_id, updated_by) VALUES (%s, %s, 'sql')",
            [name, a],
        )
        conn.execute("UPDATE signdb.model_aliases SET run_id = %s WHERE name = %s", [b, name])
        conn.execute("DELETE FROM signdb.model_aliases WHERE name = %s", [name])
    assert _history(served_runs, name) == [
        (a, None, "sql"),
        (b, a, "sql"),
        (None, b, "signdb_writer"),
    ]


def test_concurrent_changes_leave_a_history_that_chains(served_runs):
    engine = get_engine(served_runs.url)
    runs = [served_runs.runs[k] for k in ("softmax", "mlp-numpy", "mlp-torch")]
    name = _name()
    set_alias(engine, name, runs[0], "start")

    def flip(i: int) -> None:
        for j in range(5):
            set_alias(engine, name, runs[(i + j) % 3], f"worker{i}")

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = _history(served_runs, name)
    for before, after in zip(history, history[1:], strict=False):
        assert after[1] == before[0]  # each change starts where the last one left the alias
    assert show_model(engine, name)["run_id"] == history[-1][0]


@pytest.mark.parametrize("bad", ["run-3", "", "two words", "-dash", "x" * 101, "ünïcode"])
def test_alias_names_are_checked_before_and_by_the_database(served_runs, bad):
    with pytest.raises(InvalidArgument, match="may not start with 'run-'"):
        set_alias(get_engine(served_runs.url), bad, served_runs.runs["softmax"], "alice")
    with psycopg.connect(served_runs.conninfo) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_model_aliases_name_format"):
            conn.execute(
                "INSERT INTO signdb.model_aliases (name, run_id, updated_by) VALUES (%s, %s, 'x')",
                [bad, served_runs.runs["softmax"]],
            )


def test_an_alias_needs_a_run_that_exists(served_runs):
    with pytest.raises(NotFound, match="no run with id 987654"):
        set_alias(get_engine(served_runs.url), _name(), 987654, "alice")


def _user_onnx(k: int, shape=(16, 16, 1), seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A user's own model: a fixed linear layer and a softmax, and its weights."""
    d = int(np.prod(shape))
    w = np.random.default_rng(seed).normal(0, 0.05, (d, k)).astype(np.float32)
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", *shape])
    p = helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", k])
    nodes = [
        helper.make_node("Flatten", ["pixels"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["p"], axis=1),
    ]
    graph = helper.make_graph(nodes, "user", [x], [p], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph).SerializeToString(), w


def test_a_custom_run_is_servable_once_it_stores_an_onnx_model(served_runs, tmp_path):
    engine = get_engine(served_runs.url)
    db = signdb.connect(served_runs.url)
    with db.start_run("mini16", "numpy:linear", classes="0,1,2") as run:
        run.save_weights(0, {"w": np.zeros(3, np.float32)}, final=True)
    with pytest.raises(ModelNotServable, match="logged by your own code .* run.save_onnx"):
        set_alias(engine, _name(), run.id, "alice")
    data, w = _user_onnx(3)
    path = tmp_path / "user.onnx"
    path.write_bytes(data)
    with db.start_run("mini16", "numpy:linear", classes="0,1,2") as run:
        digest = run.save_onnx(path)
    name = _name()
    set_alias(engine, name, run.id, "alice")
    model = resolve_model(engine, name)
    assert model.metadata()["parameters"]["source"] == "onnx"
    pixels = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    proba, labels = model.infer(pixels)
    z = (pixels.reshape(5, -1) / np.float32(255)) @ w
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.abs(proba - expected).max() <= 1e-5
    assert labels.tolist() == np.array([0, 1, 2])[expected.argmax(axis=1)].tolist()
    out = export_model(engine, run.id, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == data
    assert out["sha256"] == digest and out["source"] == "onnx" and out["input"]["name"] == "pixels"
    session = onnxruntime.InferenceSession(str(tmp_path / "again.onnx"))
    assert session.get_inputs()[0].name == "pixels"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"garbage bytes, not protobuf", "not an ONNX model"),
        ("/nonexistent/model.onnx", "no such ONNX file"),
        (_user_onnx(3, shape=(8, 8, 1))[0], "the run's images are [N, 16, 16, 1]"),
        (_user_onnx(4)[0], "the run has 3 classes, so expected [2, 3]"),
        (12345, "takes the model's bytes or a path"),
    ],
    ids=["garbage", "missing-file", "wrong-size", "wrong-classes", "wrong-type"],
)
def test_a_model_that_does_not_fit_the_run_is_refused_and_nothing_is_stored(
    served_runs,
    model,
    message,
):
    db = signdb.connect(served_runs.url)
    with db.start_run("mini16", "numpy:linear", classes="0,1,2") as run:
        with pytest.raises((InvalidArgument, NotFound)) as e:
            run.save_onnx(model)
        assert message in str(e.value)
    with psycopg.connect(served_runs.conninfo) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM signdb.onnx_models WHERE run_id = %s", [run.id]
        ).fetchone()[0]
    assert stored == 0


def test_a_torch_network_exported_by_torch_onnx_is_served(served_runs, tmp_path):
    """The workflow docs/serving.md shows: torch.onnx.export, run.save_onnx, an alias."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC in [0, 1]
            h = torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean(dim=(2, 3))
            return torch.softmax(self.fc(h), dim=1)

    torch.manual_seed(0)
    net = Net().eval()
    db = signdb.connect(served_runs.url)
    with db.start_run("mini16", "torch:tiny", classes="0,1,2") as run:
        X, _, _ = run.arrays("test")
        torch.onnx.export(
            net,
            (torch.from_numpy(X[:2]),),
            str(tmp_path / "net.onnx"),
            dynamo=False,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_axes={"images": {0: "N"}, "probabilities": {0: "N"}},
        )
        run.save_onnx(tmp_path / "net.onnx")
    name = _name()
    set_alias(get_engine(served_runs.url), name, run.id, "alice")
    pixels = (X * 255).round().astype(np.uint8)
    proba, labels = resolve_model(get_engine(served_runs.url), name).infer(pixels)
    with torch.no_grad():
        expected = net(torch.from_numpy(pixels.astype(np.float32) / 255)).numpy()
    assert np.abs(proba - expected).max() <= 1e-5
    assert labels.tolist() == expected.argmax(axis=1).tolist()
