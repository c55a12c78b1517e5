"""Tokens: created once, stored hashed, checked on every request; the cookie login; who may
do what. The database's part (viewers cannot write) is in test_viewer_role.py."""

from __future__ import annotations

import hashlib
import json

import psycopg
import pytest

from signdb.access import authenticate, create_token, revoke_token
from signdb.db.engine import get_engine
from signdb.errors import InvalidArgument, NotFound
from tests.helpers import signdb


def test_tokens_cli_prints_a_token_once_and_stores_only_its_hash(db_url, pg):
    created = signdb("tokens", "create", "alice", "--role", "editor", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    token = body["token"]
    assert body["name"] == "alice" and body["role"] == "editor" and token.startswith("sdb_")
    ((stored_hash, role),) = pg.execute("SELECT token_hash, role FROM signdb.api_tokens").fetchall()
    assert stored_hash == hashlib.sha256(token.encode()).hexdigest() and role == "editor"
    dump = pg.execute("SELECT string_agg(t::text, ',') FROM signdb.api_tokens t").fetchone()[0]
    assert token not in dump
    listed = json.loads(signdb("tokens", "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in listed["tokens"]] == [("alice", "editor")]
    assert token not in signdb("tokens", "list").stdout
    again = signdb("tokens", "create", "alice")
    assert again.returncode == 1 and "a token named 'alice' exists" in again.stderr
    revoked = signdb("tokens", "revoke", "alice")
    assert revoked.returncode == 0
    assert pg.execute("SELECT count(*) FROM signdb.api_tokens").fetchone()[0] == 0
    missing = signdb("tokens", "revoke", "alice")
    assert missing.returncode == 1 and "no token named 'alice'" in missing.stderr
    bad_role = signdb("tokens", "create", "bob", "--role", "admin")
    assert bad_role.returncode == 2


def test_authenticate_knows_only_live_tokens(engine):
    token, _ = create_token(engine, "ci", "viewer")
    assert authenticate(engine, token).role == "viewer"
    assert authenticate(engine, token + "x") is None
    assert authenticate(engine, "not even the prefix") is None
    revoke_token(engine, "ci")
    assert authenticate(engine, token) is None
    with pytest.raises(NotFound):
        revoke_token(engine, "ci")
    with pytest.raises(InvalidArgument, match="--role must be viewer or editor"):
        create_token(engine, "x", "root")
    with pytest.raises(InvalidArgument, match="token name is empty"):
        create_token(engine, " ", "viewer")


def test_a_closed_server_needs_a_valid_token_for_every_api_request(served):
    engine = get_engine(served.url)
    viewer_token, _ = create_token(engine, "closed-viewer", "viewer")
    try:
        with served.client(open=False) as anonymous:
            refused = anonymous.get("/api/v1/runs")
            assert refused.status_code == 401 and "needs a token" in refused.json()["error"]
        with served.client(open=False, token="sdb_forged") as forged:
            refused = forged.get("/api/v1/runs")
            assert refused.status_code == 401 and "not valid" in refused.json()["error"]
        with served.client(open=False, token=viewer_token) as viewer:
            assert viewer.get("/api/v1/runs").status_code == 200
            assert viewer.get("/api/v1/me").json() == {"name": "closed-viewer", "role": "viewer"}
        revoke_token(engine, "closed-viewer")
        with served.client(open=False, token=viewer_token) as viewer:
            assert viewer.get("/api/v1/runs").status_code == 401  # revoked: refused at once
    finally:
        with psycopg.connect(served.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("DELETE FROM signdb.api_tokens WHERE name = 'closed-viewer'")


def test_a_closed_server_sends_a_browser_to_the_login_page(served):
    with served.client(open=False) as browser:
        page = browser.get("/runs/1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/runs/1"


def test_login_sets_an_http_only_strict_cookie_and_logout_clears_it(served):
    engine = get_engine(served.url)
    token, _ = create_token(engine, "cookie-user", "viewer")
    try:
        with served.client(open=False) as browser:
            wrong = browser.post("/login", data={"token": "sdb_wrong", "next": "/"})
            assert wrong.status_code == 401 and "not valid" in wrong.text
            signed = browser.post(
                "/login", data={"token": token, "next": "/leaderboard"}, follow_redirects=False
            )
            assert signed.status_code == 303 and signed.headers["location"] == "/leaderboard"
            cookie = signed.headers["set-cookie"]
            assert "signdb_token=" in cookie and "HttpOnly" in cookie
            assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
            assert browser.get("/api/v1/me").json()["name"] == "cookie-user"
            elsewhere = browser.post(
                "/login", data={"token": token, "next": "//evil.example/x"}, follow_redirects=False
            )
            assert elsewhere.headers["location"] == "/"  # never an open redirect
            browser.post("/logout")
            assert browser.get("/api/v1/me").status_code == 401
    finally:
        revoke_token(engine, "cookie-user")


def test_an_open_server_answers_only_to_its_loopback_names(served):
    with served.client() as client:
        assert client.get("/api/v1/runs", headers={"Host": "127.0.0.1:8765"}).status_code == 200
        assert client.get("/api/v1/runs", headers={"Host": "localhost"}).status_code == 200
        rebound = client.get("/api/v1/runs", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400
