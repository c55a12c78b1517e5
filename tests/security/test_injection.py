"""Hostile names are stored literally or refused clearly; no SQL is built by string formatting.

Every string below goes through the real CLI as a dataset name, a run name or
a label folder. Each must either round-trip byte for byte (``--json`` and SQL)
or be refused with exit 1 and one short line; afterwards every table is still
there with its rows.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import signdb as signdb_package
from signdb.db.schema import metadata
from tests.helpers import signdb, signdb_popen

HOSTILE = {
    "drop-runs": "'; DROP TABLE signdb.runs; --",
    "bobby": "Robert'); DROP TABLE signdb.images;--",
    "quotes": "\"'` \\' '' \"\" \\",
    "dollar-quote": "$$; DROP SCHEMA signdb CASCADE; $$",
    "placeholders": "%s %(name)s {0} :name ? $1",
    "unicode": "数字 ✋🤟 é\u0301 \u202eevil\u202c Ω",
    "newline": "two\nlines; DROP TABLE signdb.weights",
}
TOO_LONG = {
    "long": "x" * 10_000,
    "long-sql": ("'; DROP TABLE signdb.runs; --" * 400)[:10_000],
}
TABLES = tuple(table.name for table in metadata.sorted_tables)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tree(src: Path, dest: Path, labels: tuple[str, ...], per_label: int) -> Path:
    for label in labels:
        (dest / label).mkdir(parents=True)
        for jpg in sorted((src / label).iterdir())[:per_label]:
            shutil.copy(jpg, dest / label / jpg.name)
    return dest


def _assert_refused(proc, *, mentions: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[:500])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[:500]
    assert lines[0].startswith("Error: ") and mentions in lines[0], lines[0][:500]
    assert len(lines[0]) < 500, "the error must not echo a 10,000-character value"
    assert proc.stdout == ""


def _run_all(commands: list[list[str]], timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Run CLI commands side by side (independent ones; it keeps the suite fast)."""
    procs = [
        signdb_popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands
    ]
    done = []
    try:
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _table_counts(conn: psycopg.Connection) -> dict[str, int]:
    # Table names are the constants above, quoted as identifiers.
    return {
        t: conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM signdb.{}").format(psycopg.sql.Identifier(t))
        ).fetchone()[0]
        for t in TABLES
    }


