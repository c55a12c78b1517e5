"""A run's model as an ONNX file: ``signdb export``, and what the server loads.

A run stored with ``run.save_onnx`` is that file; a built-in run's graph is
built from its final weights (:func:`signdb.ml.onnx_export.to_onnx`). Either
way the file says what it needs in its ``metadata_props``: the class names in
probability-column order, the labels, and the preprocessing that turns an
image file into its input.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, ModelNotServable, NotFound
from signdb.ml.onnx_export import INPUT, LABEL, PROBABILITIES, to_onnx
from signdb.ml.onnx_runtime import graph_input_name
from signdb.store import aliases as alias_store
from signdb.store import datasets as ds_store
from signdb.store import onnx_models as onnx_store
from signdb.store import runs as run_store
from signdb.store.aliases import Servable
from signdb.training import load_model

FORMATS = ("onnx",)
COLOR_WORDS = {"gray": "gray (ITU-R 601-2 luma)", "rgb": "RGB"}


@dataclass(frozen=True)
class RunModel:
    """A run's model file with what serving needs beside it."""

    run: run_store.Run
    preprocessing: Preprocessing
    class_names: dict[int, str]
    onnx: bytes
    sha256: str
    source: str  # "onnx": stored with the run; "weights": built from its final weights

    @property
    def names(self) -> list[str]:
        """Class names in probability-column order."""
        return [self.class_names.get(label, str(label)) for label in sorted(self.run.classes)]


def check_servable(info: Servable | None, run_id: int) -> Servable:
    """The run, if a server can answer with it: a stored ONNX model, or built-in final weights."""
    if info is None:
        raise NotFound(f"no run with id {run_id}; `signdb runs list` shows the runs")
    if info.onnx_sha256 is not None:
        return info
    if info.engine not in ("numpy", "torch"):
        raise ModelNotServable(
            f"run {run_id} was logged by your own code (model {info.model!r}) and has no ONNX "
            "model; store one with run.save_onnx(model_bytes or path) to serve it"
        )
    if not info.has_final_weights:
        raise ModelNotServable(
            f"run {run_id} has no final weights (status {info.status}); it can be served once it "
            f"finishes: `signdb train --resume {run_id}` continues an interrupted run"
        )
    return info


def input_description(prep: Preprocessing) -> str:
    return (
        f"float32 [N, {prep.size}, {prep.size}, {prep.channels}] in [0, 1]: uint8 pixels / 255 "
        f"of images converted to {COLOR_WORDS[prep.color]} and resized to {prep.size}x{prep.size} "
        f"({prep.resample}), as `signdb load` stores them"
    )


def metadata_props(run: run_store.Run, prep: Preprocessing, names: list[str]) -> dict[str, str]:
    """The ONNX file's ``metadata_props``: what a user of the file needs to feed and read it."""
    return {
        "signdb.run_id": str(run.id),
        "signdb.dataset": run.dataset,
        "signdb.model": run.model,
        "signdb.engine": run.engine,
        "signdb.labels": json.dumps(sorted(run.classes)),
        "signdb.classes": json.dumps(names),
        "signdb.preprocessing": json.dumps(prep.as_dict()),
        "signdb.input": input_description(prep),
        "signdb.outputs": f"{PROBABILITIES} float32 [N, {len(names)}] in signdb.classes order; "
        f"{LABEL} int64 [N], the predicted label",
    }


def run_model(engine: Engine, run_id: int) -> RunModel:
    """The ONNX model a server answers with for ``run_id``; refused if the run cannot be served."""
    with transaction(engine, f"reading the model of run {run_id}") as session:
        check_servable(alias_store.servable(session, run_id), run_id)
        run = run_store.get_run(session, run_id)
        ds = ds_store.get_dataset(session, run.dataset)
        names = ds_store.class_names(session, ds.id)
        stored = onnx_store.load_onnx(session, run_id)
    if stored is not None:
        data, sha = stored
        return RunModel(run, ds.preprocessing, names, data, sha, "onnx")
    _, model = load_model(engine, run_id)
    column_names = [names.get(label, str(label)) for label in sorted(run.classes)]
    graph = to_onnx(model, metadata=metadata_props(run, ds.preprocessing, column_names))
    data = graph.SerializeToString()
    return RunModel(run, ds.preprocessing, names, data, hashlib.sha256(data).hexdigest(), "weights")


def export_model(engine: Engine, run_id: int, out: str | Path, fmt: str = "onnx") -> dict[str, Any]:
    """Write the run's model to ``out`` (atomically: a failed export leaves no partial file).

    Returns what ``signdb export --json`` prints: run, path, format, bytes,
    sha256, source, input and class names.
    """
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(out)
    if path.is_dir():
        raise InvalidArgument(
            f"--out {path} is a folder; give a file name such as {path}/model.onnx"
        )
    if not path.parent.is_dir():
        raise NotFound(f"--out {path}: the folder {path.parent} does not exist; create it first")
    model = run_model(engine, run_id)
    # Not mkstemp: its file is private (0600); this one gets the umask's permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(model.onnx)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}; choose another --out") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "run_id": run_id,
        "path": str(path),
        "format": fmt,
        "bytes": len(model.onnx),
        "sha256": model.sha256,
        "source": model.source,
        "input": {
            "name": INPUT if model.source == "weights" else graph_input_name(model.onnx),
            "description": input_description(model.preprocessing),
        },
        "classes": model.names,
    }
