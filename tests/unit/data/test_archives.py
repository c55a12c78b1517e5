"""tar archives (next to zip): every input format inside one loads like the unpacked original."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from signdb.data import Sample, iter_samples
from signdb.data.formats.archive import ARCHIVE_SUFFIXES, is_archive, safe_extract_tar
from signdb.errors import InputError, UnsafeArchive
from tests.unit.data.test_formats_manifest import (
    PREP,
    image_bytes,
    load_tree,
    manifest_rows,
    run,
    same_images,
    write_manifest,
    write_tree,
)
from tests.unit.data.test_formats_parquet import offline_datasets, write_hub_layout

MODES = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}


def tar_dir(src: Path, dest: Path, wrapper: str = "") -> Path:
    mode = next(m for suffix, m in MODES.items() if dest.name.endswith(suffix))
    with tarfile.open(dest, mode) as tf:
        for f in sorted(src.rglob("*")):
            tf.add(f, f"{wrapper}{f.relative_to(src).as_posix()}", recursive=False)
    return dest


@pytest.fixture(scope="session")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    yield from offline_datasets(tmp_path_factory)


@pytest.fixture
def tree_samples(tmp_path: Path) -> list[Sample]:
    return load_tree(tmp_path)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where archives are extracted, so a test can see the temporary folder go."""
    d = tmp_path / "scratch"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


# --- every format inside a tar --------------------------------------------------


@pytest.mark.parametrize("wrapper", ["", "Dataset/"])
def test_tar_gz_of_a_folder_tree(tmp_path, tree_samples, scratch, wrapper):
    tree = write_tree(tmp_path / "tree")
    archive = tar_dir(tree, tmp_path / "tree.tar.gz", wrapper)
    samples, rejections = run(archive)
    assert rejections == []
    same_images(samples, tree_samples)
    assert [s.class_key for s in samples] == [s.class_key for s in tree_samples]
    assert samples[0].source == f"{archive}:{wrapper}test/cat/f.jpg"
    assert list(scratch.iterdir()) == []  # extracted files are cleaned up


def test_tar_gz_of_a_csv_manifest(tmp_path, tree_samples, scratch):
    root = write_manifest(tmp_path / "csv", manifest_rows())
    (root / "images" / "broken.png").write_bytes(b"")
    with open(root / "labels.csv", "a") as f:
        f.write("images/missing.png,cat,train\nimages/broken.png,cat,\n")
    archive = tar_dir(root, tmp_path / "manifest.tgz", "export/")
    samples, rejections = run(archive)
    same_images(samples, tree_samples)
    # Rows and files are named inside the archive, not by the temporary folder.
    assert [r.source for r in rejections] == [
        f"{archive}:export/labels.csv:10",
        f"{archive}:export/images/broken.png",
    ]
    assert list(scratch.iterdir()) == []


def test_tar_gz_of_parquet_files(hf, tmp_path, tree_samples, scratch):
    root = write_hub_layout(hf, tmp_path / "hub")
    archive = tar_dir(root, tmp_path / "hub.tar.gz")
    samples, rejections = run(archive)
    assert rejections == []
    same_images(samples, tree_samples)
    assert samples[0].source == f"{archive}:data/test-00000-of-00001.parquet[0]"
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("suffix", list(MODES))
def test_every_tar_flavour(tmp_path, tree_samples, suffix):
    archive = tar_dir(write_tree(tmp_path / "tree"), tmp_path / f"tree{suffix}")
    assert is_archive(archive) and suffix in ARCHIVE_SUFFIXES
    samples, _ = run(archive)
    same_images(samples, tree_samples)


def test_abandoned_tar_iteration_cleans_up(tmp_path, scratch):
    it = iter_samples(tar_dir(write_tree(tmp_path / "t"), tmp_path / "t.tar"), PREP, workers=2)
    next(it)
    it.close()
    assert list(scratch.iterdir()) == []


# --- tar-slip -------------------------------------------------------------------


def add(tf: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tf.addfile(info, io.BytesIO(data) if data else None)


EVIL = {
    "dotdot": ({"name": "../evil.png"}, "'..' in its path"),
    "nested-dotdot": ({"name": "0/../../evil.png"}, "'..' in its path"),
    "absolute": ({"name": "/etc/evil.png"}, "absolute path"),
    "symlink": (
        {"name": "0/link.png", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        "symlink to '/etc/passwd'",
    ),
    "hardlink": (
        {"name": "0/hard.png", "type": tarfile.LNKTYPE, "linkname": "0/fine.png"},
        "hard link to '0/fine.png'",
    ),
    "device": ({"name": "0/tty", "type": tarfile.CHRTYPE}, "device file"),
    "fifo": ({"name": "0/pipe", "type": tarfile.FIFOTYPE}, "device file or FIFO"),
}


@pytest.mark.parametrize("case", list(EVIL))
def test_tar_slip_is_refused_before_anything_is_written(tmp_path, scratch, case):
    attrs, words = EVIL[case]
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add(tf, "0/fine.png", image_bytes(0))  # a good member first: it must not land
        name = attrs.pop("name")
        add(tf, name, **attrs)
    dest = tmp_path / "out" / "inner"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchive) as e:
        safe_extract_tar(archive, dest)
    assert words in str(e.value) and repr(name) in str(e.value)
    assert "refusing to extract anything" in str(e.value)
    assert list(dest.iterdir()) == [] and list((tmp_path / "out").iterdir()) == [dest]
    with pytest.raises(UnsafeArchive, match="tar-slip"):
        iter_samples(archive, PREP)
    assert list(scratch.iterdir()) == []
    assert not Path("/etc/evil.png").exists()


# --- unreadable archives ----------------------------------------------------------


def test_not_a_tar(tmp_path, scratch):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="broken.tar.gz is not a readable tar archive"):
        iter_samples(archive, PREP)
    assert list(scratch.iterdir()) == []


def test_a_truncated_tar_gz(tmp_path, scratch):
    archive = tar_dir(write_tree(tmp_path / "tree"), tmp_path / "cut.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(InputError, match="not a readable tar archive.*re-download"):
        iter_samples(archive, PREP)
    assert list(scratch.iterdir()) == []


def test_a_truncated_plain_tar(tmp_path):
    archive = tar_dir(write_tree(tmp_path / "tree"), tmp_path / "cut.tar")
    archive.write_bytes(archive.read_bytes()[:1500])  # inside the first file's data
    with pytest.raises(InputError, match="not a readable tar archive"):
        safe_extract_tar(archive, tmp_path / "out")
