"""A message and its reply: admitted (:mod:`speakstream.ui.admit`), streamed into the chat and
the player, and ended; a superseded reply stopped; Retry and Undo.

:class:`ChatApp` is what every handler of the page works with (bound with ``functools.partial``
in :mod:`speakstream.ui.page`), so tests call them without a browser. The pickers' loading
lines are :mod:`speakstream.ui.loading`, who sent a message :mod:`speakstream.ui.request_identity`,
how the audio reaches the listener :mod:`speakstream.ui.player`, and what a browser keeps
across reloads :mod:`speakstream.ui.browser_storage`.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from speakstream.audio.replay_files import ReplayFiles
from speakstream.hearing.listener import Listeners
from speakstream.hearing.recognition import Recognition
from speakstream.llm.endpoint import EndpointError
from speakstream.llm.model import Sampling
from speakstream.llm.pool import ModelPool
from speakstream.llm.sources import ModelLoadError
from speakstream.metrics import Metrics
from speakstream.pipeline.reply import ReplyOptions, ReplyPipeline
from speakstream.settings import Settings
from speakstream.text.admission import for_display
from speakstream.text.conversation import bounded_history, content_text, to_model_messages
from speakstream.text.limits import RateLimits
from speakstream.text.word_filter import WordFilter
from speakstream.ui.admit import Refused, ReplyChoices, admit, choices_from, voice_notice
from speakstream.ui.browser_storage import remember_chat, with_reply_being_written
from speakstream.ui.examples import replayable
from speakstream.ui.player import AudioStream
from speakstream.ui.request_identity import client_address, page_on_this_machine
from speakstream.voices import VoiceSet
from speakstream.voices.own import OWN, OwnVoices

log = logging.getLogger(__name__)

History = list[dict[str, Any]]
# (message box, chat, player, whole-reply audio, stats line, the conversation the browser keeps)
ChatOutputs = tuple[Any, History, Any, Any, Any, Any]
SUPERSEDE_WAIT_SECONDS = 10.0
ERROR_NOTE = "Sorry, something went wrong while writing this reply. Please try again."


@dataclass
class ChatView:
    """What a reply's outputs show now, by name (the page wires each name to its component);
    every update repeats what has not changed, except the message box after the first (the page
    would put the repeated "" over what the user is typing meanwhile). Why not ``gr.skip()``
    elsewhere: docs/design.md.
    """

    message: Any
    history: History
    player: Any
    replay: Any = None
    stats: Any = ""  # the timing line: written once the reply has ended
    saved: Any = None

    def outputs(self) -> ChatOutputs:
        """The values in :data:`CHAT_OUTPUTS` order, as Gradio takes a handler's outputs."""
        return tuple(getattr(self, name) for name in CHAT_OUTPUTS)  # type: ignore[return-value]

    @classmethod
    def of(cls, outputs: Sequence[Any]) -> ChatView:
        """An update's values by name again (for API callers and tests)."""
        return cls(**dict(zip(CHAT_OUTPUTS, outputs, strict=True)))

    @property
    def completed(self) -> bool:
        """Whether this update ends a reply that ran to its end (only then is the timing line written)."""
        return isinstance(self.stats, str) and bool(self.stats)


CHAT_OUTPUTS = tuple(field.name for field in dataclasses.fields(ChatView))


@dataclass
class ChatApp:
    """What the page's handlers work with, built once at start-up and shared by every session."""

    pipeline: ReplyPipeline
    models: ModelPool
    voices: VoiceSet
    word_filter: WordFilter
    settings: Settings
    limits: RateLimits
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    replays: ReplayFiles | None = None  # None: the whole reply's audio goes to Gradio as samples
    recognition: Recognition | None = None  # None: voice input is off
    listeners: Listeners | None = None
    own_voices: OwnVoices | None = None  # None: users cannot make their own voice here

    def chat(
        self,
        request: gr.Request,
        message: str,
        history: History | None,
        voice: str | None = None,
        speaking_rate: float | None = None,
        text_only: bool = False,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: float | None = None,
        repetition_penalty: float | None = None,
        model: str | None = None,
        session: dict[str, Any] | None = None,
    ) -> Iterator[ChatOutputs]:
        """The ``/chat`` event: (Gradio's request,) the message, the chat, each reply control (as
        :class:`ReplyChoices` names them, in its order), the session."""
        choices = choices_from(locals())
        client = client_address(request, self.settings.proxy_hops)
        page_here = page_on_this_machine(request, self.settings.proxy_hops)
        yield from respond(self, message, history, choices, session, client, page_here)


