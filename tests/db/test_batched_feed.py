"""RunDataset(batch_size=B): whole batches by one binary COPY, the per-image feed's images in its order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import signdb
from signdb.db.engine import transaction
from signdb.errors import DatabaseUnavailable, InvalidArgument
from signdb.store.batches import Share, copy_run_batches
from signdb.torch import RunDataset
from signdb.tracking import feed
from tests.helpers import named_tree

CLASSES = ["cat", "coffee", "rocket"]


@pytest.fixture
def run(db_url, tmp_path):
    db = signdb.connect(db_url)
    db.load(named_tree(tmp_path / "photos", CLASSES, 30), "photos", size=16, color="rgb")
    with db.start_run("photos", "torch:batches", classes="all", val_fraction=0.2) as run:
        assert run.record.train_size > 40
        yield run


def _keys(items) -> list[tuple[bytes, int]]:
    """(pixels, class) of every image an iterable of images or of batches yields, in order."""
    out = []
    for X, y in items:
        if X.ndim == 3:
            out.append((X.contiguous().numpy().tobytes(), int(y)))
        else:
            out += [(x.contiguous().numpy().tobytes(), int(c)) for x, c in zip(X, y, strict=True)]
    return out


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_hold_the_per_image_feeds_images_in_its_order(run, split, shuffle):
    per_image = RunDataset(run, split, shuffle=shuffle, epoch=3)
    batched = RunDataset(run, split, shuffle=shuffle, epoch=3, batch_size=7)
    expected = _keys(per_image)
    got = list(batched)
    assert _keys(got) == expected and len(expected) == run.data.sizes[split]
    assert [len(y) for _, y in got] == [7] * (len(expected) // 7) + (
        [len(expected) % 7] if len(expected) % 7 else []
    )
    X, y = got[0]
    assert X.shape == (7, 3, 16, 16) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert X.is_contiguous(memory_format=torch.channels_last) and not X.is_pinned()


def test_dataloader_workers_take_whole_batches_in_turn(run):
    """With any number of workers the loader yields the rank's batches in order."""
    expected = _keys(RunDataset(run, "train", epoch=1))
    for workers in (0, 2):
        data = RunDataset(run, "train", epoch=1, batch_size=5)
        loader = DataLoader(data, batch_size=None, num_workers=workers)
        assert _keys(loader) == expected, f"{workers} workers"
    assert len(data) == -(-len(expected) // 5)


def test_ranks_get_their_share_of_each_global_batch(run):
    """Rank r's k-th batch: the images of global batch k at positions r, r + 2, ... of it."""
    n = run.data.sizes["train"]
    order = _keys(RunDataset(run, "train", epoch=2))
    ranks = [_keys_by_batch(RunDataset(run, "train", epoch=2, batch_size=4, rank=r, world_size=2))
             for r in (0, 1)]  # fmt: skip
    plan = feed.epoch_plan(n, 8, 2)
    assert len(ranks[0]) == len(ranks[1]) == plan.steps  # nobody waits at the last step
    for k in range(plan.steps):
        batch = order[8 * k : min(8 * k + 8, plan.used)]
        assert ranks[0][k] == batch[0::2] and ranks[1][k] == batch[1::2]
    # Over the ranks, every image the epoch uses exactly once.
    seen = [key for r in ranks for part in r for key in part]
    assert Counter(seen) == Counter(order[: plan.used])


def _keys_by_batch(data: RunDataset) -> list[list[tuple[bytes, int]]]:
    return [_keys([(X, y)]) for X, y in data]


def test_a_last_global_batch_smaller_than_the_world_is_left_out(run):
    n = run.data.sizes["train"]
    world, batch = next(  # a last global batch of 1 .. world - 1 images
        (w, b) for w in (3, 4, 5) for b in range(2, 20) if 0 < n % (b * w) < w
    )
    data = [
        RunDataset(run, "train", batch_size=batch, rank=r, world_size=world) for r in range(world)
    ]
    counts = [[len(y) for _, y in d] for d in data]
    assert len({len(c) for c in counts}) == 1  # the same number of batches on every rank
    assert sum(map(sum, counts)) == n - n % (batch * world)
    assert [len(d) for d in data] == [len(c) for c in counts]


def test_values_are_run_arrays_values(run):
    X, y, _ = run.arrays("test")  # id order
    got = list(RunDataset(run, "test", shuffle=False, batch_size=len(y)))
    assert len(got) == 1
    assert np.array_equal(got[0][0].permute(0, 2, 3, 1).numpy(), X)
    assert np.array_equal(got[0][1].numpy(), y)


def test_a_read_can_start_at_any_batch(run):
    data = RunDataset(run, "train", epoch=1, batch_size=6)
    whole = [_keys([b]) for b in data.iter_batches(1)]
    assert [_keys([b]) for b in data.iter_batches(1, skip=3)] == whole[3:]


def test_a_lost_connection_resumes_at_the_batch_it_had_reached(run, monkeypatch):
    """The server restarting mid-read: the reader opens it again and goes on, nothing twice."""
    expected = [_keys([b]) for b in RunDataset(run, "train", batch_size=6).iter_batches(0)]
    real = feed.copy_run_batches
    failures = iter([True, False])

    def flaky(session, *args, offset=0, **kwargs):
        for i, batch in enumerate(real(session, *args, offset=offset, **kwargs)):
            if i == 2 and next(failures):
                raise DatabaseUnavailable("the server closed the connection")
            yield batch

    monkeypatch.setattr(feed, "copy_run_batches", flaky)
    got = [_keys([b]) for b in RunDataset(run, "train", batch_size=6).iter_batches(0)]
    assert got == expected


def test_the_copy_read_checks_every_row(run):
    """A wrong image shape is refused with the fix, not decoded into garbage."""
    with transaction(run.engine) as session:
        share = Share(batch=4, used=run.data.sizes["train"])
        batches = copy_run_batches(session, run.id, "train", (16, 16, 4), share)
        with pytest.raises(signdb.SignDBError, match="not \\(16, 16, 4\\) pixels.*db check"):
            list(batches)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive number"),
        ({"batch_size": True}, "batch_size must be a positive number"),
        ({"batch_size": 4, "rank": 0, "world_size": 200}, "fewer than the 200 processes"),
    ],
)
def test_bad_batch_arguments_are_refused(run, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        RunDataset(run, "val", **kwargs)


def test_iter_batches_needs_a_batch_size(run):
    with pytest.raises(InvalidArgument, match="batch_size=B"):
        next(RunDataset(run, "train").iter_batches(0))


def test_pinned_memory_is_asked_for_only_with_cuda(run):
    assert RunDataset(run, "train", batch_size=4).pin_memory == torch.cuda.is_available()
    if not torch.cuda.is_available():
        return
    X, _ = next(iter(RunDataset(run, "train", batch_size=4)))
    assert X.is_pinned()