def test_hostile_dataset_and_run_names(db_url: str, mini_dataset_dir: Path, tmp_path: Path):
    small = _tree(mini_dataset_dir, tmp_path / "small", ("0", "1"), 3)
    training = _tree(mini_dataset_dir, tmp_path / "training", ("0", "1"), 24)

    # Dataset names: each one a new dataset, stored literally; the long ones refused.
    keys = [*HOSTILE, *TOO_LONG]
    names = {**HOSTILE, **TOO_LONG}
    loads = _run_all(
        [
            [
                "load",
                str(training if key == "drop-runs" else small),
                "--dataset",
                names[key],
                "--workers",
                "1",
                "--json",
            ]
            for key in keys
        ]
    )
    for key, loaded in zip(keys, loads, strict=True):
        if key in TOO_LONG:
            _assert_refused(loaded, mentions="200 characters")
        else:
            assert loaded.returncode == 0, (key, loaded.stderr)
            assert json.loads(loaded.stdout)["dataset"] == names[key], key

    # Run names, on the dataset whose own name is an injection attempt.
    trains = _run_all(
        [
            ["train", "--dataset", HOSTILE["drop-runs"], "--name", names[key], "--iterations", "1",
             "--json"]
            for key in keys
        ]
    )  # fmt: skip
    run_ids = {}
    for key, trained in zip(keys, trains, strict=True):
        if key in TOO_LONG:
            _assert_refused(trained, mentions="200 characters")
        else:
            assert trained.returncode == 0, (key, trained.stderr)
            run_ids[key] = json.loads(trained.stdout)["run_id"]
    listed, shown, runs, one = _run_all(
        [
            ["datasets", "list", "--json"],
            ["datasets", "show", HOSTILE["bobby"], "--json"],
            ["runs", "list", "--json"],
            ["runs", "show", str(run_ids["quotes"]), "--json"],
        ]
    )
    assert listed.returncode == 0, listed.stderr
    assert sorted(d["name"] for d in json.loads(listed.stdout)["datasets"]) == sorted(
        HOSTILE.values()
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == HOSTILE["bobby"]
    assert json.loads(shown.stdout)["images"] == 6
    assert runs.returncode == 0, runs.stderr
    by_id = {r["run_id"]: r for r in json.loads(runs.stdout)["runs"]}
    assert set(by_id) == set(run_ids.values()), "a refused run name must not leave a run behind"
    for key, run_id in run_ids.items():
        assert by_id[run_id]["name"] == HOSTILE[key], key
        assert by_id[run_id]["dataset"] == HOSTILE["drop-runs"], key
    assert json.loads(one.stdout)["name"] == HOSTILE["quotes"]

    with psycopg.connect(_conninfo(db_url), autocommit=True) as conn:
        stored = {n for (n,) in conn.execute("SELECT name FROM signdb.datasets")}
        assert stored == set(HOSTILE.values())
        for key, run_id in run_ids.items():
            ((name,),) = conn.execute("SELECT name FROM signdb.runs WHERE id = %s", [run_id])
            assert name.encode() == HOSTILE[key].encode(), key
        counts = _table_counts(conn)
    # Every table is still there and holds what was written.
    assert counts["datasets"] == len(HOSTILE)
    assert counts["images"] == 48 + 6 * (len(HOSTILE) - 1)
    assert counts["runs"] == len(HOSTILE)
    assert counts["weights"] > 0 and counts["run_metrics"] > 0 and counts["run_images"] > 0


def test_names_with_nul_bytes_are_refused_by_the_library(db_url: str, mini_dataset_dir: Path):
    """An argv cannot carry NUL, so the library entry points are checked directly."""
    from signdb.data.preprocess import Preprocessing
    from signdb.db.engine import get_engine
    from signdb.errors import InvalidArgument
    from signdb.loading import load_dataset
    from signdb.training import TrainSpec, train

    engine = get_engine(db_url)
    with pytest.raises(InvalidArgument, match="NUL"):
        load_dataset(
            engine, mini_dataset_dir, "a\x00'; DROP TABLE signdb.runs; --", Preprocessing()
        )
    load_dataset(engine, mini_dataset_dir, "plain", Preprocessing(), workers=1)
    with pytest.raises(InvalidArgument, match="NUL"):
        train(engine, TrainSpec(dataset="plain", name="run\x00name", hyperparams={"iterations": 1}))
    with pytest.raises(Exception, match="NUL|no dataset"):
        train(engine, TrainSpec(dataset="pl\x00ain", hyperparams={"iterations": 1}))
    with psycopg.connect(_conninfo(db_url), autocommit=True) as conn:
        assert [n for (n,) in conn.execute("SELECT name FROM signdb.datasets")] == ["plain"]
        assert conn.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 0


def test_hostile_class_folders_are_stored_literally(
    db_url: str, mini_dataset_dir: Path, tmp_path: Path
):
    """A folder's name is its class name: whatever it says, it is data, never SQL."""
    tree = _tree(mini_dataset_dir, tmp_path / "tree", ("0", "1"), 3)
    hostile = ["'; DROP TABLE signdb.runs; --", "1; DELETE FROM signdb.images", "٣", "-1"]
    jpg = next((mini_dataset_dir / "2").iterdir())
    for name in hostile:
        (tree / name).mkdir()
        shutil.copy(jpg, tree / name / "x.jpg")

    for flags in ([], ["--strict"]):
        dataset = f"classes{len(flags)}"
        loaded = signdb("load", str(tree), "--dataset", dataset, "--workers", "1", "--json", *flags)
        assert loaded.returncode == 0, loaded.stderr
        result = json.loads(loaded.stdout)
        # The same image in four folders is one image (identity is the pixels): the
        # first folder in sorted order keeps it.
        assert (result["added"], result["rejected"]) == (7, 0)
        assert sorted(result["classes"]) == sorted(["0", "1", *hostile])
    with psycopg.connect(_conninfo(db_url), autocommit=True) as conn:
        counts = _table_counts(conn)
        assert counts["images"] == 14 and counts["datasets"] == 2
        stored = {n for (n,) in conn.execute("SELECT name FROM signdb.classes")}
        assert stored == {"0", "1", *hostile}
        # Named classes get labels in sorted name order; none is a parsed integer.
        labels = dict(conn.execute("SELECT name, label FROM signdb.classes WHERE dataset_id = 1"))
        assert sorted(labels, key=labels.get) == sorted(["0", "1", *hostile])


def _assert_rejected_or_refused(loaded, *, names: str) -> dict | None:
    """A label PostgreSQL's integer cannot hold: rejected by name, or a clear error; never stored."""
    assert "Traceback" not in loaded.stderr, loaded.stderr[-1500:]
    if loaded.returncode != 0:
        _assert_refused(loaded, mentions=names)
        return None
    return json.loads(loaded.stdout)


def test_a_label_folder_too_large_for_postgres_is_never_stored_wrapped(
    db_url: str, mini_dataset_dir: Path, tmp_path: Path
):
    tree = _tree(mini_dataset_dir, tmp_path / "tree", ("0",), 3)
    (tree / "99999999999").mkdir()
    shutil.copy(next((mini_dataset_dir / "1").iterdir()), tree / "99999999999" / "x.jpg")
    loaded = signdb("load", str(tree), "--dataset", "big", "--workers", "1", "--json")
    # Too large for a label, so it is a class *name*: the classes get labels by name order.
    result = _assert_rejected_or_refused(loaded, names="99999999999")
    assert result is not None and result["classes"] == ["0", "99999999999"]
    with psycopg.connect(_conninfo(db_url), autocommit=True) as conn:
        labels = {label for (label,) in conn.execute("SELECT DISTINCT label FROM signdb.images")}
        named = dict(conn.execute("SELECT name, label FROM signdb.classes"))
    assert labels == {0, 1}, f"label 99999999999 was stored as {labels - {0}}"
    assert named == {"0": 0, "99999999999": 1}


def test_y_npy_labels_too_large_for_postgres_are_never_stored_wrapped(db_url: str, tmp_path: Path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.integers(0, 256, (3, 8, 8), dtype=np.uint8))
    np.save(tmp_path / "Y.npy", np.array([0, 2**32 + 1, 2**31], dtype=np.int64))
    loaded = signdb("load", str(tmp_path), "--dataset", "bignpy", "--size", "8", "--json")
    result = _assert_rejected_or_refused(loaded, names="2147483648")
    with psycopg.connect(_conninfo(db_url), autocommit=True) as conn:
        labels = {label for (label,) in conn.execute("SELECT DISTINCT label FROM signdb.images")}
    assert labels <= {0}, f"labels 2**32+1 / 2**31 were stored as {labels - {0}}"
    if result is not None:
        assert result["rejected"] == 2


# -- no SQL built by string formatting --------------------------------------------------------

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|GRANT|REVOKE|TRUNCATE|COPY|"
    r"WHERE|VALUES|SET ROLE|DATABASE|SCHEMA|TABLE)\b"
)

