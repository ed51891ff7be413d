"""One reply, from the conversation to streamed text: the model's tokens as they arrive.

The pipeline owns what happens between the user's message and the speaker, and nothing
about the UI: it yields :class:`ReplyUpdate` values that the UI turns into chat and
audio updates. Each reply records a :class:`Timeline` for logs and the benchmark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from speakstream.conversation import Message, trim_to_context
from speakstream.model import LanguageModel, Sampling

log = logging.getLogger(__name__)


@dataclass
class Timeline:
    """Seconds from the start of a reply to each milestone (None: not reached)."""

    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    done: float | None = None
    tokens: int = 0

    def mark(self, name: str) -> None:
        if getattr(self, name) is None:
            setattr(self, name, time.perf_counter() - self.started)

    @property
    def tokens_per_second(self) -> float | None:
        if self.done is None or self.first_token is None or self.done <= self.first_token:
            return None
        return max(self.tokens - 1, 0) / (self.done - self.first_token)


@dataclass(frozen=True)
class ReplyUpdate:
    """The reply's text so far; ``final`` is set on the last update."""

    text: str
    timeline: Timeline
    final: bool = False


class ReplyPipeline:
    """Runs one reply at a time per call; shared by all sessions (it holds no per-user state)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def prompt(self, messages: Sequence[Message], sampling: Sampling) -> list[Message]:
        """The conversation trimmed (oldest turns first) so prompt plus reply fit the context."""
        budget = self.model.context_length - sampling.max_new_tokens
        return trim_to_context(list(messages), self.model.count_tokens, budget)

    def reply(self, messages: Sequence[Message], stop: threading.Event, sampling: Sampling) -> Iterator[ReplyUpdate]:
        """Stream the reply's text; setting ``stop`` or closing the iterator ends generation."""
        timeline = Timeline()
        text = ""
        for piece in self.model.stream_reply(self.prompt(messages, sampling), stop, sampling):
            timeline.mark("first_token")
            text += piece
            yield ReplyUpdate(text, timeline)
        timeline.mark("done")
        timeline.tokens = self.model.text_tokens(text)
        log.debug(
            "Reply done: first token %.0f ms, %.1f s, %.1f tokens/s",
            1000 * (timeline.first_token or 0),
            timeline.done or 0,
            timeline.tokens_per_second or 0,
        )
        yield ReplyUpdate(text, timeline, final=True)
