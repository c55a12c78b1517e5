"""The queue over HTTP: editors submit and cancel, viewers only look, bad input queues nothing."""

from __future__ import annotations

import psycopg
import pytest

from signdb.access import create_token, revoke_token
from signdb.db.engine import get_engine
from tests.server.conftest import Served


@pytest.fixture(scope="module")
def tokens(served: Served):
    engine = get_engine(served.url)
    made = {role: create_token(engine, f"queue-{role}", role)[0] for role in ("viewer", "editor")}
    yield made
    for role in made:
        revoke_token(engine, f"queue-{role}")


def _queued(served: Served) -> list[tuple]:
    with psycopg.connect(served.url.replace("+psycopg", "")) as conn:
        return conn.execute(
            "SELECT r.id, r.status, r.queue, r.priority, j.status FROM signdb.runs r "
            "LEFT JOIN procrastinate.procrastinate_jobs j ON j.id = r.job_id "
            "WHERE r.queue IS NOT NULL ORDER BY r.id"
        ).fetchall()


def test_an_editor_submits_and_cancels_and_a_viewer_cannot(served: Served, tokens):
    body = {"dataset": served.dataset, "model": "logreg", "classes": "0,1", "iterations": 5,
            "queue": "http", "priority": 3}  # fmt: skip
    with served.client(open=False, token=tokens["viewer"]) as viewer:
        refused = viewer.post("/api/v1/runs", json=body)
        assert refused.status_code == 403 and "editor token" in refused.json()["error"]
    with served.client(open=False) as anonymous:
        assert anonymous.post("/api/v1/runs", json=body).status_code == 401
    assert _queued(served) == []
    with served.client(open=False, token=tokens["editor"]) as editor:
        created = editor.post("/api/v1/runs", json=body)
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        assert created.json() == {"run_id": run_id, "status": "queued", "queue": "http"}
        assert _queued(served) == [(run_id, "queued", "http", 3, "todo")]
        listed = editor.get("/api/v1/queue").json()["runs"]
        assert [(r["run_id"], r["queue"], r["priority"]) for r in listed] == [(run_id, "http", 3)]
        with served.client(open=False, token=tokens["viewer"]) as viewer:
            assert viewer.post(f"/api/v1/runs/{run_id}/cancel").status_code == 403
            assert viewer.get("/api/v1/queue").status_code == 200
        cancelled = editor.post(f"/api/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _queued(served)[0][1] == "cancelled"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "logreg"}, 422, 'a run needs "dataset"'),
        ({"dataset": "nope"}, 404, "nope"),
        ({"dataset": "digits", "model": "logreg", "hiden": 3}, 422, "hiden"),
        ({"dataset": "digits", "classes": "0,9"}, 422, "'9' is not in dataset"),
        ({"dataset": "digits", "priority": "high"}, 422, "priority"),
    ],
)
def test_a_bad_submission_is_named_and_queues_nothing(
    served: Served, tokens, body, status, message
):
    before = _queued(served)
    with served.client(open=False, token=tokens["editor"]) as editor:
        response = editor.post("/api/v1/runs", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert _queued(served) == before


def test_cancelling_an_unknown_run_is_a_404(served: Served, tokens):
    with served.client(open=False, token=tokens["editor"]) as editor:
        response = editor.post("/api/v1/runs/987654/cancel")
    assert response.status_code == 404 and "987654" in response.json()["error"]
