"""``signdb serve`` as a real process: it prints its URL, answers, streams a live run, refuses
to open a non-loopback port without a token, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import httpx
import pytest

import signdb
from signdb.access import create_token
from signdb.db.engine import get_engine
from tests.helpers import signdb as signdb_cli
from tests.helpers import signdb_popen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(url: str, *args: str) -> tuple[subprocess.Popen, str, float]:
    """A ``signdb serve`` process, its base URL, and the seconds until its first answer."""
    began = time.monotonic()
    proc = signdb_popen(
        "serve", "--json", *args, env={"SIGNDB_DATABASE_URL": url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    base = json.loads(line)["url"].rstrip("/").replace("0.0.0.0", "127.0.0.1")
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/api/v1/openapi.json", timeout=1)
            return proc, base, time.monotonic() - began
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def server(served):
    proc, base, seconds = start(served.url, "--port", str(free_port()))
    print(f"signdb serve answered {seconds:.2f} s after it was started")
    yield base
    assert stop(proc) == 0


def test_serve_answers_and_stops_cleanly_on_ctrl_c(served):
    proc, base, seconds = start(served.url, "--port", str(free_port()))
    print(f"first answer after {seconds:.2f} s")
    assert httpx.get(f"{base}/").status_code == 200
    assert httpx.get(f"{base}/static/uplot-1.6.32.min.js").status_code == 200
    assert stop(proc) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/", timeout=2)


def test_a_run_training_elsewhere_streams_its_new_points(server, served):
    db = signdb.connect(served.url)
    with db.start_run(served.dataset, "live-test", classes="0,1") as run:
        for step in range(5):
            run.log(step, loss=1.0 / (step + 1))
        run.metrics.flush()
        url = f"{server}/api/v1/events/runs/{run.id}"
        with httpx.stream("GET", url, timeout=20) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            first = _next_update(lines)
            assert first["status"] == "running"
            assert [p["step"] for p in first["points"]] == [0, 1, 2, 3, 4]
            logged_at = time.monotonic()
            for step in range(5, 8):
                run.log(step, loss=1.0 / (step + 1))  # no flush: the logger's own clock
            seen: list[int] = []
            while len(seen) < 3:
                seen += [p["step"] for p in _next_update(lines)["points"]]
            print(f"new points reached the stream {time.monotonic() - logged_at:.2f} s later")
            assert seen == [5, 6, 7]
    with httpx.stream("GET", url, timeout=20) as events:
        lines = events.iter_lines()
        final = _next_update(lines)
        assert final["status"] == "succeeded" and len(final["points"]) == 8
        assert "event: end" in list(lines)  # the stream ends with the run


def _next_update(lines) -> dict:  # noqa: ANN001 - an iterator of SSE lines
    for line in lines:
        if line.startswith("data: "):
            return json.loads(line[len("data: ") :])
    raise AssertionError("the stream ended without an update")


def test_events_of_an_unknown_run_are_a_404_before_any_stream(server):
    response = httpx.get(f"{server}/api/v1/events/runs/987654")
    assert response.status_code == 404 and "987654" in response.json()["error"]


def test_a_non_loopback_address_needs_a_token_to_exist(db_url):
    refused = signdb_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a token" in refused.stderr
    token, _ = create_token(get_engine(db_url), "remote", "viewer")
    proc, base, _ = start(db_url, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        assert httpx.get(f"{base}/api/v1/runs").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/runs", headers=auth).status_code == 200
        page = httpx.get(f"{base}/", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    finally:
        assert stop(proc) == 0


def test_bad_addresses_and_a_busy_port_are_named(db_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = signdb_cli("serve", "--port", str(port))
    assert taken.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in taken.stderr
    host = signdb_cli("serve", "--host", "example.com")
    assert host.returncode == 1 and "--host must be an IP address" in host.stderr
    port = signdb_cli("serve", "--port", "70000")
    assert port.returncode == 1 and "--port must be from 1 to 65535" in port.stderr


def test_several_worker_processes_share_nothing_but_the_database(served):
    proc, base, _ = start(served.url, "--port", str(free_port()), "--workers", "2")
    try:
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) >= 2  # uvicorn's worker processes under the one we started
        for _ in range(6):
            assert httpx.get(f"{base}/api/v1/runs").json()["total"] >= 3
    finally:
        assert stop(proc) == 0
