"""A folder per class: ``ROOT/<label>/<image>.jpg|.jpeg|.png`` (any case).

``<label>`` is a non-negative integer written plainly (``0``, ``7``, ``12``).
Images may sit in subfolders of their label folder. One bad file never stops
a load: a stray file, an empty label folder, a folder that is not a label or a
file that is not an image becomes a :class:`Rejection` that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from signdb.data.decoding import IMAGE_EXTENSIONS, DecodeTask, Task, decode_stream
from signdb.data.formats import Format, is_hidden, visible
from signdb.data.labels import MAX_LABEL, parse_label
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample


class FolderTree(Format):
    name = "folder"

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_dir() and any(p.is_dir() for p in visible(path))

    def count(self) -> int:
        return sum(1 for _ in self._tasks())

    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        return decode_stream(self._tasks(), prep, workers)

    def _tasks(self) -> Iterator[Task]:
        """One task per file (plus one per empty label folder), in path order."""
        show = self.where.show
        for entry in visible(self.root):
            if not entry.is_dir():
                yield Rejection(
                    show(entry),
                    "stray file at the top level; put each image in a folder named by its "
                    "label, e.g. 3/image.jpg",
                )
                continue
            members = _files_under(entry)
            if not members:
                yield Rejection(
                    show(entry) + "/", "label folder is empty; add its images or remove the folder"
                )
                continue
            label = parse_label(entry.name)
            for f in members:
                if label is None:
                    yield Rejection(
                        show(f),
                        f"folder name {entry.name!r} is not a valid label; label folders must "
                        f"be named by an integer from 0 to {MAX_LABEL}, such as 0, 1 or 9",
                    )
                elif f.suffix.lower() not in IMAGE_EXTENSIONS:
                    yield Rejection(
                        show(f),
                        f"not a JPEG or PNG (extension {f.suffix or 'missing'!r}); "
                        "only .jpg, .jpeg and .png files are loaded",
                    )
                else:
                    yield DecodeTask(show(f), label, path=str(f))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted by relative path."""
    out = []
    stack = [folder]
    while stack:
        d = stack.pop()
        for e in d.iterdir():
            if is_hidden(e.name):
                continue
            if e.is_dir():
                stack.append(e)
            else:
                out.append(e)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())
