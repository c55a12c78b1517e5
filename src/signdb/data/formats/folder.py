"""A folder per class, as torchvision's ``ImageFolder`` reads it: ``ROOT/<class>/<image>``.

The folder's name is the class name. Images are JPEG or PNG files (any case of
the extension) and may sit in subfolders of their class folder. A tree may
also be pre-split, as Keras' ``image_dataset_from_directory`` users keep it:
``ROOT/train/<class>/...``, ``ROOT/test/<class>/...`` and optionally
``ROOT/val/`` (or ``valid/``, ``validation/``); each image then carries its
split. One bad file never stops a load: a stray file, an empty class folder or
a file that is not an image becomes a :class:`Rejection` that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePath

from signdb.data.decoding import IMAGE_EXTENSIONS, DecodeTask, Task, decode_stream
from signdb.data.formats import Format, is_hidden, visible
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample

#: Folder names of a pre-split tree and the split each stands for.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def split_folders(root: Path) -> dict[Path, str] | None:
    """``{folder: split}`` when ``root`` is a pre-split tree, else None.

    Pre-split means: every folder at the top is a split name (at least train
    or test among them), no image sits at the top, and each holds class folders.
    """
    entries = visible(root)
    dirs = [e for e in entries if e.is_dir()]
    if not dirs or len(dirs) != len(entries):
        return None
    splits = {d: SPLIT_FOLDERS.get(d.name.lower()) for d in dirs}
    if None in splits.values() or not {"train", "test"} & set(splits.values()):
        return None
    if not all(any(p.is_dir() for p in visible(d)) for d in dirs):
        return None
    return splits  # type: ignore[return-value]


class FolderTree(Format):
    name = "folder"

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_dir() and any(p.is_dir() for p in visible(path))

    def __init__(self, root: Path, where) -> None:  # noqa: ANN001 - Location
        super().__init__(root, where)
        found = split_folders(root)
        self.parts: list[tuple[Path, str | None]] = (
            [(root, None)] if found is None else sorted(found.items(), key=lambda kv: kv[0].name)
        )

    def count(self) -> int:
        return sum(1 for _ in self._tasks())

    def class_keys(self) -> set[str]:
        return {
            folder.name
            for top, _ in self.parts
            for folder in visible(top)
            if folder.is_dir() and any(_is_image(path) for _, path in _files_under(folder))
        }

    def warnings(self) -> list[str]:
        if len(self.parts) < 2:
            return []
        classes = {split: {f.name for f in visible(top) if f.is_dir()} for top, split in self.parts}
        train = classes.get("train", set())
        out = []
        for top, split in self.parts:
            missing = sorted(classes[split] - train) if split != "train" else []
            if missing and train:
                out.append(
                    f"{self.where.show(top)}: class(es) {', '.join(missing)} are not in train/; "
                    "a model cannot learn them"
                )
        return out

    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        return decode_stream(self._tasks(), prep, workers)

    def _tasks(self) -> Iterator[Task]:
        for top, split in self.parts:
            yield from self._tree_tasks(top, split)

    def _tree_tasks(self, top: Path, split: str | None) -> Iterator[Task]:
        """One task per file (plus one per empty class folder), in path order."""
        show = self.where.show
        for entry in visible(top):
            if not entry.is_dir():
                yield Rejection(
                    show(entry),
                    "stray file at the top level; put each image in a folder named by its "
                    "class, e.g. cat/image.jpg",
                )
                continue
            members = _files_under(entry)
            if not members:
                yield Rejection(
                    show(entry) + "/", "class folder is empty; add its images or remove the folder"
                )
                continue
            for _, path in members:
                if not _is_image(path):
                    suffix = PurePath(path).suffix
                    yield Rejection(
                        show(path),
                        f"not a JPEG or PNG (extension {suffix or 'missing'!r}); "
                        "only .jpg, .jpeg and .png files are loaded",
                    )
                else:
                    yield DecodeTask(show(path), entry.name, path=path, split=split)


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _files_under(folder: Path) -> list[tuple[str, str]]:
    """(path relative to ``folder``, full path) of every non-hidden file below ``folder``,
    sorted by the relative path.

    The tree is walked three times a load (classes, count, tasks), in the
    process that also writes to the database: ``os.scandir`` reads each entry's
    type from the directory itself, where ``Path.is_dir`` costs a ``stat`` a file.
    """
    out = []
    stack = [(str(folder), "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for e in entries:
                if is_hidden(e.name):
                    continue
                if e.is_dir():
                    stack.append((e.path, f"{prefix}{e.name}/"))
                else:
                    out.append((prefix + e.name, e.path))
    out.sort()
    return out
