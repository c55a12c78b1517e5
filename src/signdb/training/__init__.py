"""Training: the built-in models on the tracking path, and their stored results."""

from signdb.training.loop import CHECKPOINT_SECONDS, EpochHook, LoopOutcome, accuracy, train_loop
from signdb.training.service import (
    TrainResult,
    load_model,
    prepare_model,
    resume,
    start_spec_run,
    train,
)
from signdb.training.spec import TrainerSettings, TrainSpec

__all__ = [
    "CHECKPOINT_SECONDS",
    "EpochHook",
    "LoopOutcome",
    "TrainResult",
    "TrainSpec",
    "TrainerSettings",
    "accuracy",
    "load_model",
    "prepare_model",
    "resume",
    "start_spec_run",
    "train",
    "train_loop",
]
