"""The Gradio Blocks page: chat, message box, Send / Stop / Clear, voice controls, the player.

Event handlers are module-level functions bound to the pipeline with ``functools.partial``,
so tests can call them without a browser. The chat event is published as ``/chat`` for
``gradio_client``. How the audio reaches the listener is :mod:`speakstream.player`.

What a browser keeps across reloads (never the server) is two encrypted entries in its local
storage: the conversation, written by the reply itself when it ends (and by Stop, Undo and
Clear), and the settings, written when one changes.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from speakstream.conversation import (
    InvalidMessage,
    bounded_history,
    clean_message,
    content_text,
    for_display,
    to_model_messages,
)
from speakstream.limits import RateLimits
from speakstream.metrics import Metrics
from speakstream.model import ModelLoadError, Sampling, model_label
from speakstream.pipeline import ReplyOptions, ReplyPipeline
from speakstream.player import CLEAR_JS, STOP_JS, AudioStream, audio_stream, player_component
from speakstream.replay_files import ReplayFiles
from speakstream.settings import Settings

log = logging.getLogger(__name__)

History = list[dict[str, Any]]
# (message box, chat, player, whole-reply audio, stats line, the conversation the browser keeps)
ChatOutputs = tuple[Any, History, Any, Any, Any, Any]
EXAMPLE_PROMPTS = [
    "What is the capital of France?",
    "Explain in three sentences why the sky is blue.",
    "Write a haiku about autumn.",
    "Give me three tips for sleeping better, as a numbered list.",
]
LOADING_TICK_SECONDS = 1.0
SUPERSEDE_WAIT_SECONDS = 10.0
MAX_SAVED_MESSAGES = 100
ERROR_NOTE = "Sorry, something went wrong while writing this reply. Please try again."


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


# Every control of the page a browser keeps across reloads, in page order, with the types a
# saved value may have: the reply choices and whether the timing line shows.
SAVED_CONTROLS: dict[str, type | tuple[type, ...]] = {
    "voice": str,
    "speaking_rate": (int, float),
    "text_only": bool,
    "show_stats": bool,
    "system_prompt": str,
    "temperature": (int, float),
    "top_p": (int, float),
    "max_new_tokens": (int, float),
    "repetition_penalty": (int, float),
    "model": str,
}
REPLY_CONTROLS = [field.name for field in dataclasses.fields(ReplyChoices)]


@dataclass
class ChatApp:
    """What the page's handlers work with, built once at start-up and shared by every session."""

    pipeline: ReplyPipeline
    settings: Settings
    limits: RateLimits
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    replays: ReplayFiles | None = None  # None: the whole reply's audio goes to Gradio as samples

    def chat(self, request: gr.Request, message: str, history: History | None, *rest: Any) -> Iterator[ChatOutputs]:
        """The ``/chat`` event: (Gradio's request,) the message, the chat, each reply control (REPLY_CONTROLS
        order), the session."""
        *values, session = rest
        choices = ReplyChoices(**dict(zip(REPLY_CONTROLS, values, strict=True)))
        yield from respond(self, message, history, choices, session, client_address(request))


def client_address(request: gr.Request | None) -> str:
    """Who sent a message, for the rate limit: the client's network address as Gradio reports it."""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "local")


