"""``signdb datasets fetch`` against file:// archives built from the shared dataset."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from pathlib import Path

import pytest

from signdb.data import REGISTRY, Preprocessing, Sample, iter_samples
from signdb.data.fetch import UnpinnedChecksumWarning, fetch_dataset
from signdb.errors import FetchError, InvalidArgument, NotFound, UnsafeArchive

ROOT = REGISTRY["sign-language-digits"].archive_root  # as in GitHub's archive of master


def build_archive(dataset_dir: Path, dest: Path, root: str = ROOT, per_label: int = 2) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("Sign-Language-Digits-Dataset-master/README.md", "readme")
        for label_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
            for f in sorted(label_dir.iterdir())[:per_label]:
                zf.write(f, f"{root}/{label_dir.name}/{f.name}")
    return dest


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.fixture
def archive(dataset_dir, tmp_path) -> Path:
    return build_archive(dataset_dir, tmp_path / "master.zip")


@pytest.fixture
def count_urlopen(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = urllib.request.urlopen

    def counting(url, *a, **kw):
        calls.append(url)
        return real(url, *a, **kw)

    monkeypatch.setattr(urllib.request, "urlopen", counting)
    return calls


def test_fetch_verifies_unpacks_and_is_cached(archive, tmp_path, count_urlopen):
    cache = tmp_path / "cache"
    digest = sha(archive)
    progress: list[tuple[int, int | None]] = []
    path = fetch_dataset(
        url=archive.as_uri(),
        sha256=digest,
        cache_dir=cache,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert path == cache / "sign-language-digits" / digest[:12] / ROOT
    assert sorted(p.name for p in path.iterdir()) == [str(i) for i in range(10)]
    assert progress[-1][0] == archive.stat().st_size
    samples = [s for s in iter_samples(path, Preprocessing(), workers=1) if isinstance(s, Sample)]
    assert len(samples) == 20
    assert (cache / "sign-language-digits" / f"{digest}.zip").is_file()

    archive.unlink()  # a second fetch must not need the source at all
    assert fetch_dataset(url=archive.as_uri(), sha256=digest, cache_dir=cache) == path
    assert count_urlopen == [archive.as_uri()]
    assert not [p for p in cached_files(cache) if p.name.startswith(".")]  # no temp leftovers


def test_cached_archive_is_unpacked_again_without_download(archive, tmp_path, count_urlopen):
    cache = tmp_path / "cache"
    digest = sha(archive)
    path = fetch_dataset(url=archive.as_uri(), sha256=digest, cache_dir=cache)
    shutil.rmtree(cache / "sign-language-digits" / digest[:12])
    archive.unlink()
    assert fetch_dataset(url=archive.as_uri(), sha256=digest, cache_dir=cache) == path
    assert path.is_dir() and len(count_urlopen) == 1


def test_wrong_checksum_leaves_nothing(archive, tmp_path):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(FetchError) as e:
        fetch_dataset(url=archive.as_uri(), sha256=wrong, cache_dir=cache)
    msg = str(e.value)
    assert "checksum mismatch" in msg and wrong in msg and sha(archive) in msg
    assert f"--sha256 {sha(archive)}" in msg
    assert cached_files(cache) == []
    assert not (cache / "sign-language-digits").exists()


def test_unpinned_url_is_trusted_on_first_use_and_recorded(archive, tmp_path, count_urlopen):
    cache = tmp_path / "cache"
    with pytest.warns(UnpinnedChecksumWarning, match=sha(archive)):
        path = fetch_dataset(url=archive.as_uri(), cache_dir=cache)
    assert sorted(p.name for p in path.iterdir()) == [str(i) for i in range(10)]
    archive.unlink()
    assert fetch_dataset(url=archive.as_uri(), cache_dir=cache) == path  # recorded: no warning
    assert len(count_urlopen) == 1


def test_archive_with_another_layout_is_found(dataset_dir, tmp_path):
    z = build_archive(dataset_dir, tmp_path / "mirror.zip", root="mirror/data/images")
    path = fetch_dataset(url=z.as_uri(), sha256=sha(z), cache_dir=tmp_path / "cache")
    assert path.name == "images" and (path / "9").is_dir()


def test_archive_without_labels(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("docs/readme.txt", "no images here")
    with pytest.raises(FetchError, match="no folder with one subfolder per label"):
        fetch_dataset(url=z.as_uri(), sha256=sha(z), cache_dir=tmp_path / "cache")


def test_zip_slip_archive_is_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(UnsafeArchive, match="zip-slip"):
        fetch_dataset(url=z.as_uri(), sha256=sha(z), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()


def test_download_failure(tmp_path):
    with pytest.raises(FetchError, match="could not download .*missing.zip.*--url"):
        fetch_dataset(
            url=(tmp_path / "missing.zip").as_uri(), sha256="a" * 64, cache_dir=tmp_path / "c"
        )
    assert cached_files(tmp_path / "c") == []


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"name": "mnist"}, NotFound, ["'mnist'", "sign-language-digits"]),
        ({"url": "ftp://example.org/x.zip"}, InvalidArgument, ["'ftp'", "https://"]),
        ({"url": "file:///x.zip", "sha256": "abc"}, InvalidArgument, ["'abc'", "sha256sum"]),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, words):
    with pytest.raises(error) as e:
        fetch_dataset(cache_dir=tmp_path, **kwargs)
    for w in words:
        assert w in str(e.value)


def test_registry_entry():
    spec = REGISTRY["sign-language-digits"]
    assert spec.url.startswith("https://github.com/ardamavi/Sign-Language-Digits-Dataset/")
    assert spec.license == "Apache-2.0" and spec.archive_root.endswith("/Dataset")


def test_registry_content_pin_matches_the_reference_copy(dataset_dir):
    from signdb.data.fetch import content_sha256

    assert content_sha256(dataset_dir) == REGISTRY["sign-language-digits"].content_sha256


def _as_registry_url(monkeypatch, archive: Path, content: str) -> None:
    import dataclasses

    spec = dataclasses.replace(
        REGISTRY["sign-language-digits"], url=archive.as_uri(), sha256=None, content_sha256=content
    )
    monkeypatch.setitem(REGISTRY, "sign-language-digits", spec)


def test_registry_download_is_verified_by_content(archive, dataset_dir, tmp_path, monkeypatch):
    import warnings

    from signdb.data.fetch import content_sha256

    reference = tmp_path / "reference"
    for label_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        (reference / label_dir.name).mkdir(parents=True)
        for f in sorted(label_dir.iterdir())[:2]:
            shutil.copy(f, reference / label_dir.name / f.name)
    _as_registry_url(monkeypatch, archive, content_sha256(reference))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedChecksumWarning)  # the content pin is enough
        root = fetch_dataset(cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in root.iterdir()) == [str(i) for i in range(10)]


def test_registry_download_with_other_content_is_refused(archive, tmp_path, monkeypatch):
    _as_registry_url(monkeypatch, archive, "0" * 64)
    with pytest.raises(FetchError, match="not the pinned sign-language-digits dataset"):
        fetch_dataset(cache_dir=tmp_path / "cache")
    assert [p for p in cached_files(tmp_path / "cache") if p.suffix != ".json"] == []
