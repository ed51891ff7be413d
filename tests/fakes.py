"""Stand-ins for the language model and the voice whose pace and failures the test sets.

They implement the same small interfaces as the real ones (what the pipeline, the model pool
and the page's handlers call), so everything around the models can be tested fast and in a
fixed order: a test decides when each token is written and each chunk is spoken, and then
asserts on what happened in what order, never on how long it took.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from speakstream.llm.model import ReplyGate
from speakstream.pipeline.reply import ReplyOptions, ReplyPipeline
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.ui.handlers import ChatApp
from speakstream.voices import Voice, VoiceSet

from support import WAIT_SECONDS, free_port, serve

Hook = Callable[[int], None]


class Events:
    """One log shared by a scripted model and a scripted voice: what happened, in order."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._changed = threading.Condition()

    def add(self, item: str) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def items(self) -> list[str]:
        with self._changed:
            return list(self._items)

    def wait_for(self, item: str, timeout: float = WAIT_SECONDS) -> None:
        """Block until ``item`` is logged; fail (never hang) if it does not come."""
        with self._changed:
            if not self._changed.wait_for(lambda: item in self._items, timeout=timeout):
                raise AssertionError(f"{item!r} never happened; saw {self._items}")

    def index(self, item: str) -> int:
        return self.items.index(item)


def words(text: str) -> list[str]:
    """``text`` as the tokens a model would stream: each word with the space before it."""
    parts = text.split(" ")
    return [parts[0], *(" " + part for part in parts[1:])]


class ScriptedModel:
    """A language model that writes a script, one piece per token.

    ``before_token(i)`` runs before token ``i`` is written: the test's pace (sleep, or wait
    for something to happen first). ``fail_at`` raises ``error`` instead of writing token
    ``fail_at``. Every conversation it was asked to answer is kept in ``prompts``; every
    token it wrote is logged in ``events`` as ``token i``.
    """

    def __init__(
        self,
        script: str | Sequence[str] = "Paris is the capital of France. It is lovely in spring.",
        *,
        name: str = "scripted",
        before_token: Hook | None = None,
        fail_at: int | None = None,
        error: BaseException | None = None,
        context_length: int = 2048,
        events: Events | None = None,
    ) -> None:
        self.pieces = words(script) if isinstance(script, str) else list(script)
        self.name = name
        self.before_token = before_token
        self.fail_at = fail_at
        self.error = error or RuntimeError("the model broke")
        self.context_length = context_length
        self.events = events or Events()
        self.prompts: list[list[dict[str, str]]] = []
        self.written = 0  # tokens written, over all replies
        self.paused_at: list[int] = []  # tokens written while the caller asked for a pause
        self.source = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def stream_reply(
        self, messages: Sequence[dict[str, str]], sampling: Any, gate: ReplyGate | None = None
    ) -> Iterator[str]:
        gate = gate or ReplyGate()
        stop, pause = gate.stop, gate.pause
        self.prompts.append([dict(message) for message in messages])
        for index, piece in enumerate(self.pieces[: sampling.max_new_tokens]):
            if self.before_token is not None:
                self.before_token(index)
            if stop.is_set():
                self.events.add("stopped")
                return
            if index == self.fail_at:
                raise self.error
            if pause is not None and pause.is_set():
                self.paused_at.append(index)
            self.written += 1
            self.events.add(f"token {index}")
            yield piece
        self.events.add("wrote all")

    def count_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """Words, plus three a message for the chat template's markers, plus the reply's prompt."""
        return sum(len(message["content"].split()) + 3 for message in messages) + 2

    def text_tokens(self, text: str) -> int:
        return len(text.split())


ASK = [{"role": "user", "content": "Tell me a story."}]


@dataclasses.dataclass
class Scripted:
    """The app's pipeline (assembled as at start-up) with the scripted model every reply uses."""

    pipeline: ReplyPipeline
    model: ScriptedModel

    def __getattr__(self, name: str) -> object:
        return getattr(self.pipeline, name)

    def options(self, **choices: object) -> ReplyOptions:
        return self.pipeline.options(self.model, **choices)


