"""What the page's events do: send a message and stream its reply, load a picked model or voice,
stop a superseded reply, Retry and Undo.

Each handler is a plain function of the :class:`ChatApp` (bound with ``functools.partial`` in
:mod:`speakstream.ui.page`, which wires them to the page), so tests call them without a
browser. How the audio reaches the listener is :mod:`speakstream.ui.player`.

What a browser keeps across reloads (never the server) is two encrypted entries in its local
storage: the conversation, written by the reply itself when it ends (and by Stop, Undo and
Clear), and the settings, written when one changes.
"""

from __future__ import annotations

import dataclasses
import html
import ipaddress
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from speakstream.audio.replay_files import ReplayFiles
from speakstream.controls import NUMBERS
from speakstream.llm.endpoint import EndpointError
from speakstream.llm.model import Sampling
from speakstream.llm.pool import ModelPool
from speakstream.llm.sources import ModelLoadError, model_label
from speakstream.metrics import Metrics
from speakstream.pipeline.reply import ReplyOptions, ReplyPipeline
from speakstream.settings import Settings
from speakstream.text.admission import InvalidMessage, clean_message, for_display
from speakstream.text.conversation import bounded_history, content_text, to_model_messages
from speakstream.text.limits import RateLimits
from speakstream.text.word_filter import WordFilter
from speakstream.ui.browser_storage import remember_chat
from speakstream.ui.player import AudioStream
from speakstream.voices import VoiceSet

log = logging.getLogger(__name__)

History = list[dict[str, Any]]
# (message box, chat, player, whole-reply audio, stats line, the conversation the browser keeps)
ChatOutputs = tuple[Any, History, Any, Any, Any, Any]
LOADING_TICK_SECONDS = 1.0
SUPERSEDE_WAIT_SECONDS = 10.0
ERROR_NOTE = "Sorry, something went wrong while writing this reply. Please try again."


@dataclass
class ChatView:
    """What a reply's outputs show now; every update repeats what has not changed.

    Not ``gr.skip()``: for every skip that a value follows, Gradio 6.31 keeps a copy of the
    output component, holding that value, for as long as the session lives (a spoken reply
    left a few hundred KB behind). Gradio sends only what changed since its last update, so
    a repeated value costs no traffic. The message box is the exception: the page would put
    the repeated "" over what the user is typing meanwhile, so it is skipped after the reply's
    first update (one small copy of the box a reply).
    """

    message: Any
    history: History
    player: Any
    replay: Any = None
    stats: Any = ""
    saved: Any = None

    def outputs(self) -> ChatOutputs:
        return (self.message, self.history, self.player, self.replay, self.stats, self.saved)


@dataclass(frozen=True)
class ReplyChoices:
    """One user's choices for their next reply, as the page's controls (or an API caller) sent them.

    ``None`` leaves the server's own setting; :func:`reply_settings` clamps the rest.
    """

    voice: str | None = None
    speaking_rate: float | None = None
    text_only: bool = False
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: float | None = None
    repetition_penalty: float | None = None
    model: str | None = None


REPLY_CONTROLS = [field.name for field in dataclasses.fields(ReplyChoices)]


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
        choices = ReplyChoices(
            voice=voice,
            speaking_rate=speaking_rate,
            text_only=text_only,
            system_prompt=system_prompt,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            repetition_penalty=repetition_penalty,
            model=model,
        )
        client = client_address(request, self.settings.proxy_hops)
        page_here = page_on_this_machine(request, self.settings.proxy_hops)
        yield from respond(self, message, history, choices, session, client, page_here)


def client_address(request: gr.Request | None, proxy_hops: int = 0) -> str:
    """Who sent a message, for the rate limit: a network address.

    Behind ``proxy_hops`` proxies that each add the address they saw to X-Forwarded-For, it is
    the address the outermost of them saw: the entries further left came from the client,
    who can write anything there. Otherwise the connection's own address.
    """
    headers = getattr(request, "headers", None)
    if proxy_hops > 0 and headers is not None:
        forwarded = [
            address.strip()
            for value in headers.getlist("x-forwarded-for")
            for address in value.split(",")
            if address.strip()
        ]
        if forwarded:
            return forwarded[-min(proxy_hops, len(forwarded))]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "local")


