"""Parquet files into Samples and Rejections, checked against Hugging Face's own writer.

Files are made with ``datasets`` (the producer signdb must read) and, for the
layouts it does not write, with pyarrow; nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signdb.data import Sample, open_input
from signdb.data.formats.parquet import BATCH_ROWS
from signdb.errors import InputError
from tests.unit.data.test_formats_manifest import (
    CLASSES,
    ITEMS,
    image_bytes,
    item_bytes,
    load_tree,
    run,
    same_images,
)


def offline_datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The ``datasets`` package, offline, with its home and cache under the session's tmp dir."""
    home = tmp_path_factory.mktemp("hf-home")
    env = pytest.MonkeyPatch()
    # Set before the import: datasets reads these into datasets.config once.
    env.setenv("HF_DATASETS_OFFLINE", "1")
    env.setenv("HF_HUB_OFFLINE", "1")
    env.setenv("HF_HOME", str(home))
    env.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    env.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    import datasets

    datasets.disable_progress_bars()
    assert datasets.config.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    yield datasets
    env.undo()


@pytest.fixture(scope="session")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    yield from offline_datasets(tmp_path_factory)


@pytest.fixture
def tree_samples(tmp_path: Path) -> list[Sample]:
    return load_tree(tmp_path)


def hf_parquet(hf, path: Path, images: list, labels: list, label_feature=None, **extra) -> Path:
    """A Parquet file written by ``datasets.Dataset.to_parquet``."""
    features = {"image": hf.Image(), "label": label_feature or hf.ClassLabel(names=CLASSES)}
    features |= {name: hf.Value("string") for name in extra}
    ds = hf.Dataset.from_dict(
        {"image": images, "label": labels, **extra}, features=hf.Features(features)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def write_hub_layout(hf, root: Path) -> Path:
    """ITEMS as the Hub lays out a ClassLabel dataset: data/<split>-00000-of-00001.parquet."""
    data = item_bytes()
    file_split = {"train": "train", "test": "test", "val": "validation"}
    for split in ("train", "test", "val"):
        rows = [i for i, item in enumerate(ITEMS) if item[0] == split]
        hf_parquet(
            hf,
            root / "data" / f"{file_split[split]}-00000-of-00001.parquet",
            [{"bytes": data[i], "path": ITEMS[i][2]} for i in rows],
            [CLASSES.index(ITEMS[i][1]) for i in rows],
        )
    (root / "README.md").write_text("---\nlicense: mit\n---\n")  # as a Hub clone has
    return root


def arrow_file(path: Path, row_group_size: int | None = None, **columns) -> Path:
    """A Parquet file written by pyarrow alone (no ``huggingface`` metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def names_of(samples: list[Sample], names: list[str]) -> list[str]:
    return [names[int(s.class_key)] for s in samples]


# --- the producer's layout --------------------------------------------------------


def test_hub_layout_matches_the_folder_tree(hf, tmp_path, tree_samples):
    root = write_hub_layout(hf, tmp_path / "hub")
    samples, rejections = run(root)
    assert rejections == []
    same_images(samples, tree_samples)  # test-, train-, validation- files: sorted order
    assert [s.split for s in samples] == [split for split, _, _ in ITEMS]
    assert names_of(samples, CLASSES) == [s.class_key for s in tree_samples]
    assert samples[0].source == f"{root / 'data' / 'test-00000-of-00001.parquet'}[0]"
    with open_input(root) as src:
        assert src.format.name == "parquet"
        assert src.index_names() == CLASSES
        assert src.class_keys() == {"0", "1", "2"}
        assert src.count() == len(ITEMS)


def test_the_huggingface_metadata_is_where_we_read_the_names(hf, tmp_path):
    path = hf_parquet(hf, tmp_path / "x.parquet", [image_bytes(0)], [1])
    meta = json.loads(pq.read_schema(path).metadata[b"huggingface"])
    assert meta["info"]["features"]["label"] == {"names": CLASSES, "_type": "ClassLabel"}
    with open_input(path) as src:  # a file given directly
        assert src.index_names() == CLASSES and src.class_keys() == {"1"}


def test_string_labels_and_a_split_column(hf, tmp_path, tree_samples):
    data = item_bytes()
    path = hf_parquet(
        hf,
        tmp_path / "train-00000-of-00001.parquet",
        [{"bytes": b, "path": None} for b in data],
        [f" {cls} " for _, cls, _ in ITEMS],
        label_feature=hf.Value("string"),
        split=[split if split != "train" else None for split, _, _ in ITEMS],
    )
    samples, rejections = run(path)
    assert rejections == []
    same_images(samples, tree_samples)  # the split cell wins; an empty one: the file's name
    assert [s.class_key for s in samples] == [s.class_key for s in tree_samples]
    with open_input(path) as src:
        assert src.index_names() is None and src.class_keys() == set(CLASSES)


def test_test_file_next_to_train_file(hf, tmp_path):
    hf_parquet(hf, tmp_path / "train-00000-of-00001.parquet", [image_bytes(1)] * 2, [0, 1])
    hf_parquet(hf, tmp_path / "test-00000-of-00001.parquet", [image_bytes(2)], [2])
    samples, _ = run(tmp_path)
    assert [(s.class_key, s.split) for s in samples] == [
        ("2", "test"),
        ("0", "train"),
        ("1", "train"),
    ]


def test_plain_binary_in_many_row_groups_and_batches(tmp_path):
    n = BATCH_ROWS * 2 + 5
    blobs = [image_bytes(i % 7) for i in range(n)]
    blobs[n - 2] = blobs[n - 2][:100]  # cut short
    path = arrow_file(
        tmp_path / "images.parquet",
        row_group_size=50,
        image=pa.array(blobs, pa.binary()),
        label=pa.array([i % 3 for i in range(n)], pa.int16()),
    )
    assert pq.ParquetFile(path).metadata.num_row_groups > 2
    samples, rejections = run(path, workers=2)
    assert len(samples) == n - 1 and {s.split for s in samples} == {None}
    assert [s.class_key for s in samples[:4]] == ["0", "1", "2", "0"]
    assert rejections[0].source == f"{path}[{n - 2}]"  # counted across batches
    assert "truncated or corrupt PNG" in rejections[0].reason
    with open_input(path) as src:
        assert src.index_names() is None and src.class_keys() == {"0", "1", "2"}


def test_the_pixels_do_not_depend_on_the_image_encoding(tmp_path, hf):
    """PNG bytes in a binary column and in a datasets.Image() struct decode alike."""
    blobs = [image_bytes(i) for i in range(3)]
    a = arrow_file(tmp_path / "a" / "x.parquet", image=blobs, label=["p", "q", "r"])
    b = hf_parquet(hf, tmp_path / "b" / "x.parquet", blobs, [0, 1, 2])
    sa, _ = run(a)
    sb, _ = run(b)
    assert [s.sha256 for s in sa] == [s.sha256 for s in sb]
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(sa, sb, strict=True))


# --- rejected rows --------------------------------------------------------------


def one_rejection(path: Path, words: list[str], row: int = 1) -> None:
    samples, rejections = run(path)
    assert len(samples) == 1
    (r,) = rejections
    assert r.source == f"{path}[{row}]"
    for w in words:
        assert w in r.reason


def test_bytes_that_do_not_decode(hf, tmp_path):
    path = hf_parquet(hf, tmp_path / "x.parquet", [image_bytes(0), b"GIF89a..."], [0, 1])
    one_rejection(path, ["not an image Pillow can read", "only JPEG and PNG"])


def test_a_null_image(tmp_path):
    path = arrow_file(
        tmp_path / "x.parquet", image=pa.array([image_bytes(0), None]), label=["a", "b"]
    )
    one_rejection(path, ["the image is null", "remove the row"])


def test_a_null_label(hf, tmp_path):
    path = hf_parquet(hf, tmp_path / "x.parquet", [image_bytes(0)] * 2, [0, None])
    one_rejection(path, ["the label is null", "label the row"])
    with open_input(path) as src:
        assert src.class_keys() == {"0"}


def test_an_image_stored_as_a_path_only(hf, tmp_path):
    """Dataset.to_parquet keeps only the path of an image given as a file path."""
    (tmp_path / "a.png").write_bytes(image_bytes(0))
    path = hf_parquet(hf, tmp_path / "x.parquet", [image_bytes(1), str(tmp_path / "a.png")], [0, 1])
    assert pq.read_table(path).column("image")[1].as_py()["bytes"] is None
    one_rejection(path, ["no bytes, only the path", "a.png", "push_to_hub"])


def test_unlabelled_rows_marked_minus_one(hf, tmp_path):
    path = hf_parquet(hf, tmp_path / "x.parquet", [image_bytes(0)] * 2, [2, -1])
    one_rejection(path, ["label -1 is negative", "no label"])


def test_a_label_the_classlabel_does_not_name(tmp_path):
    schema = pa.schema(
        [("image", pa.binary()), ("label", pa.int64())],
        metadata={"huggingface": json.dumps(_hf_features(["no", "yes"]))},
    )
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table([[image_bytes(0)] * 2, [1, 2]], schema=schema), path)
    one_rejection(path, ["label 2 is not a class", "2 classes (0 to 1)"])


def test_a_split_cell_that_is_no_split(tmp_path):
    path = arrow_file(
        tmp_path / "x.parquet", image=[image_bytes(0)] * 2, label=[0, 1], split=["test", "dev"]
    )
    one_rejection(path, ["split 'dev' is not train, val or test", "file name's split"])


# --- unusable files -------------------------------------------------------------


def open_error(path: Path) -> str:
    with pytest.raises(InputError) as e:
        with open_input(path):
            pass
    return str(e.value)


def test_no_image_column(tmp_path):
    path = arrow_file(tmp_path / "x.parquet", picture=[image_bytes(0)], label=[0])
    msg = open_error(path)
    assert f"{path} has no image column" in msg and "columns: picture, label" in msg


def test_an_image_column_of_another_type(tmp_path):
    msg = open_error(arrow_file(tmp_path / "x.parquet", image=["a.png"], label=[0]))
    assert "image column has type string" in msg and "struct<bytes, path>" in msg


def test_no_label_column(tmp_path):
    msg = open_error(arrow_file(tmp_path / "x.parquet", image=[image_bytes(0)], labels=[0]))
    assert "has no label column" in msg and "columns: image, labels" in msg


def test_a_label_column_of_another_type(tmp_path):
    msg = open_error(arrow_file(tmp_path / "x.parquet", image=[image_bytes(0)], label=[0.0]))
    assert "label column has type double" in msg and "integers" in msg and "strings" in msg


def test_a_corrupt_file(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"PAR1 not really")
    assert "is not a readable Parquet file" in open_error(tmp_path / "train.parquet")


def test_files_with_different_class_names(tmp_path):
    schema = pa.schema([("image", pa.binary()), ("label", pa.int64())])
    for name, names in (("a", ["cat", "dog"]), ("b", ["dog", "cat"])):
        meta = {"huggingface": json.dumps(_hf_features(names))}
        table = pa.table([[image_bytes(0)], [0]], schema=schema.with_metadata(meta))
        pq.write_table(table, tmp_path / f"{name}.parquet")
    assert "names its ClassLabel classes ['dog', 'cat']" in open_error(tmp_path)


def test_integer_and_string_labels_mixed(tmp_path):
    arrow_file(tmp_path / "a.parquet", image=[image_bytes(0)], label=[0])
    arrow_file(tmp_path / "b.parquet", image=[image_bytes(0)], label=["cat"])
    assert "integer labels and some string labels" in open_error(tmp_path)


def test_no_rows(hf, tmp_path):
    arrow_file(tmp_path / "a.parquet", image=pa.array([], pa.binary()), label=pa.array([], "int64"))
    assert "holds no rows" in open_error(tmp_path)


def _hf_features(names: list[str]) -> dict:
    """The ``huggingface`` metadata datasets writes for an Image and a ClassLabel column."""
    return {
        "info": {
            "features": {
                "image": {"_type": "Image"},
                "label": {"names": names, "_type": "ClassLabel"},
            }
        }
    }
