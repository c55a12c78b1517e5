"""Where a run's code came from: the package version and, in a checkout, the git commit."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from signdb._version import __version__

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def code_version() -> str:
    """``signdb 0.1.0 (abc1234)``, with ``-dirty`` for uncommitted tracked changes."""
    version = f"signdb {__version__}"
    try:
        sha = _git("rev-parse", "--short", "HEAD")
        if sha:
            dirty = _git("status", "--porcelain", "--untracked-files=no")
            version += f" ({sha}{'-dirty' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=5
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""