def page_on_this_machine(request: gr.Request | None, proxy_hops: int = 0) -> bool:
    """Whether the page that sent a message runs on this machine (the local link), so that its
    browser renders the reply on the cores the model uses.

    Both ends must be loopback: the connection, and the address the page was opened at (the
    Host header). A share link's tunnel connects from this machine too, but its pages were
    opened at their public name; behind a proxy (``proxy_hops``) the connection is the proxy's.
    """
    client = getattr(getattr(request, "client", None), "host", None)
    headers = getattr(request, "headers", None)
    if proxy_hops > 0 or not client or headers is None or not _is_loopback(client):
        return False
    try:
        opened_at = urllib.parse.urlsplit("//" + (headers.get("host") or "")).hostname or ""
    except ValueError:  # a malformed Host header
        return False
    return opened_at == "localhost" or _is_loopback(opened_at)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def respond(
    app: ChatApp,
    message: str,
    history: History | None,
    choices: ReplyChoices = ReplyChoices(),
    session: dict[str, Any] | None = None,
    client: str = "local",
    page_here: bool = False,
) -> Iterator[ChatOutputs]:
    """Stream one reply into the chat and the speaker; one tuple of outputs per update.

    A message that cannot be sent stays in the box and the user sees why (an empty or too
    long message or system prompt, a word on the list, a model this server will not load or
    that is still loading, too many messages from this client). A new message stops the
    reply still running in the same session (``session`` holds its stop and ended events). An error
    while generating ends this reply with a note in the chat and leaves the app serving others.
    """
    pipeline, settings, metrics = app.pipeline, app.settings, app.metrics
    history = bounded_history(history or [], settings.max_history_turns, settings.max_history_chars)
    session = {} if session is None else session
    try:
        text, chosen, spec = _admit(app, message, choices, client)
    except Refused as refusal:
        log.info("Refused a message (%s)", refusal.reason)
        metrics.refusals.labels(refusal.reason).inc()
        gr.Warning(str(refusal))
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    if notice := voice_notice(app, choices):
        gr.Info(notice)
    messages = [*to_model_messages(history, chosen.system_prompt), {"role": "user", "content": text}]
    stop, ended = threading.Event(), threading.Event()
    supersede(session)
    session["running"] = (stop, ended)
    before = history
    history = [*history, {"role": "user", "content": for_display(text)}, {"role": "assistant", "content": ""}]
    stream = AudioStream(uuid.uuid4().hex[:16], pipeline.sample_rate)
    metrics.replies_started.inc()
    metrics.replies_running.inc()
    outcome = "stopped"
    # The browser keeps the conversation before this message until the reply ends.
    view = ChatView("", history, stream.start(), saved=remember_chat(before))
    yield view.outputs()
    view.message = gr.skip()
    try:
        with app.models.lease(spec) as model:
            options = pipeline.options(
                model,
                choices.voice,
                chosen.speaking_rate,
                speak=not choices.text_only,
                sampling=Sampling.from_settings(chosen),
                page_here=page_here,
            )
            for outputs in _stream_reply(app, messages, view, stop, options, session, stream):
                if isinstance(outputs[4], str) and outputs[4]:  # the timing line: the reply is complete
                    outcome = "completed"
                yield outputs
    except ModelLoadError as problem:  # the model was unloaded since it was checked: nothing was said yet
        outcome = "failed"
        gr.Warning(str(problem))
        yield message, before, gr.skip(), gr.skip(), gr.skip(), gr.skip()
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


