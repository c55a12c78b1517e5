"""Decoding workers start without re-running the ``signdb`` console script's imports."""

from __future__ import annotations

import json
import subprocess
import sys

# What pip generates for ``signdb = "signdb.cli:main"``, plus a probe in place of main():
# first without the relabelling main() does, then with it.
CONSOLE_SCRIPT = """
import json, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from signdb.cli import main, _pose_as_package_main

PROBE = "'signdb.cli' in __import__('sys').modules"

def worker_imports_the_cli():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["signdb.data.decoding"])  # as decode_stream does
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(eval, PROBE).result()

if __name__ == "__main__":
    before = worker_imports_the_cli()
    _pose_as_package_main()
    print(json.dumps([before, worker_imports_the_cli()]))
"""


def test_the_console_script_spares_decoding_workers_its_imports(tmp_path):
    script = tmp_path / "signdb"
    script.write_text(CONSOLE_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, False]