def respond(
    app: ChatApp,
    message: str,
    history: History | None,
    choices: ReplyChoices | None = None,
    session: dict[str, Any] | None = None,
    client: str = "local",
    page_here: bool = False,
    spoken: bool = False,
    count: bool = True,
) -> Iterator[ChatOutputs]:
    """Stream one reply into the chat and the speaker; one tuple of outputs per update.

    ``spoken``: the message was spoken, so the message box keeps whatever is typed in it.
    ``count``: False when the caller counts the message against the rate limit itself.
    A message that cannot be sent stays in the box and the user sees why (an empty or too
    long message or system prompt, a word on the list, a model this server will not load or
    that is still loading, too many messages from this client). A new message stops the
    reply still running in the same session (``session`` holds its stop and ended events). An error
    while generating ends this reply with a note in the chat and leaves the app serving others.
    """
    pipeline, settings, metrics = app.pipeline, app.settings, app.metrics
    history = bounded_history(history or [], settings.max_history_turns, settings.max_history_chars)
    session = {} if session is None else session
    choices = choices or ReplyChoices()
    try:
        text, chosen, spec = admit(app, message, choices, client, count)
    except Refused as refusal:
        log.info("Refused a message (%s)", refusal.reason)
        metrics.refusals.labels(refusal.reason).inc()
        gr.Warning(str(refusal))
        yield ChatView(gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), gr.skip()).outputs()
        return
    own = app.own_voices.get(session.get(OWN)) if app.own_voices and choices.voice == OWN else None
    if notice := voice_notice(app, choices, own):
        gr.Info(notice)
    messages = [*to_model_messages(history, chosen.system_prompt), {"role": "user", "content": text}]
    again = bool(session.pop("again", False))
    replay = own is None and replayable(app, text, not history, chosen, choices, again)  # (own: never kept)
    stop, ended = threading.Event(), threading.Event()
    supersede(session)
    session["running"] = (stop, ended)
    before = history
    history = [*history, {"role": "user", "content": for_display(text)}, {"role": "assistant", "content": ""}]
    stream = AudioStream(uuid.uuid4().hex[:16], pipeline.sample_rate)
    metrics.replies_started.inc()
    metrics.replies_running.inc()
    outcome = "stopped"
    # The browser keeps the reply as it is written, marked unfinished until it ends.
    earlier = remember_chat(history[:-1])
    cleared = gr.skip() if spoken else ""
    view = ChatView(cleared, history, stream.start(), saved=with_reply_being_written(earlier, ""))
    try:  # from the first update: a reply closed at any update has ended (the next one waits for that)
        yield view.outputs()
        view.message = gr.skip()
        with app.models.lease(spec) as model:
            options = pipeline.options(
                model,
                choices.voice,
                chosen.speaking_rate,
                speak=not choices.text_only,
                sampling=Sampling.from_settings(chosen),
                page_here=page_here,
                replayable=replay,
                own=own,
            )
            for outputs in _stream_reply(app, messages, view, earlier, stop, options, session, stream):
                if ChatView.of(outputs).completed:
                    outcome = "completed"
                yield outputs
    except ModelLoadError as problem:  # the model was unloaded since it was checked: nothing was said yet
        outcome = "failed"
        gr.Warning(str(problem))
        yield ChatView(message, before, gr.skip(), gr.skip(), gr.skip(), remember_chat(before)).outputs()
    except Exception as error:
        outcome = "failed"
        log.exception("Reply failed")
        note = f"Sorry: {error}" if isinstance(error, EndpointError) else ERROR_NOTE  # a server's trouble, said plainly
        so_far = history[-1]["content"]
        history[-1] = {"role": "assistant", "content": f"{so_far}\n\n{note}" if so_far else note}
        view.saved = remember_chat(history)
        yield view.outputs()
    finally:
        stop.set()
        ended.set()
        metrics.replies_running.dec()
        metrics.replies_ended.labels(outcome).inc()


