"""Archives, extracted safely: nothing lands outside the target folder.

An archive wraps any input format: :func:`signdb.data.formats.resolve` unpacks
it into a temporary folder and detects the format inside, naming files as
``archive.zip:member/path``. Zip files and tar files (plain, gzip, bzip2 or xz;
the suffix picks zip or tar, tarfile detects the compression) are read.

Every member is checked before anything is written, and one bad member
refuses the whole archive: absolute paths and ``..`` components (zip-slip /
tar-slip), symlinks, and in tar files also hard links, device files and FIFOs.
Files are written by copying their bytes, never with ``extractall``, so no
owner, mode or timestamp from the archive is applied either.
"""

from __future__ import annotations

import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signdb.errors import InputError, UnsafeArchive

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES
#: What a damaged compressed stream raises while tarfile reads it.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_tar(path: Path) -> bool:
    return path.name.lower().endswith(TAR_SUFFIXES)


def safe_extract(path: Path, dest: Path) -> None:
    """Unpack the zip or tar ``path`` into ``dest``; nothing is written if a member is refused."""
    if is_tar(path):
        safe_extract_tar(path, dest)
    else:
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


def safe_extract_tar(tar_path: str | Path, dest: str | Path) -> None:
    """Extract ``tar_path`` into ``dest``, refusing members that are not plain files or folders.

    Raises :class:`UnsafeArchive` for absolute paths, ``..`` components,
    symlinks, hard links and device files (tar-slip), before anything is
    written; :class:`InputError` for a file that is not a readable tar.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    with _reading_tar(tar_path):
        tf = tarfile.open(tar_path, "r:*")
    with tf, _reading_tar(tar_path):
        # All headers first (a full pass over a compressed tar): refusing
        # "before anything is written" means seeing the last member too.
        members = tf.getmembers()
        for member in members:
            check_tar_member(member, tar_path)
        dest_resolved = dest.resolve()
        for member in members:
            target = dest / member.name
            if not target.resolve().is_relative_to(dest_resolved):
                raise UnsafeArchive(_tar_refusal(tar_path, member.name, "outside the folder"))
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fin = tf.extractfile(member)  # never None: check_tar_member allowed files only
            with fin, open(target, "wb") as fout:  # type: ignore[union-attr]
                shutil.copyfileobj(fin, fout, 1 << 20)


@contextmanager
def _reading_tar(tar_path: Path) -> Iterator[None]:
    try:
        yield
    except _CORRUPT as e:
        # A full disk or a permission problem in the target is not the archive's fault.
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise InputError(
            f"{tar_path} is not a readable tar archive ({type(e).__name__}: {e}); "
            "re-create or re-download it"
        ) from None


def check_tar_member(member: tarfile.TarInfo, tar_path: Path) -> None:
    """Refuse a member that would escape the folder or is not a plain file or folder."""
    name = member.name.replace("\\", "/")
    why = None
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        why = "absolute path"
    elif ".." in name.split("/"):
        why = "'..' in its path"
    elif member.issym():
        why = f"symlink to {member.linkname!r}"
    elif member.islnk():
        why = f"hard link to {member.linkname!r}"
    elif member.isdev():
        why = "device file or FIFO"
    elif not (member.isfile() or member.isdir()):
        why = "not a plain file or folder"
    if why is not None:
        raise UnsafeArchive(_tar_refusal(tar_path, member.name, why))


def _tar_refusal(tar_path: Path, name: str, why: str) -> str:
    return (
        f"{tar_path}: member {name!r} is refused ({why}; tar-slip); refusing to extract "
        "anything. Re-create the archive with relative paths and plain files only, e.g. "
        "`tar --dereference --hard-dereference -czf data.tar.gz -C FOLDER .`"
    )
