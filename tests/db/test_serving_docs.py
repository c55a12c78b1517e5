"""Every SQL block of docs/serving.md runs as signdb_analyst on served, logged predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import psycopg
import pytest

from signdb.db.engine import get_engine
from signdb.serving import PredictionLog, infer, set_alias

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def champion(served_runs):
    engine = get_engine(served_runs.url)
    set_alias(engine, "champion", served_runs.runs["logreg"], "docs")
    log = PredictionLog(engine, 1.0, interval=0.05)
    pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    tensor = {"name": "images", "shape": [6, 16, 16, 1], "datatype": "UINT8"}
    body = json.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).encode()
    infer(engine, "champion", body, log=log)
    log.close()
    return served_runs


def test_the_page_has_its_sql_examples():
    assert len(BLOCKS) == 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_sql_example_runs_as_the_analyst_and_finds_rows(champion, block):
    with psycopg.connect(champion.conninfo) as conn:
        conn.execute("SET ROLE signdb_analyst")
        for statement in [s for s in block.split(";") if s.strip()]:
            rows = conn.execute(statement).fetchall()
            assert rows, statement
