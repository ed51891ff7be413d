"""The reply cache: an example asked again gets its reply at once, text and speech, where replaying
is honest; everything else, and Retry, asks the model.

Through the chat handler on a scripted model that counts how often it is asked, and a voice that
draws random noise each time (speech made again would differ from speech kept).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from speakstream.pipeline.reply_cache import KeptReply, ReplyCache, reply_key
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.ui.admit import ReplyChoices
from speakstream.ui.examples import EXAMPLE_PROMPTS
from speakstream.ui.handlers import ChatApp, ChatView, ask_again, respond
from speakstream.voices import VoiceSet

from fakes import NoisyVoice, ScriptedModel
from support import player_segments

EXAMPLE = EXAMPLE_PROMPTS[0]
ANSWER = "The capital of France is Paris. It is known for its art, food and the Eiffel Tower."


class CountedModel(ScriptedModel):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.asked = 0

    def stream_reply(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.asked += 1
        return super().stream_reply(*args, **kwargs)  # type: ignore[arg-type]


def chat_app(**overrides: object) -> tuple[ChatApp, CountedModel, NoisyVoice]:
    model, voice = CountedModel(ANSWER), NoisyVoice()
    settings = dataclasses.replace(Settings(), **overrides)
    return assemble(model, VoiceSet({voice.key: voice}, voice.key), settings), model, voice


def heard(app: ChatApp, message: str, session: dict | None = None, **choices: object) -> tuple[str, list]:
    """The reply's final text and the audio segments the page's player got."""
    outputs = list(respond(app, message, [], ReplyChoices(**choices), session))
    assert ChatView.of(outputs[-1]).completed
    values = [out[2] for out in outputs if isinstance(out[2], dict) and "reply" in out[2]]
    said = [(segment["pcm"], segment["text"]) for segment in player_segments(values)]
    return ChatView.of(outputs[-1]).history[-1]["content"], said


def hits(app: ChatApp) -> float:
    return app.metrics.registry.get_sample_value("speakstream_reply_cache_hits_total") or 0.0


def test_an_example_asked_again_gets_the_same_text_and_speech_without_asking_the_model() -> None:
    app, model, voice = chat_app()
    first = heard(app, EXAMPLE)
    spoken = len(voice.spoken)
    again = heard(app, EXAMPLE)
    assert model.asked == 1 and len(voice.spoken) == spoken, "neither the model nor the voice was asked"
    assert again == first and first[0] == ANSWER and first[1], "the same words and the same sound"
    assert hits(app) == 1


@pytest.mark.parametrize(
    ("message", "overrides", "choices"),
    [
        ("Tell me about Paris.", {}, {}),  # not an example: its reply is drawn afresh each time
        (EXAMPLE, {}, {"temperature": 0.7}),  # an example with the user's own settings
        (EXAMPLE, {}, {"speaking_rate": 1.5}),
        (EXAMPLE, {"reply_cache": "off"}, {}),
        ("Tell me about Paris.", {"reply_cache": "examples", "seed": 7}, {}),  # a seed, but only examples
    ],
    ids=["not an example", "own temperature", "own rate", "cache off", "seeded, examples only"],
)
def test_other_requests_ask_the_model_each_time(message: str, overrides: dict, choices: dict) -> None:
    app, model, _ = chat_app(**overrides)
    heard(app, message, **choices)
    heard(app, message, **choices)
    assert model.asked == 2 and hits(app) == 0


def test_with_the_cache_on_a_request_whose_reply_its_seed_fixes_is_given_again() -> None:
    app, model, _ = chat_app(reply_cache="on", seed=7)
    assert heard(app, "Tell me about Paris.") == heard(app, "Tell me about Paris.")
    assert model.asked == 1


def test_retry_asks_the_model_afresh_and_the_next_message_may_replay_again() -> None:
    app, model, _ = chat_app()
    session: dict = {}
    heard(app, EXAMPLE, session)
    ask_again(session)
    heard(app, EXAMPLE, session)
    assert model.asked == 2
    heard(app, EXAMPLE, session)
    assert model.asked == 2 and hits(app) == 1


def test_a_stopped_reply_is_never_kept() -> None:
    app, model, _ = chat_app()
    stop = threading.Event()
    options = app.pipeline.options(model, replayable=True)
    messages = [{"role": "user", "content": EXAMPLE}]
    for update in app.pipeline.reply(messages, stop, options):
        if update.audio is not None:
            stop.set()
    list(app.pipeline.reply(messages, threading.Event(), options))
    assert model.asked == 2


def test_the_cache_keeps_the_most_recent_replies_and_its_speech_cannot_be_changed() -> None:
    app, model, _ = chat_app()
    cache = ReplyCache(most=2)
    first = reply_key(model, [{"role": "user", "content": "Hi?"}], app.pipeline.options(model).sampling, "v", 1.0)
    keys = [first, *(dataclasses.replace(first, voice=f"v{n}") for n in range(2))]
    for key in keys:
        cache.keep(key, KeptReply("Hi.", ((np.ones(4, dtype=np.int16), "Hi."),)))
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2]) is not None
    with pytest.raises(ValueError):
        cache.get(keys[2]).segments[0][0][0] = 5  # type: ignore[union-attr]
