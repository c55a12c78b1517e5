"""Run the benchmarks: ``python -m bench [NAME ...]`` (``make bench`` runs them all).

Every module ``bench/bench_<name>.py`` exposes ``run() -> list[dict]``: one dict
per row of its result table. The runner discovers the modules, runs the ones
asked for (all by default), prints each table and writes
``bench/results/<name>.json`` with the rows and the machine they ran on.
Adding a benchmark is adding a module; nothing here changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import _progress

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PREFIX = "bench_"


def available() -> list[str]:
    return sorted(
        m.name.removeprefix(PREFIX)
        for m in pkgutil.iter_modules([str(HERE)])
        if m.name.startswith(PREFIX)
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:  # the union of keys, in first-seen order
        columns += [k for k in row if k not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(_is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        out = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def machine() -> dict[str, Any]:
    # The figures only mean something next to the machine and its load.
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])  # MemTotal, first line
    except (OSError, ValueError, IndexError):
        return None
    return round(kib / 2**20, 1)


def run_one(name: str) -> dict[str, Any]:
    module = importlib.import_module(f"bench.{PREFIX}{name}")
    print(f"== {name}: starting ({(module.__doc__ or '').strip().splitlines()[0]})", flush=True)
    _progress.restart()
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    rows = module.run()
    report = {
        "benchmark": name,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n== {name}: done in {report['seconds']} s ==")
    print(format_table(rows))
    print(f"-> {out.relative_to(HERE.parent)}")
    return report


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(names)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    failed = []
    for name in args.names or names:
        try:
            run_one(name)
        except Exception:  # one broken benchmark must not throw away the others' figures
            traceback.print_exc()
            print(f"== {name}: FAILED (traceback above) ==", flush=True)
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
