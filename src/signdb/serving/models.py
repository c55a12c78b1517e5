"""The inference core: a model name resolved on every request, its loaded model cached by run.

A served model's name is an alias (``champion``) or ``run-<id>``. Every request
resolves it again (one indexed query), so re-pointing an alias takes effect on
the next request without a restart; what it resolves to is loaded once per
process and kept, keyed by the database, the run and its model file, so a
request to a cached model does no more database work than that query.

Every run is served through onnxruntime: a built-in run's graph is built from
its final weights, a run of people's own code serves the file it stored
(``run.save_onnx``). One path, so a built-in and a custom run answer alike, and
onnxruntime was as fast as or faster than the numpy and torch forward passes
(``python -m bench serving``).

Examples
--------
>>> import numpy as np
>>> run_id = db.runs()[-1]["run_id"]
>>> model = resolve_model(db.engine, f"run-{run_id}")
>>> meta = model.metadata()
>>> meta["inputs"][0]["shape"], meta["outputs"][0]["name"]
([-1, 16, 16, 1], 'probabilities')
>>> proba, labels = model.infer(np.zeros((2, 16, 16, 1), np.uint8))
>>> proba.shape, labels.dtype
((2, 2), dtype('int64'))
>>> model.infer(np.zeros((2, 8, 8, 1), np.uint8))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.TensorError: model 'run-...' takes images [N, 16, 16, 1] (16x16 gray); got [2, 8, 8, 1]: ...
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine

from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, ModelNotFound, ModelNotServable, TensorError
from signdb.ml.base import pixels_to_float
from signdb.ml.metrics import decide
from signdb.ml.onnx_export import INPUT, LABEL, PROBABILITIES
from signdb.ml.onnx_runtime import OnnxClassifier
from signdb.serving.export import run_model
from signdb.serving.protocol import datatype_name
from signdb.store import aliases as alias_store

#: ``run-<id>`` names a run directly; anything else is an alias.
RUN_NAME = re.compile(r"run-([1-9][0-9]{0,18})")
#: Images one request may carry; a larger batch is refused, not queued.
MAX_BATCH = 1024
#: Loaded models kept per process (least recently used goes first).
CACHE_SIZE = 8
PLATFORM = "onnxruntime_onnx"

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedModel:
    """One run's model, loaded: shared by every request (and every name) that reaches it."""

    run_id: int
    model: str
    engine: str
    dataset: str
    labels: np.ndarray  # int64, probability-column order
    names: list[str]
    preprocessing: Preprocessing
    source: str
    sha256: str
    classifier: OnnxClassifier

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.preprocessing.shape


