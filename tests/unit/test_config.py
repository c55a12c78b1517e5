from __future__ import annotations

import os
from pathlib import Path

import pytest

from signdb import config
from signdb.errors import ConfigError


def test_redact_hides_passwords():
    assert "s3cret" not in config.redact("postgresql://u:s3cret@h/db")
    assert "***" in config.redact("postgresql://u:s3cret@h/db")
    assert config.redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "s3cret" not in config.redact("garbage://u:s3cret@@:/x:y")


def test_parse_normalises_driver():
    url = config.parse_database_url("postgresql://u@h:5433/db")
    assert url.drivername == "postgresql+psycopg"
    assert url.port == 5433


@pytest.mark.parametrize("raw", ["sqlite:///x.db", "mysql://u:pw@h/db", "not a url"])
def test_parse_rejects_non_postgres(raw):
    with pytest.raises(ConfigError) as err:
        config.parse_database_url(raw)
    assert "pw" not in str(err.value)


def test_flag_beats_environment(monkeypatch):
    monkeypatch.setenv("SIGNDB_DATABASE_URL", "postgresql://env/db")
    assert config.database_url_from("postgresql://flag/db") == "postgresql://flag/db"
    assert config.database_url_from(None) == "postgresql://env/db"
    monkeypatch.delenv("SIGNDB_DATABASE_URL")
    assert config.database_url_from(None) is None


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNDB_HOME", str(tmp_path))
    assert config.data_home() == tmp_path
    monkeypatch.delenv("SIGNDB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.data_home() == tmp_path / "xdg" / "signdb"
    monkeypatch.delenv("XDG_DATA_HOME")
    expected = Path("/var/lib/signdb") if os.geteuid() == 0 else Path.home() / ".local/share/signdb"
    assert config.data_home() == expected


def test_others_can_traverse(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    assert not config.others_can_traverse(locked / "inner")
    locked.chmod(0o755)
    tmp_path.chmod(0o755)
    assert config.others_can_traverse(locked / "inner") == config.others_can_traverse(tmp_path)
