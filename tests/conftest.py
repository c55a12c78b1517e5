"""Test harness: one real PostgreSQL per session, a fresh database per test.

The server is chosen in this order:
  1. ``SIGNDB_TEST_DATABASE_URL`` (any server; its database is used for admin work),
  2. testcontainers' PostgreSQL when a Docker engine answers,
  3. the embedded server, in a private data home under the session's tmp dir.

The schema is migrated once into a template database; each test that asks for
``db_url`` gets ``CREATE DATABASE ... TEMPLATE`` of it, so tests stay isolated
even when the code under test commits, runs subprocesses or kills them.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from signdb.config import dataset_dir

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    # Commands under test that fall back to the embedded server, and the fetch
    # cache, must never touch the developer's real data home.
    if "SIGNDB_TEST_HOME" in os.environ:
        os.environ["SIGNDB_HOME"] = os.environ["SIGNDB_TEST_HOME"]
    else:
        os.environ["SIGNDB_HOME"] = f"/tmp/signdb-test-{os.getuid()}"


def _testcontainers_url() -> tuple[str, object] | None:
    try:
        import docker
    except ImportError:
        return None
    try:
        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - docker.errors.DockerException and socket errors alike
        return None
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:16", driver="psycopg")
    container.start()
    return container.get_connection_url(), container


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLAlchemy URL with rights to create databases."""
    if url := os.environ.get("SIGNDB_TEST_DATABASE_URL"):
        yield str(make_url(url).set(drivername="postgresql+psycopg"))
        return
    found = _testcontainers_url()
    if found is not None:
        url, container = found
        yield url
        container.stop()
        return
    from signdb.db.embedded import EmbeddedServer

    home = Path(os.environ["SIGNDB_HOME"])
    os.environ["SIGNDB_EMBEDDED_OPTIONS"] = (
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    server = EmbeddedServer(home)
    server.ensure_running()
    # Left running on purpose, as signdb itself does: concurrent pytest sessions
    # share this server, and stopping it would break theirs.
    yield server.url("postgres")


def _psycopg_conninfo(sa_url: str, database: str | None = None) -> str:
    url = make_url(sa_url)
    if database is not None:
        url = url.set(database=database)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(sa_url: str) -> psycopg.Connection:
    return psycopg.connect(_psycopg_conninfo(sa_url), autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session; the source of every test database."""
    from signdb.db import migrate
    from signdb.db.engine import get_engine

    name = f"signdb_tpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = get_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(pg_admin_url: str, template: str) -> str:
    name = f"signdb_t_{os.getpid()}_{next(_counter)}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private, migrated database; also exported as SIGNDB_DATABASE_URL for CLI calls."""
    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("SIGNDB_DATABASE_URL", url)
    yield url
    from signdb.db.engine import get_engine

    get_engine(url).dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database with no signdb schema at all."""
    name = f"signdb_e_{os.getpid()}_{next(_counter)}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("SIGNDB_DATABASE_URL", url)
    yield url
    from signdb.db.engine import get_engine

    get_engine(url).dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: str) -> Engine:
    from signdb.db.engine import get_engine

    return get_engine(db_url)


@pytest.fixture
def pg(db_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit psycopg connection to the test database, for assertions."""
    with psycopg.connect(_psycopg_conninfo(db_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    path = dataset_dir()
    if not path.is_dir():
        pytest.fail(f"the shared dataset is missing at {path}; set SIGNDB_DATASET_DIR")
    return path


def _load(url: str, path: Path, name: str) -> None:
    from signdb.data.preprocess import Preprocessing
    from signdb.db.engine import get_engine
    from signdb.loading import load_dataset

    load_dataset(get_engine(url), path, name, Preprocessing(), workers=1)


@pytest.fixture(scope="session")
def mini_dataset_dir(shared_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images per label: enough to train on in a second, still real JPEGs."""
    import shutil

    root = tmp_path_factory.mktemp("mini")
    for label_dir in sorted(shared_dataset.iterdir()):
        if label_dir.is_dir():
            (root / label_dir.name).mkdir()
            for jpg in sorted(label_dir.iterdir())[:24]:
                shutil.copy(jpg, root / label_dir.name / jpg.name)
    return root


@pytest.fixture(scope="session")
def trained_db(
    pg_admin_url: str, template_db: str, shared_dataset: Path, mini_dataset_dir: Path
) -> Iterator[str]:
    """One database per session holding the shared dataset ("sld") and the mini one ("mini").

    For tests that only add runs and look at their own run ids; anything that
    needs an empty or pristine database uses ``db_url``.
    """
    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    _load(url, shared_dataset, "sld")
    _load(url, mini_dataset_dir, "mini")
    yield url
    from signdb.db.engine import get_engine

    get_engine(url).dispose()
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def trained_url(trained_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SIGNDB_DATABASE_URL", trained_db)
    return trained_db


@pytest.fixture(scope="session")
def served_runs(pg_admin_url: str, template_db: str, mini_dataset_dir: Path):
    """A database with a tiny evaluated run of every model and engine (tests/serving_runs.py)."""
    from tests.serving_runs import build_served_runs

    yield from build_served_runs(pg_admin_url, template_db, mini_dataset_dir)