def respond(
    app: ChatApp,
    message: str,
    history: History | None,
    choices: ReplyChoices = ReplyChoices(),
    session: dict[str, Any] | None = None,
    client: str = "local",
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
        metrics.refusals.labels(refusal.reason).inc()
        gr.Warning(str(refusal))
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    messages = [*to_model_messages(history, chosen.system_prompt), {"role": "user", "content": text}]
    stop, ended = threading.Event(), threading.Event()
    supersede(session)
    session["running"] = (stop, ended)
    before = history
    history = [*history, {"role": "user", "content": for_display(text)}, {"role": "assistant", "content": ""}]
    stream = audio_stream(settings.player, uuid.uuid4().hex[:16], pipeline.sample_rate)
    metrics.replies_started.inc()
    metrics.replies_running.inc()
    outcome = "stopped"
    yield "", history, stream.start(), None, "", gr.skip()
    try:
        with pipeline.models.lease(spec) as model:
            options = pipeline.options(
                choices.voice,
                choices.speaking_rate,
                speak=not choices.text_only,
                sampling=Sampling.from_settings(chosen),
                model=model,
            )
            for outputs in _stream_reply(app, messages, history, stop, options, session, stream):
                if isinstance(outputs[4], str) and outputs[4]:  # the timing line: the reply is complete
                    outcome = "completed"
                yield outputs
    except ModelLoadError as problem:  # the model was unloaded since it was checked: nothing was said yet
        outcome = "failed"
        gr.Warning(str(problem))
        yield message, before, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    except Exception:
        outcome = "failed"
        log.exception("Reply failed")
        so_far = history[-1]["content"]
        history[-1] = {"role": "assistant", "content": f"{so_far}\n\n{ERROR_NOTE}" if so_far else ERROR_NOTE}
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), remember_chat(history)
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
    settings, pipeline = app.settings, app.pipeline
    try:
        text = clean_message(message or "", settings.max_input_chars)
    except InvalidMessage as problem:
        raise Refused(str(problem), "too_long" if (message or "").strip() else "empty") from None
    if pipeline.content_filter.blocks(text):
        raise Refused("Your message contains words this app does not accept. Please rephrase it.", "blocked_word")
    try:
        chosen = reply_settings(settings, choices)
    except InvalidMessage as problem:
        raise Refused(f"The system prompt cannot be used: {problem}", "too_long") from None
    try:
        spec = pipeline.models.check(choices.model)
        loading = pipeline.models.request(spec)
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
    history: History,
    stop: threading.Event,
    options: ReplyOptions,
    session: dict[str, Any],
    stream: AudioStream,
) -> Iterator[ChatOutputs]:
    """The reply's text, its audio for the page's player, then its whole audio, timings and the saved chat."""
    rate = app.pipeline.sample_rate
    spoken: list[np.ndarray] = []
    for update in app.pipeline.reply(messages, stop, options):
        if session.get("running", (None,))[0] is not stop:
            return  # superseded by a newer message: its reply owns the chat now
        if update.audio is None and not update.final and update.text == history[-1]["content"]:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()  # nothing new: Stop gets a turn
            continue
        history[-1] = {"role": "assistant", "content": update.text}
        if update.audio is not None:
            spoken.append(update.audio)
            for audio in stream.segment(update.audio, update.spoken):
                yield gr.skip(), history, audio, gr.skip(), gr.skip(), gr.skip()
        elif update.final:
            timeline = update.timeline
            whole = None
            if spoken:
                samples = np.concatenate(spoken)
                whole = app.replays.write(samples, rate) if app.replays else (rate, samples)
            if timeline.voice_failures:
                gr.Warning(
                    f"The voice could not speak {timeline.voice_failures} part(s) of this reply"
                    + ("; it is shown as text only." if not spoken else ".")
                )
            if timeline.first_audio is not None:
                app.metrics.first_audio.observe(timeline.first_audio)
            if timeline.tokens_per_second is not None:
                app.metrics.tokens_per_second.observe(timeline.tokens_per_second)
            yield gr.skip(), history, stream.end(), whole, timeline.summary(), remember_chat(history)
        else:
            yield gr.skip(), history, stream.text(), gr.skip(), gr.skip(), gr.skip()


def reply_settings(settings: Settings, choices: ReplyChoices) -> Settings:
    """The server's settings with one user's choices, kept within safe ranges.

    Anything an API caller sends is clamped; a reply can never be longer than the server's
    own ``max_new_tokens``. A system prompt is cleaned like a message (:class:`InvalidMessage`
    when it is too long).
    """
    chosen: dict[str, Any] = {}
    if choices.system_prompt is not None:
        prompt = str(choices.system_prompt).strip()
        chosen["system_prompt"] = clean_message(prompt, settings.max_input_chars) if prompt else ""
    if choices.temperature is not None:
        chosen["temperature"] = min(max(float(choices.temperature), 0.0), 2.0)
    if choices.top_p is not None:
        chosen["top_p"] = min(max(float(choices.top_p), 0.05), 1.0)
    if choices.max_new_tokens is not None:
        chosen["max_new_tokens"] = min(max(int(choices.max_new_tokens), 1), settings.max_new_tokens)
    if choices.repetition_penalty is not None:
        chosen["repetition_penalty"] = min(max(float(choices.repetition_penalty), 1.0), 2.0)
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


def load_model(app: ChatApp, spec: str | None) -> Iterator[str]:
    """The line under the model picker while a picked model loads: the seconds so far, then ready or why not.

    Loading happens here, on the model pool's loader thread, never in a reply's place in the queue.
    """
    try:
        spec = app.pipeline.models.check(spec)
        loading = app.pipeline.models.request(spec)
    except ModelLoadError as problem:
        app.metrics.refusals.labels("model_refused").inc()
        gr.Warning(str(problem))
        yield f"Not loaded: {problem}"
        return
    label, started = model_label(spec), time.monotonic()
    while not loading.done():
        yield f"Loading {label}… {time.monotonic() - started:.0f} s (first use; then it stays loaded for everyone)"
        futures.wait([loading], timeout=LOADING_TICK_SECONDS)
    app.metrics.models_loaded.set(len(app.pipeline.models.loaded))
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


