"""A person using SpeakStream in Chromium: typing, reading, listening, stopping, clearing, choosing a voice."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from support import PIRATE_WORDS, words

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAYER = "window.speakstreamPlayer"
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


def player(page, expression: str):
    """``expression`` evaluated on the page's player (``p``)."""
    return page.evaluate(f"() => {{ const p = {PLAYER}; return {expression}; }}")


def wait_for_player(page, condition: str, timeout: float = 30) -> None:
    page.wait_for_function(f"() => {{ const p = {PLAYER}; return p && ({condition}); }}", timeout=timeout * 1000)


def wait_until_heard(page, stats: str) -> None:
    """Until the reply whose timing line is ``stats`` has played to its end (its length, and some)."""
    spoken = float(re.search(r"audio ([\d.]+) s", stats).group(1))
    wait_for_player(page, "p.done && p.state === 'idle'", timeout=spoken + 30)


def scheduled(page) -> list[dict]:
    """The segments the player scheduled for the reply now playing: index, start and end (seconds)."""
    return player(page, "p.log.filter((entry) => entry.reply === p.reply)")


def change_setting(page, change: Callable[[], None], holds: str, arg: object = None) -> None:
    """Make ``change`` to a setting until, once the page has saved its settings, it ``holds`` (JS).

    A settings panel builds its controls when it first opens, and in the moment after, Gradio can
    put a control's first value back over what was just typed or picked (faster than a person
    acts, not faster than a test), and saves that. So the change is made again until the page
    keeps it.
    """
    saved_or_lost = f"([before, arg]) => localStorage.getItem('speakstream-settings') !== before || !({holds})(arg)"
    for _ in range(5):
        before = page.evaluate("() => localStorage.getItem('speakstream-settings')")
        change()
        page.wait_for_function(saved_or_lost, arg=[before, arg])
        if page.evaluate(holds, arg):
            return
    raise AssertionError(f"the page never kept the setting: {holds} ({arg!r})")


def set_system_prompt(page, text: str) -> None:
    """Type a system prompt (its panel open) and wait until the page keeps it."""
    change_setting(
        page,
        lambda: page.get_by_label("System prompt").fill(text),
        "(text) => document.querySelector('#system-prompt textarea').value === text",
        text,
    )


def choose_voice(page, name: str) -> None:
    """Pick a voice (its panel open) and wait until the page keeps it."""

    def pick() -> None:
        page.get_by_label("Voice", exact=True).click()
        page.get_by_role("option", name=name).click()

    change_setting(page, pick, "(name) => document.querySelector('#voice input').value === name", name)


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
    shown = page.evaluate(
        "() => ({chat: [...document.querySelectorAll('#chat .bot, #chat .user')].map((turn) => turn.innerText),"
        " system_prompt: document.querySelector('#system-prompt textarea').value})"
    )
    raise AssertionError(f"after 10 reloads, still not {condition} (with {arg!r}); the page shows {shown!r}")


