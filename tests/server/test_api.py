"""``/api/v1``: every route's answer against the database's own numbers, and every bad input."""

from __future__ import annotations

import csv
import io

import psycopg
import pytest
from PIL import Image

from tests.server.conftest import Served


@pytest.fixture(scope="module")
def api(served: Served):
    with served.client() as client:
        yield client


@pytest.fixture(scope="module")
def pg(served: Served):
    conninfo = served.url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


def test_runs_lists_every_run_newest_first_with_the_stored_headlines(api, served, pg):
    body = api.get("/api/v1/runs", params={"choices": "true"}).json()
    stored = pg.execute(
        "SELECT id, test_accuracy, test_accuracy_low, test_f1 FROM signdb.runs ORDER BY id DESC"
    ).fetchall()
    assert body["total"] == len(stored) and body["pages"] == 1
    assert [(r["run_id"], r["test_accuracy"], r["test_accuracy_low"], r["test_f1"])
            for r in body["runs"]] == [tuple(s) for s in stored]  # fmt: skip
    first = body["runs"][0]
    assert first["class_names"] and first["status"] == "succeeded"
    assert "digits" in body["choices"]["datasets"] and "lr" in body["choices"]["params"]
    assert api.get("/api/v1/runs").json()["choices"] is None  # only when asked: it costs a scan
    past_the_end = api.get("/api/v1/runs", params={"page": 99}).json()
    assert past_the_end["runs"] == [] and past_the_end["total"] == len(stored)


def test_runs_filter_sort_and_page_in_the_database(api, served):
    by_model = api.get("/api/v1/runs", params={"model": "logreg", "sort": "test_accuracy"}).json()
    assert {r["name"] for r in by_model["runs"]} == {"a", "b"}
    accuracies = [r["test_accuracy"] for r in by_model["runs"]]
    assert accuracies == sorted(accuracies)
    in_sweep = api.get("/api/v1/runs", params={"sweep": served.sweep}).json()
    assert in_sweep["total"] == 2 and all(r["sweep"] == "s" for r in in_sweep["runs"])
    by_param = api.get("/api/v1/runs", params={"param": "lr=0.003"}).json()
    assert [r["run_id"] for r in by_param["runs"]] == [served.runs["b"]]
    by_two = api.get("/api/v1/runs", params=[("param", "lr=0.05"), ("param", "iterations=3")])
    assert by_two.json()["total"] == 1
    page2 = api.get("/api/v1/runs", params={"per_page": 2, "page": 2, "sort": "run_id"}).json()
    all_ids = [
        r["run_id"] for r in api.get("/api/v1/runs", params={"sort": "run_id"}).json()["runs"]
    ]
    assert [r["run_id"] for r in page2["runs"]] == all_ids[2:4]
    assert page2["pages"] == -(-len(all_ids) // 2)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"page": "x"}, "query parameter 'page'"),
        ({"page": "0"}, "query parameter 'page'"),
        ({"per_page": "1000"}, "query parameter 'per_page'"),
        ({"sort": "bogus"}, "sort must be one of"),
        ({"status": "sleeping"}, "status must be one of"),
        ({"param": "lr"}, "a hyperparameter filter is NAME=VALUE"),
    ],
)
def test_a_bad_query_parameter_is_a_422_naming_it(api, params, names):
    response = api.get("/api/v1/runs", params=params)
    assert response.status_code == 422
    assert names in response.json()["error"]


def test_one_run_has_its_facts_metrics_and_evaluation(api, served, pg):
    run_id = served.runs["multi"]
    body = api.get(f"/api/v1/runs/{run_id}").json()
    assert body["run"]["run_id"] == run_id and body["run"]["model"] == "softmax"
    assert [c["name"] for c in body["classes"]] == ["0", "1", "2"]
    points = dict(pg.execute(
        "SELECT name, count(*) FROM signdb.run_metrics WHERE run_id = %s GROUP BY name", [run_id]
    ).fetchall())  # fmt: skip
    assert body["metrics"] == points
    test = body["evaluations"]["test"]
    stored = dict(pg.execute(
        "SELECT metric, value FROM signdb.run_scores WHERE run_id = %s AND split = 'test'",
        [run_id]).fetchall())  # fmt: skip
    assert {s["metric"]: s["value"] for s in test["scores"]} == stored
    assert sum(c["count"] for c in test["confusion"]) == body["run"]["test_size"]
    assert len(test["curves"]) == 3 and all(c["fpr"][0] == 0 for c in test["curves"])
    wrong = pg.execute(
        "SELECT count(*) FROM signdb.predictions WHERE run_id = %s AND split = 'test' "
        "AND label <> predicted", [run_id]).fetchone()[0]  # fmt: skip
    assert test["misclassified_total"] == wrong
    assert "all" not in body["evaluations"]  # evaluated on test only


def test_scores_and_confusion_routes(api, served, pg):
    run_id = served.runs["a"]
    scores = api.get(f"/api/v1/runs/{run_id}/scores").json()
    accuracy = next(s for s in scores["scores"] if s["metric"] == "accuracy")
    assert accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"]
    confusion = api.get(f"/api/v1/runs/{run_id}/confusion", params={"split": "test"}).json()
    total = pg.execute(
        "SELECT count(*) FROM signdb.predictions WHERE run_id = %s AND split = 'test'", [run_id]
    ).fetchone()[0]
    assert sum(c["count"] for c in confusion["cells"]) == total
    assert api.get(f"/api/v1/runs/{run_id}/scores", params={"split": "nope"}).status_code == 422


