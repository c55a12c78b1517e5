"""docs/benchmarks.md and docs/results.md are exactly what bench/results/*.json say."""

from __future__ import annotations

import json

import pytest
from bench import docs


@pytest.mark.parametrize("page", sorted(docs.PAGES))
def test_the_page_is_generated_from_the_json(page):
    assert (docs.DOCS / page).read_text() == docs.render(page), (
        f"docs/{page} is stale: run `python -m bench.docs --write`"
    )


def test_every_benchmark_has_a_section_on_one_page():
    text = "".join((docs.DOCS / page).read_text() for page in docs.PAGES)
    from bench.__main__ import available

    for name in available():
        assert text.count(f"\n## {name}\n") == 1


def test_a_table_names_its_date_and_machine_and_marks_what_is_missing(tmp_path, monkeypatch):
    report = {
        "benchmark": "embedded",
        "started_at": "2026-12-06T04:00:00+00:00",
        "seconds": 12.5,
        "machine": {
            "python": "3.11.7",
            "platform": "Linux",
            "cpu": "AMD EPYC",
            "cpus": 2,
            "memory_gib": 23.5,
            "load_average": [1.5, 1.0, 0.5],
        },  # fmt: skip
        "rows": [
            {"benchmark": "embedded server", "case": "first use", "seconds": 1.25, "ok": True},
            {"benchmark": "embedded server", "case": "on a GPU", "seconds": None, "ok": False},
            {"benchmark": "embedded server", "case": "no goal", "seconds": 0.5, "ok": None},
        ],
    }
    (tmp_path / "embedded.json").write_text(json.dumps(report))
    monkeypatch.setattr(docs, "RESULTS", tmp_path)
    text = docs.section("embedded")
    assert "Measured 2026-12-06 04:00:00 UTC" in text
    assert "AMD EPYC, 2 CPUs, 23.5 GiB" in text and "load average 1.5, 1.0, 0.5" in text
    assert "| first use | 1.250 | met |" in text
    assert "| on a GPU | not measured | **not met** |" in text
    assert "| no goal | 0.500 |  |" in text  # no goal is not a missing figure
    assert "Not measured yet" in docs.section("load")  # no JSON for it here
