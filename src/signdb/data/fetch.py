"""``signdb datasets fetch``: download a public dataset once, verified, into a cache.

Cache layout, under ``cache_dir``::

    <name>/<sha256>.zip        the verified archive (renamed in only after the check)
    <name>/<sha256[:12]>/      the unpacked archive (renamed in only when complete)
    <name>/sources.json        URL -> sha256 recorded for URLs without a pinned checksum

A second fetch of the same archive finds it there and downloads nothing.

Checksums: a URL is verified against ``sha256`` when given, else against the
registry's pinned value for the registry URL. The registry URL is a generated
archive whose bytes the host may change, so its *content* is pinned instead
(:func:`content_sha256` over every unpacked file). Any other URL with no known checksum is
trusted on first use: its sha256 is computed, recorded in ``sources.json`` (later
fetches are verified against it) and reported with an
:class:`UnpinnedChecksumWarning` so a person can pin it with ``--sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signdb.data.formats.archive import safe_extract_zip
from signdb.data.labels import parse_label
from signdb.errors import FetchError, InvalidArgument, NotFound

#: ``progress(bytes_done, bytes_total_or_None)`` after every block downloaded.
DownloadProgress = Callable[[int, int | None], None]

_BLOCK = 1 << 20
_TIMEOUT_S = 60
_SCHEMES = ("http", "https", "file")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class UnpinnedChecksumWarning(UserWarning):
    """A download was accepted without a checksum to compare it with."""


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str
    sha256: str | None  # None: not pinned yet, trusted on first use (see module doc)
    archive_root: str  # folder inside the archive holding one subfolder per label
    license: str
    # sha256 of the unpacked content (see content_sha256): unlike the bytes of a
    # generated archive, it stays the same when the host re-packs the files.
    content_sha256: str | None = None


REGISTRY: dict[str, RemoteDataset] = {
    "sign-language-digits": RemoteDataset(
        name="sign-language-digits",
        url="https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/refs/heads/master.zip",
        # TODO: pin after the first download. The machines this was written on
        # cannot reach GitHub, so the archive's digest could not be computed;
        # until then the first fetch records it (trust on first use) and warns.
        sha256=None,
        archive_root="Sign-Language-Digits-Dataset-master/Dataset",
        license="Apache-2.0",
        # Computed from the reference copy of the 2062 images (../shared).
        content_sha256="87eb3d0c3b6ff7a00275ef34b43ebe2ed981375918e61d82be702f385fc37e52",
    ),
}


def fetch_dataset(
    name: str = "sign-language-digits",
    *,
    url: str | None = None,
    sha256: str | None = None,
    cache_dir: Path,
    progress: DownloadProgress | None = None,
) -> Path:
    """Download (or find in the cache) and unpack ``name``; return its folder-per-label root."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise NotFound(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    src_url = url or spec.url
    scheme = urllib.parse.urlsplit(src_url).scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidArgument(
            f"cannot fetch {src_url!r}: URL scheme {scheme or 'missing'!r} is not one of "
            f"{', '.join(_SCHEMES)}; pass an https:// or file:// URL"
        )
    expected = _check_sha256(sha256) if sha256 else None
    if expected is None and src_url == spec.url:
        expected = spec.sha256
    cache_dir = Path(cache_dir)
    ds_dir = cache_dir / name
    pinned = expected is not None
    if expected is None:
        expected = _recorded_sources(ds_dir).get(src_url)

    if expected is not None:
        hit = _from_cache(ds_dir, expected, spec)
        if hit is not None:
            return hit

    archive, actual = _download(src_url, cache_dir, ds_dir, expected, progress)
    root = _unpack(archive, ds_dir / actual[:12], spec)
    content_pinned = not pinned and src_url == spec.url and spec.content_sha256 is not None
    if content_pinned:
        got = content_sha256(root)
        if got != spec.content_sha256:
            shutil.rmtree(ds_dir / actual[:12], ignore_errors=True)
            archive.unlink(missing_ok=True)
            raise FetchError(
                f"the images downloaded from {src_url} are not the pinned {name} dataset "
                f"(content sha256 {got}, expected {spec.content_sha256}); the download was "
                "deleted. Fetch again, or pass --url/--sha256 for a copy you trust"
            )
    if not pinned:
        _record_source(ds_dir, src_url, actual)
        if expected is None and not content_pinned:
            warnings.warn(
                f"{src_url} has no pinned checksum; accepted it with sha256 {actual}. "
                f"Check that value and pass --sha256 {actual} to pin it",
                UnpinnedChecksumWarning,
                stacklevel=2,
            )
    return root


