"""CSV manifests into Samples and Rejections, checked against the same images as a folder tree.

The fixture images (and the helpers the Parquet and archive tests share) are
made here with numpy and Pillow; nothing is read from the shared dataset.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from signdb.data import Preprocessing, Rejection, Sample, count_inputs, iter_samples, open_input
from signdb.errors import InputError

PREP = Preprocessing(size=16, color="rgb")

#: (split, class, file name) of the fixture images, in the order a pre-split
#: folder tree yields them (split folders, then classes, then files, sorted).
ITEMS = [
    ("test", "cat", "f.jpg"),
    ("test", "dog", "g.png"),
    ("train", "cat", "a.png"),
    ("train", "cat", "b.jpg"),
    ("train", "dog", "c.png"),
    ("train", "emu", "d.jpg"),
    ("train", "emu", "e.png"),
    ("val", "dog", "h.png"),
]
CLASSES = ["cat", "dog", "emu"]


def image_bytes(seed: int, suffix: str = ".png") -> bytes:
    """A small random RGB image encoded as PNG or JPEG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG" if suffix == ".jpg" else "PNG")
    return buf.getvalue()


def item_bytes() -> list[bytes]:
    return [image_bytes(i, Path(name).suffix) for i, (_, _, name) in enumerate(ITEMS)]


def write_tree(root: Path) -> Path:
    """ITEMS as a pre-split folder tree: ROOT/<split>/<class>/<file>."""
    for (split, cls, name), data in zip(ITEMS, item_bytes(), strict=True):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_bytes(data)
    return root


def write_manifest(root: Path, rows: list[str], header: str = "path,label,split") -> Path:
    """ITEMS under ROOT/images/ and a labels.csv of ``header`` and ``rows``."""
    root.mkdir(parents=True, exist_ok=True)
    for (_, _, name), data in zip(ITEMS, item_bytes(), strict=True):
        (root / "images").mkdir(exist_ok=True)
        (root / "images" / name).write_bytes(data)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root


def manifest_rows() -> list[str]:
    return [f"images/{name},{cls},{split}" for split, cls, name in ITEMS]


def run(path: Path, workers: int = 1) -> tuple[list[Sample], list[Rejection]]:
    items = list(iter_samples(path, PREP, workers=workers))
    assert count_inputs(path) == len(items)
    return (
        [i for i in items if isinstance(i, Sample)],
        [i for i in items if isinstance(i, Rejection)],
    )


def same_images(a: list[Sample], b: list[Sample]) -> None:
    """Same pixels, hashes and splits in the same order."""
    assert [s.sha256 for s in a] == [s.sha256 for s in b]
    assert [s.split for s in a] == [s.split for s in b]
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a, b, strict=True))


def load_tree(tmp_path: Path) -> list[Sample]:
    """ITEMS loaded from a folder tree: what every other format must reproduce."""
    samples, rejections = run(write_tree(tmp_path / "reference-tree"))
    assert rejections == [] and len(samples) == len(ITEMS)
    return samples


@pytest.fixture
def tree_samples(tmp_path: Path) -> list[Sample]:
    return load_tree(tmp_path)


# --- good manifests -------------------------------------------------------------


def test_manifest_matches_the_folder_tree(tmp_path, tree_samples):
    root = write_manifest(tmp_path / "csv", manifest_rows())
    samples, rejections = run(root)
    assert rejections == []
    same_images(samples, tree_samples)
    assert [s.class_key for s in samples] == [s.class_key for s in tree_samples]
    assert [s.split for s in samples] == [split for split, _, _ in ITEMS]
    assert samples[0].source == str(root / "images" / "f.jpg")  # named by its file
    with open_input(root) as src:
        assert src.format.name == "csv"
        assert src.class_keys() == set(CLASSES)
        assert src.count() == len(ITEMS)
        assert src.index_names() is None


