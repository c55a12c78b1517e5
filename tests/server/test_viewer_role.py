"""A viewer's request runs every statement as ``signdb_analyst`` in a read-only transaction,
so the database itself refuses any write, whatever the server's code does."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, text

from signdb.access import create_token, revoke_token
from signdb.db.engine import get_engine
from signdb.db.role_engines import role_engine
from signdb.store import runs as run_store
from tests.server.conftest import Served


def _routes(served: Served) -> list[str]:
    a, b, multi = served.runs["a"], served.runs["b"], served.runs["multi"]
    return [
        "/api/v1/runs?model=logreg&sort=-test_f1&param=lr=0.01",
        f"/api/v1/runs/{multi}",
        f"/api/v1/runs/{a}/scores",
        f"/api/v1/runs/{a}/confusion",
        f"/api/v1/runs/{a}/metrics/cost?points=10",
        f"/api/v1/runs/{a}/metrics/cost?format=csv",
        f"/api/v1/compare?runs={a},{b}",
        "/api/v1/sweeps",
        f"/api/v1/sweeps/{served.sweep}",
        "/api/v1/datasets",
        f"/api/v1/datasets/{served.dataset}",
        "/api/v1/leaderboard",
        "/api/v1/images/1.png",
        "/api/v1/models",
        f"/v2/models/run-{multi}",
        "/models",
        "/queue",
        "/api/v1/queue",
        f"/api/v1/events/runs/{a}",
        "/",
        f"/runs/{multi}",
        f"/compare?runs={a},{b}",
        f"/sweeps/{served.sweep}",
        f"/datasets/{served.dataset}",
        "/leaderboard",
    ]


@pytest.fixture
def statements(served: Served, monkeypatch: pytest.MonkeyPatch):
    """(statement, current_user, transaction_read_only) of everything the viewer engine
    executes, COPY included, as the database saw it just before each one ran."""
    seen: list[tuple[str, str, str]] = []
    engine = role_engine(served.url, "viewer")

    def who(raw: psycopg.Connection) -> tuple[str, str]:
        return raw.execute(
            "SELECT current_user, current_setting('transaction_read_only')"
        ).fetchone()

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append((statement, *who(conn.connection.driver_connection)))

    real_copy = psycopg.Cursor.copy

    def copy(self, statement, *args, **kwargs):  # noqa: ANN001
        seen.append((str(statement), *who(self.connection)))
        return real_copy(self, statement, *args, **kwargs)

    event.listen(engine, "before_cursor_execute", before)
    monkeypatch.setattr(psycopg.Cursor, "copy", copy)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "viewer-token"])
def test_every_statement_of_a_viewer_request_runs_as_the_analyst_read_only(
    served: Served, statements: list, signed_in: bool
):
    engine = get_engine(served.url)
    token = create_token(engine, "role-check", "viewer")[0] if signed_in else None
    try:
        with served.client(open=not signed_in, token=token) as client:
            for route in _routes(served):
                response = client.get(route, headers={"Accept": "text/html"})
                assert response.status_code == 200, (route, response.text[:300])
    finally:
        if signed_in:
            revoke_token(engine, "role-check")
    # All but the statement that makes the transaction act as the role.
    ours = [s for s in statements if "set_config('role'" not in s[0]]
    assert len(ours) > 60, "the routes above run many statements"
    assert any(s[0].startswith("COPY") for s in ours), "the series reads by COPY are watched too"
    wrong = [s for s in ours if s[1:] != ("signdb_analyst", "on")]
    assert wrong == []


def test_the_database_refuses_a_write_on_a_viewer_engine(served: Served):
    from signdb.db.engine import transaction
    from signdb.errors import PermissionDenied

    viewer = role_engine(served.url, "viewer")
    with pytest.raises(PermissionDenied) as caught:
        with transaction(viewer, "trying to write") as session:
            run_store.set_status(session, served.runs["a"], "failed", error="a viewer wrote this")
    assert isinstance(caught.value.__cause__.orig, psycopg.errors.ReadOnlySqlTransaction)
    with viewer.connect() as conn:
        assert conn.execute(text("SELECT status FROM signdb.runs WHERE id = :r"),
                            {"r": served.runs["a"]}).scalar() == "succeeded"  # fmt: skip


def test_the_analyst_role_alone_refuses_writes_too(served: Served):
    """Two independent locks: even inside a read-write transaction the role cannot write."""
    with psycopg.connect(served.url.replace("+psycopg", "")) as conn:
        conn.execute("SET LOCAL ROLE signdb_analyst")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE signdb.runs SET name = 'pwned'")
        conn.rollback()
        conn.execute("SET LOCAL ROLE signdb_analyst")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM signdb.api_tokens")
