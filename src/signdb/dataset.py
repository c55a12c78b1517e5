"""A dataset as the Python API hands it out: ``db.dataset(name)``, its classes and counts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.store import datasets as ds_store


@dataclass(frozen=True)
class Class:
    """One class of a dataset: its integer label and its name.

    >>> db.dataset("shapes").classes[1]
    Class(label=1, name='square')
    """

    label: int
    name: str


class Dataset:
    """A dataset as stored: its name, classes and preprocessing (read when asked for).

    >>> ds = db.dataset("shapes")
    >>> ds.name, ds.images, ds.preprocessing["size"]
    ('shapes', 24, 16)
    """

    def __init__(self, engine: Engine, name: str) -> None:
        with transaction(engine, f"reading dataset {name!r}") as session:
            record = ds_store.get_dataset(session, name)
            names = ds_store.class_names(session, record.id)
            self.images = ds_store.count_images(session, record.id)
        self._engine = engine
        self.name = record.name
        self.classes = [Class(label, n) for label, n in names.items()]
        self.preprocessing = record.preprocessing.as_dict()
        self.shape = record.preprocessing.shape

    def counts(
        self,
        *,
        split: str = "auto",
        seed: int = 42,
        test_fraction: float = 0.15,
        val_fraction: float = 0.0,
    ) -> dict[str, dict[str, int]]:
        """Images per class and split: ``{class name: {"images", "train", "val", "test"}}``.

        >>> db.dataset("shapes").counts(test_fraction=0.25)["circle"]["images"]
        12
        """
        with transaction(self._engine, f"counting dataset {self.name!r}") as session:
            summary = ds_store.summarize(
                session,
                self.name,
                mode=split,
                seed=seed,
                test_fraction=test_fraction,
                val_fraction=val_fraction,
            ).as_dict()
        return {
            c["name"]: {k: c[k] for k in ("images", "train", "val", "test")}
            for c in summary["classes"]
        }

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r}: {self.images} images, {len(self.classes)} classes>"
