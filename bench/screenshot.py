"""Redraw docs/images/report.png, the README's picture: ``python -m bench.screenshot``.

On a scratch database of the server signdb would use (the embedded one by default),
dropped afterwards: the shared digits are loaded, an MLP is trained on all ten and
evaluated, and the run's HTML report is photographed by headless Chromium
(``apt-get install chromium``). When the web UI lands, point this at its run page.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._scratch import scratch_engine
from signdb import config
from signdb.data.preprocess import Preprocessing
from signdb.evaluation import evaluate
from signdb.loading import load_dataset
from signdb.reporting import write_report
from signdb.training import TrainSpec, train

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "report.png"
WIDTH, HEIGHT = 1280, 900  # the report's first screen: headline, curves, confusion matrix


def shoot(page: Path, out: Path, work: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-background-networking", "--disable-sync",
            f"--user-data-dir={work / 'profile'}", f"--screenshot={out}",
            f"--window-size={WIDTH},{HEIGHT}", page.as_uri(),
        ],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="signdb-shot-"))
    try:
        with scratch_engine("signdb_screenshot") as engine:
            load_dataset(engine, config.dataset_dir(), "digits", Preprocessing())
            spec = TrainSpec(dataset="digits", model="mlp", classes=None, name="mlp, 10 digits")
            run_id = train(engine, spec).run_id
            evaluate(engine, run_id)
            page = write_report(engine, run_id, work / "report")
        OUT.parent.mkdir(parents=True, exist_ok=True)
        shoot(page, OUT, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {OUT.relative_to(OUT.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
