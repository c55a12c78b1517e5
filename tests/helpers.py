"""Helpers shared by the CLI, fault and security tests."""

from __future__ import annotations

import os
import subprocess
import sys


def signdb(
    *args: str, env: dict | None = None, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``signdb`` entry point in a subprocess (the environment's URL applies)."""
    return subprocess.run(
        [sys.executable, "-m", "signdb", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        input=input,
    )


def signdb_popen(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "signdb", *args],
        env={**os.environ, **(env or {})},
        text=True,
        **kwargs,
    )


def train_spec(**kw):
    """A TrainSpec from flat keywords, as the CLI flags read: trainer settings split out."""
    from signdb.training import TrainerSettings, TrainSpec

    settings = {k: kw.pop(k) for k in ("cache", "eval_every", "checkpoint_every") if k in kw}
    return TrainSpec(trainer=TrainerSettings(**settings), **kw)
