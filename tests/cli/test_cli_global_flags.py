"""The global -q/--quiet and -v/--verbose, before the command or among its options."""

from __future__ import annotations

import pytest

from tests.helpers import named_tree, signdb, signdb_on_terminal


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_names_the_database_and_the_time(db_url, where):
    args = ["-v", "datasets", "list"] if where == "before" else ["datasets", "list", "-v"]
    done = signdb(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("signdb: database postgresql+psycopg://") for line in lines)
    assert lines[-1].startswith("signdb: ") and lines[-1].endswith(" s")
    assert "no datasets yet" in done.stdout  # the result itself is unchanged


def test_very_verbose_logs_sql_and_verbose_errors_carry_a_traceback(db_url):
    sql = signdb("-vv", "datasets", "list")
    assert "sqlalchemy.engine" in sql.stderr and "SELECT" in sql.stderr
    failed = signdb("-v", "runs", "show", "999999")
    assert failed.returncode == 1
    assert "Traceback" in failed.stderr and "signdb.errors.NotFound" in failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        "Error: no run with id 999999; `signdb runs list` shows the runs"
    )
    plain = signdb("runs", "show", "999999")
    assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1


def test_quiet_drops_the_progress_bar_on_a_terminal(db_url, tmp_path):
    tree = named_tree(tmp_path / "photos", ["cat", "rocket"], 20)
    status, loud = signdb_on_terminal("load", str(tree), "--dataset", "a", answer="")
    assert status == 0 and "img/s" in loud  # tqdm's rate: the bar was drawn
    status, quiet = signdb_on_terminal("-q", "load", str(tree), "--dataset", "b", answer="")
    assert status == 0 and "img/s" not in quiet and "dataset 'b': added 40" in quiet