class ModelCache:
    """Least-recently-used models by key; each is loaded once even when many threads ask at once."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Any, Future] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], T]) -> T:
        with self._lock:
            future = self._entries.get(key)
            owner = future is None
            if owner:
                future = self._entries[key] = Future()
                self._evict()
            else:
                self._entries.move_to_end(key)
        if owner:
            try:
                future.set_result(load())
            except BaseException as e:
                with self._lock:
                    if self._entries.get(key) is future:
                        del self._entries[key]  # the next request tries again
                future.set_exception(e)
                raise
        return future.result()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        for key in list(self._entries):
            if len(self._entries) <= self.size:
                return
            if self._entries[key].done():  # never one still loading: its waiters hold it
                del self._entries[key]


CACHE = ModelCache()


def _database_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def lookup(engine: Engine, name: str) -> tuple[int, str | None]:
    """(run id, stored model's sha256) that ``name`` means now; ModelNotFound if nothing."""
    if not isinstance(name, str) or not name:
        raise ModelNotFound("no model name given; use an alias or run-<id>")
    match = RUN_NAME.fullmatch(name)
    with transaction(engine, f"resolving model {name!r}") as session:
        found = alias_store.resolve(session, name, int(match[1]) if match else None)
    if found is not None:
        return found
    if match:
        raise ModelNotFound(
            f"no model {name!r}: there is no run {match[1]}; `signdb runs list` shows the runs"
        )
    raise ModelNotFound(
        f"no model {name!r}: no alias has that name; `signdb models list` shows the aliases, "
        "and run-<id> names a run directly"
    )


def resolve_model(engine: Engine, name: str, version: str | None = None) -> ServedModel:
    """The model ``name`` (an alias or ``run-<id>``) means at this moment, loaded.

    ``version``, when given (``/v2/models/{name}/versions/{version}``), must be
    the run id the name resolves to.
    """
    run_id, sha = lookup(engine, name)
    if version is not None and version != str(run_id):
        raise ModelNotFound(
            f"model {name!r} has no version {version!r}; its one version is {run_id} (the run "
            f"it answers with): drop /versions/{version} or use /versions/{run_id}"
        )
    key = (_database_key(engine), run_id, sha or "weights")
    return ServedModel(name, CACHE.get(key, lambda: load_run(engine, run_id)))


def load_run(engine: Engine, run_id: int) -> LoadedModel:
    """Load a run's model into onnxruntime (what the cache calls once per run)."""
    found = run_model(engine, run_id)
    try:
        classifier = OnnxClassifier(found.onnx)
    except InvalidArgument as e:  # a stored file passed check() when saved; say whose it is
        raise ModelNotServable(f"run {run_id}'s stored ONNX model cannot be served: {e}") from None
    return LoadedModel(
        run_id=run_id,
        model=found.run.model,
        engine=found.run.engine,
        dataset=found.run.dataset,
        labels=np.asarray(sorted(found.run.classes), np.int64),
        names=found.names,
        preprocessing=found.preprocessing,
        source=found.source,
        sha256=found.sha256,
        classifier=classifier,
    )


@dataclass(frozen=True)
class ServedModel:
    """A loaded model under the name a request used."""

    name: str
    loaded: LoadedModel

    @property
    def run_id(self) -> int:
        return self.loaded.run_id

    @property
    def version(self) -> str:
        """The Open Inference Protocol's model version: the run that answers."""
        return str(self.loaded.run_id)

    def metadata(self) -> dict[str, Any]:
        """The protocol's model metadata (``GET /v2/models/{name}``), class names in parameters."""
        m = self.loaded
        h, w, c = m.shape
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [{"name": INPUT, "datatype": "UINT8", "shape": [-1, h, w, c]}],
            "outputs": [
                {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(m.labels)]},
                {"name": LABEL, "datatype": "INT64", "shape": [-1]},
            ],
            "parameters": {
                "run_id": m.run_id,
                "model": m.model,
                "engine": m.engine,
                "dataset": m.dataset,
                "classes": m.names,
                "labels": m.labels.tolist(),
                "input_datatypes": ["UINT8", "FP32"],
                "input": f"UINT8 pixels 0..255, or FP32 pixel / 255 in [0, 1], [N, {h}, {w}, {c}]",
                "preprocessing": m.preprocessing.as_dict(),
                "source": m.source,
            },
        }

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities float32 [N, K] in class order, labels int64 [N]) for images [N, H, W, C].

        ``batch`` is uint8 pixels or float32 in [0, 1]; anything else is a
        :class:`TensorError` naming what the model takes.
        """
        images = self.check_batch(batch)
        proba, labels = self.loaded.classifier.run(images)
        if labels is None:  # a stored model of people's own code: decided as `predictions` is
            labels, _ = decide(proba.astype(np.float64), self.loaded.labels)
        return proba, np.asarray(labels, np.int64)

    def check_batch(self, batch: Any) -> np.ndarray:
        """``batch`` as float32 images in [0, 1], or a TensorError saying what was expected."""
        h, w, c = self.loaded.shape
        expected = f"images [N, {h}, {w}, {c}] ({h}x{w} {self.loaded.preprocessing.color})"
        where = f"model {self.name!r} takes {expected}"
        if not isinstance(batch, np.ndarray):
            raise TensorError(f"{where}; got a {type(batch).__name__}, not an array")
        dtype = datatype_name(batch.dtype)
        if dtype not in ("UINT8", "FP32"):
            raise TensorError(
                f"{where} as UINT8 pixels 0..255 or FP32 in [0, 1]; got datatype {dtype}"
            )
        shape = list(batch.shape)
        if batch.ndim != 4 or shape[1:] != [h, w, c]:
            raise TensorError(f"{where}; got {shape}: {_shape_hint(shape, (h, w, c))}")
        if not 1 <= len(batch) <= MAX_BATCH:
            raise TensorError(
                f"{where} with 1 to {MAX_BATCH} images a request; got N = {len(batch)}"
            )
        if batch.dtype == np.uint8:
            return pixels_to_float(batch)
        bad = ~np.isfinite(batch) | (batch < 0) | (batch > 1)
        if bad.any():
            at = [int(i) for i in np.argwhere(bad)[0]]
            raise TensorError(
                f"{where}; FP32 pixels must be within [0, 1] (pixel / 255), but the value at "
                f"{at} is {batch[tuple(at)].item()!r}: divide by 255, or send UINT8 pixels"
            )
        return np.ascontiguousarray(batch)


def _shape_hint(shape: list[int], hwc: tuple[int, int, int]) -> str:
    h, w, c = hwc
    if len(shape) == 3 and shape == [h, w, c]:
        return "add the batch dimension N in front"
    if len(shape) == 4 and shape[1:3] == [h, w] and shape[3] != c:
        want = "1 channel (gray)" if c == 1 else "3 channels (RGB)"
        got = f"{shape[3]} channel" + ("" if shape[3] == 1 else "s")
        return f"the images have {got} where the model takes {want}; convert them"
    if len(shape) == 4 and shape[1:3] != [h, w]:
        return (
            f"resize the images to {h}x{w} as `signdb load` does, or post the image files to "
            "/api/v1/models/{name}/predict, which does it for you"
        )
    return "the shape is [N, height, width, channels] (NHWC)"
