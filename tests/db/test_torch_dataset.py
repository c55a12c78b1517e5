"""signdb.torch.RunDataset on a real PostgreSQL: shards, epochs, workers and memory."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import psycopg
import pytest
import torch
from torch.utils.data import DataLoader

import signdb
from signdb.errors import InvalidArgument
from signdb.torch import RunDataset
from tests.helpers import named_tree

CLASSES = ["cat", "coffee", "rocket"]


@pytest.fixture
def db(db_url, tmp_path):
    handle = signdb.connect(db_url)
    tree = named_tree(tmp_path / "photos", CLASSES, 30)
    handle.load(tree, "photos", size=16, color="rgb")  # three channels: CHW is not HWC
    return handle


@pytest.fixture
def run(db):
    with db.start_run("photos", "torch:test", classes="all", val_fraction=0.2) as run:
        assert run.record.train_size > 40  # several chunks and shards below
        yield run


def _key(x: torch.Tensor | np.ndarray, y: int) -> tuple[bytes, int]:
    """An image's identity: its pixels (unique in a dataset) and its class index."""
    return np.ascontiguousarray(np.asarray(x)).tobytes(), int(y)


def _items(data) -> list[tuple[bytes, int]]:
    """Every (image, class) a dataset or DataLoader yields, in the order it yields them."""
    out = []
    for X, y in data:
        if X.ndim == 4:  # a batch
            out += [_key(xi, yi) for xi, yi in zip(X, y, strict=True)]
        else:
            out.append(_key(X, y))
    return out


def _arrays(run, split: str) -> list[tuple[bytes, int]]:
    X, y, _ = run.arrays(split)
    return [_key(x, c) for x, c in zip(X.transpose(0, 3, 1, 2), y, strict=True)]


def _batches(run, split: str, epoch: int) -> list[tuple[bytes, int]]:
    out = []
    for X, y in run.batches(split, batch_size=8, shuffle=True, epoch=epoch):
        out += [_key(x, c) for x, c in zip(X.transpose(0, 3, 1, 2), y, strict=True)]
    return out


# -- what it yields -------------------------------------------------------------------
def test_items_are_chw_float32_in_unit_range_with_class_indices(run):
    X, y = next(iter(RunDataset(run, "train")))
    assert X.shape == (3, 16, 16) and X.dtype == torch.float32 and X.is_contiguous()
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0
    assert type(y) is int and y in range(len(run.classes))
    X, y = next(iter(DataLoader(RunDataset(run, "train"), batch_size=5, num_workers=2)))
    assert X.shape == (5, 3, 16, 16) and y.dtype == torch.int64


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_the_same_images_as_run_arrays(run, split):
    got = _items(RunDataset(run, split))
    assert Counter(got) == Counter(_arrays(run, split))
    assert len(got) == len(set(got)) == run.data.sizes[split]


# -- exactly once per epoch -----------------------------------------------------------
def test_two_workers_see_every_image_exactly_once(run):
    data = RunDataset(run, "train")
    got = _items(DataLoader(data, batch_size=4, num_workers=2))
    assert Counter(got) == Counter(_arrays(run, "train"))
    assert len(got) == len(data) == run.record.train_size


def test_two_ranks_of_two_workers_see_every_image_exactly_once(run):
    ranks = [RunDataset(run, "train", rank=r, world_size=2) for r in (0, 1)]
    parts = [_items(DataLoader(d, batch_size=4, num_workers=2)) for d in ranks]
    assert Counter(parts[0] + parts[1]) == Counter(_arrays(run, "train"))
    assert [len(p) for p in parts] == [len(d) for d in ranks]  # __len__ is the rank's shard
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    assert not set(parts[0]) & set(parts[1])


