"""The pages, rendered in process: each shows its JSON twin's data, escapes what users named,
and loads nothing from another host."""

from __future__ import annotations

import json
import re

import pytest

import signdb
from tests.server.conftest import Served

HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def web(served: Served):
    with served.client() as client:
        yield client


def _page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert found, "the page carries its data for the charts"
    return json.loads(found.group(1))


def test_the_runs_page_lists_the_runs_with_sort_and_filter_links(web, served):
    page = web.get("/", headers=HTML)
    assert page.status_code == 200
    for name, run_id in served.runs.items():
        assert f'href="/runs/{run_id}"' in page.text and f"<td>{name}</td>" in page.text
    assert _page_data(page.text) == web.get("/api/v1/runs", params={"choices": 1}).json()
    assert "sort=test_accuracy" in page.text  # column headers sort
    filtered = web.get("/", params={"model": "softmax", "sort": "-test_f1"}, headers=HTML)
    assert f'href="/runs/{served.runs["a"]}"' not in filtered.text
    assert f'href="/runs/{served.runs["multi"]}"' in filtered.text


def test_the_run_page_shows_scores_confusion_gallery_and_lifecycle(web, served):
    run_id = served.runs["multi"]
    page = web.get(f"/runs/{run_id}", headers=HTML).text
    data = _page_data(page)
    assert data["run"]["run_id"] == run_id and data["split"] == "test"
    assert 'id="confusion"' in page and 'id="scores"' in page and 'id="lifecycle"' in page
    for image in data["evaluations"]["test"]["misclassified"]:
        assert f'src="/api/v1/images/{image["image_id"]}.png"' in page
    assert data["live_since"] < data["run"]["as_of"]


def test_compare_sweep_dataset_and_leaderboard_pages_render(web, served):
    a, b = served.runs["a"], served.runs["b"]
    compare = web.get("/compare", params={"runs": f"{a},{b}"}, headers=HTML).text
    assert 'class="differs"' in compare and "McNemar" in compare
    sweep = web.get(f"/sweeps/{served.sweep}", headers=HTML).text
    assert 'id="parallel"' in sweep and 'id="summary"' in sweep
    dataset = web.get(f"/datasets/{served.dataset}", headers=HTML).text
    assert dataset.count("/api/v1/images/") == 24  # 8 samples for each of 3 classes
    assert "Leaderboard" in web.get("/leaderboard", headers=HTML).text
    for index in ("/sweeps", "/datasets"):
        assert web.get(index, headers=HTML).status_code == 200


def test_a_missing_run_is_a_404_page(web):
    page = web.get("/runs/987654", headers=HTML)
    assert page.status_code == 404 and "no run with id 987654" in page.text


def test_names_users_chose_are_escaped(served, tmp_path, mini_dataset_dir):
    db = signdb.connect(served.url)
    evil = '<script>alert("x")</script>'
    with db.start_run(served.dataset, "custom", classes="0,1", name=evil) as run:
        run.log(0, loss=1.0)
    with served.client() as client:
        page = client.get(f"/runs/{run.id}", headers=HTML).text
        listing = client.get("/", headers=HTML).text
    for html in (page, listing):
        assert evil not in html and "&lt;script&gt;" in html


def test_pages_load_scripts_and_styles_from_this_server_only(web, served):
    for path in ("/", f"/runs/{served.runs['a']}", f"/sweeps/{served.sweep}", "/login"):
        html = web.get(path, headers=HTML).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))]
