"""A person using SpeakStream in Chromium: typing, reading, listening, stopping, clearing, choosing a voice."""

from __future__ import annotations

import itertools
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from support import PIRATE_WORDS, words

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AUDIO = "#reply-audio audio"
STORAGE_KEY = "speakstream"
PHONE_IN_DARK_MODE = {"viewport": {"width": 390, "height": 844}, "color_scheme": "dark", "is_mobile": True}
# A line of Playwright's ARIA snapshot for an interactive element, and its accessible name if it has one
CONTROL = re.compile(r'^\s*- (button|textbox|combobox|slider|spinbutton|checkbox|radio|link)(?: "([^"]+)")?')


def luminance(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of a CSS rgb()/rgba() colour."""
    red, green, blue = (int(part) / 255 for part in re.findall(r"[\d.]+", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def last_reply(page) -> str:
    bot = page.locator("#chat .bot")
    return bot.last.inner_text() if bot.count() else ""


def send(page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def wait_for_stats(page, timeout: float = 90) -> str:
    """The per-reply line appears when the reply is complete."""
    page.wait_for_function(
        "() => (document.querySelector('#stats')?.innerText || '').includes('first token')", timeout=timeout * 1000
    )
    return page.locator("#stats").inner_text()


def wait_for_reply_end(page) -> None:
    """Until the reply event has ended (completed or stopped): Gradio hides the chat's progress overlay."""
    page.wait_for_function("() => document.querySelector('#chat .wrap.default')?.classList.contains('hide')")


def clear_and_wait(page) -> None:
    """Click Clear and wait until the page is empty (a message sent before that would be cancelled too)."""
    page.locator("#clear").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chat .bot, #chat .user').length === 0"
        " && !(document.querySelector('#stats')?.innerText || '').trim()",
        timeout=10_000,
    )


def audio_state(page) -> dict:
    return page.evaluate(
        f"() => {{ const a = document.querySelector('{AUDIO}'); "
        "return a ? {time: a.currentTime, paused: a.paused, ended: a.ended} : null; }"
    )


def open_settings(page) -> None:
    for panel in ("Voice and replay", "Model settings"):
        page.get_by_text(panel).click()


def unnamed_controls(page) -> list[str]:
    """Controls in the page's accessibility tree that a screen reader would announce without a name."""
    tree = page.locator("body").aria_snapshot()
    return [line.strip() for line in tree.splitlines() if (found := CONTROL.match(line)) and not found.group(2)]