def test_shards_interleave_the_runs_own_order(run):
    """Shard k of n is positions k, k + n, ... of run.batches' order, with any workers."""
    expected = _batches(run, "train", epoch=3)
    assert _items(RunDataset(run, "train", epoch=3)) == expected
    # batch_size=1: the DataLoader takes one item from each worker in turn.
    two = DataLoader(RunDataset(run, "train", epoch=3), batch_size=1, num_workers=2)
    assert _items(two) == expected
    ranks = [_items(RunDataset(run, "train", epoch=3, rank=r, world_size=3)) for r in range(3)]
    assert [ranks[i % 3][i // 3] for i in range(len(expected))] == expected


def test_without_shuffle_the_order_is_by_id(run):
    data = RunDataset(run, "test", shuffle=False)
    assert _items(data) == _arrays(run, "test")  # run.arrays is in id order
    assert _items(DataLoader(data, batch_size=1, num_workers=2)) == _arrays(run, "test")


# -- epochs ---------------------------------------------------------------------------
def test_each_epoch_has_its_own_reproducible_order(run):
    data = RunDataset(run, "train")
    first = _items(DataLoader(data, batch_size=4, num_workers=2))
    data.set_epoch(1)
    second = _items(DataLoader(data, batch_size=4, num_workers=2))
    assert second != first and Counter(second) == Counter(first)
    again = _items(DataLoader(RunDataset(run, "train", epoch=1), batch_size=4, num_workers=2))
    assert again == second
    assert _items(RunDataset(run, "train", epoch=1)) == _batches(run, "train", epoch=1)


def test_set_epoch_reaches_persistent_workers(run):
    data = RunDataset(run, "train")
    loader = DataLoader(data, batch_size=1, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        data.set_epoch(epoch)
        assert _items(loader) == _batches(run, "train", epoch), f"epoch {epoch}"


# -- refusals -------------------------------------------------------------------------
def test_an_empty_split_is_refused_naming_the_run_and_split(db):
    with db.start_run("photos", "torch:test", classes="all") as run:  # no val split
        with pytest.raises(InvalidArgument, match=rf"run {run.id} has no images in its 'val'"):
            RunDataset(run, "val")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "holdout"}, "split must be train, val or test"),
        ({"split": "train", "rank": 2, "world_size": 2}, r"rank must be in 0 \.\. world_size"),
        ({"split": "train", "rank": 1}, "pass rank and world_size together"),
        ({"split": "train", "epoch": -1}, "epoch must be an integer >= 0"),
        ({"split": "train", "chunk": 0}, "chunk must be a positive number"),
    ],
)
def test_bad_arguments_are_refused(run, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        RunDataset(run, **kwargs)


def test_anything_but_a_run_is_refused(run):
    with pytest.raises(InvalidArgument, match="needs a signdb Run"):
        RunDataset(run.id, "train")


def test_import_without_torch_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "try:\n"
        "    import signdb.torch\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "the torch engine needs PyTorch: pip install 'signdb[torch]'"


# -- memory, connections and processes ------------------------------------------------
def _fetch_size(pg: psycopg.Connection, run, split: str, chunk: int) -> int:
    """Rows the server sends per round trip, read from pg_stat_activity mid-stream."""
    items = iter(RunDataset(run, split, chunk=chunk))
    next(items)
    (query,) = pg.execute(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
    ).fetchone()
    items.close()
    match = re.fullmatch(r'FETCH FORWARD (\d+) FROM "[^"]+"', query)
    assert match, f"not a server-side cursor: {query!r}"
    return int(match[1])


def test_rows_per_round_trip_are_the_chunk_whatever_the_split_size(run, pg):
    sizes = run.data.sizes
    assert sizes["train"] > 2 * sizes["val"] > 2 * 5
    train, val = _fetch_size(pg, run, "train", 5), _fetch_size(pg, run, "val", 5)
    assert 1 <= train == val <= 5  # a whole split fetched at once would be > 5
    assert _fetch_size(pg, run, "train", 7) <= 7


def test_workers_have_connections_of_their_own_and_close_them(run, pg):
    with run.engine.connect() as conn:
        parent = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    data = RunDataset(run, "train", chunk=8)
    batches = iter(DataLoader(data, batch_size=4, num_workers=2))
    seen = len(next(batches)[1])
    workers = _streaming_backends(pg, 2)  # each worker mid-stream, on its own backend
    assert len(workers) == 2 and parent not in workers
    seen += sum(len(y) for _, y in batches)
    assert seen == len(data)
    with run.engine.connect() as conn:  # the parent's pooled connection, untouched
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == parent
    run.log(0, loss=1.0)
    run.metrics.flush()
    deadline = time.monotonic() + 10  # a backend exits just after its client says goodbye
    while _alive(pg, workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(pg, workers) == set(), "a worker left its connection open"


def _streaming_backends(pg: psycopg.Connection, n: int) -> set[int]:
    """Backends in the middle of a server-side cursor read (waits for ``n`` of them)."""
    deadline = time.monotonic() + 10
    while True:
        rows = pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction' AND query LIKE 'FETCH FORWARD%'"
        ).fetchall()
        if len(rows) >= n or time.monotonic() > deadline:
            return {pid for (pid,) in rows}
        time.sleep(0.05)


def _alive(pg: psycopg.Connection, pids: set[int]) -> set[int]:
    rows = pg.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)])
    return {pid for (pid,) in rows.fetchall()}


def test_spawned_workers_get_a_picklable_dataset(run):
    data = RunDataset(run, "test")
    state = pickle.loads(pickle.dumps(data)).__dict__
    assert state["_run_engine"] is None and "password" not in repr(data)
    loader = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert Counter(_items(loader)) == Counter(_arrays(run, "test"))


def test_repr_names_the_run_not_the_database(run):
    text = repr(RunDataset(run, "train", epoch=2, rank=1, world_size=2))
    assert text == (
        f"<RunDataset run {run.id} train: {run.record.train_size} images, shuffled, "
        "epoch 2, rank 1 of 2>"
    )
