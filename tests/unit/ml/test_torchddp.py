"""The torch engine on tensor batches, alone and as ranks of DistributedDataParallel (gloo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from signdb.errors import InvalidArgument
from signdb.ml import torchddp
from signdb.ml.augment import random_affine
from signdb.ml.base import pixels_to_float
from signdb.ml.torchfeed import pixels_to_tensor, prefetch
from signdb.ml.torchnet import TorchConvNet, TorchMLP

SHAPE = (8, 8, 1)
CLASSES = [0, 1, 2]
#: Global batches of one "epoch": an uneven last one (7 over 2 ranks: 4 and 3).
SIZES = (8, 8, 7)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (sum(SIZES), *SHAPE), dtype=np.uint8)
    return pixels, rng.integers(0, len(CLASSES), sum(SIZES))


def _model(**kw) -> TorchConvNet:
    params = {"layers": "conv4-pool-dense8", "batch_norm": False, "augment": True, "dropout": 0.2}
    model = TorchConvNet(seed=3, **{**params, **kw}).set_device("cpu")
    model.initialize(SHAPE, CLASSES).plan(len(SIZES))
    return model


def _batches():
    pixels, y = _data()
    start = 0
    for size in SIZES:
        yield pixels[start : start + size], y[start : start + size]
        start += size


@pytest.mark.parametrize("model", [_model, lambda: TorchMLP(hidden=[8], seed=3, augment=True)])
def test_train_batch_is_train_step_on_a_tensor(model):
    """Bit for bit: the tensor feed changes nothing in what a run trains."""
    a, b = model(), model()
    if not hasattr(a, "module_"):
        a, b = (m.set_device("cpu").initialize(SHAPE, CLASSES) for m in (a, b))
        a.plan(len(SIZES)), b.plan(len(SIZES))
    for step, (pixels, y) in enumerate(_batches()):
        ra = a.train_step(pixels_to_float(pixels), y, step)
        rb = torchddp.train_batch(b, pixels_to_tensor(pixels), torch.from_numpy(y), step)
        assert (ra.cost, ra.correct) == (rb.cost, rb.correct)
    for key, value in a.state_dict().items():
        assert np.array_equal(value, b.state_dict()[key]), key


def test_augmentation_rows_are_the_whole_batchs_draws():
    X = np.random.default_rng(1).random((7, 8, 8, 1), dtype=np.float32)
    whole = random_affine(X, 42, 5)
    for rank in (0, 1):
        share = random_affine(X[rank::2], 42, 5, rows=(rank, 7, 2))
        assert np.allclose(share, whole[rank::2], atol=1e-6)


def _rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    model = torchddp.distribute(_model())
    costs = []
    for step, (pixels, y) in enumerate(_batches()):
        X, target = pixels_to_tensor(pixels[rank::2]), torch.from_numpy(y[rank::2])
        result = torchddp.train_share(
            model, X, target, step, rank=rank, world_size=2, batch_total=len(y)
        )
        total = torch.tensor([result.cost, result.correct], dtype=torch.float64)
        dist.all_reduce(total)
        costs.append((float(total[0]) / 2, int(total[1])))
    if rank == 0:
        np.savez(out, costs=np.array(costs), **model.state_dict())
    # Both ranks leave gloo together: a rank that tore its group down while the other was
    # still writing was once killed by SIGABRT ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


def test_two_ranks_update_as_one_process_on_the_whole_batch(tmp_path):
    """Gradients of the global batch's mean, dropout and augmentation drawn for the whole batch:
    two gloo ranks end where one process does, uneven last batch included."""
    out = tmp_path / "ranks.npz"
    mp.start_processes(
        _rank, args=(str(tmp_path / "store"), str(out)), nprocs=2, start_method="spawn"
    )
    ranks = np.load(out)
    alone = _model()
    costs = []
    for step, (pixels, y) in enumerate(_batches()):
        result = torchddp.train_batch(alone, pixels_to_tensor(pixels), torch.from_numpy(y), step)
        costs.append((result.cost, result.correct))
    assert np.allclose(ranks["costs"], costs, atol=1e-5)
    for key, value in alone.state_dict().items():
        assert np.allclose(ranks[key], value, atol=1e-5), key
    assert any(not np.array_equal(ranks[k], _model().state_dict()[k]) for k in ranks.files[1:])


def test_train_share_needs_distribute_first():
    with pytest.raises(InvalidArgument, match="distribute"):
        torchddp.train_share(_model(), torch.zeros(1, 1, 8, 8), torch.zeros(1), 0,
                             rank=0, world_size=2, batch_total=2)  # fmt: skip
    with pytest.raises(InvalidArgument, match="init_process_group"):
        torchddp.distribute(_model())


def test_a_batch_of_another_shape_is_refused_naming_both():
    with pytest.raises(InvalidArgument, match=r"\(3, 8, 8\) does not match the model's"):
        torchddp.train_batch(_model(), torch.zeros(2, 3, 8, 8), torch.zeros(2), 0)


def test_prefetch_raises_the_producers_error_and_stops_it_early():
    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(failing()))
    produced = []

    def endless():
        for i in range(10_000):
            produced.append(i)
            yield i

    items = prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()  # a consumer that stops early stops the producer
    assert len(produced) < 10