def content_sha256(root: Path) -> str:
    """sha256 over ``<label>/<file> <sha256 of file>`` lines, sorted: a dataset's content."""
    lines = sorted(
        f"{p.relative_to(root).as_posix()} {_file_sha256(p)}"
        for p in root.glob("*/*")
        if p.is_file() and not p.name.startswith(".")
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _check_sha256(value: str) -> str:
    v = value.strip().lower()
    if not _SHA256.fullmatch(v):
        raise InvalidArgument(
            f"--sha256 must be 64 hexadecimal characters, got {value!r}; "
            "compute it with `sha256sum FILE`"
        )
    return v


def _recorded_sources(ds_dir: Path) -> dict[str, str]:
    try:
        return dict(json.loads((ds_dir / "sources.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _record_source(ds_dir: Path, url: str, digest: str) -> None:
    sources = _recorded_sources(ds_dir)
    sources[url] = digest
    tmp = ds_dir / ".sources.json.tmp"
    tmp.write_text(json.dumps(sources, indent=2, sort_keys=True))
    os.replace(tmp, ds_dir / "sources.json")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _from_cache(ds_dir: Path, digest: str, spec: RemoteDataset) -> Path | None:
    unpacked = ds_dir / digest[:12]
    if unpacked.is_dir():  # renamed into place only once complete
        return _label_root(unpacked, spec)
    archive = ds_dir / f"{digest}.zip"
    if archive.is_file():
        if _file_sha256(archive) == digest:
            return _unpack(archive, unpacked, spec)
        archive.unlink()  # damaged on disk since; download it again
    return None


def _download(
    url: str,
    cache_dir: Path,
    ds_dir: Path,
    expected: str | None,
    progress: DownloadProgress | None,
) -> tuple[Path, str]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Download next to the cache so the final rename is atomic (same filesystem)
    # and a crash never leaves a partial file under a verified name.
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:  # noqa: S310 - scheme checked
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    done = 0
                    while block := resp.read(_BLOCK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise FetchError(
                    f"could not download {url} ({reason}); check the network connection, "
                    "or pass --url with a mirror or a file:// path to a local copy"
                ) from None
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise FetchError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; "
                "the download is corrupt or the file changed upstream. The file was deleted: "
                "retry, or if you trust the new file pass --sha256 " + actual
            )
        ds_dir.mkdir(parents=True, exist_ok=True)
        archive = ds_dir / f"{actual}.zip"
        os.replace(tmp, archive)
        return archive, actual
    finally:
        tmp.unlink(missing_ok=True)


def _unpack(archive: Path, dest: Path, spec: RemoteDataset) -> Path:
    if not dest.is_dir():
        work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
        try:
            safe_extract_zip(archive, work)
            try:
                os.rename(work, dest)  # atomic: dest exists only when complete
            except OSError:
                if not dest.is_dir():  # not a concurrent fetch winning the race
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _label_root(dest, spec)


def _label_root(unpacked: Path, spec: RemoteDataset) -> Path:
    root = unpacked / spec.archive_root
    if root.is_dir():
        return root
    # A mirror or --url archive may wrap the tree differently: take the first
    # folder (breadth first, sorted) whose subfolders are named by labels.
    queue = [unpacked]
    while queue:
        d = queue.pop(0)
        subdirs = sorted(p for p in d.iterdir() if p.is_dir())
        if any(parse_label(p.name) is not None for p in subdirs):
            return d
        queue.extend(subdirs)
    raise FetchError(
        f"the archive unpacked in {unpacked} has no folder with one subfolder per label "
        f"(expected {spec.archive_root}); check that --url points at the dataset's zip"
    )
