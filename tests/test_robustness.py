"""Anyone with the link can send anything: the app stays up, fair and private for everyone.

Through the real model and server: several users at once, Stop and closed tabs, what reaches
the logs. The server's rules in a fixed order (full queue, floods, forged turns, audio files)
are in test_served_rules.py, with a scripted model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest

from speakstream.llm.model import LanguageModel
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.text.conversation import content_text
from speakstream.ui.admit import ReplyChoices
from speakstream.ui.handlers import ChatApp, respond
from speakstream.voices import VoiceSet

from support import chat, chat_client, free_port, generation_threads, serve, wait_until

pytestmark = pytest.mark.slow

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Germany": "Berlin"}


def ask(url: str, question: str, history: list | None = None):
    """Ask for a text-only reply; returns the job."""
    return chat(chat_client(url), question, history=history or [], voice="piper", text_only=True)


def final_chat(job) -> list[dict]:
    job.result()
    return job.outputs()[-1][1]


class WatchedPipeline(ReplyPipeline):
    """The real pipeline, noting for each question whether its reply ran to the end or was stopped."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ended: dict[str, str] = {}

    def reply(self, messages, stop, options):
        how = "stopped"
        try:
            for update in super().reply(messages, stop, options):
                how = "completed" if update.final else how
                yield update
        finally:
            self.ended[messages[-1]["content"]] = how


@dataclasses.dataclass
class App:
    url: str
    pipeline: WatchedPipeline


@pytest.fixture(scope="module")
def greedy_app(model: LanguageModel, piper_voice, settings: Settings) -> Iterator[App]:
    """The app with greedy decoding: replies do not depend on which thread sampled first."""
    greedy = dataclasses.replace(settings, temperature=0.0, port=free_port())
    app = assemble(model, VoiceSet({"piper": piper_voice}, "piper"), greedy)
    pipeline = WatchedPipeline(greedy, app.voices, app.pipeline.speech, app.word_filter, app.pipeline.cores)
    with serve(dataclasses.replace(app, pipeline=pipeline)) as url:
        yield App(url, pipeline)


def test_concurrent_users_each_get_their_own_answer(greedy_app: App) -> None:
    jobs = {country: ask(greedy_app.url, f"What is the capital of {country}?") for country in CAPITALS}
    for country, job in jobs.items():
        chat = final_chat(job)
        assert [m["role"] for m in chat] == ["user", "assistant"]
        assert content_text(chat[0]["content"]) == f"What is the capital of {country}?"
        reply = content_text(chat[1]["content"])
        assert CAPITALS[country] in reply
        assert not any(city in reply for other, city in CAPITALS.items() if other != country)


def test_one_users_stop_leaves_the_others_complete(greedy_app: App) -> None:
    story_question, other_question = (
        "Tell me a long story about a dragon and a knight.",
        "What is the capital of Japan?",
    )
    story = ask(greedy_app.url, story_question)
    assert wait_until(lambda: len(story.outputs()) > 3, timeout=60)
    other = ask(greedy_app.url, other_question)
    story.cancel()
    assert "Tokyo" in content_text(final_chat(other)[-1]["content"])
    assert wait_until(lambda: story_question in greedy_app.pipeline.ended)
    assert greedy_app.pipeline.ended[story_question] == "stopped"
    assert greedy_app.pipeline.ended[other_question] == "completed"
    assert wait_until(lambda: not generation_threads())


def test_control_characters_are_removed(app_url: str) -> None:
    chat = final_chat(ask(app_url, "What is the capital\x00 of\x1b France?\x07"))
    assert content_text(chat[0]["content"]) == "What is the capital of\x1b France?".replace("\x1b", "")


def test_empty_message_is_ignored(app_url: str) -> None:
    chat = final_chat(ask(app_url, "   \n "))
    assert chat == []


def test_long_conversations_are_trimmed_to_the_context(
    model: LanguageModel, pipeline: ReplyPipeline, settings: Settings
) -> None:
    turn = "Tell me more about the history of painting and its many schools. " * 20
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {turn}"} for i in range(59)]
    messages.append({"role": "user", "content": "What is the capital of France?"})
    options = pipeline.options(model)
    sampling = options.sampling
    assert model.count_tokens(messages) > model.context_length
    prompt = pipeline.prompt(messages, options)
    assert model.count_tokens(prompt) <= model.context_length - sampling.max_new_tokens
    assert prompt[-1] == messages[-1] and prompt[0] != messages[0]


def test_no_conversation_reaches_the_logs_at_info(app: ChatApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    outputs = list(respond(app, "My secret word is pineapple. What is it?", [], ReplyChoices(text_only=True)))
    reply = content_text(outputs[-1][1][-1]["content"])
    assert reply
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "pineapple" not in logged and reply[:20] not in logged
