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
from typing import Any

import gradio as gr
import numpy as np

from speakstream.conversation import InvalidMessage, clean_message, content_text, for_display, to_model_messages
from speakstream.limits import RateLimiter
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
# The settings a browser keeps across reloads, in the order of build_ui's controls, with their types.
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
MAX_SAVED_MESSAGES = 100
ERROR_NOTE = "Sorry, something went wrong while writing this reply. Please try again."


def respond(
    pipeline: ReplyPipeline,
    settings: Settings,
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
    replays: ReplayFiles | None = None,
) -> Iterator[ChatOutputs]:
    """Stream one reply into the chat and the speaker; one tuple of outputs per update.

    A message that cannot be sent stays in the box and the user sees why. A new message
    stops the reply still running in the same session (``session`` holds its stop event
    and its rate limiter). A model chosen for the first time is loaded first, with the
    seconds counting in the chat. An error while generating ends this reply with a note in
    the chat and leaves the app serving others. The whole reply's audio goes to a file of
    ``replays`` (the page's), or to Gradio as samples (callers outside a page).
    """
    history = list(history or [])
    session = {} if session is None else session
    try:
        text = clean_message(message or "", settings.max_input_chars)
        if pipeline.content_filter.blocks(text):
            raise InvalidMessage("Your message contains words this app does not accept. Please rephrase it.")
        model_spec = pipeline.models.check(model)
        limiter = session.setdefault("limiter", RateLimiter(settings.rate_limit, settings.rate_window))
        if wait := limiter.check():
            raise InvalidMessage(f"You are sending messages too quickly. Please wait {wait:.0f} seconds.")
    except (InvalidMessage, ModelLoadError) as problem:
        gr.Warning(str(problem))
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    chosen = reply_settings(settings, system_prompt, temperature, top_p, max_new_tokens, repetition_penalty)
    messages = [*to_model_messages(history, chosen.system_prompt), {"role": "user", "content": text}]
    stop = threading.Event()
    if previous := session.get("stop"):
        previous.set()
    session["stop"] = stop
    before = history
    history = [*history, {"role": "user", "content": for_display(text)}, {"role": "assistant", "content": ""}]
    stream = audio_stream(settings.player, uuid.uuid4().hex[:16], pipeline.sample_rate)
    yield "", history, stream.start(), None, "", gr.skip()
    try:
        yield from _wait_for_model(pipeline, model_spec, history, stop)
        if stop.is_set():
            return  # stopped or superseded while the model was loading
        with pipeline.models.lease(model_spec) as chosen_model:
            options = pipeline.options(
                voice,
                speaking_rate,
                speak=not text_only,
                sampling=Sampling.from_settings(chosen),
                model=chosen_model,
            )
            yield from _stream_reply(pipeline, messages, history, stop, options, session, stream, replays)
    except ModelLoadError as problem:  # the chosen model cannot be loaded: nothing was said yet
        log.warning("%s", problem)
        gr.Warning(str(problem))
        yield message, before, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    except Exception:
        log.exception("Reply failed")
        so_far = history[-1]["content"]
        history[-1] = {"role": "assistant", "content": f"{so_far}\n\n{ERROR_NOTE}" if so_far else ERROR_NOTE}
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), remember_chat(history)
    finally:
        stop.set()


def _wait_for_model(
    pipeline: ReplyPipeline, spec: str, history: History, stop: threading.Event
) -> Iterator[ChatOutputs]:
    """Load ``spec`` if it is not loaded yet, showing the seconds it takes in the reply's place."""
    loading = pipeline.models.request(spec)
    started = time.monotonic()
    while not loading.done() and not stop.is_set():
        seconds = time.monotonic() - started
        note = f"*Loading {model_label(spec)}… {seconds:.0f} s (first use; then it stays loaded for everyone)*"
        history[-1] = {"role": "assistant", "content": note}
        yield gr.skip(), history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        futures.wait([loading], timeout=LOADING_TICK_SECONDS)
    if not stop.is_set():
        loading.result()  # raises ModelLoadError when the load failed
        history[-1] = {"role": "assistant", "content": ""}


