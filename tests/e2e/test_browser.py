"""A person using SpeakStream in Chromium: typing, reading, listening, stopping, clearing, choosing a voice."""

from __future__ import annotations

import itertools
import re
import time

import pytest

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
        assert page.get_by_role("button", name=name, exact=True).is_visible()
    assert page.get_by_label("Message", exact=True).is_visible()
    assert page.get_by_text("Spoken reply").is_visible()
    assert "Joe (Piper, offline)" in page.locator("#status").inner_text()
    open_settings(page)
    for label in ("Voice", "Model", "System prompt", "Text only (no speech)"):
        assert page.get_by_label(label, exact=True).is_visible()
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


def test_the_conversation_and_settings_survive_a_reload_until_clear(page) -> None:
    page.get_by_text("Model settings").click()
    page.get_by_label("System prompt").fill("You are a pirate captain.")
    page.wait_for_function(f"() => localStorage.getItem('{STORAGE_KEY}')", timeout=10_000)
    before = page.evaluate(f"() => localStorage.getItem('{STORAGE_KEY}')")
    send(page, "Who are you?")
    wait_for_stats(page)
    reply = last_reply(page)
    page.wait_for_function(f"(before) => localStorage.getItem('{STORAGE_KEY}') !== before", arg=before)
    page.reload()
    page.get_by_text("Who are you?").wait_for(timeout=10_000)
    assert last_reply(page) == reply
    page.get_by_text("Model settings").click()
    assert page.get_by_label("System prompt").input_value() == "You are a pirate captain."
    clear_and_wait(page)
    page.wait_for_timeout(500)  # Clear's own update of the browser's storage
    page.reload()
    page.get_by_label("Message", exact=True).wait_for()
    page.get_by_text("Model settings").click()
    page.wait_for_timeout(1000)  # the page restores what was saved (nothing) right after loading
    assert page.locator("#chat .bot, #chat .user").count() == 0
    assert page.get_by_label("System prompt").input_value() == ""


def test_enter_streams_the_reply_in_steps(page) -> None:
    send(page, "Tell me a short story about a robot who learns to paint.")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "first token" not in page.locator("#stats").inner_text():
        text = last_reply(page)
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        time.sleep(0.05)
    assert len(seen) >= 4, f"the reply should grow in steps, saw {len(seen)}"
    assert all(later.startswith(earlier[: len(earlier) // 2]) for earlier, later in itertools.pairwise(seen))
    assert len(seen[-1]) > 40


def test_the_reply_is_heard_for_about_its_spoken_length(page) -> None:
    send(page, "Hi! How are you today?")
    stats = wait_for_stats(page)
    spoken = float(re.search(r"audio ([\d.]+) s", stats).group(1))
    assert spoken > 1.0
    page.wait_for_function(
        f"() => {{ const a = document.querySelector('{AUDIO}'); return a && a.currentTime > 0.5; }}", timeout=30_000
    )
    deadline = time.monotonic() + spoken + 15
    played = 0.0
    while time.monotonic() < deadline:
        state = audio_state(page)
        played = max(played, state["time"])
        if state["paused"] and played > 0.5:
            break
        time.sleep(0.2)
    # Each segment is followed by 0.1 s of silence in the stream; AAC adds a little padding.
    assert spoken - 0.5 < played < spoken * 1.3 + 1.0


def test_stop_in_the_middle_stops_text_and_sound(page) -> None:
    send(page, "Tell me a long story about a dragon and a knight.")
    page.wait_for_function(
        f"() => {{ const a = document.querySelector('{AUDIO}'); return a && a.currentTime > 0.3; }}", timeout=60_000
    )
    page.get_by_role("button", name="Stop", exact=True).click()
    time.sleep(0.5)
    text = last_reply(page)
    before = audio_state(page)
    time.sleep(2.0)
    assert last_reply(page) == text, "no more text after Stop"
    after = audio_state(page)
    silent = after is None or after["paused"] or (before is not None and after["time"] - before["time"] < 0.1)
    assert silent, f"no more sound after Stop: {before} -> {after}"


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
    page.get_by_text("the limit is 1,000").wait_for(timeout=10_000)
    time.sleep(1.0)
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
    reply = last_reply(page).lower()
    assert any(word in reply for word in ("pirate", "ship", "sea", "captain", "arr", "treasure", "sail")), reply
