"""The web UI in a real Chromium (Debian's package, driven by Playwright): what only a browser
can show. ``make test`` installs Chromium first (``make browser``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from signdb.access import create_token, revoke_token
from signdb.db.engine import get_engine
from tests.server.test_serve import free_port, start, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed; `make browser` installs Debian's package"
)
# Without these, Chromium as root in a container refuses to start or reaches for the network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def server(served):
    proc, base, _ = start(served.url, "--port", str(free_port()))
    yield base
    assert stop(proc) == 0


def _points(page, metric: str, line: int = 0) -> int:
    return page.evaluate(
        "([m, i]) => window.signdbCharts[m] ? window.signdbCharts[m].series[i].size : -1",
        [metric, line],
    )


def _painted(page, selector: str) -> bool:
    """True when the canvas under ``selector`` has pixels that are not background."""
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true; return false; }""",
        selector,
    )


def test_the_runs_page_lists_runs_and_a_click_opens_one_with_its_curves(page, server, served):
    page.goto(f"{server}/")
    rows = page.locator("table#runs tbody tr")
    assert rows.count() == len(served.runs) + 2  # the sweep's two trials are runs too
    page.click(f'a[href="/runs/{served.runs["a"]}"]')
    page.wait_for_url(f"**/runs/{served.runs['a']}")
    page.wait_for_function(
        "() => window.signdbCharts.cost && window.signdbCharts.cost.series[0].size > 0"
    )
    assert _points(page, "cost") == 40  # every logged point: 40 steps, no downsampling
    assert _painted(page, '.chart[data-metric="cost"] canvas')
    assert _painted(page, "canvas#roc") and _painted(page, "canvas#calibration")
    assert page.locator("#confusion td").count() == 4


def test_selecting_two_runs_opens_their_comparison(page, server, served):
    a, b = served.runs["a"], served.runs["b"]
    page.goto(f"{server}/")
    button = page.locator("button#compare")
    assert button.is_disabled()
    page.check(f'input.pick[value="{a}"]')
    assert button.is_disabled()
    page.check(f'input.pick[value="{b}"]')
    button.click()
    page.wait_for_url("**/compare?runs=*")
    assert set(page.url.split("runs=")[1].split(",")) == {str(a), str(b)}
    page.wait_for_function(
        "() => window.signdbCharts.cost && window.signdbCharts.cost.series.length === 2"
    )
    assert _points(page, "cost", 0) == 40 and _points(page, "cost", 1) == 40
    headers = page.locator("table#compare-runs thead th").all_inner_texts()
    assert f"run {a}" in headers and f"run {b}" in headers


LIVE_SCRIPT = textwrap.dedent(
    """
    import sys, time, signdb
    db = signdb.connect(sys.argv[1])
    with db.start_run("digits", "live-in-browser", classes="0,1") as run:
        print(run.id, flush=True)
        for step in range(400):
            run.log(step, loss=1.0 / (step + 1))
            time.sleep(0.1)
    """
)


def test_a_run_training_in_another_process_grows_on_its_open_page(page, server, served):
    trainer = subprocess.Popen(
        [sys.executable, "-c", LIVE_SCRIPT, served.url], stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = int(trainer.stdout.readline())
        time.sleep(1.5)  # some points before the page opens
        page.goto(f"{server}/runs/{run_id}")
        page.wait_for_function(
            "() => window.signdbCharts.loss && window.signdbCharts.loss.series[0].size > 0"
        )
        before = _points(page, "loss")
        page.wait_for_function(f"() => window.signdbCharts.loss.series[0].size >= {before + 10}",
                               timeout=15_000)  # fmt: skip
        assert page.locator("#status").inner_text() == "running"
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
    finally:
        trainer.kill()
        trainer.wait()


def test_signing_in_with_a_token_sets_a_cookie_scripts_cannot_read(page, served):
    token, _ = create_token(get_engine(served.url), "browser-user", "viewer")
    proc, base, _ = start(served.url, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        page.goto(f"{base}/leaderboard")
        page.wait_for_url("**/login?next=/leaderboard")
        page.fill("#token", "sdb_not-the-token")
        page.click("button[type=submit]")
        assert "not valid" in page.locator(".error-box").inner_text()
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/leaderboard")
        assert "browser-user (viewer)" in page.locator("nav .who").inner_text()
        assert page.evaluate("() => document.cookie") == ""  # HTTP-only
        page.click("nav .who button")
        page.wait_for_url("**/login?next=/")
    finally:
        assert stop(proc) == 0
        revoke_token(get_engine(served.url), "browser-user")


def _sign_in(page, base: str, token: str, then: str) -> None:
    page.goto(f"{base}/login?next={then}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{then}")


def test_a_viewer_cannot_point_an_alias_and_an_editor_can(browser, served):
    engine = get_engine(served.url)
    tokens = {role: create_token(engine, f"ui-{role}", role)[0] for role in ("viewer", "editor")}
    proc, base, _ = start(served.url, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        for role in ("viewer", "editor"):
            context = browser.new_context()
            page = context.new_page()
            _sign_in(page, base, tokens[role], "/models")
            page.fill("input[name=alias]", "ui-champion")
            page.fill("input[name=run_id]", str(served.runs["a"]))
            page.click("#point-alias button")
            if role == "viewer":
                page.wait_for_function(
                    "() => document.querySelector('#point-result').dataset.status"
                )
                assert page.locator("#point-result").get_attribute("data-status") == "403"
                assert "editor token" in page.locator("#point-result").inner_text()
            else:
                page.wait_for_selector('tr[data-alias="ui-champion"]')
                assert "ui-editor" in page.locator('tr[data-alias="ui-champion"]').inner_text()
            context.close()
    finally:
        assert stop(proc) == 0
        for role in ("viewer", "editor"):
            revoke_token(engine, f"ui-{role}")


def test_an_editor_cancels_a_queued_run_from_the_queue_page(browser, served):
    import signdb

    run_id = signdb.connect(served.url).submit(
        served.dataset, "logreg", classes="0,1", iterations=5, queue="ui"
    )
    engine = get_engine(served.url)
    tokens = {role: create_token(engine, f"q-{role}", role)[0] for role in ("viewer", "editor")}
    proc, base, _ = start(served.url, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        context = browser.new_context()
        page = context.new_page()
        _sign_in(page, base, tokens["viewer"], "/queue")
        assert page.locator(f'tr[data-run="{run_id}"]').count() == 1
        assert page.locator("button.cancel").count() == 0  # a viewer gets no button
        status = page.evaluate(
            f"async () => (await fetch('/api/v1/runs/{run_id}/cancel', {{method: 'POST'}})).status"
        )
        assert status == 403  # nor does the route let a viewer's request through
        context.close()
        context = browser.new_context()
        page = context.new_page()
        _sign_in(page, base, tokens["editor"], "/queue")
        page.click(f'button.cancel[data-run="{run_id}"]')
        page.wait_for_function("() => document.querySelector('#queue-result').dataset.status")
        assert page.locator("#queue-result").inner_text() == f"run {run_id}: cancelled"
        context.close()
        assert signdb.connect(served.url).run(run_id)["status"] == "cancelled"
    finally:
        assert stop(proc) == 0
        for role in tokens:
            revoke_token(engine, f"q-{role}")
