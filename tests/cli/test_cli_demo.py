"""`signdb demo` end to end, twice (idempotent); the README's commands run in tests/test_docs.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import signdb


def test_demo_runs_end_to_end_and_again(db_url, mini_dataset_dir, tmp_path):
    first = signdb("demo", "--data", str(mini_dataset_dir), "--out", str(tmp_path), "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["images"] == 240 and out["loaded"] == 240
    assert out["paper_run"]["status"] == "succeeded" and out["strong_run"]["status"] == "succeeded"
    assert Path(out["report"]).is_file()
    assert len(out["queries"]) == 3
    second = signdb("demo", "--data", str(mini_dataset_dir), "--out", str(tmp_path), "--json")
    again = json.loads(second.stdout)
    assert again["loaded"] == 0 and again["images"] == 240
    assert again["paper_run"]["run_id"] > out["strong_run"]["run_id"]
    # Same data, same seed: the new runs reproduce the old ones exactly.
    assert again["paper_run"]["test_accuracy"] == out["paper_run"]["test_accuracy"]


def test_demo_human_output_has_the_papers_table_and_next_steps(db_url, mini_dataset_dir, tmp_path):
    result = signdb("demo", "--data", str(mini_dataset_dir), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for needle in ("threshold", "TP", "F1", "Side by side", "signdb.leaderboard", "signdb sql"):
        assert needle in result.stdout
    # Every query the demo suggests runs.
    for sql in re.findall(r"^  (SELECT .*?;)$", result.stdout, flags=re.S | re.M):
        flat = " ".join(line.strip() for line in sql.splitlines())
        ran = signdb("sql", "--role", "analyst", input=flat + "\n")
        assert ran.returncode == 0 and "ERROR" not in ran.stderr, (flat, ran.stderr)


def test_sql_as_analyst_cannot_write(db_url):
    result = signdb("sql", "--role", "analyst", input="DELETE FROM signdb.runs;\n")
    assert "permission denied" in result.stderr