class Refused(ValueError):
    """A message that is not answered; the text says why, ``reason`` counts it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _admit(app: ChatApp, message: str, choices: ReplyChoices, client: str) -> tuple[str, Settings, str]:
    """The cleaned message, this reply's settings and its model, or :class:`Refused` saying why not.

    The client's message is counted against its rate limit only once everything else is fine.
    """
    settings = app.settings
    try:
        text = clean_message(message or "", settings.max_input_chars)
    except InvalidMessage as problem:
        raise Refused(str(problem), "too_long" if (message or "").strip() else "empty") from None
    if app.word_filter.blocks(text):
        raise Refused("Your message contains words this app does not accept. Please rephrase it.", "blocked_word")
    try:
        chosen = reply_settings(settings, choices)
    except InvalidMessage as problem:
        raise Refused(f"The system prompt cannot be used: {problem}", "too_long") from None
    try:
        spec = app.models.check(choices.model)
        loading = app.models.request(spec)
    except ModelLoadError as problem:
        raise Refused(str(problem), "model_refused") from None
    if not loading.done():
        raise Refused(
            f"{model_label(spec)} is still loading (first use). Your message stays in the box: "
            "send it again once the model is ready.",
            "model_loading",
        )
    if isinstance(loading.exception(), ModelLoadError):
        raise Refused(str(loading.exception()), "model_refused")
    if wait := app.limits.check(client):
        raise Refused(f"You are sending messages too quickly. Please wait {wait:.0f} seconds.", "rate_limit")
    return text, chosen, spec


def _stream_reply(
    app: ChatApp,
    messages: list[dict[str, str]],
    view: ChatView,
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
            return  # superseded by a newer message: its reply owns the chat now
        if update.audio is None and not update.final and update.text == history[-1]["content"]:
            yield view.outputs()  # nothing new: Stop gets a turn
            continue
        history[-1] = {"role": "assistant", "content": update.text}
        if update.audio is not None:
            spoken.append(update.audio)
            view.player = stream.segment(update.audio, update.spoken)
            yield view.outputs()
        elif update.final:
            timeline = update.timeline
            if spoken:
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


def reply_settings(settings: Settings, choices: ReplyChoices) -> Settings:
    """The server's settings with one user's choices, kept within safe ranges.

    Anything an API caller sends is clamped (what is not a finite number leaves the server's
    setting); a reply can never be longer than the server's own ``max_new_tokens``. A system
    prompt is cleaned like a message (:class:`InvalidMessage` when it is too long).
    """
    chosen: dict[str, Any] = {}
    if choices.system_prompt is not None:
        prompt = str(choices.system_prompt).strip()
        chosen["system_prompt"] = clean_message(prompt, settings.max_input_chars) if prompt else ""
    for control in NUMBERS:
        if (value := getattr(choices, control.name)) is not None:
            chosen[control.name] = control.clamp(value, getattr(settings, control.name))
    return dataclasses.replace(settings, **chosen)


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


def voice_notice(app: ChatApp, choices: ReplyChoices) -> str | None:
    """What to tell the user when the voice they picked cannot speak this reply (None: it can).

    A picked Piper voice that is not loaded yet starts loading; the reply meanwhile speaks
    with the default voice.
    """
    key = choices.voice
    default = app.voices.get(None)
    if choices.text_only or not key or default is None or app.voices.loaded(key):
        return None
    loading = app.voices.request(key)
    if loading.done() and loading.exception() is None:
        return None
    instead = f"this reply speaks with {default.label}"
    if not loading.done():
        return f"{app.voices.label(key)} is loading (first use); {instead}."
    return f"{app.voices.label(key)}: {loading.exception()}; {instead}."


def load_voice(app: ChatApp, key: str | None) -> Iterator[str]:
    """The line under the voice picker while a picked voice loads: the seconds so far, then ready or why not."""
    if not key or app.voices.loaded(key):
        yield ""
        return
    loading, started = app.voices.request(key), time.monotonic()
    while not loading.done():
        yield f"Loading {app.voices.label(key)}… {time.monotonic() - started:.0f} s (first use)"
        futures.wait([loading], timeout=LOADING_TICK_SECONDS)
    if loading.exception() is not None:
        gr.Warning(f"{app.voices.label(key)}: {loading.exception()}")
        yield f"Not loaded: {loading.exception()}"
    else:
        yield f"{app.voices.label(key)} is ready."


def load_model(app: ChatApp, spec: str | None) -> Iterator[str]:
    """The line under the model picker while a picked model loads: the seconds so far, then ready or why not.

    Loading happens here, on the model pool's loader thread, never in a reply's place in the queue.
    """
    try:
        spec = app.models.check(spec)
        loading = app.models.request(spec)
    except ModelLoadError as problem:
        app.metrics.refusals.labels("model_refused").inc()
        gr.Warning(str(problem))
        yield f"Not loaded: {problem}"
        return
    label, started = model_label(spec), time.monotonic()
    while not loading.done():
        yield f"Loading {label}… {time.monotonic() - started:.0f} s (first use; then it stays loaded for everyone)"
        futures.wait([loading], timeout=LOADING_TICK_SECONDS)
    app.metrics.models_loaded.set(len(app.models.loaded))
    if isinstance(loading.exception(), ModelLoadError):
        gr.Warning(str(loading.exception()))
        yield f"Not loaded: {loading.exception()}"
    elif loading.exception() is not None:
        log.error("Loading %s failed", spec, exc_info=loading.exception())
        yield f"Not loaded: {label} could not be loaded."
    else:
        yield f"{label} is ready."


def last_turn_removed(history: History | None) -> tuple[str, History]:
    """The last user message (as typed) and the history before it.

    Retry sends that message again; Undo leaves it in the box to edit.
    """
    history = list(history or [])
    for index in range(len(history) - 1, -1, -1):
        if history[index].get("role") == "user":
            return html.unescape(content_text(history[index].get("content"))), history[:index]
    return "", history