def pipeline_for(model: ScriptedModel, voice: SilentVoice | None = None, **overrides: object) -> Scripted:
    settings = dataclasses.replace(Settings(), **overrides)
    voices = VoiceSet({voice.key: voice}, voice.key) if voice else VoiceSet()
    return Scripted(assemble(model, voices, settings).pipeline, model)


def paced(seconds: float) -> Hook:
    """A pace of ``seconds`` a token, for tests that watch a reply stream."""
    return lambda _index: time.sleep(seconds)


def hold_until(events: Events, token: int, item: str) -> Hook:
    """Write token ``token`` only once ``item`` has happened (e.g. the voice began a chunk)."""

    def hook(index: int) -> None:
        if index == token:
            events.wait_for(item)

    return hook


class SilentVoice(Voice):
    """A test voice: 60 ms of quiet a character, logged as ``speak <n>`` / ``spoke <n>`` per chunk.

    ``before_chunk(n)`` runs before chunk ``n`` is synthesized (the test's pace); ``fail``
    makes every chunk raise. With ``lead_seconds``, a chunk asked for its start early hands
    that much to ``lead`` first (logged as ``lead <n>``), as glow-tts does, then runs
    ``after_lead(n)`` before making the rest.
    """

    key = "silent"
    label = "Silent (tests)"
    sample_rate = 22050

    def __init__(
        self,
        events: Events | None = None,
        before_chunk: Hook | None = None,
        fail: bool = False,
        key: str = "silent",
        lead_seconds: float = 0.0,
        after_lead: Hook | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.events = events or Events()
        self.before_chunk = before_chunk
        self.fail = fail
        self.lead_seconds = lead_seconds
        self.after_lead = after_lead
        self.spoken: list[str] = []

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        number = len(self.spoken)
        self.spoken.append(text)
        self.events.add(f"speak {number}")
        if self.before_chunk is not None:
            self.before_chunk(number)
        if self.fail:
            raise RuntimeError("the voice broke")
        sound = np.full(int(0.06 * len(text) * self.sample_rate * length_scale), 0.01, dtype=np.float32)
        start = int(self.lead_seconds * self.sample_rate)
        if lead is not None and 0 < start < sound.size:
            lead(sound[:start])
            self.events.add(f"lead {number}")
            if self.after_lead is not None:
                self.after_lead(number)
            sound = sound[start:]
        self.events.add(f"spoke {number}")
        return sound


class NoisyVoice(SilentVoice):
    """Speech with fresh random noise each time, at 16 kHz (the reply resamples it)."""

    sample_rate = 16000

    def __init__(self, engine: str = "noisy 1.0", **kwargs: object) -> None:
        super().__init__(key="noisy", **kwargs)  # type: ignore[arg-type]
        self.engine = engine
        self.random = np.random.default_rng()

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        shape = super()._synthesize(text, length_scale, lambda start: lead and lead(self.noise(start.size)))
        return self.noise(shape.size)

    def noise(self, size: int) -> np.ndarray:
        return (self.random.standard_normal(size) * 0.05).astype(np.float32)


@dataclasses.dataclass
class ScriptedServer:
    """A real Gradio server of the app in this process, on a scripted model and a silent voice."""

    url: str
    model: ScriptedModel
    events: Events
    app: ChatApp


@contextmanager
def scripted_server(
    script: str = "Hello! Nice to meet you. How can I help today?", **settings: Any
) -> Iterator[ScriptedServer]:
    """Serve the app with ``settings`` (over the defaults) on a scripted model; yields how to reach it."""
    events = Events()
    model = ScriptedModel(script, events=events)
    chosen = Settings(port=free_port(), **settings)
    voice = SilentVoice(events)
    app = assemble(model, VoiceSet({voice.key: voice}, voice.key), chosen)
    with serve(app) as url:
        yield ScriptedServer(url, model, events, app)