def test_a_metric_history_is_downsampled_and_exported_whole(api, served, pg):
    run_id = served.runs["a"]
    steps_values = pg.execute(
        "SELECT step, value FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost' "
        "ORDER BY step", [run_id]).fetchall()  # fmt: skip
    whole = api.get(f"/api/v1/runs/{run_id}/metrics/cost", params={"points": 1000}).json()
    assert list(zip(whole["steps"], whole["values"], strict=True)) == steps_values
    assert whole["downsampled"] is False
    small = api.get(f"/api/v1/runs/{run_id}/metrics/cost", params={"points": 8}).json()
    assert small["downsampled"] and len(small["steps"]) <= 8
    assert min(small["values"]) == min(v for _, v in steps_values)
    assert max(small["values"]) == max(v for _, v in steps_values)
    exported = api.get(f"/api/v1/runs/{run_id}/metrics/cost", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["step", "value"]
    assert [(int(s), float(v)) for s, v in rows[1:]] == steps_values


def test_an_unknown_run_metric_or_image_is_a_404_naming_it(api, served):
    missing = api.get("/api/v1/runs/987654")
    assert missing.status_code == 404 and "987654" in missing.json()["error"]
    metric = api.get(f"/api/v1/runs/{served.runs['a']}/metrics/no_such_metric")
    assert metric.status_code == 404
    assert "'no_such_metric'" in metric.json()["error"] and "cost" in metric.json()["error"]
    image = api.get("/api/v1/images/987654321.png")
    assert image.status_code == 404 and "987654321" in image.json()["error"]
    assert api.get("/api/v1/sweeps/no-such-sweep").status_code == 404
    assert api.get("/api/v1/datasets/no-such-dataset").status_code == 404
    assert api.get("/api/v1/nothing-here").status_code == 404


def test_compare_pairs_runs_on_the_same_images(api, served):
    a, b, multi = served.runs["a"], served.runs["b"], served.runs["multi"]
    body = api.get("/api/v1/compare", params={"runs": f"{a},{b},{multi}"}).json()
    assert [r["run_id"] for r in body["runs"]] == [a, b, multi]
    pairs = {tuple(p["runs"]): p for p in body["pairs"]}
    assert pairs[(a, b)]["comparable"] and 0 <= pairs[(a, b)]["mcnemar_p"] <= 1
    assert not pairs[(a, multi)]["comparable"] and "different images" in pairs[(a, multi)]["reason"]
    lr = next(row for row in body["hyperparams"] if row["name"] == "lr")
    assert lr["differs"] and lr["values"][:2] == [0.01, 0.003]
    seed = next(row for row in body["hyperparams"] if row["name"] == "seed")
    assert not seed["differs"]
    (difference,) = body["confusion_difference"]  # only b shares a's classes
    assert difference["run_id"] == b and difference["against"] == a
    for bad in ("1", f"{a},{a}", "x,y", ",".join(str(i) for i in range(1, 13))):
        response = api.get("/api/v1/compare", params={"runs": bad})
        assert response.status_code == 422, bad


def test_sweep_dataset_and_leaderboard_routes(api, served, pg):
    sweep = api.get(f"/api/v1/sweeps/{served.sweep}").json()
    assert sweep["trials"]["complete"] == 2 and sweep["best"]["params"]["lr"] in (0.01, 0.05)
    assert len(sweep["trial_rows"]) == 2
    assert api.get("/api/v1/sweeps").json() == {"sweeps": [served.sweep]}
    dataset = api.get(f"/api/v1/datasets/{served.dataset}").json()
    assert dataset["images"] == 72 and [c["name"] for c in dataset["classes"]] == ["0", "1", "2"]
    assert all(len(ids) == 8 for ids in dataset["samples"].values())
    assert dataset["runs"] == pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0]
    assert api.get("/api/v1/datasets").json()["datasets"][0]["name"] == served.dataset
    board = api.get("/api/v1/leaderboard").json()["boards"]
    ranked = pg.execute(
        "SELECT run_id FROM signdb.leaderboard WHERE classes = '{0,1}' ORDER BY rank"
    ).fetchall()
    binary = next(b for b in board if b["classes"] == [0, 1])
    assert [r["run_id"] for r in binary["runs"]] == [r[0] for r in ranked]
    assert api.get("/api/v1/leaderboard", params={"dataset": "nope"}).status_code == 404


def test_an_image_is_served_as_its_stored_pixels(api, served, pg):
    image_id, pixels, height, width = pg.execute(
        "SELECT id, pixels, height, width FROM signdb.images ORDER BY id LIMIT 1"
    ).fetchone()
    response = api.get(f"/api/v1/images/{image_id}.png")
    assert response.headers["content-type"] == "image/png"
    decoded = Image.open(io.BytesIO(response.content))
    assert decoded.size == (width, height) and decoded.tobytes() == bytes(pixels)


def test_the_openapi_document_describes_every_route(api):
    spec = api.get("/api/v1/openapi.json").json()
    paths = set(spec["paths"])
    for route in ("/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/scores",
                  "/api/v1/runs/{run_id}/confusion", "/api/v1/runs/{run_id}/metrics/{name}",
                  "/api/v1/compare", "/api/v1/sweeps/{name}", "/api/v1/datasets/{name}",
                  "/api/v1/images/{image_id}.png", "/api/v1/events/runs/{run_id}",
                  "/api/v1/leaderboard"):  # fmt: skip
        assert route in paths, route
    assert not any(p.startswith("/runs") or p == "/" for p in paths)  # pages stay out


def test_responses_carry_the_security_headers_and_the_server_time(api):
    response = api.get("/api/v1/runs")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["server-timing"].startswith("app;dur=")
