"""The lines under the model and voice pickers while a picked one loads: the seconds so far,
then ready or why not. Loading runs on the pools' loader threads, never in a reply's place."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent import futures
from typing import TYPE_CHECKING

import gradio as gr

from speakstream.llm.sources import ModelLoadError, model_label
from speakstream.voices.own import OWN

if TYPE_CHECKING:
    from speakstream.ui.handlers import ChatApp

log = logging.getLogger(__name__)

LOADING_TICK_SECONDS = 1.0


def hearing_note(app: ChatApp, key: str) -> str:
    """What the user should know about speaking to a voice in another language (empty: nothing)."""
    if app.recognition is None or app.recognition.transcriber.multilingual or app.voices.language(key) == "en":
        return ""
    return f" Spoken messages are heard in English only ({app.recognition.transcriber.label})."


def pace_note(app: ChatApp, key: str) -> str:
    """What the user should know about the speaking rate of voice ``key`` (empty: it follows the slider)."""
    voice = app.voices.get(key)
    if voice is None or voice.key != key or voice.speaking_rate_works:
        return ""
    return " It speaks at its own pace: the speaking rate does not change it."


def load_voice(app: ChatApp, key: str | None) -> Iterator[str]:
    """The line under the voice picker while a picked voice loads: the seconds so far, then ready or
    why not, what recognizing speech in its language can do, and whether it follows the speaking rate."""
    if key == OWN:
        yield "Your voice: make it under *Your voice* (until then replies speak with the default voice)."
        return
    if not key or app.voices.loaded(key):
        yield (hearing_note(app, key) + pace_note(app, key)).strip() if key else ""
        return
    loading, started = app.voices.request(key), time.monotonic()
    while not loading.done():
        yield f"Loading {app.voices.label(key)}… {time.monotonic() - started:.0f} s (first use)"
        futures.wait([loading], timeout=LOADING_TICK_SECONDS)
    if loading.exception() is not None:
        gr.Warning(f"{app.voices.label(key)}: {loading.exception()}")
        yield f"Not loaded: {loading.exception()}"
    else:
        yield f"{app.voices.label(key)} is ready.{hearing_note(app, key)}{pace_note(app, key)}"


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
