"""Two page servers behind Debian's nginx, run from the README's "Growing beyond one machine"
(its own commands and configuration: ``speakstream/local_cluster.py``), sharing one model
server, ``transformers serve`` on the bundled model.

Each visitor is an address of its own in X-Forwarded-For, which nginx takes as the README says
to where a proxy stands in front of it.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from speakstream.local_app import ROOT
from speakstream.local_cluster import Replicas, metric, replicas_behind_nginx, visitor_address
from speakstream.text.conversation import CUT_OFF_NOTE

from support import WAIT_SECONDS, chat, chat_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
STORY = "Tell me a long story about a robot who learns to paint, with many details."


def plain_words(text: str) -> list[str]:
    """The words of a reply as the page shows it, without markdown (a part still being written
    may show ``**`` that its whole renders as bold)."""
    return re.findall(r"[\w']+", text)


class Visits:
    """Messages sent through nginx, and which page server answered each (by its own /metrics)."""

    def __init__(self, replicas: Replicas) -> None:
        self.url, self.ports, self.processes = replicas.url, replicas.ports, replicas.processes

    def started(self) -> list[float]:
        """Replies each page server has started, by its own /metrics."""
        return [metric(f"http://127.0.0.1:{port}", "speakstream_replies_started_total") for port in self.ports]

    def completed(self, replica: int) -> float:
        """Replies page server ``replica`` has completed, by its own /metrics."""
        return metric(f"http://127.0.0.1:{self.ports[replica]}", 'speakstream_replies_ended_total{outcome="completed"}')

    def ask(self, client: Any, message: str = "Hi!") -> int:
        """Send a message; returns the page server that answered it (the only one whose count of
        replies grew, by one)."""
        before = self.started()
        chat(client, message, text_only=True, max_new_tokens=16).result(timeout=WAIT_SECONDS * 4)
        grown = [after - earlier for after, earlier in zip(self.started(), before, strict=True)]
        assert sorted(grown) == [0, 1], f"one reply counted once, by the server that wrote it: {grown}"
        return grown.index(1)

    def visitor_on(self, replica: int) -> str:
        """An address that nginx sends to ``replica`` (the hash decides; a few tries find one)."""
        for number in range(100, 140):
            address = visitor_address(number)
            if self.ask(chat_client(self.url, address)) == replica:
                return address
        raise AssertionError(f"no visitor in 40 was sent to page server {replica}")


@pytest.fixture(scope="module")
def replicas(transformers_serve: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Visits]:
    model_url, model_folder = transformers_serve
    env = {
        "SPEAKSTREAM_STORAGE_SECRET": "the same on every page server",
        "SPEAKSTREAM_LLM_ENDPOINT_MODEL": model_folder,  # the model server's offline copy
        "SPEAKSTREAM_VOICE": "piper",
        "SPEAKSTREAM_RATE_LIMIT": "0",
    }
    with replicas_behind_nginx(2, model_url, env, tmp_path_factory.mktemp("replicas")) as started:
        yield Visits(started)


def test_each_visitor_stays_on_one_page_server_both_serve_and_each_counts_its_own(replicas: Visits) -> None:
    served: dict[str, list[int]] = {}
    for number in range(40):
        address = visitor_address(number)
        client = chat_client(replicas.url, address)
        served[address] = [replicas.ask(client), replicas.ask(client, "Thank you!")]
        if len(served) >= 3 and {first for first, _ in served.values()} == {0, 1}:
            break
    assert all(first == second for first, second in served.values()), f"a visitor moved: {served}"
    assert {first for first, _ in served.values()} == {0, 1}, f"one page server served everyone: {served}"


@pytest.fixture
def visit(browser, request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], Any]]:
    """Opens the page as visitor ``address``; keeps a screenshot when the test fails."""
    contexts: list[Any] = []

    def open_page(url: str, address: str) -> Any:
        contexts.append(browser.new_context(extra_http_headers={"X-Forwarded-For": address}))
        page = contexts[-1].new_page()
        page.goto(url)
        return page

    yield open_page
    report = getattr(request.node, "report_call", None)
    for context in contexts:
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            context.pages[0].screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()


# (last in this module: it leaves one page server standing)
def test_a_page_server_killed_mid_reply_ends_it_with_a_note_and_the_next_message_goes_to_the_other(
    replicas: Visits, visit: Callable[[str, str], Any]
) -> None:
    victim, survivor = 0, 1
    page = visit(replicas.url, replicas.visitor_on(victim))
    box = page.get_by_label("Message", exact=True)
    box.fill(STORY)
    box.press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#chat .bot')?.innerText || '').trim().length > 0",
        timeout=WAIT_SECONDS * 4000,
    )
    written = plain_words(page.locator("#chat .bot").last.inner_text())[:-1]  # (the last may be partial)
    assert "first token" not in page.locator("#stats").inner_text(), "the reply ended before the kill"
    replicas.processes[victim].send_signal(signal.SIGKILL)
    replicas.processes[victim].wait(WAIT_SECONDS)

    # Gradio finds its server gone and reloads the page; what the browser kept comes back.
    cut_off = CUT_OFF_NOTE.strip("*")
    page.wait_for_function(
        "note => (document.querySelector('#chat')?.innerText || '').includes(note)",
        arg=cut_off,
        timeout=WAIT_SECONDS * 2000,
    )
    assert page.locator("#chat .user").first.inner_text().strip() == STORY
    kept = page.locator("#chat .bot").last.inner_text().strip()
    assert plain_words(kept)[: len(written)] == written and kept.endswith(cut_off), kept

    completed = replicas.completed(survivor)
    box = page.get_by_label("Message", exact=True)
    box.fill("What is the capital of France?")
    box.press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#stats')?.innerText || '').includes('first token')",
        timeout=WAIT_SECONDS * 4000,
    )
    assert page.locator("#chat .bot").count() == 2 and page.locator("#chat .bot").last.inner_text().strip()
    assert replicas.completed(survivor) == completed + 1, "the other page server answered"