def clear_chat() -> tuple[History, str, None, None, str, list[Any], dict[str, Any]]:
    """Empty the conversation, the message box, both players, the stats line and what the browser saved.

    The browser's storage is overwritten with empty values that Gradio still stores (it skips
    ``None`` and ``""``).
    """
    return [], "", None, None, "", [], {}


def remember_chat(history: History | None) -> list[dict[str, str]]:
    """The conversation as this browser keeps it across reloads: plain text turns, the newest ones."""
    messages = [
        {"role": item["role"], "content": content_text(item.get("content"))}
        for item in history or []
        if item.get("role") in ("user", "assistant")
    ]
    return messages[-MAX_SAVED_MESSAGES:]


def remember_settings(*values: Any) -> dict[str, Any]:
    """The settings this browser keeps across reloads, by name."""
    return dict(zip(SAVED_CONTROLS, values, strict=True))


def restore(pipeline: ReplyPipeline, chat: Any, chosen: Any) -> list[Any]:
    """Put back what the browser saved; anything this server cannot use now is left as it is."""
    history = [
        {"role": item["role"], "content": item["content"]}
        for item in (chat if isinstance(chat, list) else [])
        if isinstance(item, dict) and item.get("role") in ("user", "assistant") and isinstance(item.get("content"), str)
    ]
    values = chosen if isinstance(chosen, dict) else {}
    restored: list[Any] = [history or gr.skip()]
    for name, kind in SAVED_CONTROLS.items():
        value = values.get(name)
        usable = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if usable and name == "voice":
            usable = value in pipeline.voices.voices
        if usable and name == "model":
            try:
                pipeline.models.check(value)
            except ModelLoadError:
                usable = False
        restored.append(value if usable else gr.skip())
    return restored


def toggle_stats(show: bool) -> dict[str, Any]:
    """Show or hide the per-reply timing line."""
    return gr.update(visible=show)


def voice_status(pipeline: ReplyPipeline) -> str:
    """The line under the page that says which voice speaks, and why if it is not the usual one."""
    voice = pipeline.voices.get(None)
    lines = [f"**Voice:** {voice.label}" if voice else "**Voice:** none (text only)"]
    lines += [f"- {notice}" for notice in pipeline.voices.notices]
    return "\n".join(lines)


