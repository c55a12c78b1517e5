"""What a label is: a class index stored as a PostgreSQL integer."""

from __future__ import annotations

import numpy as np

# Labels are stored as PostgreSQL integer.
MAX_LABEL = 2**31 - 1


def parse_label(name: str) -> int | None:
    # Plain decimal only: "07" and "+7" would be ambiguous aliases of "7".
    if name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0")):
        value = int(name)
        return value if value <= MAX_LABEL else None
    return None


def label_of_row(row: np.ndarray) -> int | str:
    """The class index in one Y row, or why there is none."""
    if row.ndim == 1 and row.shape[0] > 1:
        values = row.astype(np.float64)
        if np.all((values == 0) | (values == 1)) and values.sum() == 1:
            return int(np.argmax(values))
        shown = np.array2string(row, threshold=12, max_line_width=200)
        return (
            f"label row {shown} is not one-hot; each row of a 2-D Y.npy needs exactly "
            "one 1 and 0 elsewhere"
        )
    v = row.reshape(-1)[0].item()
    if isinstance(v, float) and (not np.isfinite(v) or v != int(v)):
        return f"label {v!r} is not a whole number; Y.npy must hold class indices 0, 1, 2, …"
    if int(v) < 0:
        return f"label {int(v)} is negative; Y.npy must hold class indices 0, 1, 2, …"
    if int(v) > MAX_LABEL:
        return f"label {int(v)} is larger than {MAX_LABEL}, the largest label signdb stores"
    return int(v)
