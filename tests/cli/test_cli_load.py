"""`signdb load` through the real entry point: the reference dataset, bad inputs, names, races."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import signdb, signdb_popen

REFERENCE_COUNTS = {"0": 205, "1": 206, "2": 206, "3": 206, "4": 207,
                    "5": 207, "6": 207, "7": 206, "8": 208, "9": 204}  # fmt: skip


def copy_subset(shared: Path, dest: Path, per_label: int) -> Path:
    """A folder-per-label tree with the first ``per_label`` images of each label."""
    for label_dir in sorted(p for p in shared.iterdir() if p.is_dir()):
        (dest / label_dir.name).mkdir(parents=True)
        for f in sorted(label_dir.iterdir())[:per_label]:
            shutil.copy(f, dest / label_dir.name / f.name)
    return dest


def a_jpeg(shared: Path) -> bytes:
    return min((shared / "0").iterdir()).read_bytes()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds none: a bomb's header."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def dataset_rows(pg, name: str) -> tuple[int, int]:
    """(images in dataset ``name``, datasets called ``name``)."""
    images = pg.execute(
        "SELECT count(*) FROM signdb.images i JOIN signdb.datasets d ON d.id = i.dataset_id "
        "WHERE d.name = %s",
        [name],
    ).fetchone()[0]
    datasets = pg.execute("SELECT count(*) FROM signdb.datasets WHERE name = %s", [name]).fetchone()
    return images, datasets[0]


def load_json(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    result = signdb("load", *args, "--json")
    return result, (json.loads(result.stdout) if result.returncode == 0 else None)


# --- the reference dataset -------------------------------------------------------


def test_reference_dataset_loads_exactly_once(db_url, shared_dataset):
    first, out = load_json(str(shared_dataset), "--dataset", "digits")
    assert first.returncode == 0, first.stderr
    assert out == {
        "dataset": "digits",
        "added": 2062,
        "skipped_duplicates": 0,
        "rejected": 0,
        "images": 2062,
        "classes": [str(d) for d in range(10)],
        "rejections": [],
        "warnings": [],
    }
    # Not a terminal: no progress bar, nothing at all on stderr.
    assert first.stderr == ""
    show = json.loads(signdb("datasets", "show", "digits", "--json").stdout)
    assert show["labels"] == REFERENCE_COUNTS
    assert show["preprocessing"] == {"size": 64, "color": "gray", "resample": "lanczos"}

    again, out = load_json(str(shared_dataset), "--dataset", "digits")
    assert again.returncode == 0, again.stderr
    assert (out["added"], out["skipped_duplicates"], out["images"]) == (0, 2062, 2062)


# --- bad inputs: skipped and reported by default ---------------------------------

FOLDER_CASES = {
    # case: (relative path of the bad input, its bytes or None for a folder, key words)
    "not_an_image": (
        "1/notes.jpg",
        b"these are not the pixels you are looking for",
        "not an image",
    ),
    "zero_bytes": ("1/empty.jpg", b"", "0 bytes"),
    "truncated": ("1/cut.jpg", "half-jpeg", "truncated or corrupt JPEG"),
    "decompression_bomb": ("1/huge.png", png_header_only(20_000, 20_000), "too large to decode"),
    "empty_class_folder": ("2", None, "class folder is empty"),
    "not_jpeg_or_png": ("1/readme.txt", b"hello", "not a JPEG or PNG"),
}


def _tree_with_bad_inputs(shared: Path, root: Path) -> dict[str, Path]:
    """One good image plus one bad input per case; returns where each bad one is."""
    jpeg = a_jpeg(shared)
    (root / "0").mkdir(parents=True)
    (root / "0" / "good.jpg").write_bytes(jpeg)
    where = {}
    for case, (rel, content, _) in FOLDER_CASES.items():
        target = where[case] = root / rel
        if content is None:
            target.mkdir(parents=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if content == "jpeg":
            content = jpeg
        elif content == "half-jpeg":
            content = jpeg[: len(jpeg) // 2]
        target.write_bytes(content)
    return where


def test_bad_files_are_skipped_and_each_is_reported(db_url, shared_dataset, tmp_path):
    # One load for every case: each CLI run costs a second or two of start-up.
    where = _tree_with_bad_inputs(shared_dataset, tmp_path / "tree")
    result, out = load_json(str(tmp_path / "tree"), "--dataset", "d")
    assert result.returncode == 0, result.stderr
    assert (out["added"], out["rejected"], out["images"]) == (1, len(FOLDER_CASES), 1)
    reasons = {r["source"].rstrip("/"): r["reason"] for r in out["rejections"]}
    lines = result.stderr.splitlines()
    assert len(lines) == len(FOLDER_CASES)
    for case, path in where.items():
        keywords = FOLDER_CASES[case][2]
        assert keywords in reasons[str(path)], case
        assert any(line.startswith(f"rejected: {path}") and keywords in line for line in lines), (
            case
        )


def test_strict_writes_nothing(db_url, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=2)
    bad = tree / "9" / "cut.jpg"  # sorted last: the good images come first
    bad.write_bytes(a_jpeg(shared_dataset)[:500])
    result = signdb("load", str(tree), "--dataset", "d", "--strict", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert str(bad) in line and "truncated" in line and "--strict" in line
    assert dataset_rows(pg, "d") == (0, 0)


def test_only_bad_inputs_is_an_error(db_url, pg, tmp_path):
    (tmp_path / "tree" / "3").mkdir(parents=True)
    (tmp_path / "tree" / "3" / "a.jpg").write_bytes(b"")
    result = signdb("load", str(tmp_path / "tree"), "--dataset", "d")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("rejected: ") and "0 bytes" in lines[0]
    assert "nothing was loaded" in lines[-1] and "1 input(s) rejected" in lines[-1]
    assert dataset_rows(pg, "d") == (0, 0)


# --- bad inputs that make the whole input unusable -------------------------------


def _npy_pair(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "X.npy", x)
    np.save(root / "Y.npy", y)
    return root


@pytest.mark.parametrize(
    ("case", "keywords"),
    [
        ("missing_path", "no such file or folder"),
        ("empty_folder", "nothing to load"),
        ("length_mismatch", "4 images and 3 labels"),
        ("wrong_ndim", "expected (n, h, w) or (n, h, w, c)"),
    ],
)
def test_unusable_input_exits_1_with_one_line(db_url, pg, tmp_path, case, keywords):
    path = tmp_path / "input"
    if case == "empty_folder":
        path.mkdir()
    elif case == "length_mismatch":
        _npy_pair(path, np.zeros((4, 8, 8), np.uint8), np.zeros(3, np.int64))
    elif case == "wrong_ndim":
        _npy_pair(path, np.zeros((4, 64), np.uint8), np.zeros(4, np.int64))
    result = signdb("load", str(path), "--dataset", "d", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert keywords in line
    assert dataset_rows(pg, "d") == (0, 0)


def test_bad_npy_rows_are_skipped_and_named_by_index(db_url, pg, tmp_path):
    x = np.random.default_rng(0).random((5, 8, 8))
    x[1, 3, 4] = np.nan
    x[2, 0, 1] = 1.5
    x[3, 7, 7] = -0.25
    root = _npy_pair(tmp_path / "pair", x, np.array([0, 1, 0, 1, 1]))
    result, out = load_json(str(root), "--dataset", "d")
    assert result.returncode == 0, result.stderr
    assert (out["added"], out["rejected"]) == (2, 3)
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == [f"{root / 'X.npy'}[{i}]" for i in (1, 2, 3)]
    assert "pixel (3, 4) is nan" in lines[0] and "pixel (0, 1) is 1.5" in lines[1]
    assert all("must be finite and within [0, 1]" in line for line in lines)

    strict = signdb("load", str(root), "--dataset", "s", "--strict")
    assert strict.returncode == 1
    assert "X.npy[1]" in strict.stderr
    assert dataset_rows(pg, "s") == (0, 0)


def test_out_of_range_integer_pixels_are_rejected(db_url, tmp_path):
    x = np.full((2, 8, 8), 100, np.int16)
    x[0, 2, 2] = 300
    root = _npy_pair(tmp_path / "pair", x, np.array([[1, 0], [0, 1]]))
    result, out = load_json(str(root), "--dataset", "d")
    assert result.returncode == 0, result.stderr
    assert (out["added"], out["rejected"]) == (1, 1)
    assert "X.npy[0]: pixel (2, 2) is 300" in result.stderr
    assert "within 0..255" in result.stderr


# --- options and names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "keywords"),
    [
        (["--size", "4"], "Invalid value for '--size': 4 is not in the range 8<=x<=1024"),
        (["--color", "blue"], "Invalid value for '--color'"),
        (["--workers", "0"], "Invalid value for '--workers'"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, args, keywords):
    result = signdb("load", str(tmp_path), "--dataset", "d", *args)
    assert result.returncode == 2
    assert keywords in result.stderr


def test_mismatched_preprocessing_is_refused(db_url, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    assert signdb("load", str(tree), "--dataset", "d").returncode == 0
    result = signdb("load", str(tree), "--dataset", "d", "--size", "32", "--color", "rgb")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "dataset 'd' was loaded with --size 64 --color gray" in line
    assert "not --size 32 --color rgb" in line
    assert "choose another --dataset name" in line
    assert dataset_rows(pg, "d") == (10, 1)


def test_names_are_stored_literally(db_url, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    names = ["'; DROP TABLE signdb.runs; --", 'o\'brien "数字 ✋" \\ %s $1']
    result, out = load_json(str(tree), "--dataset", names[0])
    assert result.returncode == 0, result.stderr
    assert out["dataset"] == names[0] and out["images"] == 10
    human = signdb("load", str(tree), "--dataset", names[1])  # and the human summary
    assert human.returncode == 0, human.stderr
    assert human.stdout == (
        f"dataset {names[1]!r}: added 10, skipped 0 duplicate(s), rejected 0; "
        "it now holds 10 images in 10 classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)\n"
    )
    listed = json.loads(signdb("datasets", "list", "--json").stdout)["datasets"]
    assert sorted(d["name"] for d in listed) == sorted(names)
    assert json.loads(signdb("datasets", "show", names[0], "--json").stdout)["name"] == names[0]
    assert pg.execute("SELECT to_regclass('signdb.runs') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize(
    ("name", "keywords"),
    [("", "dataset name is empty"), ("x" * 201, "201 characters long; use at most 200")],
)
def test_unstorable_names_are_refused(db_url, pg, shared_dataset, tmp_path, name, keywords):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    result = signdb("load", str(tree), "--dataset", name)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert keywords in line
    assert pg.execute("SELECT count(*) FROM signdb.datasets").fetchone()[0] == 0


# --- concurrency ---------------------------------------------------------------------


def test_two_concurrent_loads_end_with_the_exact_set(db_url, pg, shared_dataset, tmp_path):
    # 30 per label = 300 images: more than one batch, so the loads interleave.
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=30)
    procs = [
        signdb_popen("load", str(tree), "--dataset", "d", "--json",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert sum(r["added"] for r in results) == 300
    assert sum(r["skipped_duplicates"] for r in results) == 300
    # Whichever finished last saw the whole set.
    assert max(r["images"] for r in results) == 300
    assert dataset_rows(pg, "d") == (300, 1)
    dupes = pg.execute("SELECT count(*) - count(DISTINCT sha256) FROM signdb.images").fetchone()[0]
    assert dupes == 0


def test_progress_bar_only_on_a_terminal(db_url, shared_dataset, tmp_path):
    import fcntl
    import os
    import pty
    import sys
    import termios

    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    (tree / "9" / "empty.jpg").write_bytes(b"")
    leader, follower = pty.openpty()
    # A new pty is 0 columns wide, and tqdm draws nothing in zero columns.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.run(
        [sys.executable, "-m", "signdb", "load", str(tree), "--dataset", "d"],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        timeout=120,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the terminal has no writer left
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal
    assert "loading" in terminal and "/11" in terminal  # total: every input, bad ones too
    assert f"rejected: {tree / '9' / 'empty.jpg'}: file is empty" in terminal
    assert "loading" not in proc.stdout  # the bar never goes to stdout
