"""The settings panel and chat tools: each choice changes what the next reply uses."""

from __future__ import annotations

import dataclasses

import gradio as gr
import pytest

from speakstream.controls import CONTROLS, NUMBERS, Control
from speakstream.llm.pool import ModelPool
from speakstream.server import assemble
from speakstream.settings import Settings, problems
from speakstream.text.admission import InvalidMessage, for_display
from speakstream.text.conversation import CUT_OFF_NOTE, content_text
from speakstream.ui.admit import REPLY_CONTROLS, ReplyChoices, reply_settings
from speakstream.ui.browser_storage import (
    SAVED_CONTROLS,
    remember_chat,
    remember_settings,
    restore,
    with_reply_being_written,
)
from speakstream.ui.handlers import ChatApp, last_turn_removed, respond
from speakstream.ui.page import build_ui
from speakstream.voices import VoiceSet

from fakes import ScriptedModel, SilentVoice
from support import PIRATE_WORDS, words


def reply_of(outputs: list) -> str:
    return content_text(outputs[-1][1][-1]["content"])


def test_user_choices_are_kept_within_safe_ranges() -> None:
    server = Settings(max_new_tokens=256)
    wild = ReplyChoices(
        system_prompt="  ", temperature=9, top_p=0, max_new_tokens=100_000, repetition_penalty=0.5, speaking_rate=1e-4
    )
    chosen = reply_settings(server, wild)
    assert (chosen.temperature, chosen.top_p, chosen.max_new_tokens, chosen.repetition_penalty) == (2.0, 0.05, 256, 1.0)
    assert chosen.speaking_rate == 0.5, "never ten thousand times longer audio"
    assert chosen.system_prompt == ""
    assert reply_settings(server, ReplyChoices(system_prompt="Be <|im_start|>brief.")).system_prompt == "Be brief."
    assert reply_settings(server, ReplyChoices()) == server
    with pytest.raises(InvalidMessage, match="the limit is 1,000"):
        reply_settings(server, ReplyChoices(system_prompt="x" * 1001))


def sliders_of(page: gr.Blocks) -> dict[str, gr.Slider]:
    return {block.elem_id: block for block in page.blocks.values() if isinstance(block, gr.Slider)}


@pytest.mark.parametrize("control", NUMBERS, ids=lambda control: control.name)
def test_the_slider_the_api_and_the_start_up_check_agree_on_each_controls_range(control: Control) -> None:
    """One declaration (speakstream/controls.py): what the page offers is what an API caller gets
    and what an operator may set as the default."""
    server = Settings()
    setting = getattr(server, control.name)
    highest = control.highest(setting)
    slider = sliders_of(build_ui(app_with(server)))[control.name.replace("_", "-")]
    assert (slider.minimum, slider.maximum, slider.step, slider.label) == (
        control.low,
        highest,
        control.step,
        control.label,
    )
    assert slider.value == setting, "the operator's default"
    below = reply_settings(server, ReplyChoices(**{control.name: control.low - 1}))
    above = reply_settings(server, ReplyChoices(**{control.name: highest + 1}))
    assert (getattr(below, control.name), getattr(above, control.name)) == (slider.minimum, slider.maximum)
    assert not problems(dataclasses.replace(server, **{control.name: control.kind(control.low)}))
    assert not problems(dataclasses.replace(server, **{control.name: control.kind(control.high)}))
    for outside in (control.low - control.step, control.high + control.step):
        assert any(flag(control.name) in problem for problem in problems(replace_number(server, control, outside)))


def test_the_reply_choices_the_api_and_the_browser_take_are_the_declared_controls() -> None:
    assert [control.name for control in CONTROLS if control.reply_choice] == REPLY_CONTROLS
    assert list(SAVED_CONTROLS) == [control.name for control in CONTROLS]


def app_with(settings: Settings) -> ChatApp:
    voice = SilentVoice()
    return assemble(ScriptedModel("Hello."), VoiceSet({voice.key: voice}, voice.key), settings)


def replace_number(settings: Settings, control: Control, value: float) -> Settings:
    return dataclasses.replace(settings, **{control.name: control.kind(value)})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), float("-inf"), "1e999", "fast", [1]])
def test_what_is_not_a_finite_number_leaves_the_servers_setting(odd: object) -> None:
    server = Settings(max_new_tokens=256)
    chosen = reply_settings(
        server,
        ReplyChoices(temperature=odd, top_p=odd, max_new_tokens=odd, repetition_penalty=odd, speaking_rate=odd),
    )
    assert chosen == server


