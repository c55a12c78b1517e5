"""``db.load`` works however a user runs Python: a plain script without a main guard,
``python -m``, ``python -c``, a script on stdin and an interactive session (as a notebook
runs code). Each is a real interpreter; the decoding workers (two, so a pool starts) must
never run the user's code again: every form's code appends its pid to a file once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import named_tree

# No `if __name__ == "__main__":` on purpose: most users' scripts have none.
USER_CODE = """\
import os, signdb
open("ran.txt", "a").write(f"{os.getpid()}\\n")
db = signdb.connect()
result = db.load("photos/", dataset=os.environ["FORM"], size=16, workers=2)
print("added", result.added)
"""


def _forms(tmp_path: Path) -> dict[str, tuple[list[str], str | None]]:
    (tmp_path / "load.py").write_text(USER_CODE)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "loader.py").write_text(USER_CODE)
    py = sys.executable
    return {
        "script": ([py, "load.py"], None),
        "module": ([py, "-m", "mypkg.loader"], None),
        "command": ([py, "-c", USER_CODE], None),
        "stdin": ([py, "-"], USER_CODE),
        # What a notebook does: code executed in a __main__ that has no file.
        "interactive": ([py, "-i", "-q"], USER_CODE + "\n"),
    }


@pytest.fixture
def forms_dir(tmp_path):
    named_tree(tmp_path / "photos", ["cat", "rocket"], 24)  # 48 files: more than one chunk
    return tmp_path


@pytest.mark.parametrize("form", ["script", "module", "command", "stdin", "interactive"])
def test_load_from_every_form_of_user_code(db_url, forms_dir, form):
    command, stdin = _forms(forms_dir)[form]
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=forms_dir,
        env={**os.environ, "FORM": form, "PYTHONWARNINGS": "error::RuntimeWarning"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "added 48" in done.stdout, (done.stdout, done.stderr)
    assert "BrokenProcessPool" not in done.stderr and "RuntimeWarning" not in done.stderr
    # Run once, by the interpreter itself; never by a decoding worker.
    assert (forms_dir / "ran.txt").read_text().split() == [str(_pid_of(done, forms_dir))]
    info = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        count = conn.execute(
            "SELECT count(*) FROM signdb.images i JOIN signdb.datasets d ON d.id = i.dataset_id "
            "WHERE d.name = %s",
            [form],
        ).fetchone()[0]
    assert count == 48


def _pid_of(done: subprocess.CompletedProcess, folder: Path) -> str:
    lines = (folder / "ran.txt").read_text().split()
    assert len(lines) == 1, f"the user's code ran {len(lines)} times: {lines}"
    return lines[0]


def test_the_users_own_pool_still_reruns_their_script_and_its_load_falls_back(db_url, forms_dir):
    """Multiprocessing's own rule stays: the user's spawn workers re-run the script. Its
    unguarded load then runs in one process with a warning instead of breaking the pool."""
    (forms_dir / "pool.py").write_text(
        USER_CODE
        + "import multiprocessing\n"
        + "def square(x):\n    return x * x\n"
        + "if __name__ == '__main__':\n"
        + "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
        + "        print('squares', pool.map(square, [2, 3]))\n"
    )
    done = subprocess.run(
        [sys.executable, "pool.py"],
        capture_output=True,
        text=True,
        cwd=forms_dir,
        env={**os.environ, "FORM": "pool"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "squares [4, 9]" in done.stdout
    assert len((forms_dir / "ran.txt").read_text().split()) == 2  # the script, its pool worker
    assert "decoding in one process" in done.stderr
