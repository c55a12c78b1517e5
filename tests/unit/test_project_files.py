"""Files outside the package that users rely on."""

from __future__ import annotations

from pathlib import Path

import yaml

import signdb

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_has_a_healthy_postgres():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["postgres"]
    assert service["image"].startswith("postgres:16")
    assert "5432:5432" in service["ports"]
    assert "pg_isready" in " ".join(service["healthcheck"]["test"])
    volume = service["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_public_api_is_exactly_all():
    for name in signdb.__all__:  # lazy names (PEP 562) land in the namespace when first used
        assert hasattr(signdb, name)
    public = {name for name in vars(signdb) if not name.startswith("_")}
    assert set(signdb.__all__) <= public | {"__version__"}


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci/run").read_text()
