"""The doctest harness for src/signdb: what the Examples sections of public docstrings use.

``example_url`` is a scratch database on the test server (see tests/conftest.py)
holding a small generated dataset ``shapes`` (12 images each of ``circle`` and
``square``, made here with Pillow) and two trained ``softmax`` runs (``example``, the oldest, and
``example-b``), so each
example can run on its own, in any order. ``db`` is a handle on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tests.conftest import (  # noqa: F401 - fixtures and the hook that sets SIGNDB_HOME
    _admin,
    fresh_database,
    pg_admin_url,
    pytest_configure,
    template_db,
)


def _shapes(root: Path) -> Path:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for name in ("circle", "square"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            img = Image.new("L", (32, 32), int(rng.integers(0, 60)))
            draw = ImageDraw.Draw(img)
            x, y = (int(v) for v in rng.integers(4, 12, 2))
            box = (x, y, x + 16, y + 16)
            (draw.ellipse if name == "circle" else draw.rectangle)(box, fill=230)
            img.save(root / name / f"{name}{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def _example_database(
    pg_admin_url: str,  # noqa: F811
    template_db: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path]]:
    import signdb

    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    images = _shapes(tmp_path_factory.mktemp("shapes"))
    db = signdb.connect(url)
    db.load(images, "shapes", size=16)
    db.train("shapes", "softmax", classes="all", iterations=20, name="example")
    db.train("shapes", "softmax", classes="all", iterations=5, name="example-b")
    yield url, images
    db.engine.dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    # Only doctests get the database: plain tests under src/ (there are none) do not pay for it.
    if request.node.__class__.__name__ != "DoctestItem":
        return
    import signdb

    url, images = request.getfixturevalue("_example_database")
    doctest_namespace.update(
        signdb=signdb, example_url=url, example_images=images, db=signdb.connect(url)
    )