#: (file under src/signdb, enclosing function) -> why its formatted SQL is safe.
ALLOWED = {
    ("db/roles.py", "create_roles_sql"): "role names are the module constants in ROLES",
    ("db/roles.py", "grant_sql"): "schema and role names are module constants",
    ("db/roles.py", "revoke_sql"): "schema and role names are module constants",
    ("db/roles.py", "drop_unused_roles_sql"): "role names are the module constants in ROLES",
    ("db/embedded.py", "_ensure_database"): "the database name is the constant DATABASE",
    ("store/runs.py", "get_run"): "interpolates only the constant column list _RUN_COLUMNS",
    ("store/summaries.py", "<module>"): "interpolates only the constant column list _COLUMNS",
    ("db/migrate.py", "view_drift"): "view names and bodies are the constants of db/views.py",
    ("store/datasets.py", "split_counts"): "interpolates the constant SPLIT_EXPRESSION",
    ("store/runs.py", "assign_images"): "interpolates the constant SPLIT_EXPRESSION",
    ("store/images.py", "insert_samples"): "interpolates the constant column list _COLUMNS",
    ("store/images.py", "_insert_via_staging"): "interpolates the constant column list _COLUMNS",
    ("store/images.py", "_sharded"): "interpolates the constant ORDER BY clauses of this module",
    ("db/roles.py", "optuna_grant_sql"): "schema and role names are module constants",
    ("db/sweep_storage.py", "ensure_tables"): "the schema name is the module constant SCHEMA",
    ("db/roles.py", "_revoke_private"): "schema, table and role names are module constants",
    ("store/copy.py", "copy_out_records"): "wraps a query its caller composed with psycopg.sql",
    ("store/listing.py", "count_runs"): "interpolates fixed WHERE fragments (_CONDITIONS)",
    ("cli/serve_commands.py", "serve"): "an error message showing the GRANT to run; never executed",
    ("db/roles.py", "queue_grant_sql"): "schema and role names are module constants",
    ("db/queue_schema.py", "queue_drift"): "the scratch schema's name is the constant _EXPECTED",
    ("store/ranks.py", "hold_rank"): "interpolates the constant lock key expression _KEY",
    ("store/ranks.py", "release_rank"): "interpolates the constant lock key expression _KEY",
    ("store/ranks.py", "live_ranks"): "interpolates the constant lock key expression _KEY",
}


