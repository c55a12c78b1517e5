"""A password in the database URL never shows up in output, the database or the server's view.

A login role with a password owns a private database. Every command runs with
the password in ``--database-url`` or in ``SIGNDB_DATABASE_URL``; then stdout,
stderr, ``--json``, every signdb table, ``pg_stat_activity`` of the live
trainer and the data home are searched for it. The server is this machine's
PostgreSQL at 127.0.0.1:5432 when it answers (trust auth, so any password is
accepted), else the test server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from signdb.db import roles
from tests.helpers import signdb, signdb_popen

LOCAL_PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _server(pg_admin_url: str) -> tuple[str, str]:
    """(admin conninfo, URL template with {user} {password} {db}) for the server to use."""
    try:
        psycopg.connect(LOCAL_PG).close()
        return LOCAL_PG, "postgresql://{user}:{password}@127.0.0.1:5432/{db}"
    except psycopg.OperationalError:
        url = make_url(pg_admin_url)
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        host = url.query.get("host")
        if host:  # the embedded server: a Unix socket, trust auth
            return admin, "postgresql://{user}:{password}@/{db}?host=" + quote(host, safe="")
        return admin, f"postgresql://{{user}}:{{password}}@{url.host}:{url.port or 5432}/{{db}}"


@pytest.fixture
def password_db(pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    admin, template = _server(pg_admin_url)
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    user, db = f"signdb_pw_test_{tag}", f"signdb_pw_{tag}"
    # Distinctive, and full of characters a URL must escape.
    password = f"s3cr3t-{uuid.uuid4().hex[:12]}-p@ss:w/rd%?#"
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in roles.create_roles_sql():  # cluster-wide, idempotent
            conn.execute(statement)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(user))
        )
    monkeypatch.delenv("SIGNDB_DATABASE_URL", raising=False)
    monkeypatch.setenv("SIGNDB_HOME", str(tmp_path / "home"))
    url = template.format(user=user, password=quote(password, safe=""), db=db)
    try:
        yield {"url": url, "password": password, "user": user, "db": db, "admin": admin}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def _secrets(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote(password), password.split("-")[1]]


def _assert_clean(text: str, password: str, where: str) -> None:
    for secret in _secrets(password):
        assert secret not in text, f"the password leaked into {where}: {text[:2000]}"


def test_the_password_never_leaks(password_db: dict, mini_dataset_dir: Path, tmp_path: Path):
    url, password = password_db["url"], password_db["password"]
    flag = ["--database-url", url]
    in_env = {"SIGNDB_DATABASE_URL": url}
    seen: list[tuple[str, subprocess.CompletedProcess]] = []

    def run(*args: str, env: dict | None = None, ok: bool = True) -> subprocess.CompletedProcess:
        proc = signdb(*args, env=env)
        seen.append((" ".join(args[:2]), proc))
        if ok:
            assert proc.returncode == 0, (args[:2], proc.stderr)
        else:
            assert proc.returncode == 1, (args[:2], proc.returncode, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        return proc

    # Before migrating, the fix the error suggests carries the URL, redacted.
    unmigrated = run("runs", "list", *flag, ok=False)
    assert "signdb db upgrade" in unmigrated.stderr and "***" in unmigrated.stderr

    run("db", "upgrade", *flag, "--json")
    run("db", "current", "--json", env=in_env)
    tree = tmp_path / "tree"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    run("load", str(tree), "--dataset", "pw", "--workers", "1", *flag, "--json")
    run("datasets", "list", "--json", env=in_env)

    # A live trainer: its session as the server shows it carries no password.
    trainer = signdb_popen(
        "train", "--dataset", "pw", "--iterations", "2000", "--name", "pw-run", "--json",
        env=in_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    sessions = []
    try:
        with psycopg.connect(password_db["admin"], autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and trainer.poll() is None and not sessions:
                sessions = admin.execute(
                    "SELECT a::text, application_name FROM pg_stat_activity a "
                    "WHERE usename = %s AND pid <> pg_backend_pid()",
                    [password_db["user"]],
                ).fetchall()
                time.sleep(0.02)
        out, err = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    assert trainer.returncode == 0, err
    assert sessions, "never saw the trainer's session in pg_stat_activity"
    for row, application_name in sessions:
        assert application_name.startswith("signdb[")
        _assert_clean(row, password, "pg_stat_activity")
    _assert_clean(out + err, password, "train output")
    run_id = json.loads(out)["run_id"]

    # Reads, evaluations, errors and connection failures, through both ways of
    # giving the URL, side by side (they are independent; it keeps the test fast).
    user, db = password_db["user"], password_db["db"]
    enc = quote(password, safe="")
    succeeding = [
        (["runs", "list", "--json"], in_env),
        (["runs", "show", str(run_id), *flag, "--json"], None),
        (["runs", "show", str(run_id), *flag], None),
        (["evaluate", str(run_id), *flag, "--json"], None),
        (["evaluate", str(run_id), "--split", "train", "--table"], in_env),
    ]
    failing = [
        (["train", "--dataset", "no-such-dataset", *flag], None),
        (["evaluate", "999999"], in_env),
        (["datasets", "show", "nope", *flag, "--json"], None),
        (["load", str(tmp_path / "missing"), "--dataset", "pw"], in_env),
        (["runs", "list", "--database-url", f"mysql://{user}:{enc}@localhost/{db}"], None),
        (["runs", "list", "--database-url", f"postgresql://{user}:{enc}@host:port/{db}"], None),
    ]
    unreachable = [
        f"postgresql://{user}:{enc}@127.0.0.1:1/{db}",  # nothing listens on port 1
        url.replace(f"/{db}", "/signdb_no_such_db"),
    ]
    for bad in unreachable:
        failing.append((["runs", "list", "--database-url", bad], None))
        failing.append((["runs", "list"], {"SIGNDB_DATABASE_URL": bad}))
    commands = succeeding + failing
    procs = [
        signdb_popen(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args, env in commands
    ]
    for i, ((args, _), proc) in enumerate(zip(commands, procs, strict=True)):
        out, err = proc.communicate(timeout=180)
        done = subprocess.CompletedProcess(args, proc.returncode, out, err)
        seen.append((" ".join(args[:2]), done))
        if i < len(succeeding):
            assert done.returncode == 0, (args, err[-1500:])
        else:
            assert done.returncode == 1, (args, done.returncode, err[-1500:])
            assert len(err.strip().splitlines()) == 1, err[-1500:]
    # Connection failures name the server, with the password masked.
    for (args, env), (_, done) in zip(failing[-4:], seen[-4:], strict=True):
        assert "***" in done.stderr, (args, env, done.stderr)

    for what, proc in seen:
        _assert_clean(proc.stdout, password, f"stdout of `signdb {what}`")
        _assert_clean(proc.stderr, password, f"stderr of `signdb {what}`")
        assert "Traceback" not in proc.stderr, (what, proc.stderr[-1500:])

    # Nothing stored in the database carries it: every column of every signdb
    # table, as text (images by their metadata; their pixels are not text).
    info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'signdb' "
                "AND table_type = 'BASE TABLE'"
            )
        ]
        assert "runs" in tables
        for table in tables:
            if table == "images":
                query = "SELECT (dataset_id, label, sha256, source)::text FROM signdb.images"
            else:
                query = sql.SQL("SELECT t::text FROM signdb.{} t").format(sql.Identifier(table))
            for (text,) in conn.execute(query):
                _assert_clean(text, password, f"signdb.{table}")
        ((code_version,),) = conn.execute("SELECT code_version FROM signdb.runs").fetchall()
        assert code_version.startswith("signdb ")

    # Nor anything signdb wrote under its data home.
    home = Path(os.environ["SIGNDB_HOME"])
    for path in home.rglob("*") if home.exists() else []:
        if path.is_file() and path.stat().st_size < 10_000_000:
            _assert_clean(path.read_bytes().decode(errors="replace"), password, str(path))
