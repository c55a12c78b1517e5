"""A landed migration revision is never edited: each one's sha256 is pinned in migrations/checksums.txt."""

from __future__ import annotations

import hashlib
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MANIFEST = MIGRATIONS / "checksums.txt"


def _manifest() -> dict[str, str]:
    pinned = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            pinned[name] = digest
    return pinned


def _revisions() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((MIGRATIONS / "versions").glob("[0-9]*.py"))
    }


def test_every_revision_is_pinned() -> None:
    missing = sorted(set(_revisions()) - set(_manifest()))
    assert not missing, (
        f"revisions not in {MANIFEST.name}: {missing}; add `sha256sum` lines for them"
    )


def test_no_pinned_revision_changed() -> None:
    changed = [name for name, digest in _manifest().items() if _revisions().get(name) != digest]
    assert not changed, (
        f"landed revisions were edited or removed: {changed}. A landed revision never "
        "changes: restore it and add a new revision for the change"
    )