def _formatted_sql_sites(root: Path) -> dict[tuple[str, str], list[int]]:
    """(file, function) -> lines where a str with SQL keywords is built by f-string, % or format."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

        def enclosing(node: ast.AST, parents: dict = parents) -> str:
            while node in parents:
                node = parents[node]
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    return node.name
            return "<module>"

        for node in ast.walk(tree):
            template = None
            if isinstance(node, ast.JoinedStr):
                template = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
            ):
                template = node.left.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and isinstance(node.func.value.value, str)
            ):
                template = node.func.value.value
            if template and SQL_WORDS.search(template):
                found.setdefault((rel, enclosing(node)), []).append(node.lineno)
    return found


def test_no_sql_is_built_by_string_formatting():
    root = Path(signdb_package.__file__).parent
    sites = _formatted_sql_sites(root)
    unexplained = {site: lines for site, lines in sites.items() if site not in ALLOWED}
    assert not unexplained, (
        "SQL built by string formatting; use bound parameters (or psycopg.sql.Identifier "
        f"for identifiers), or add the site to ALLOWED with a reason: {unexplained}"
    )
    stale = set(ALLOWED) - set(sites)
    assert not stale, f"ALLOWED names sites that no longer format SQL; remove them: {stale}"


def test_the_scanner_finds_formatted_sql(tmp_path: Path):
    """The check above is only worth something if it catches each way of formatting SQL."""
    (tmp_path / "bad.py").write_text(
        "def a(n):\n    return f\"SELECT * FROM signdb.runs WHERE name = '{n}'\"\n"
        'def b(n):\n    return "DELETE FROM signdb.runs WHERE id = %s" % n\n'
        "def c(n):\n    return \"UPDATE signdb.runs SET name = '{}'\".format(n)\n"
        'def d(n):\n    return f"no such dataset {n!r}; load it first"\n'
    )
    assert set(_formatted_sql_sites(tmp_path)) == {
        ("bad.py", "a"),
        ("bad.py", "b"),
        ("bad.py", "c"),
    }