def _stream_reply(
    pipeline: ReplyPipeline,
    messages: list[dict[str, str]],
    history: History,
    stop: threading.Event,
    options: ReplyOptions,
    session: dict[str, Any],
    stream: AudioStream,
    replays: ReplayFiles | None,
) -> Iterator[ChatOutputs]:
    """The reply's text, its audio for the page's player, then its whole audio, timings and the saved chat."""
    rate = pipeline.sample_rate
    spoken: list[np.ndarray] = []
    for update in pipeline.reply(messages, stop, options):
        if session.get("stop") is not stop:
            return  # superseded by a newer message: its reply owns the chat now
        history[-1] = {"role": "assistant", "content": update.text}
        if update.audio is not None:
            spoken.append(update.audio)
            for audio in stream.segment(update.audio, update.spoken):
                yield gr.skip(), history, audio, gr.skip(), gr.skip(), gr.skip()
        elif update.final:
            whole = None
            if spoken:
                samples = np.concatenate(spoken)
                whole = replays.write(samples, rate) if replays else (rate, samples)
            summary = update.timeline.summary()
            yield gr.skip(), history, stream.end(), whole, summary, remember_chat(history)
        else:
            yield gr.skip(), history, stream.text(), gr.skip(), gr.skip(), gr.skip()


def reply_settings(
    settings: Settings,
    system_prompt: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: float | None = None,
    repetition_penalty: float | None = None,
) -> Settings:
    """The server's settings with one user's choices, kept within safe ranges.

    Anything an API caller sends is clamped; a reply can never be longer than the server's
    own ``max_new_tokens``.
    """
    choices: dict[str, Any] = {}
    if system_prompt is not None:
        prompt = system_prompt.strip()
        choices["system_prompt"] = clean_message(prompt, settings.max_input_chars) if prompt else ""
    if temperature is not None:
        choices["temperature"] = min(max(float(temperature), 0.0), 2.0)
    if top_p is not None:
        choices["top_p"] = min(max(float(top_p), 0.05), 1.0)
    if max_new_tokens is not None:
        choices["max_new_tokens"] = min(max(int(max_new_tokens), 1), settings.max_new_tokens)
    if repetition_penalty is not None:
        choices["repetition_penalty"] = min(max(float(repetition_penalty), 1.0), 2.0)
    return dataclasses.replace(settings, **choices)


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


def restore(pipeline: ReplyPipeline, settings: Settings, chat: Any, chosen: Any) -> list[Any]:
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


def build_ui(pipeline: ReplyPipeline, settings: Settings, replays: ReplayFiles) -> gr.Blocks:
    """The whole page, wired to ``pipeline``, keeping reply audio in ``replays``; the caller launches it."""
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
                info="Loaded on first use, then shared by everyone"
                + ("; type a Hugging Face model id for another one" if settings.allow_custom_models else ""),
                allow_custom_value=settings.allow_custom_models,
                elem_id="model",
            )
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
        handler = functools.partial(respond, pipeline, settings, replays=replays)
        # Replies share one concurrency limit; quick events (Clear, Undo, saving) never wait behind them.
        # A message sent while a reply runs (or is being stopped) is taken, never dropped: it
        # supersedes the running reply (see respond), so triggers are never ignored ("multiple").
        chat_io: dict[str, Any] = {
            "inputs": [
                message,
                chatbot,
                voice,
                speaking_rate,
                text_only,
                system_prompt,
                temperature,
                top_p,
                max_new_tokens,
                repetition_penalty,
                model,
                session,
            ],
            "outputs": [message, chatbot, player, replay, stats, saved_chat],
            "concurrency_limit": settings.concurrency_limit,
            "concurrency_id": "reply",
            "trigger_mode": "multiple",
            "show_progress_on": [chatbot],  # not on the player: its controls stay usable
        }
        quick: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
        keep_chat: dict[str, Any] = {"fn": remember_chat, "inputs": [chatbot], "outputs": [saved_chat], **quick}
        submitted = message.submit(handler, api_name="chat", js=STOP_JS, **chat_io)
        clicked = send.click(handler, api_visibility="private", js=STOP_JS, **chat_io)
        retried = retry.click(
            last_turn_removed, inputs=[chatbot], outputs=[message, chatbot], js=STOP_JS, **quick
        ).then(handler, api_visibility="private", **chat_io)
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
            functools.partial(restore, pipeline, settings),
            inputs=[saved_chat, saved_settings],
            outputs=[chatbot, *controls],
            **quick,
        ).then(None, js="() => { document.body.dataset.restored = 'true'; }", **quick)
    demo.queue(max_size=settings.queue_size)
    return demo
