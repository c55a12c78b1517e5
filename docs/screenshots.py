"""Regenerate the web UI's screenshots in docs/images/: ``make screenshots``.

Builds a scratch database ``signdb_screenshots`` on the configured server (the
embedded one by default) with a generated dataset of shapes (no photo of the
Sign Language Digits is ever put in a picture we commit), trains and
evaluates a few runs and a small sweep, starts ``signdb serve`` and has
Debian's Chromium (through Playwright) photograph the pages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
from PIL import Image, ImageDraw
from sqlalchemy.engine import make_url

import signdb
from signdb.db import migrate
from signdb.db.engine import get_engine, resolve_url
from signdb.sweeps import SweepRequest, create_sweep, work

OUT = Path(__file__).resolve().parent / "images"
DATABASE = "signdb_screenshots"
SHAPES = ("circle", "square", "triangle")
PAGES = {
    "web-runs.png": "/",
    "web-run.png": "/runs/{mlp}",
    "web-compare.png": "/compare?runs={a},{b},{softmax}",
    "web-sweep.png": "/sweeps/shapes-lr",
}


def shapes(root: Path, per_class: int = 80) -> Path:
    rng = np.random.default_rng(7)
    for name in SHAPES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.fromarray(rng.integers(0, 90, (40, 40), dtype=np.uint8))
            draw = ImageDraw.Draw(image)
            x, y = (int(v) for v in rng.integers(2, 14, 2))
            size = int(rng.integers(14, 24))
            box = (x, y, x + size, y + size)
            if name == "circle":
                draw.ellipse(box, fill=220)
            elif name == "square":
                draw.rectangle(box, fill=220)
            else:
                draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=220)
            image.save(root / name / f"{name}-{i:03d}.png")
    return root


def build(url: str, images: Path) -> dict[str, int]:
    migrate.upgrade(get_engine(url))
    db = signdb.connect(url)
    db.load(images, "shapes", size=32, workers=1)
    runs = {
        "a": db.train("shapes", "logreg", classes="circle,square", iterations=150, name="paper").run_id,
        "b": db.train("shapes", "logreg", classes="circle,square", iterations=150, lr=0.003,
                      name="paper-lr-0.003").run_id,
        "softmax": db.train("shapes", "softmax", classes="all", iterations=40, name="softmax").run_id,
        "mlp": db.train("shapes", "mlp", classes="all", iterations=30, name="mlp").run_id,
    }  # fmt: skip
    for run_id in runs.values():
        db.evaluate(run_id)
    create_sweep(db.engine, SweepRequest(
        name="shapes-lr", dataset="shapes", model="softmax", classes=None, trials=6, repeats=2,
        params=("lr=loguniform:0.001:0.1", "iterations=20")))  # fmt: skip
    work(db.engine, "shapes-lr")
    return runs


def photograph(base: str, runs: dict[str, int]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, path in PAGES.items():
            page.goto(base + path.format(**runs))
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(500)  # charts draw after their data arrives
            page.screenshot(path=str(OUT / name))
            print(f"wrote {OUT / name}")
        browser.close()


def main() -> None:
    server, _ = resolve_url(None)
    admin = make_url(server).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = make_url(server).set(database=DATABASE).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as tmp:
        runs = build(url, shapes(Path(tmp) / "shapes"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "signdb", "serve", "--port", str(port)],
        env={**os.environ, "SIGNDB_DATABASE_URL": url},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        photograph(base, runs)
    finally:
        serve.terminate()
        serve.wait()


if __name__ == "__main__":
    main()
