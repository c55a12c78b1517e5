"""Every SQL block of docs/analyst-guide.md runs as signdb_analyst and returns sane rows.

Each block starts with a ``-- check:`` line of ``;``-separated conditions:
``rows >= N`` / ``rows == N``, ``LO <= column <= HI``, ``column >= X`` /
``column > X`` / ``column <= X``, ``column >= other_column``, ``column not null``,
``column == value``, ``column != other_column``, ``column in a,b``.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

import psycopg
import pytest

from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analyst-guide.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", GUIDE.read_text(), flags=re.S)
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


def test_the_guide_has_at_least_ten_checked_queries():
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        assert block.lstrip().startswith("-- check:"), block[:80]
    text = GUIDE.read_text()
    for connect in ("signdb sql", "signdb sql --role analyst", "-c role=signdb_analyst"):
        assert connect in text


def _value(token: str, row: dict):
    if token in row:
        return row[token]
    try:
        return float(token)
    except ValueError:
        return token


def check(condition: str, rows: list[dict]) -> None:
    condition = condition.strip()
    if m := re.fullmatch(r"rows\s*(>=|==)\s*(\d+)", condition):
        assert OPS[m[1]](len(rows), int(m[2])), f"{condition}: got {len(rows)} rows"
        return
    assert rows, f"{condition}: no rows"
    for row in rows:
        if m := re.fullmatch(r"(\S+)\s*<=\s*(\w+)\s*<=\s*(\S+)", condition):
            v = row[m[2]]
            assert v is not None and float(m[1]) <= v <= float(m[3]), (condition, row)
        elif m := re.fullmatch(r"(\w+) not null", condition):
            assert row[m[1]] is not None, (condition, row)
        elif m := re.fullmatch(r"(\w+) in (\S+)", condition):
            assert row[m[1]] in m[2].split(","), (condition, row)
        elif m := re.fullmatch(r"(\w+)\s*!=\s*(\w+)", condition):
            assert row[m[1]] != _value(m[2], row), (condition, row)
        elif m := re.fullmatch(r"(\w+)\s*(>=|<=|>|<|==)\s*(\S+)", condition):
            want = _value(m[3], row)
            got = row[m[1]]
            if isinstance(want, str):
                assert str(got) == want, (condition, row)
            else:
                assert got is not None and OPS[m[2]](float(got), float(want)), (condition, row)
        else:
            raise AssertionError(f"cannot parse check {condition!r}")


@pytest.mark.parametrize("block", BLOCKS, ids=[f"query{i + 1}" for i in range(len(BLOCKS))])
def test_query_runs_as_analyst_and_passes_its_check(real_runs, block):  # noqa: F811
    first, _, sql = block.partition("\n")
    conditions = first.removeprefix("-- check:").split(";")
    with psycopg.connect(real_runs.conninfo, options="-c role=signdb_analyst") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("signdb_analyst",)
        cur = conn.execute(sql)
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        conn.rollback()
    for condition in conditions:
        check(condition, rows)
