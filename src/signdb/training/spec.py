"""What ``signdb train`` runs: a model and its hyperparameters, apart from the trainer's settings.

A model's hyperparameters are exactly what its constructor takes and are
stored in ``runs.hyperparams``; how the built-in trainer feeds and watches it
(:class:`TrainerSettings`) is stored in ``runs.trainer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from signdb.errors import InvalidArgument
from signdb.results import Result
from signdb.tracking.data import check_cache_mode

ClassesArg = str | Sequence[int | str] | None

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainerSettings(Result):
    """How the built-in trainer feeds a model and records its progress.

    cache: keep the decoded images in memory (``auto``: when they fit 1 GiB).
    eval_every: log test accuracy every N steps (default: 20 times a run).
    checkpoint_every: store a checkpoint every N steps (default: 10 per run,
        at most one per 10 s).
    device: where the torch engine trains: auto (CUDA when there is one), cpu, cuda.
    """

    cache: str = "auto"
    eval_every: int | None = None
    checkpoint_every: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_cache_mode(self.cache)
        if self.device not in DEVICES:
            raise InvalidArgument(f"--device must be auto, cpu or cuda, got {self.device!r}")
        for key in ("eval_every", "checkpoint_every"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidArgument(f"--{key.replace('_', '-')} must be >= 1, got {value}")

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> TrainerSettings:
        known = {
            k: v for k, v in stored.items() if k in ("cache", "eval_every", "checkpoint_every")
        }
        return cls(**known)


@dataclass(frozen=True)
class TrainSpec:
    """One training run of a built-in model. The defaults are the seed's experiment."""

    dataset: str
    model: str = "logreg"
    # Names or labels; None: every class. The default is the seed's digits 0 and 1.
    classes: list[int | str] | None = field(default_factory=lambda: [0, 1])
    hyperparams: dict[str, Any] = field(default_factory=dict)  # only what the user set
    seed: int = 42
    test_fraction: float = 0.15
    val_fraction: float = 0.0
    split: str = "auto"  # auto, fixed or hash (see signdb.data.splits.plan_split)
    name: str | None = None
    engine: str = "numpy"  # numpy or torch (signdb.ml.ENGINES)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)


def parse_classes(value: ClassesArg) -> list[int | str] | None:
    """``"all"`` or None (every class), ``"cat,dog"``, or a sequence of names or labels."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise InvalidArgument(
                f"classes takes comma-separated class names or labels, or 'all', got {value!r}; "
                "e.g. classes='0,1' or classes='cat,dog'"
            )
        return items
    return list(value)


def spec_from_arguments(
    dataset: str,
    model: str = "logreg",
    *,
    classes: ClassesArg = (0, 1),
    seed: int = 42,
    test_fraction: float = 0.15,
    val_fraction: float = 0.0,
    split: str = "auto",
    name: str | None = None,
    engine: str = "numpy",
    device: str = "auto",
    cache: str = "auto",
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    **hyperparams: Any,
) -> TrainSpec:
    """What :meth:`Database.train` and :meth:`Database.submit` run, from their arguments."""
    return TrainSpec(
        dataset=dataset,
        model=model,
        classes=parse_classes(classes),
        hyperparams=dict(hyperparams),
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        split=split,
        name=name,
        engine=engine,
        trainer=TrainerSettings(
            cache=cache, eval_every=eval_every, checkpoint_every=checkpoint_every, device=device
        ),
    )
