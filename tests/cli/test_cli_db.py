"""`signdb db upgrade | current | check` through the real entry point."""

from __future__ import annotations

import json

import pytest

from tests.helpers import signdb


def test_upgrade_current_check_json(empty_db_url):
    up = signdb("db", "upgrade", "--json")
    assert up.returncode == 0, up.stderr
    revision = json.loads(up.stdout)["revision"]
    assert revision
    current = json.loads(signdb("db", "current", "--json").stdout)
    assert current == {"revision": revision, "head": revision}
    check = signdb("db", "check", "--json")
    assert check.returncode == 0
    assert json.loads(check.stdout)["ok"] is True
    # Idempotent.
    assert json.loads(signdb("db", "upgrade", "--json").stdout)["revision"] == revision


def test_check_fails_on_an_unmigrated_database(empty_db_url):
    result = signdb("db", "check")
    assert result.returncode == 1
    assert "run `signdb db upgrade`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_url_is_a_clear_error_and_hides_the_password():
    result = signdb("db", "current", "--database-url", "mysql://bob:s3cret@host/db")
    assert result.returncode == 1
    assert "needs PostgreSQL" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_unreachable_server_names_the_fix_without_the_password():
    result = signdb(
        "db", "current", "--database-url", "postgresql://bob:s3cret@127.0.0.1:1/db", timeout=60
    )
    assert result.returncode == 1
    assert "cannot talk to PostgreSQL" in result.stderr
    assert "***" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_usage_error_exits_2():
    result = signdb("db", "frobnicate")
    assert result.returncode == 2


@pytest.mark.parametrize("args", [["--help"], ["db", "--help"], ["db", "upgrade", "--help"]])
def test_help(args):
    result = signdb(*args)
    assert result.returncode == 0
    assert "Usage:" in result.stdout
