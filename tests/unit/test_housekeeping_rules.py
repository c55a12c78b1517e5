"""The rules of runs delete that need no database: which ids, and which runs are refused."""

from __future__ import annotations

import pytest

from signdb.errors import InvalidArgument
from signdb.housekeeping.runs import check_run_ids, refusal
from signdb.store.deletion import LockedRun


def test_run_ids_are_distinct_positive_integers_in_the_order_given():
    assert check_run_ids([3, "1", 3, 2]) == [3, 1, 2]
    assert check_run_ids(7) == [7]


@pytest.mark.parametrize("bad", [[0], [-1], ["x"], [True], [1.5], ["2.0"], []])
def test_bad_run_ids_are_named(bad):
    with pytest.raises(InvalidArgument) as e:
        check_run_ids(bad)
    assert (repr(bad[0]) if bad else "at least one run id") in str(e.value)


def _run(status="succeeded", sweep=None):
    return LockedRun(5, "digits", "mlp", status, sweep, 2 if sweep else None)


def test_what_is_refused_and_how_to_go_on():
    assert refusal(_run(), force=False) is None
    assert "run 5 is running; cancel it first" in refusal(_run("running"), force=True)
    assert "signdb runs cancel 5" in refusal(_run("queued"), force=True)
    aliased = refusal(_run(), force=True, aliases=["prod"])
    assert "served as model 'prod'" in aliased and "signdb models alias prod" in aliased
    assert refusal(_run("interrupted"), force=False) is None  # its trainer is gone
    swept = refusal(_run(sweep="s"), force=False)
    assert "trial 2 of sweep 's'" in swept and "--force" in swept
    assert refusal(_run(sweep="s"), force=True) is None


def test_the_row_counts_cover_every_table_that_holds_a_run():
    """A table with a run_id column that runs delete does not count is a table it forgets."""
    from signdb.db.schema import metadata
    from signdb.store.deletion import _COUNT_RUN_ROWS, KEPT_TABLES, RUN_TABLES

    holding = {t.name for t in metadata.tables.values() if "run_id" in t.c}
    assert holding == set(RUN_TABLES) | set(KEPT_TABLES)
    assert not set(RUN_TABLES) & set(KEPT_TABLES)
    for table in RUN_TABLES:
        assert f"signdb.{table} WHERE run_id = ANY(:ids)) AS {table}" in str(_COUNT_RUN_ROWS)