def test_a_csv_file_given_directly_with_excel_habits(tmp_path, tree_samples):
    """Any .csv name, a BOM, CRLF, spaced and capitalised headers, backslashes, extra columns."""
    root = write_manifest(tmp_path / "csv", [])
    rows = [f" images\\{name} ,{cls} , {split.upper()},x" for split, cls, name in ITEMS]
    csv = root / "manifest.csv"
    csv.write_bytes(
        "\ufeff Filename ,LABEL, Split ,notes\r\n".encode() + "\r\n".join(rows).encode() + b"\r\n"
    )
    (root / "labels.csv").unlink()
    samples, rejections = run(csv)
    assert rejections == []
    same_images(samples, tree_samples)
    assert {s.class_key for s in samples} == set(CLASSES)


@pytest.mark.parametrize("column", ["path", "file", "filename", "image", "IMAGE"])
def test_every_path_column_name(tmp_path, column):
    root = write_manifest(tmp_path, ["images/a.png,cat"], header=f"{column},label")
    samples, _ = run(root)
    assert [(s.class_key, s.split) for s in samples] == [("cat", None)]


def test_the_leftmost_path_column_wins(tmp_path):
    root = write_manifest(tmp_path, ["images/a.png,cat,nope.png"], header="file,label,image")
    samples, rejections = run(root)
    assert len(samples) == 1 and rejections == []


def test_integer_labels_and_val_spellings(tmp_path):
    rows = ["images/a.png,0,valid", "images/b.jpg,1,Validation", "images/c.png, 7 ,val"]
    root = write_manifest(tmp_path, [*rows, "images/e.png,1,"])
    samples, _ = run(root)
    assert [(s.class_key, s.split) for s in samples] == [
        ("0", "val"),
        ("1", "val"),
        ("7", "val"),
        ("1", None),  # an empty split cell: no split
    ]
    with open_input(root) as src:
        assert src.class_keys() == {"0", "1", "7"}


def test_duplicate_rows_and_blank_lines_are_fine(tmp_path):
    root = write_manifest(tmp_path, ["images/a.png,cat", "", "images/a.png,cat", ",,"])
    samples, rejections = run(root)
    assert rejections == [] and len(samples) == 2
    assert samples[0].sha256 == samples[1].sha256  # dedup by pixels happens later


# --- rejected rows --------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("images/nope.png,cat,train", ["file not found", "'images/nope.png'", "fix the path"]),
        ("images/a.png,,train", ["label of 'images/a.png' is empty", "class name"]),
        ("images/a.png, ,train", ["is empty"]),
        ("images/a.png,cat,dev", ["split 'dev' is not train, val or test", "leave it empty"]),
        ("/etc/passwd,cat,", ["'/etc/passwd' is absolute", "relative to the CSV's folder"]),
        ("C:\\data\\a.png,cat,", ["is absolute"]),
        ("../outside.png,cat,", ["leads outside the CSV's folder", "move the image"]),
        ("images/../../x.png,cat,", ["leads outside"]),
        ("images,cat,", ["is a folder, not an image file"]),
        (",cat,", ["path cell is empty"]),
        ("a.png,cat,train,extra", ["4 cells", "header has 3 columns", "quote"]),
    ],
    ids=[
        "missing-file",
        "empty-label",
        "blank-label",
        "bad-split",
        "absolute",
        "windows-absolute",
        "dotdot",
        "dotdot-inside",
        "folder",
        "empty-path",
        "extra-cells",
    ],
)
def test_bad_rows_are_rejected_by_row_number(tmp_path, row, words):
    (tmp_path / "outside.png").write_bytes(image_bytes(0))  # exists, but out of bounds
    root = write_manifest(tmp_path / "csv", ["images/b.jpg,dog,train", "", row])
    samples, rejections = run(root)
    assert len(samples) == 1
    (rejection,) = rejections
    assert rejection.source == f"{root / 'labels.csv'}:4"  # header 1, b.jpg 2, blank 3
    for w in words:
        assert w in rejection.reason
    with open_input(root) as src:
        assert src.class_keys() == {"dog"}  # a rejected row brings no class