def build_ui(app: ChatApp) -> gr.Blocks:
    """The whole page, wired to ``app``; the caller launches it."""
    pipeline, settings = app.pipeline, app.settings
    source = pipeline.model.source.origin if pipeline.model.source else "not loaded"
    # No usage analytics leave the server; Gradio's own temporary files are deleted once old enough.
    age = settings.audio_file_max_age
    with gr.Blocks(title="SpeakStream", delete_cache=(min(600, age), age), analytics_enabled=False) as demo:
        gr.Markdown("# SpeakStream\nA chatbot that speaks its replies while it writes them.")
        chatbot = gr.Chatbot(
            label="Conversation",
            height=420,
            sanitize_html=True,
            allow_tags=False,
            buttons=["copy", "copy_all"],
            elem_id="chat",
        )
        with gr.Row():
            message = gr.Textbox(
                label="Message",
                placeholder="Type a message and press Enter",
                scale=6,
                min_width=200,
                max_lines=6,
                elem_id="message",
            )
            send = gr.Button("Send", variant="primary", scale=1, min_width=70, elem_id="send")
        with gr.Row():
            # Narrow buttons, so the four stay on one line on a phone
            stop = gr.Button("Stop", variant="stop", min_width=60, elem_id="stop")
            retry = gr.Button("Retry", min_width=60, elem_id="retry")
            undo = gr.Button("Undo", min_width=60, elem_id="undo")
            clear = gr.Button("Clear", min_width=60, elem_id="clear")
        gr.Examples(EXAMPLE_PROMPTS, inputs=[message], label="Try one")
        player = player_component(settings.player)
        stats = gr.Markdown("", elem_id="stats")
        with gr.Accordion("Voice and replay", open=False):
            with gr.Row():
                voice = gr.Dropdown(
                    choices=pipeline.voices.choices,
                    value=pipeline.voices.default,
                    label="Voice",
                    interactive=bool(pipeline.voices.voices),
                    elem_id="voice",
                )
                speaking_rate = gr.Slider(
                    0.5, 2.0, value=settings.speaking_rate, step=0.05, label="Speaking rate", min_width=200
                )
            with gr.Row():
                text_only = gr.Checkbox(value=settings.text_only, label="Text only (no speech)")
                show_stats = gr.Checkbox(value=True, label="Show reply timings")
            replay = gr.Audio(
                label="Whole reply (replay or download)", interactive=False, buttons=["download"], elem_id="replay"
            )
        with gr.Accordion("Model settings", open=False):
            model = gr.Dropdown(
                choices=[(model_label(spec), spec) for spec in pipeline.models.choices],
                value=pipeline.models.default_spec,
                label="Model",
                info="Loaded when picked, then shared by everyone"
                + ("; type a Hugging Face model id for another one" if settings.allow_custom_models else ""),
                allow_custom_value=settings.allow_custom_models,
                elem_id="model",
            )
            model_status = gr.Markdown("", elem_id="model-status")
            system_prompt = gr.Textbox(
                value=settings.system_prompt,
                label="System prompt",
                placeholder="Empty: the model's own default",
                lines=2,
                elem_id="system-prompt",
            )
            with gr.Row():
                temperature = gr.Slider(0.0, 1.5, value=settings.temperature, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=settings.top_p, step=0.05, label="Top-p")
                max_new_tokens = gr.Slider(
                    16, settings.max_new_tokens, value=settings.max_new_tokens, step=8, label="Max new tokens"
                )
                repetition_penalty = gr.Slider(
                    1.0, 2.0, value=settings.repetition_penalty, step=0.05, label="Repetition penalty"
                )
        gr.Markdown(f"{voice_status(pipeline)}\n\n**Model:** {source}", elem_id="status")

        session = gr.State({})
        saved_chat = gr.BrowserState(None, storage_key="speakstream-chat")
        saved_settings = gr.BrowserState(None, storage_key="speakstream-settings")
        named = {
            "voice": voice,
            "speaking_rate": speaking_rate,
            "text_only": text_only,
            "show_stats": show_stats,
            "system_prompt": system_prompt,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "repetition_penalty": repetition_penalty,
            "model": model,
        }
        controls = [named[name] for name in SAVED_CONTROLS]
        quick: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
        # Replies share one concurrency limit; quick events (Clear, Undo, saving) never wait behind them.
        # A new message first stops this session's running reply (a quick step), then waits for a
        # place; a message sent while a reply runs is taken, never dropped ("multiple").
        reply: dict[str, Any] = {
            "fn": app.chat,
            "inputs": [message, chatbot, *(named[name] for name in REPLY_CONTROLS), session],
            "outputs": [message, chatbot, player, replay, stats, saved_chat],
            "concurrency_limit": settings.concurrency_limit,
            "concurrency_id": "reply",
            "trigger_mode": "multiple",
            "show_progress_on": [chatbot],  # not on the player: its controls stay usable
        }
        new_message: dict[str, Any] = {
            "fn": supersede,
            "inputs": [session],
            "js": STOP_JS,
            "trigger_mode": "multiple",
            **quick,
        }
        keep_chat: dict[str, Any] = {"fn": remember_chat, "inputs": [chatbot], "outputs": [saved_chat], **quick}
        submitted = message.submit(**new_message).then(api_name="chat", **reply)
        clicked = send.click(**new_message).then(api_visibility="private", **reply)
        retried = (
            retry.click(**new_message)
            .then(last_turn_removed, inputs=[chatbot], outputs=[message, chatbot], **quick)
            .then(api_visibility="private", **reply)
        )
        replies = [submitted, clicked, retried]
        undo.click(
            last_turn_removed, inputs=[chatbot], outputs=[message, chatbot], js=STOP_JS, cancels=replies, **quick
        ).then(**keep_chat)
        show_stats.change(toggle_stats, inputs=[show_stats], outputs=[stats], **quick)
        stop.click(None, js=STOP_JS, cancels=replies, **quick).then(**keep_chat)
        # Our Clear button and the chat's own trash icon do the same
        gr.on(
            [clear.click, chatbot.clear],
            clear_chat,
            outputs=[chatbot, message, player, replay, stats, saved_chat, saved_settings],
            js=CLEAR_JS,
            cancels=replies,
            **quick,
        )
        model.change(functools.partial(load_model, app), inputs=[model], outputs=[model_status], **quick)
        # Saved when a setting changes (restoring them saves what was saved: the same values).
        gr.on(
            [control.change for control in controls],
            remember_settings,
            inputs=controls,
            outputs=[saved_settings],
            trigger_mode="always_last",
            **quick,
        )
        # The page marks itself once what the browser saved is back (browser tests and scripts wait for it).
        demo.load(
            functools.partial(restore, pipeline),
            inputs=[saved_chat, saved_settings],
            outputs=[chatbot, *controls],
            **quick,
        ).then(None, js="() => { document.body.dataset.restored = 'true'; }", **quick)
    demo.queue(max_size=settings.queue_size)
    # Gradio's queue has no public size; read it where Gradio keeps it (gradio pinned; tests/test_served_rules.py).
    app.metrics.replies_waiting.set_function(lambda: len(demo._queue))
    app.metrics.models_loaded.set_function(lambda: len(pipeline.models.loaded))
    return demo
