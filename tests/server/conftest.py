"""A database with something to show, and in-process clients of the app over it.

``served`` is built once per module: digits 0, 1 and 2 of the mini dataset at
32x32, two evaluated runs on the same test images (logreg on 0 vs 1 twice,
different learning rates), an evaluated three-class softmax run, and a small
finished sweep. Tests only read it; a test that writes takes its own database.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

import signdb
from signdb.server import ServerSettings, create_app
from tests.conftest import _admin, fresh_database


@dataclass(frozen=True)
class Served:
    url: str
    runs: dict[str, int]  # "a", "b" (logreg 0 vs 1), "multi" (softmax, 3 classes)
    sweep: str
    dataset: str

    def client(self, *, open: bool = True, token: str | None = None) -> TestClient:  # noqa: A002
        app = create_app(ServerSettings(database_url=self.url, open=open))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(app, headers=headers, base_url="http://127.0.0.1")


def build_served(url: str, images: Path) -> Served:
    db = signdb.connect(url)
    db.load(images, "digits", size=32, workers=1)
    a = db.train("digits", "logreg", classes="0,1", iterations=40, name="a").run_id
    b = db.train("digits", "logreg", classes="0,1", iterations=40, lr=0.003, name="b").run_id
    multi = db.train("digits", "softmax", classes="all", iterations=15, name="multi").run_id
    for run in (a, b, multi):
        db.evaluate(run, bootstrap=100)
    from signdb.sweeps import SweepRequest, create_sweep, work

    params = ("lr=choice:0.01,0.05", "iterations=3")
    create_sweep(db.engine, SweepRequest(name="s", dataset="digits", model="softmax", classes=None,
                                         params=params, trials=2, repeats=1, sampler="grid"))  # fmt: skip
    work(db.engine, "s")
    db.engine.dispose()
    return Served(url, {"a": a, "b": b, "multi": multi}, "s", "digits")


@pytest.fixture(scope="module")
def served(
    pg_admin_url: str, template_db: str, mini_dataset_dir: Path, tmp_path_factory
) -> Iterator[Served]:
    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    images = tmp_path_factory.mktemp("served")
    for label in ("0", "1", "2"):
        shutil.copytree(mini_dataset_dir / label, images / label)
    yield build_served(url, images)
    from signdb.db.engine import get_engine

    get_engine(url).dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
