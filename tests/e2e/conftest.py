"""Browser fixtures: the real app started with `python app.py`, and Debian's Chromium driven by Playwright.

On a failing test, a screenshot and the page's console log land in test-artifacts/.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakstream.local_app import CHROMIUM_ARGS, chromium_path, free_port, start_app, stop_app
from speakstream.settings import Settings

from tiny_coqui import install_tiny_glow_tts
from tiny_pocket import install_tiny_pocket

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = chromium_path()
VISITORS = itertools.count()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python app.py` on a free port, with the bundled model and two voices (Piper and a tiny glow-tts),
    and a tiny untrained Pocket TTS voice offered (it makes "Your voice")."""
    tts_home = tmp_path_factory.mktemp("e2e_tts_home")
    install_tiny_glow_tts(tts_home)
    log_path = tmp_path_factory.mktemp("e2e") / "app.log"
    # The tiny Pocket TTS voice first: it makes "Your voice" while no other is picked (the hub is unreachable)
    voices = ",".join([install_tiny_pocket(), *Settings().voice_names])
    env = {
        **os.environ,
        "TTS_HOME": str(tts_home),
        "SPEAKSTREAM_VOICE": "piper",
        "SPEAKSTREAM_SEED": "3",
        "SPEAKSTREAM_VOICES": voices,
    }
    port = free_port()
    try:
        with log_path.open("w") as log:
            process = start_app(port, env, log)
    except RuntimeError as error:
        pytest.fail(f"{error}:\n{log_path.read_text()}")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_app(process)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set SPEAKSTREAM_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_server: str, request: pytest.FixtureRequest) -> Iterator:
    """A fresh tab on the app; keeps the console log and saves evidence when the test fails.

    A desktop-sized window unless a test asks for other browser-context options (indirect parametrize).
    """
    options = getattr(request, "param", None) or {"viewport": {"width": 1280, "height": 1000}}
    # Each test is its own visitor, as the server sees it: a network address of its own (the
    # server trusts a local proxy's X-Forwarded-For), so the per-address message limit counts
    # each test's messages, not the whole suite's.
    number = next(VISITORS)
    visitor = {"X-Forwarded-For": f"10.0.{number // 250}.{number % 250 + 1}"}
    context = browser.new_context(extra_http_headers=visitor, **options)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.goto(app_server)
    page.get_by_label("Message", exact=True).wait_for()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not page.is_closed():
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"{request.node.name}.console.log").write_text("\n".join(console))
    context.close()