def test_a_path_inside_the_folder_may_use_dotdot(tmp_path):
    root = write_manifest(tmp_path, ["images/../images/a.png,cat"])
    samples, rejections = run(root)
    assert len(samples) == 1 and rejections == []


def test_a_file_that_does_not_decode_is_named_by_its_path(tmp_path):
    root = write_manifest(tmp_path, ["images/bad.png,cat", "images/a.png,cat"])
    (root / "images" / "bad.png").write_text("not an image")
    samples, rejections = run(root)
    assert len(samples) == 1
    assert rejections[0].source == str(root / "images" / "bad.png")
    assert "not an image Pillow can read" in rejections[0].reason


def test_a_short_row_reads_missing_cells_as_empty(tmp_path):
    root = write_manifest(tmp_path, ["images/a.png,cat", "images/b.jpg"])
    samples, rejections = run(root)
    assert [s.split for s in samples] == [None]
    assert "is empty" in rejections[0].reason and rejections[0].source.endswith(":3")


# --- unusable manifests ---------------------------------------------------------


def open_error(path: Path) -> str:
    with pytest.raises(InputError) as e:
        iter_samples(path, PREP)
    return str(e.value)


def test_no_path_column(tmp_path):
    root = write_manifest(tmp_path, ["a.png,cat"], header="picture,label")
    msg = open_error(root)
    assert "labels.csv has no path column" in msg
    assert "columns found: 'picture', 'label'" in msg
    assert "path, file, filename, image" in msg


def test_a_semicolon_csv_gets_a_hint(tmp_path):
    msg = open_error(write_manifest(tmp_path, ["a.png;cat"], header="path;label"))
    assert "no path column" in msg and "signdb reads commas" in msg


def test_no_label_column(tmp_path):
    msg = open_error(write_manifest(tmp_path, ["images/a.png,cat"], header="path,class"))
    assert "labels.csv has no label column" in msg
    assert "'path', 'class'" in msg and "'label'" in msg


def test_an_empty_csv(tmp_path):
    root = write_manifest(tmp_path, [])
    (root / "labels.csv").write_bytes(b"")
    assert "labels.csv is empty" in open_error(root) and "header row" in open_error(root)


def test_a_header_without_rows(tmp_path):
    msg = open_error(write_manifest(tmp_path, ["", ""]))
    assert "has a header but no rows" in msg


def test_not_utf8_anywhere_in_the_file(tmp_path):
    root = write_manifest(tmp_path, [f"images/a.png,cat{i}" for i in range(3000)])
    with open(root / "labels.csv", "ab") as f:
        f.write("images/b.jpg,chat-é\n".encode("latin-1"))  # last line: found at open
    msg = open_error(root)
    assert "labels.csv is not UTF-8 text" in msg and "b'\\xe9'" in msg and "CSV UTF-8" in msg


def test_utf16_is_named(tmp_path):
    root = write_manifest(tmp_path, ["images/a.png,cat"])
    (root / "labels.csv").write_bytes("path,label\nimages/a.png,cat\n".encode("utf-16"))
    assert "labels.csv is UTF-16 text" in open_error(root)


def test_a_cell_the_csv_module_cannot_read(tmp_path):
    root = write_manifest(tmp_path, ["images/a.png,cat", f'images/b.jpg,"{"x" * 200_000}"'])
    msg = open_error(root)
    assert "row 3: not readable as CSV" in msg and "field larger than field limit" in msg


def test_a_labels_csv_beats_the_folder_tree_it_sits_in(tmp_path):
    root = write_tree(tmp_path / "both")
    (root / "labels.csv").write_text("path,label\ntrain/cat/a.png,kitten\n")
    samples, _ = run(root)
    assert [s.class_key for s in samples] == ["kitten"]