def _stream_reply(
    app: ChatApp,
    messages: list[dict[str, str]],
    view: ChatView,
    earlier: list[dict[str, Any]],
    stop: threading.Event,
    options: ReplyOptions,
    session: dict[str, Any],
    stream: AudioStream,
) -> Iterator[ChatOutputs]:
    """The reply's text, its audio for the page's player, then its whole audio, timings and the saved chat."""
    rate = app.pipeline.sample_rate
    history = view.history
    spoken: list[np.ndarray] = []
    for update in app.pipeline.reply(messages, stop, options):
        if session.get("running", (None,))[0] is not stop:
            # Superseded by a newer message (whose reply owns the chat from its first update,
            # which waits for this one's end): this one is no longer being written.
            view.saved = remember_chat(history)
            yield view.outputs()
            return
        if update.audio is None and not update.final and update.text == history[-1]["content"]:
            yield view.outputs()  # nothing new: Stop gets a turn
            continue
        history[-1] = {"role": "assistant", "content": update.text}
        view.saved = with_reply_being_written(earlier, update.text)  # (the final update: below)
        if update.audio is not None:
            spoken.append(update.audio)
            view.player = stream.segment(update.audio, update.spoken)
            yield view.outputs()
        elif update.final:
            timeline = update.timeline
            if spoken and (options.voice is None or options.voice.shared):  # a user's own voice: no file
                samples = np.concatenate(spoken)
                view.replay = app.replays.write(samples, rate) if app.replays else (rate, samples)
            if timeline.voice_failures:
                gr.Warning(
                    f"The voice could not speak {timeline.voice_failures} part(s) of this reply"
                    + ("; it is shown as text only." if not spoken else ".")
                )
            if timeline.first_audio is not None:
                app.metrics.first_audio.observe(timeline.first_audio)
            if timeline.tokens_per_second is not None:
                app.metrics.tokens_per_second.observe(timeline.tokens_per_second)
            view.player, view.stats, view.saved = stream.end(), timeline.summary(), remember_chat(history)
            yield view.outputs()
        else:
            view.player = stream.text()
            yield view.outputs()


def supersede(session: dict[str, Any] | None) -> None:
    """A new message was sent: the reply still running in this session stops now, before the
    new one waits for its place in the queue (so a session never holds two places).

    Waits (a few seconds at most) until that reply has ended: Gradio sends a finished event's
    last outputs once more when it ends, and that must come before the new reply's first.
    """
    if session and (running := session.pop("running", None)):
        stop, ended = running
        stop.set()  # and it is no longer this session's reply: it writes nothing more
        if not ended.wait(SUPERSEDE_WAIT_SECONDS):
            log.warning("A superseded reply did not end within %.0f s", SUPERSEDE_WAIT_SECONDS)


def ask_again(session: dict[str, Any] | None) -> None:
    """Retry: this session's next reply asks the model afresh, never the reply cache."""
    if session is not None:
        session["again"] = True


def last_turn_removed(history: History | None) -> tuple[str, History]:
    """The last user message (as typed) and the history before it.

    Retry sends that message again; Undo leaves it in the box to edit.
    """
    history = list(history or [])
    for index in range(len(history) - 1, -1, -1):
        if history[index].get("role") == "user":
            return html.unescape(content_text(history[index].get("content"))), history[:index]
    return "", history
