"""Plain-text tables for the human (non ``--json``) output of the commands."""

from __future__ import annotations

from collections.abc import Sequence

MAX_CELL = 40


def table(rows: Sequence[Sequence[str]], right: set[int] = frozenset()) -> str:
    """Columns as wide as their widest cell (capped at 40, longer cells end in '…');
    the columns in ``right`` are right-aligned (numbers)."""
    cells = [[_fit(str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def number(v: object, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _fit(cell: str) -> str:
    return cell if len(cell) <= MAX_CELL else cell[: MAX_CELL - 1] + "…"
