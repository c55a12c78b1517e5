"""`signdb report` opened in headless Chromium: every resource loads, every figure has pixels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image

from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture
from tests.helpers import signdb

CHROMIUM = shutil.which("chromium")
WIDTH, HEIGHT = 1280, 2800


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri(),
        ],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file(), "chromium wrote no screenshot"
    return np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)


def check_resources(page: Path) -> list[str]:
    html = page.read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    for src in sources:
        if not src.startswith("data:image/png;base64,"):
            assert (page.parent / src).is_file(), f"missing resource {src}"
    # Offline: nothing fetched from anywhere.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    return sources


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("which", ["binary", "multi"])
def test_report_renders_every_figure(real_runs, which, tmp_path):  # noqa: F811
    run_id = getattr(real_runs, which)
    out = tmp_path / "report"
    result = signdb(
        "report", str(run_id), "--out", str(out), "--json",
        env={"SIGNDB_DATABASE_URL": real_runs.url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = Path(json.loads(result.stdout)["path"])
    assert page == (out / "index.html").resolve() and page.is_file()
    sources = check_resources(page)
    html = page.read_text()
    assert len(sources) >= 6  # five figures and at least one misclassified image
    assert "data-frame" not in html and "border: 4px" not in html  # no coloured frames
    # The legends carry each class's area; the scores table its intervals.
    assert html.count("95% interval") >= 1 and " to " in html
    pixels = check_panels(
        page,
        tmp_path,
        {"learning", "confusion", "roc", "pr", "reliability", "scores", "gallery"},
        small={"scores", "gallery"},
    )
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    assert f"signdb run {run_id}" in html
    assert "dataset fingerprint" in html


def check_panels(page: Path, tmp_path: Path, names: set[str], small: set[str]) -> np.ndarray:
    """Every panel is laid out, its images decoded, and it has ink; outside the panels the
    page is plain (no saturated colour anywhere but in the figures)."""
    boxes = {
        b["id"].removeprefix("fig-"): b for b in element_boxes(page, tmp_path, "section.panel")
    }
    assert set(boxes) == names
    pixels = screenshot(page, tmp_path)
    for name, box in boxes.items():
        assert all(box["images"]), f"{name}: an image did not decode"
        top, left = int(box["top"]), int(box["left"])
        bottom, right = top + int(box["height"]), left + int(box["width"])
        assert bottom <= HEIGHT, f"{name} is below the screenshot"
        # A figure that failed to load collapses to its alt text: panels keep their size.
        assert box["width"] > 500 and box["height"] > (100 if name in small else 400), name
        inside = pixels[top + 40 : bottom - 10, left + 10 : right - 10]
        ink = np.any(np.abs(inside - 255) > 40, axis=2).mean()
        # Calibrated: real plots ink 1.3-36%, tables a few %; a broken image well under 0.5%.
        assert ink > 0.008, f"{name} looks blank ({ink:.3%} non-white pixels)"
    outside = pixels.copy()
    for box in boxes.values():
        top, left = int(box["top"]), int(box["left"])
        outside[top : top + int(box["height"]), left : left + int(box["width"])] = 255
    saturation = outside.max(axis=2) - outside.min(axis=2)
    assert (saturation > 60).mean() < 0.001, "saturated colour outside the figures"
    return pixels


def test_report_evaluates_a_run_first_and_names_bad_runs(real_runs, tmp_path):  # noqa: F811
    with psycopg.connect(real_runs.conninfo) as conn:
        has_train_rows = conn.execute(
            "SELECT count(*) FROM signdb.evaluations WHERE run_id = %s AND split = 'test'",
            [real_runs.binary_other_seed],
        ).fetchone()[0]
    assert has_train_rows  # the fixture evaluated it; the library path is tested below
    from signdb.db.engine import get_engine
    from signdb.reporting import write_report

    engine = get_engine(real_runs.url)
    with psycopg.connect(real_runs.conninfo, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM signdb.evaluations WHERE run_id = %s", [real_runs.binary_other_seed]
        )
    path = write_report(engine, real_runs.binary_other_seed, tmp_path / "r")
    with psycopg.connect(real_runs.conninfo) as conn:
        restored = conn.execute(
            "SELECT count(*) FROM signdb.evaluations WHERE run_id = %s AND split = 'test'",
            [real_runs.binary_other_seed],
        ).fetchone()[0]
    assert restored == 101 and path.is_file()
    result = signdb(
        "report", "999999", "--out", str(tmp_path / "x"), env={"SIGNDB_DATABASE_URL": real_runs.url}
    )
    assert result.returncode == 1 and "no run with id 999999" in result.stderr


def element_boxes(page: Path, tmp_path: Path, selector: str) -> list[dict]:
    """Where Chromium lays out each element matching ``selector`` (CSS pixels, at the
    screenshot's window size), and whether each of its images decoded."""
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => {"
        f"const out = [...document.querySelectorAll({json.dumps(selector)})].map(e => {{"
        "const r = e.getBoundingClientRect();"
        "return {id: e.id, top: r.top + scrollY, left: r.left, width: r.width, height: r.height,"
        " images: [...e.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0)};});"
        "const pre = document.createElement('pre'); pre.id = 'boxes';"
        "pre.textContent = JSON.stringify(out); document.body.appendChild(pre);});</script>"
    )
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile-dom'}", f"--window-size={WIDTH},{HEIGHT}",
            "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r'<pre id="boxes">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium did not lay out the page: {done.stderr[-500:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_sweep_report_renders_every_figure_and_the_table(db_url, mini_dataset_dir, tmp_path):
    from signdb import connect
    from signdb.sweeps import SweepRequest, create_sweep, work

    for label in ("0", "1", "2"):
        shutil.copytree(mini_dataset_dir / label, tmp_path / "digits" / label)
    db = connect(db_url)
    db.load(tmp_path / "digits", "digits", size=32, workers=1)
    params = ("lr=choice:0.002,0.01", "hidden=choice:[8],[16]", "iterations=4", "batch_size=8")
    request = SweepRequest("look", "digits", classes=None, params=params, sampler="grid", repeats=2)
    create_sweep(db.engine, request)
    work(db.engine, "look")

    out = tmp_path / "report"
    result = signdb("report", "--sweep", "look", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    page = Path(json.loads(result.stdout)["path"])
    sources = check_resources(page)
    assert len(sources) == 3
    html = page.read_text()
    assert "signdb sweep look" in html and "mean ± sd over repeats" in html
    assert "data-frame" not in html  # plain panels, no coloured frames
    # The seed's table: one row per configuration, mean ± sd of val and test metrics.
    assert html.count("<tr>") - 1 - html.count("<tr><th>") >= 4
    assert html.count(" ± ") >= 4 * 8

    check_panels(page, tmp_path, {"objective", "parallel", "curves", "table"}, small={"table"})
