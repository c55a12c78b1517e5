"""Decoded pixels of one dataset's images, read from PostgreSQL once and shared by many runs.

A sweep worker trains dozens of runs on the same images under different
split seeds: each run's assignment (``run_images``) differs, its pixels do
not. :class:`ImagePool` reads the pixels of the chosen classes on first use;
a run opened with the pool reads only its light rows (id, label, hash) and
takes its pixels from memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.store import images as image_store

READ_CHUNK = 512


class ImagePool:
    """uint8 pixels by image id, for one dataset's images of ``classes``."""

    def __init__(
        self,
        engine: Engine,
        dataset_id: int,
        classes: Sequence[int],
        shape: tuple[int, int, int],
    ) -> None:
        self.engine = engine
        self.dataset_id = dataset_id
        self.classes = sorted(classes)
        self.shape = tuple(shape)
        self._ids = np.zeros(0, np.int64)
        self._pixels = np.zeros((0, *self.shape), np.uint8)
        self._loaded = False
        #: How many images' pixels this pool has read from the database.
        self.images_read = 0

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The pixels of ``ids`` (any order), reading only what the pool does not hold."""
        if not self._loaded:
            self._read(dataset_id=self.dataset_id, labels=self.classes)
            self._loaded = True
        ids = np.asarray(ids, dtype=np.int64)
        where = np.searchsorted(self._ids, ids)
        where[where == len(self._ids)] = 0
        missing = ids[self._ids[where] != ids] if len(self._ids) else ids
        if len(missing):  # images loaded after the pool was filled
            self._read(image_ids=np.unique(missing).tolist())
            where = np.searchsorted(self._ids, ids)
        return self._pixels[where]

    def _read(self, **which: object) -> None:
        ids, pixels = [self._ids], [self._pixels]
        with transaction(self.engine, "reading the dataset's images") as session:
            for part_ids, part_pixels in image_store.stream_pixels(
                session, self.shape, chunk=READ_CHUNK, **which
            ):
                ids.append(part_ids)
                pixels.append(part_pixels)
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        self.images_read += len(all_ids) - len(self._ids)
        self._ids = all_ids[order]
        self._pixels = np.concatenate(pixels)[order]