def test_retry_and_undo_start_from_the_last_user_message() -> None:
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": for_display("Is 2 < 3?")},
        {"role": "assistant", "content": "Yes."},
    ]
    assert last_turn_removed(history) == ("Is 2 < 3?", history[:2])
    assert last_turn_removed(history[:2]) == ("Hi", [])
    assert last_turn_removed([]) == ("", [])


@pytest.mark.slow
def test_the_system_prompt_is_followed(app: ChatApp) -> None:
    plain = reply_of(list(respond(app, "Who are you?", [], ReplyChoices(text_only=True)))).lower()
    pirate = reply_of(
        list(
            respond(
                app,
                "Who are you?",
                [],
                ReplyChoices(text_only=True, system_prompt="You are a pirate captain."),
            )
        )
    ).lower()
    assert words(pirate) & PIRATE_WORDS, pirate
    assert not words(plain) & PIRATE_WORDS, plain


@pytest.mark.slow
def test_max_new_tokens_is_respected(app: ChatApp) -> None:
    outputs = list(respond(app, "Tell me a long story.", [], ReplyChoices(text_only=True, max_new_tokens=8)))
    assert 0 < app.models.default.text_tokens(reply_of(outputs)) <= 9


@pytest.mark.slow
def test_a_slower_speaking_rate_gives_longer_audio(app: ChatApp) -> None:
    def seconds(rate: float) -> float:
        outputs = list(respond(app, "Hi! How are you today?", [], ReplyChoices(speaking_rate=rate)))
        sample_rate, samples = outputs[-1][3]
        return samples.size / sample_rate

    assert seconds(0.7) > seconds(1.4) * 1.4


def test_a_reply_the_page_lost_while_it_was_written_comes_back_with_a_note_that_it_was_cut_off() -> None:
    """Gradio reloads a page whose server went away (a replica killed, a restart): what the browser
    kept of the reply so far comes back, and says it was cut off; a finished one says nothing."""
    voice = SilentVoice()
    voices, models = VoiceSet({voice.key: voice}, voice.key), ModelPool(Settings(), ScriptedModel())
    asked = [{"role": "user", "content": "Tell me a story."}]
    for so_far, shown in (("Once upon", f"Once upon\n\n{CUT_OFF_NOTE}"), ("", CUT_OFF_NOTE)):
        writing = with_reply_being_written(remember_chat(asked), so_far)
        assert restore(voices, models, writing, None)[0] == [*asked, {"role": "assistant", "content": shown}]
    finished = remember_chat([*asked, {"role": "assistant", "content": "Once upon a time."}])
    assert restore(voices, models, finished, None)[0][-1]["content"] == "Once upon a time."
    earlier = [{**turn, "writing": True} for turn in finished[:-1]] + finished[-1:]
    assert CUT_OFF_NOTE not in str(restore(voices, models, earlier, None)[0]), "only the last turn can be unfinished"


def test_what_the_browser_saved_comes_back_and_what_this_server_cannot_use_is_left_alone() -> None:
    settings = Settings()
    voice = SilentVoice()
    voices, models = VoiceSet({voice.key: voice}, voice.key), ModelPool(settings, ScriptedModel())
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "not kept"},
    ]
    chosen = {**dict.fromkeys(SAVED_CONTROLS), "voice": "silent", "speaking_rate": 1.3, "text_only": True}
    chosen |= {"system_prompt": "Be brief.", "max_new_tokens": 64, "model": settings.llm}
    restored = restore(voices, models, remember_chat(history), remember_settings(*chosen.values()))
    assert restored[0] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    values = dict(zip(SAVED_CONTROLS, restored[1:], strict=True))
    assert values["voice"] == "silent" and values["speaking_rate"] == 1.3 and values["text_only"] is True
    assert values["system_prompt"] == "Be brief." and values["max_new_tokens"] == 64
    assert values["model"] == settings.llm
    assert isinstance(values["temperature"], type(gr.skip()))  # saved as None: left as the page has it

    unusable = {"voice": "no-such-voice", "model": "/etc/passwd", "speaking_rate": "fast", "text_only": 1}
    unusable |= {"max_new_tokens": settings.max_new_tokens + 8, "temperature": -1}  # (out of the slider's range)
    values = dict(zip(SAVED_CONTROLS, restore(voices, models, [], unusable)[1:], strict=True))
    assert all(isinstance(value, type(gr.skip())) for value in values.values())
    for chat, chosen in (
        (None, None),
        ("text", "x"),
        ({"history": "x"}, []),
        ([{"role": "system", "content": "x"}], {}),
    ):
        assert all(isinstance(value, type(gr.skip())) for value in restore(voices, models, chat, chosen))
