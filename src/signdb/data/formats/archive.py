"""Archives, extracted safely: nothing lands outside the target folder.

An archive wraps any input format: :func:`signdb.data.formats.resolve` unpacks
it into a temporary folder and detects the format inside, naming files as
``archive.zip:member/path``.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

from signdb.errors import InputError, UnsafeArchive

ARCHIVE_SUFFIXES = (".zip",)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_extract(path: Path, dest: Path) -> None:
    """Unpack the archive ``path`` into ``dest`` (see :func:`safe_extract_zip`)."""
    safe_extract_zip(path, dest)


def safe_extract_zip(zip_path: str | Path, dest: str | Path) -> None:
    """Extract ``zip_path`` into ``dest``, refusing members that would land outside it.

    Raises :class:`UnsafeArchive` for absolute paths, ``..`` components and
    symlinks (zip-slip), before anything is written.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    with open_zip(zip_path) as zf:
        infos = zf.infolist()
        for info in infos:
            check_member(info, zip_path)
        dest_resolved = dest.resolve()
        for info in infos:
            target = dest / info.filename
            # Belt and braces: the name checks above should make this impossible.
            if not target.resolve().is_relative_to(dest_resolved):
                raise UnsafeArchive(_unsafe_message(zip_path, info.filename))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)


def open_zip(p: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(p)
    except zipfile.BadZipFile as e:
        raise InputError(f"{p} is not a readable zip ({e}); re-create or re-download it") from None


def _unsafe_message(zip_path: Path, name: str) -> str:
    return (
        f"{zip_path}: member {name!r} would be written outside the extraction folder "
        "(absolute path, '..' or symlink: zip-slip); refusing to extract anything. "
        "Re-create the zip with relative paths only"
    )


def check_member(info: zipfile.ZipInfo, zip_path: Path) -> None:
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    is_link = stat.S_ISLNK(info.external_attr >> 16)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or is_link:
        raise UnsafeArchive(_unsafe_message(zip_path, info.filename))