def test_the_conversation_and_settings_survive_a_reload_until_clear(page) -> None:
    page.get_by_text("Model settings").click()
    set_system_prompt(page, "You are a pirate captain.")
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
    page.locator("#chat").wait_for()  # the page can show the message box before the chat is mounted
    page.evaluate(WATCH_REPLY_JS)
    send(page, "Tell me a short story about a robot who learns to paint.")
    wait_for_stats(page)
    seen = [text for text in page.evaluate("() => window.__texts") if text != "Loading content"]  # Gradio's placeholder
    assert len(seen) >= 4, f"the reply should grow in steps, saw {len(seen)}"
    assert all(later.startswith(earlier[: len(earlier) // 2]) for earlier, later in itertools.pairwise(seen)), seen
    assert len(seen[-1]) > 40


def test_the_whole_reply_is_heard_back_to_back(page) -> None:
    send(page, "Explain in three sentences why the sky is blue.")
    wait_for_player(page, "p.state === 'speaking' && p.level() > 0.01")  # sound reaches the speakers
    stats = wait_for_stats(page)
    spoken = float(re.search(r"audio ([\d.]+) s", stats).group(1))
    wait_until_heard(page, stats)
    segments = scheduled(page)
    assert [segment["index"] for segment in segments] == list(range(len(segments))), "each segment once, in order"
    assert sum(s["end"] - s["start"] for s in segments) == pytest.approx(spoken, abs=0.05 + 0.001 * len(segments))
    for before, after in itertools.pairwise(segments):
        if after["arrived"] < before["end"]:  # it came while the one before was playing: no gap at all
            assert after["start"] == pytest.approx(before["end"], abs=1e-6)
    state = player(page, "p.getState()")
    assert state["played"] == len(segments) and state["lost"] == 0 and state["queued"] == 0, state
    late = sum(after["arrived"] >= before["end"] for before, after in itertools.pairwise(segments))
    assert state["underruns"] == late, "each segment that came after the sound ran out is an underrun"
    wait_for_player(page, "p.level() === 0")  # silent once the reply has been heard


def test_the_sentence_being_spoken_is_highlighted_in_the_reply(page) -> None:
    send(page, "Explain in three sentences why the sky is blue.")
    highlighted = page.wait_for_function(
        "() => { const h = CSS.highlights.get('speakstream-spoken'); const text = h && [...h][0].toString();"
        " return text && text.trim().length > 3 && window.speakstreamPlayer.state === 'speaking' && text; }"
    ).json_value()
    assert highlighted.strip() in last_reply(page)


def test_stop_in_the_middle_stops_text_and_sound(page) -> None:
    send(page, "Tell me a long story about a dragon and a knight.")
    wait_for_player(page, "p.state === 'speaking' && p.level() > 0.01")
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_player(page, "p.state === 'stopped' && p.level() === 0")
    expect(page.locator("#player .state")).to_have_text("Stopped")
    wait_for_reply_end(page)
    heard = len(scheduled(page))
    stopped = last_reply(page)
    assert "first token" not in page.locator("#stats").inner_text(), "the reply did not run to its end"
    send(page, "What is the capital of France?")
    wait_for_stats(page)
    assert page.locator("#chat .bot").first.inner_text() == stopped, "no more text after Stop"
    assert len(player(page, "p.log")) - heard == len(scheduled(page)), "nothing more of the stopped reply was played"


def test_a_new_message_silences_the_reply_still_speaking(page) -> None:
    send(page, "Tell me a long story about a dragon and a knight.")
    wait_for_player(page, "p.state === 'speaking' && p.level() > 0.01")
    first = player(page, "p.reply")
    send(page, "What is the capital of France?")
    wait_for_player(page, f"p.reply !== '{first}'")
    assert player(page, f"p.sources.every((s) => s.reply !== '{first}') && p.stopped.has('{first}')")
    heard = player(page, f"p.log.filter((e) => e.reply === '{first}').length")
    wait_until_heard(page, wait_for_stats(page))
    assert player(page, f"p.log.filter((e) => e.reply === '{first}').length") == heard, "nothing more of the old one"
    assert "Paris" in last_reply(page)


def test_the_volume_is_kept_and_sets_the_loudness(page) -> None:
    page.get_by_label("Volume").fill("0.3")
    page.reload()
    expect(page.get_by_label("Volume")).to_have_value("0.3")
    send(page, "Hi! How are you today?")
    wait_for_player(page, "p.gain && Math.abs(p.gain.gain.value - 0.3) < 1e-6")


def test_sound_the_browser_blocks_is_shown_and_a_click_lets_it_play(page) -> None:
    send(page, "Explain in three sentences why the sky is blue.")
    wait_for_player(page, "p.ctx && p.sources.length > 0")
    page.evaluate(f"() => {PLAYER}.ctx.suspend()")  # where a browser's autoplay policy leaves a page
    wait_for_player(page, "p.state === 'blocked'")
    expect(page.locator("#player .state")).to_contain_text("click here")
    page.locator("#player .state").click()
    wait_for_player(page, "p.ctx.state === 'running' && p.state === 'speaking'")


def test_clear_empties_the_conversation(page) -> None:
    send(page, "What is the capital of France?")
    wait_for_stats(page)
    assert page.locator("#chat .bot").count() == 1
    clear_and_wait(page)
    assert page.locator("#stats").inner_text().strip() == ""


def test_changing_the_voice_changes_the_voice_used(page) -> None:
    page.get_by_text("Voice and replay").click()
    choose_voice(page, "glow-tts (Coqui TTS)")
    send(page, "Hi! How are you today?")
    assert "voice glow-tts (Coqui TTS)" in wait_for_stats(page)
    choose_voice(page, "Joe (Piper, offline)")
    clear_and_wait(page)
    send(page, "Hi! How are you today?")
    assert "voice Joe (Piper, offline)" in wait_for_stats(page)


def make_your_voice(page, folder: Path) -> None:
    """Upload 6 s of a voice-like tone under *Your voice* and make the voice from it."""
    clip = folder / "me.wav"
    seconds = np.arange(6 * 24_000) / 24_000
    soundfile.write(clip, (0.3 * np.sin(2 * np.pi * (120 + 40 * seconds) * seconds)).astype(np.float32), 24_000)
    page.get_by_text("Your voice", exact=True).click()
    expect(page.get_by_text("one you have permission to use")).to_be_visible()
    page.locator("#own-voice-clip input[type=file]").set_input_files(clip)
    expect(page.locator("#own-voice-clip audio").first).to_be_attached()  # uploaded
    page.locator("#make-voice").click()
    expect(page.locator("#own-voice-status")).to_contain_text("Ready", timeout=60_000)


def own_voices_held(url: str) -> int:
    """How many voices made from users' clips the server holds (its /metrics)."""
    found = re.search(r"^speakstream_own_voices (\S+)$", requests.get(f"{url}metrics", timeout=10).text, re.M)
    return int(float(found.group(1)))


def test_a_clip_uploaded_makes_your_voice_and_the_next_reply_speaks_with_it(page, tmp_path: Path) -> None:
    make_your_voice(page, tmp_path)
    send(page, "Hi! How are you today?")
    stats = wait_for_stats(page)
    assert "voice Your voice" in stats and float(re.search(r"audio ([\d.]+) s", stats).group(1)) > 0
    wait_until_heard(page, stats)
    page.locator("#forget-voice").click()
    expect(page.locator("#own-voice-status")).to_contain_text("Forgotten")


def test_closing_the_page_forgets_your_voice(page, app_server: str, tmp_path: Path) -> None:
    before = own_voices_held(app_server)
    make_your_voice(page, tmp_path)
    assert own_voices_held(app_server) == before + 1
    page.close()
    deadline = time.monotonic() + 90
    while own_voices_held(app_server) > before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert own_voices_held(app_server) == before, "the closed page's voice is still held"


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
    set_system_prompt(page, "You are a pirate captain.")
    send(page, "Who are you?")
    wait_for_stats(page)
    reply = last_reply(page)
    assert words(reply) & PIRATE_WORDS, reply