def test_every_control_has_a_name_a_screen_reader_reads(page) -> None:
    for name in ("Send", "Stop", "Retry", "Undo"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    expect(page.get_by_text("Spoken reply")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Joe (Piper, offline)")
    open_settings(page)
    for label in ("Voice", "Model", "System prompt", "Text only (no speech)"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    send(page, "Hi! How are you today?")
    wait_for_stats(page)  # the chat's and the players' own buttons are there now too
    assert unnamed_controls(page) == []


@pytest.mark.parametrize("page", [PHONE_IN_DARK_MODE], indirect=True)
def test_the_page_works_in_dark_mode_on_a_phone(page) -> None:
    assert "dark" in page.evaluate("() => document.body.className")
    send(page, "What is the capital of France?")
    wait_for_stats(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    tools = [page.locator(f"#{name}").bounding_box() for name in ("stop", "retry", "undo", "clear")]
    assert len({round(box["y"]) for box in tools}) == 1, "the chat tools fit on one line"
    assert page.locator("#chat .bot").last.bounding_box()["x"] >= 0
    background = luminance(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
    reply_text = luminance(page.evaluate("() => getComputedStyle(document.querySelector('#chat .bot')).color"))
    assert background < 0.1 < 0.6 < reply_text, (background, reply_text)


def reload_until(page, condition: str, arg: object = None) -> None:
    """Reload until the page, once it has put back what the browser saved, meets ``condition`` (JS).

    The page saves a little after a reply or a change; a reload just before that brings back
    the state before it, so the test reloads until the newest state is back.
    """
    for _ in range(10):
        page.reload()
        page.locator("body[data-restored]").wait_for(state="attached")
        page.get_by_text("Model settings").click()
        try:
            page.wait_for_function(condition, arg=arg, timeout=5_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"after 10 reloads, still not {condition}")


def test_the_conversation_and_settings_survive_a_reload_until_clear(page) -> None:
    page.get_by_text("Model settings").click()
    page.get_by_label("System prompt").fill("You are a pirate captain.")
    send(page, "Who are you?")
    wait_for_stats(page)
    reply = last_reply(page)
    reload_until(
        page,
        "(reply) => [...document.querySelectorAll('#chat .bot')].map((bot) => bot.innerText).join() === reply"
        " && document.querySelector('#system-prompt textarea').value !== ''",
        reply,
    )
    assert page.locator("#chat .user").last.inner_text() == "Who are you?"
    assert page.get_by_label("System prompt").input_value() == "You are a pirate captain."
    clear_and_wait(page)
    reload_until(page, "() => document.querySelectorAll('#chat .bot, #chat .user').length === 0")
    assert page.get_by_label("System prompt").input_value() == "", "Clear forgets the saved settings too"


# Keeps every text the newest reply showed, as the page rendered it.
WATCH_REPLY_JS = """
() => {
  window.__texts = [];
  new MutationObserver(() => {
    const bots = document.querySelectorAll('#chat .bot');
    const text = bots.length ? bots[bots.length - 1].innerText : '';
    if (text && text !== window.__texts[window.__texts.length - 1]) window.__texts.push(text);
  }).observe(document.querySelector('#chat'), {childList: true, subtree: true, characterData: true});
}
"""


def test_enter_streams_the_reply_in_steps(page) -> None:
    page.evaluate(WATCH_REPLY_JS)
    send(page, "Tell me a short story about a robot who learns to paint.")
    wait_for_stats(page)
    seen = [text for text in page.evaluate("() => window.__texts") if text != "Loading content"]  # Gradio's placeholder
    assert len(seen) >= 4, f"the reply should grow in steps, saw {len(seen)}"
    assert all(later.startswith(earlier[: len(earlier) // 2]) for earlier, later in itertools.pairwise(seen)), seen
    assert len(seen[-1]) > 40


def test_the_reply_is_heard_for_about_its_spoken_length(page) -> None:
    send(page, "Hi! How are you today?")
    stats = wait_for_stats(page)
    spoken = float(re.search(r"audio ([\d.]+) s", stats).group(1))
    assert spoken > 1.0
    page.wait_for_function(f"() => document.querySelector('{AUDIO}')?.currentTime > 0.5")
    page.wait_for_function(f"() => {{ const a = document.querySelector('{AUDIO}'); return a.paused || a.ended; }}")
    played = audio_state(page)["time"]
    # Each segment is followed by 0.1 s of silence in the stream; AAC adds a little padding.
    assert spoken - 0.5 < played < spoken * 1.3 + 1.0


def test_stop_in_the_middle_stops_text_and_sound(page) -> None:
    send(page, "Tell me a long story about a dragon and a knight.")
    page.wait_for_function(f"() => document.querySelector('{AUDIO}')?.currentTime > 0.3")
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_reply_end(page)
    assert audio_state(page) is None or audio_state(page)["paused"], "no more sound after Stop"
    stopped = last_reply(page)
    assert "first token" not in page.locator("#stats").inner_text(), "the reply did not run to its end"
    send(page, "What is the capital of France?")
    wait_for_stats(page)
    assert page.locator("#chat .bot").first.inner_text() == stopped, "no more text after Stop"


def test_clear_empties_the_conversation(page) -> None:
    send(page, "What is the capital of France?")
    wait_for_stats(page)
    assert page.locator("#chat .bot").count() == 1
    clear_and_wait(page)
    assert page.locator("#stats").inner_text().strip() == ""


def test_changing_the_voice_changes_the_voice_used(page) -> None:
    page.get_by_text("Voice and replay").click()
    voice = page.get_by_label("Voice", exact=True)
    voice.click()
    page.get_by_role("option", name="glow-tts (Coqui TTS)").click()
    send(page, "Hi! How are you today?")
    assert "voice glow-tts (Coqui TTS)" in wait_for_stats(page)
    voice.click()
    page.get_by_role("option", name="Joe (Piper, offline)").click()
    clear_and_wait(page)
    send(page, "Hi! How are you today?")
    assert "voice Joe (Piper, offline)" in wait_for_stats(page)


def test_an_over_long_message_is_refused_with_a_clear_message(page) -> None:
    send(page, "word " * 250)
    page.get_by_text("the limit is 1,000").wait_for()
    wait_for_reply_end(page)
    assert page.locator("#chat .bot, #chat .user").count() == 0, "nothing was sent to the model"
    assert page.get_by_label("Message", exact=True).input_value().startswith("word word")


def test_html_in_a_message_is_shown_as_text_and_never_runs(page) -> None:
    send(page, '<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script> hello')
    wait_for_stats(page)
    assert page.evaluate("() => window.pwned") is None
    assert "<img src=x" in page.locator("#chat .user").last.inner_text()


def test_retry_replaces_the_last_reply_and_undo_removes_it(page) -> None:
    send(page, "Write a haiku about autumn.")
    wait_for_stats(page)
    page.locator("#retry").click()
    # The retried reply starts by clearing the timing line, and ends by writing it again.
    page.wait_for_function("() => !(document.querySelector('#stats')?.innerText || '').trim()", timeout=10_000)
    wait_for_stats(page)
    assert page.locator("#chat .user").count() == 1 and page.locator("#chat .bot").count() == 1
    assert "Write a haiku about autumn." in page.locator("#chat .user").inner_text()
    page.locator("#undo").click()
    page.wait_for_function("() => document.querySelectorAll('#chat .bot, #chat .user').length === 0", timeout=10_000)
    assert page.get_by_label("Message", exact=True).input_value() == "Write a haiku about autumn."


def test_the_system_prompt_box_is_labelled_and_takes_effect(page) -> None:
    page.get_by_text("Model settings").click()
    page.get_by_label("System prompt").fill("You are a pirate captain.")
    send(page, "Who are you?")
    wait_for_stats(page)
    reply = last_reply(page)
    assert words(reply) & PIRATE_WORDS, reply
