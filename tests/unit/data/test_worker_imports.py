"""Decoding workers never re-run their parent's ``__main__``: not the ``signdb`` console
script's imports, and not a user's script (tests/db/test_script_forms.py loads from one)."""

from __future__ import annotations

import json
import subprocess
import sys

# What pip generates for ``signdb = "signdb.cli:main"``, with a probe in place of main():
# a plain forkserver pool re-runs the script in its worker, decode_stream's does not.
CONSOLE_SCRIPT = """
import json, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from signdb.cli import main
from signdb.data import decoding

PROBE = "'signdb.cli' in __import__('sys').modules"

def worker_imports_the_cli(ctx):
    ctx.set_forkserver_preload(["signdb.data.decoding"])  # as decode_stream does
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(eval, PROBE).result()

if __name__ == "__main__":
    plain = worker_imports_the_cli(multiprocessing.get_context("forkserver"))
    ours = worker_imports_the_cli(decoding._WorkerContext())
    print(json.dumps([plain, ours, __file__ == __import__("sys").argv[0]]))
"""


def test_the_console_script_spares_decoding_workers_its_imports(tmp_path):
    script = tmp_path / "signdb"
    script.write_text(CONSOLE_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The last value: the script's own __file__ is back once the workers have started.
    assert json.loads(done.stdout) == [True, False, True]
