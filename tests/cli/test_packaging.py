"""An installed wheel (not the checkout) carries and finds its migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_migrations_and_upgrades_a_database(tmp_path, empty_db_url):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("signdb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "signdb/migrations/env.py" in names
    assert "signdb/migrations/versions/0001_initial_schema.py" in names
    assert "signdb/cli/__init__.py" in names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    # The wheel's copy first, the venv's dependencies after; run from / so the
    # checkout cannot be imported by accident.
    deps = Path(psycopg.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{target}:{deps}", "PYTHONNOUSERSITE": "1"}
    code = (
        "import sys, signdb, signdb.migrations as m; from signdb.cli import main;"
        "assert signdb.__file__.startswith(sys.argv[1]), signdb.__file__;"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__;"
        "sys.argv = ['signdb', 'db', 'upgrade', '--json']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    from signdb.db import migrate
    from signdb.db.engine import get_engine

    head = migrate.head_revision(get_engine(empty_db_url))
    assert json.loads(result.stdout) == {"revision": head}
    assert migrate.check(get_engine(empty_db_url)).ok
