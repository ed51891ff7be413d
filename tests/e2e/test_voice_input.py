"""A person talking to SpeakStream in Chromium, whose fake microphone plays a WAV file the test
makes with espeak-ng: a spoken question answered aloud, a reply interrupted by speaking, and a
microphone the browser refuses. (espeak-ng says a text the same way every time; the Piper voice
draws fresh noise each time, and tiny.en mishears about one Piper "France" in seven as
"friends", with any window: these tests are about the page, `bench voice` about the words.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from speakstream.bench.spoken_prompts import espeak_speech, fake_microphone, write_prompts
from speakstream.local_app import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTION = "What is the capital of France?"
PLAYER = "window.speakstreamPlayer"
MIC = "window.speakstreamMicrophone"


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("microphone") / "question.wav"
    write_prompts(path, [(QUESTION, espeak_speech(QUESTION))], lead=1.0, gap=30.0)
    return path


def launch(browser, flags: list[str]):
    """Another Chromium with ``flags``, through the suite's own Playwright (one per process)."""
    return browser.browser_type.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS + flags)


@pytest.fixture
def talking_page(question_wav: Path, app_server: str, browser) -> Iterator:
    """A tab whose microphone says the question (from the moment the page asks for it)."""
    talking = launch(browser, fake_microphone(question_wav))
    page = talking.new_page(extra_http_headers={"X-Forwarded-For": "10.9.0.1"})
    page.goto(app_server)
    page.get_by_label("Message", exact=True).wait_for()
    yield page
    talking.close()


def user_turns(page) -> list[str]:
    return page.locator("#chat .user").all_inner_texts()


def wait_for_player(page, condition: str, timeout: float = 60) -> None:
    page.wait_for_function(f"() => {{ const p = {PLAYER}; return p && ({condition}); }}", timeout=timeout * 1000)


def test_a_spoken_question_appears_as_the_users_turn_and_is_answered_aloud(talking_page) -> None:
    page = talking_page
    talk = page.get_by_role("button", name="Talk: speak a message")
    talk.click()
    page.wait_for_function(f"() => {MIC}.state === 'hearing'", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('#chat .user').length === 1", timeout=60_000)
    assert user_turns(page) == [QUESTION]
    wait_for_player(page, "p.state === 'speaking' && p.level() > 0.01")
    assert "Paris" in page.locator("#chat .bot").last.inner_text()
    assert page.evaluate(f"() => {MIC}.state") == "off", "push-to-talk stops listening after one message"


def test_speaking_while_a_reply_plays_silences_it_and_the_question_is_answered(talking_page) -> None:
    page = talking_page
    box = page.get_by_label("Message", exact=True)
    box.fill("Tell me a long story about a dragon and a knight.")
    box.press("Enter")
    wait_for_player(page, "p.state === 'speaking' && p.level() > 0.01")
    first = page.evaluate(f"() => {PLAYER}.reply")
    page.get_by_label("Conversation mode (listens, you can interrupt)").check()
    page.get_by_role("button", name="Talk: speak a message").click()
    # The question starts a second after the page asks for the microphone: the story is silenced then.
    wait_for_player(page, f"p.stopped.has('{first}') && p.level() === 0")
    heard = page.evaluate(f"() => {PLAYER}.log.filter((e) => e.reply === '{first}').length")
    page.wait_for_function("() => document.querySelectorAll('#chat .user').length === 2", timeout=60_000)
    assert user_turns(page)[-1] == QUESTION
    wait_for_player(page, f"p.reply !== '{first}' && p.state === 'speaking'")
    assert page.evaluate(f"() => {PLAYER}.log.filter((e) => e.reply === '{first}').length") == heard
    assert page.evaluate(f"() => {MIC}.state") == "listening", "conversation mode goes on listening"


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (
            ["--use-fake-device-for-media-stream"],  # a microphone, but the permission is refused
            "The microphone is blocked: allow it for this page in the browser's site settings, then click Talk again.",
        ),
        ([], "No microphone was found: connect one, or type your message."),
    ],
    ids=["permission denied", "no microphone"],
)
def test_a_microphone_that_cannot_be_used_gets_one_line_saying_what_to_do(
    app_server: str, browser, flags: list[str], line: str
) -> None:
    refusing = launch(browser, flags)
    page = refusing.new_page()
    page.goto(app_server)
    page.get_by_role("button", name="Talk: speak a message").click()
    page.wait_for_function(
        f"() => {MIC}.state === 'off' && {MIC}.log.length === 0 && "
        "document.querySelector('#microphone .status').textContent.length > 0"
    )
    assert page.locator("#microphone .status").inner_text() == line
    refusing.close()
