"""Settings from flags and the environment. Nothing here connects to anything.

Environment variables:
  SIGNDB_DATABASE_URL   any PostgreSQL URL; unset means the embedded server
  SIGNDB_READ_DATABASE_URL  hot standbys of it for image reads (several: space-separated)
  SIGNDB_HOME           the data home (embedded cluster, download cache, reports)
  SIGNDB_DATASET_DIR    where tests, benchmarks and the demo read the shared dataset
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from signdb.errors import ConfigError

# The checkout sits beside ../shared; installed elsewhere, set SIGNDB_DATASET_DIR.
DEFAULT_DATASET_DIR = (
    Path(__file__).resolve().parents[3] / "shared/datasets/sign-language-digits/Dataset"
)


def data_home() -> Path:
    """Where signdb keeps its embedded cluster, download cache and reports.

    ``$SIGNDB_HOME`` wins; else ``$XDG_DATA_HOME/signdb`` or
    ``~/.local/share/signdb``. As root the embedded server runs as an
    unprivileged user that cannot enter ``/root``, and we refuse to loosen the
    permissions of a home directory, so root's default is ``/var/lib/signdb``.
    """
    if env := os.environ.get("SIGNDB_HOME"):
        return Path(env).expanduser().resolve()
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        return Path("/var/lib/signdb")
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share"
    return Path(base).expanduser().resolve() / "signdb"


def dataset_dir() -> Path:
    return Path(os.environ.get("SIGNDB_DATASET_DIR") or DEFAULT_DATASET_DIR)


def database_url_from(flag: str | None) -> str | None:
    """The URL given by ``--database-url`` or ``$SIGNDB_DATABASE_URL``; None means embedded."""
    return flag or os.environ.get("SIGNDB_DATABASE_URL") or None


def read_database_urls_from(given: str | Sequence[str] | None) -> list[str]:
    """The standby URLs of ``--read-database-url``/``connect(read_url=...)``, else of
    ``$SIGNDB_READ_DATABASE_URL``; [] means reads go to the primary.

    Several URLs are separated by spaces or commas.

    >>> read_database_urls_from("postgresql://a/db, postgresql://b/db postgres://c/db")
    ['postgresql://a/db', 'postgresql://b/db', 'postgres://c/db']
    """
    if given is None or (not isinstance(given, str) and not given):
        given = os.environ.get("SIGNDB_READ_DATABASE_URL") or ""
    items = [given] if isinstance(given, str) else list(given)
    urls = []
    for item in items:
        for url in re.split(r"[\s,]+", item.strip()):
            if url:
                parse_database_url(url)  # a clear error now, not at the first read
                urls.append(url)
    return urls


def parse_database_url(raw: str) -> URL:
    """Normalise a postgres URL to the psycopg 3 driver, with a clear error otherwise."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"cannot parse database URL {redact(raw)!r}; expected e.g. "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigError(
            f"signdb needs PostgreSQL, got a {url.get_backend_name()!r} URL ({redact(raw)}); "
            "use postgresql://user:password@host:5432/dbname"
        )
    return url.set(drivername="postgresql+psycopg")


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ***, safe for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: keep only the scheme, since we cannot tell where a password sits.
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def others_can_traverse(path: Path) -> bool:
    """True when every existing ancestor of ``path`` is o+x (needed by the postgres user)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True
